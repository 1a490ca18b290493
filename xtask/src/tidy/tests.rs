use std::collections::BTreeSet;

use super::{Source, Workspace, environment, figures_in_comments, missing_files, split_comment};

fn source(path: &str, text: &str) -> Source {
    Source { path: path.to_owned(), text: text.to_owned() }
}

fn files(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|path| (*path).to_owned()).collect()
}

#[test]
fn the_workspace_is_tidy() -> anyhow::Result<()> {
    let workspace = Workspace::read(&crate::workspace::root())?;
    let findings = super::check(&workspace);
    let report: Vec<String> = findings.iter().map(ToString::to_string).collect();
    assert!(findings.is_empty(), "tidy found problems:\n{}", report.join("\n"));
    Ok(())
}

#[test]
fn a_doc_naming_a_missing_file_is_found_and_existing_ones_pass() {
    let repo =
        files(&["crates/dashflow/tests/crash.rs", "docs/guide.md", "ARCHITECTURE.md", "crates/a/src/store/exit.rs"]);
    let doc = source(
        "README.md",
        "See docs/guide.md, `crates/dashflow/tests/crash.rs` and ARCHITECTURE.md.\n\
         Mechanisms: `store/exit.rs`, tests/crash.rs and dashflow/tests/crash.rs.\n\
         Gone: docs/missing.md and `crates/dashflow/src/old.rs`, and RELIABILITY.md.\n\
         Not paths: https://example.com/a/b.md, `$DASHFLOW_HOME/wal/x.rs`, <home>/wal/y.md, crates/.../x.rs",
    );
    let found = missing_files(&doc, &doc.text, &repo);
    let named: Vec<(usize, &str)> = found.iter().map(|finding| (finding.line, finding.message.as_str())).collect();
    assert_eq!(found.len(), 3, "{named:#?}");
    assert!(found.iter().all(|finding| finding.line == 3), "{named:#?}");
    assert!(found[0].message.contains("`docs/missing.md`"), "{named:#?}");
    assert!(found[1].message.contains("`crates/dashflow/src/old.rs`"), "{named:#?}");
    assert!(found[2].message.contains("`RELIABILITY.md`"), "{named:#?}");
}

#[test]
fn a_rooted_path_must_exist_from_the_root_not_only_as_a_suffix() {
    let repo = files(&["crates/dashflow-wal/src/store.rs"]);
    let doc = source("docs/x.md", "docs/store.rs is not crates/dashflow-wal/src/store.rs");
    let found = missing_files(&doc, &doc.text, &repo);
    assert_eq!(found.len(), 1);
    assert!(found[0].message.contains("`docs/store.rs`"));
}

#[test]
fn a_variable_read_but_not_listed_is_found_and_so_is_one_listed_but_never_read() {
    let configuration = source(
        "docs/configuration.md",
        "| variable | effect |\n| --- | --- |\n| `DASHFLOW_HOME` | home |\n| `DASHFLOW_GONE` | nothing |\n| `HOME` | default |\n\n\
         | file | what |\n| --- | --- |\n| `LOCK` | not a variable |\n",
    );
    let code = source(
        "crates/a/src/lib.rs",
        "let home = std::env::var_os(\"DASHFLOW_HOME\");\n\
         pub const HOME_VAR: &str = \"HOME\";\n\
         const NEW: &str = \"DASHFLOW_NEW\";\n\
         let manifest = option_env!(\"CARGO_MANIFEST_DIR\");\n\
         // env::var(\"DASHFLOW_IN_A_COMMENT\") is not a read\n\
         let other = std::env::var(\"RUST_LOG\");\n",
    );
    let found = environment(&[code], &configuration);
    let messages: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(messages[0].starts_with("crates/a/src/lib.rs:3: reads `DASHFLOW_NEW`"), "{messages:#?}");
    assert!(messages[1].starts_with("crates/a/src/lib.rs:6: reads `RUST_LOG`"), "{messages:#?}");
    assert!(
        messages[2].starts_with("docs/configuration.md: lists `DASHFLOW_GONE`, which no code reads"),
        "{messages:#?}"
    );
}

#[test]
fn a_test_reading_what_it_set_for_its_child_process_is_not_configuration() {
    let configuration = source("docs/configuration.md", "| variable | effect |\n| --- | --- |\n");
    let test = source(
        "crates/a/tests/crash.rs",
        "Command::new(exe).env(\"DASHFLOW_CRASH_DB\", path);\nlet db = env::var(\"DASHFLOW_CRASH_DB\");\n",
    );
    assert!(environment(&[test], &configuration).is_empty());
    let through_a_constant = source(
        "crates/a/tests/exit.rs",
        "const CHILD: &str = \"DASHFLOW_EXIT_CHILD\";\nCommand::new(exe).env(CHILD, \"1\");\nlet x = env::var(CHILD);\n",
    );
    assert!(environment(&[through_a_constant], &configuration).is_empty());
    let library =
        source("crates/a/src/lib.rs", "command.env(\"DASHFLOW_X\", \"1\");\nlet x = env::var(\"DASHFLOW_X\");\n");
    assert_eq!(environment(&[library], &configuration).len(), 2, "library code gets no such exemption");
}

#[test]
fn a_measured_figure_in_a_comment_is_found_but_settings_and_code_are_not() {
    let measured = [
        "// A put takes 2.1 µs on the reference machine.",
        "/// Each step costs 150ns here.",
        "//! Loads in 1.4 ms at 2,000 records.",
        "// Took single-writer puts from ~14,000/s to ~25,000/s.",
        "// Writes 350 MB/s sequentially.",
        "// 15x slower at 2,000 records",
        "let x = 1; // 2.4x faster than the old loop",
        "// cuts the overhead by 30% on B1",
        "// 90,000 inserts per second",
    ];
    for line in measured {
        let found = figures_in_comments(&source("crates/a/src/lib.rs", line));
        assert_eq!(found.len(), 1, "missed the figure in {line:?}");
    }
    let fine = [
        "// Waits at most 5 seconds, so a stuck disk cannot hang the exit.",
        "// 1 KiB pages, for a new file.",
        "// Once per 1,000 pages of log.",
        "let timeout = Duration::from_secs(5); // the server's default",
        "let url = \"http://host/2.5ms\"; let rate = \"3x faster\";",
        "// Retries 3 times with backoff.",
        "// 100% of the tasks run once.",
        "// `created_at_ms` is in milliseconds.",
        "/// A duration in a short form: `850µs`, `12.3ms`, `4.20s`.",
        "/// Waits 0.5 s, then twice as long each time.",
    ];
    for line in fine {
        let found = figures_in_comments(&source("crates/a/src/lib.rs", line));
        assert!(found.is_empty(), "a false positive in {line:?}: {found:?}");
    }
}

#[test]
fn comments_start_at_slashes_outside_strings() {
    assert_eq!(split_comment("let a = \"x//y\"; // why"), ("let a = \"x//y\"; ", Some("// why")));
    assert_eq!(split_comment("let q = '\"'; // after a quote char"), ("let q = '\"'; ", Some("// after a quote char")));
    assert_eq!(split_comment("let s = \"a \\\" // b\";"), ("let s = \"a \\\" // b\";", None));
}

#[test]
fn a_measured_figure_in_a_manifest_comment_is_found_but_not_in_its_values() {
    let manifest = source(
        "Cargo.toml",
        "# Embedded SQLite: measured ~90,000 inserts/s.\n\
         rusqlite = { version = \"0.39\" } # 12.5 µs per put\n\
         name = \"x # 3x faster\"\n\
         # Pinned: 3.0.0 does not build.\n",
    );
    let lines: Vec<usize> = figures_in_comments(&manifest).iter().map(|finding| finding.line).collect();
    assert_eq!(lines, [1, 2]);
}
