//! `cargo xtask tidy`: checks that keep the docs true, in the manner of rust-analyzer's
//! `tidy.rs`. Also a test (`tidy::tests::the_workspace_is_tidy`), so `cargo test -p xtask`
//! and the test step of `cargo xtask ci` run it too.
//!
//! - Every repository file a doc names exists: the Markdown docs (`README.md`,
//!   `ARCHITECTURE.md`, `docs/**/*.md`, crate READMEs) and the doc comments of the code.
//! - Every environment variable the code reads is listed in `docs/configuration.md`, and every
//!   variable listed there is read somewhere.
//! - No code comment (Rust, or a TOML manifest's) carries a measured figure (a duration below a millisecond, a fractional
//!   millisecond, a rate per second, "3x faster", a percentage of speed): figures belong in
//!   `docs/benchmarks.md` and commit messages.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::{Context, Result, bail};
use regex::Regex;

use crate::workspace;

/// What one rule found wrong, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Finding {
    /// The file, relative to the workspace root.
    pub(crate) file: String,
    /// The line, from 1; 0 for the file as a whole.
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// A compiled pattern of this module.
#[allow(clippy::expect_used, reason = "the patterns are constants, every one exercised by the unit tests")]
fn pattern(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a valid pattern")
}

/// A text file of the workspace: its path relative to the root, and its content.
pub(crate) struct Source {
    pub(crate) path: String,
    pub(crate) text: String,
}

/// The workspace's files as tidy sees them.
pub(crate) struct Workspace {
    /// Every file, relative to the root (`/`-separated), for the path rule.
    pub(crate) files: BTreeSet<String>,
    pub(crate) markdown: Vec<Source>,
    pub(crate) rust: Vec<Source>,
    /// Manifests and other TOML files, whose `#` comments the figures rule reads too.
    pub(crate) toml: Vec<Source>,
    /// `docs/configuration.md`.
    pub(crate) configuration: Source,
}

pub(crate) const CONFIGURATION: &str = "docs/configuration.md";

/// Runs every rule over the workspace and fails listing what they found.
pub(crate) fn run() -> Result<()> {
    let findings = check(&Workspace::read(&workspace::root())?);
    if findings.is_empty() {
        println!("tidy: docs name existing files, configuration.md lists the environment, no figures in comments");
        return Ok(());
    }
    for finding in &findings {
        println!("{finding}");
    }
    bail!("tidy found {} problem(s); fix them as each line says", findings.len())
}

/// Every rule's findings.
pub(crate) fn check(workspace: &Workspace) -> Vec<Finding> {
    let mut findings = Vec::new();
    for source in workspace.markdown.iter() {
        findings.extend(missing_files(source, &source.text, &workspace.files));
    }
    for source in &workspace.rust {
        let docs: String =
            source.text.lines().map(|line| doc_comment(line).unwrap_or("")).collect::<Vec<_>>().join("\n");
        findings.extend(missing_files(source, &docs, &workspace.files));
        findings.extend(figures_in_comments(source));
    }
    for source in &workspace.toml {
        findings.extend(figures_in_comments(source));
    }
    findings.extend(environment(&workspace.rust, &workspace.configuration));
    findings
}

impl Workspace {
    pub(crate) fn read(root: &Path) -> Result<Self> {
        let mut paths = Vec::new();
        walk(root, root, &mut paths)?;
        let mut workspace = Workspace {
            files: paths.iter().cloned().collect(),
            markdown: Vec::new(),
            rust: Vec::new(),
            toml: Vec::new(),
            configuration: Source { path: CONFIGURATION.to_owned(), text: String::new() },
        };
        for path in paths {
            let is_markdown = path.ends_with(".md");
            let is_toml = path.ends_with(".toml");
            if !is_markdown && !is_toml && !path.ends_with(".rs") {
                continue;
            }
            let text = std::fs::read_to_string(root.join(&path)).with_context(|| format!("cannot read {path}"))?;
            let source = Source { path, text };
            if source.path == CONFIGURATION {
                workspace.configuration = Source { path: source.path.clone(), text: source.text.clone() };
            }
            if is_markdown {
                workspace.markdown.push(source);
            } else if is_toml {
                workspace.toml.push(source);
            } else {
                workspace.rust.push(source);
            }
        }
        if workspace.configuration.text.is_empty() {
            bail!("{CONFIGURATION} is missing or empty");
        }
        Ok(workspace)
    }
}

/// Collects the files under `dir`, relative to `root`, skipping build output, VCS data and
/// Python environments.
fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut entries: Vec<PathBuf> = entries.map(|entry| entry.map(|entry| entry.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        if matches!(name, "target" | ".git" | ".venv" | "venv" | "node_modules" | "__pycache__") {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// The text of a `///` or `//!` comment line.
fn doc_comment(line: &str) -> Option<&str> {
    let line = line.trim_start();
    line.strip_prefix("//!").or_else(|| line.strip_prefix("///"))
}

/// Splits a line of Rust into its code and its comment (after `//` outside a string).
pub(crate) fn split_comment(line: &str) -> (&str, Option<&str>) {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' if in_string => index += 1,
            b'"' => in_string = !in_string,
            // A char literal holding a quote (`'"'`) does not open a string.
            b'\'' if !in_string && bytes.get(index + 1) == Some(&b'"') && bytes.get(index + 2) == Some(&b'\'') => {
                index += 2;
            }
            b'/' if !in_string && bytes.get(index + 1) == Some(&b'/') => {
                return (&line[..index], Some(&line[index..]));
            }
            _ => {}
        }
        index += 1;
    }
    (line, None)
}

/// The comment of a TOML line: from a `#` outside a string.
fn toml_comment(line: &str) -> Option<&str> {
    let mut in_string = false;
    for (index, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return Some(&line[index..]),
            _ => {}
        }
    }
    None
}

/// Paths in prose: a run of path characters with a `/` or a root-level doc name, ending in an
/// extension of a file kept in the repository.
static PATH: LazyLock<Regex> = LazyLock::new(|| {
    pattern(
        r"(?:^|[^A-Za-z0-9_./:<>{}*$~-])((?:[A-Za-z0-9_.-]+/)+[A-Za-z0-9_.-]+\.(?:rs|md|toml|sql|py|sh|yml|yaml)|[A-Z][A-Z0-9_]+\.md)\b",
    )
});

/// The first rule: every file `text` (from `source`) names exists. A path starting at a
/// top-level directory must exist from the root; a shorter one (`tests/crash.rs`,
/// `store/exit.rs`) must be the end of some file's path.
pub(crate) fn missing_files(source: &Source, text: &str, files: &BTreeSet<String>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for found in PATH.captures_iter(line) {
            let path = found[1].trim_start_matches("./");
            // `crates/.../x.rs` stands for any file.
            if path.contains("...") || exists(path, files) {
                continue;
            }
            findings.push(Finding {
                file: source.path.clone(),
                line: number + 1,
                message: format!("names `{path}`, which is not a file of the repository; fix the path or the sentence"),
            });
        }
    }
    findings
}

fn exists(path: &str, files: &BTreeSet<String>) -> bool {
    if files.contains(path) {
        return true;
    }
    let rooted = ["crates/", "docs/", "xtask/", "benches/", "examples/", ".ci/"];
    if rooted.iter().any(|top| path.starts_with(top)) {
        return false;
    }
    // A crate named without `crates/` (`dashflow-executor/src/run.rs`), or a path relative
    // to a crate or module.
    let suffix = format!("/{path}");
    files.iter().any(|file| file.ends_with(&suffix))
}

/// A variable read in code: `var("X")`, `var_os("X")`, `option_env!("X")`, and any string
/// literal that is a `DASHFLOW_` name (read through a constant).
static READ: LazyLock<Regex> = LazyLock::new(|| {
    pattern(concat!(
        r#"\b(?:var|var_os|option_env!|remove_var|set_var)\s*\(\s*"([A-Za-z_][A-Za-z0-9_]*)""#,
        r#"|_VAR\s*:\s*&(?:'static\s+)?str\s*=\s*"([A-Za-z_][A-Za-z0-9_]*)""#,
        r#"|"(DASHFLOW_[A-Z0-9_]+)""#,
    ))
});

/// A variable a program sets for a child process it starts, by name or through a constant.
static SET: LazyLock<Regex> =
    LazyLock::new(|| pattern(r#"\b(?:env|set_var)\s*\(\s*(?:"([A-Za-z_][A-Za-z0-9_]*)"|([A-Z][A-Z0-9_]*)\s*,)"#));

/// A string constant: `const CHILD: &str = "DASHFLOW_EXIT_TEST_CHILD";`.
static CONSTANT: LazyLock<Regex> =
    LazyLock::new(|| pattern(r#"const\s+([A-Z][A-Z0-9_]*)\s*:\s*&(?:'static\s+)?str\s*=\s*"([^"]*)""#));

/// The variables a test file sets for its child processes.
fn set_for_children(text: &str) -> BTreeSet<&str> {
    let constants: std::collections::BTreeMap<&str, &str> = CONSTANT
        .captures_iter(text)
        .filter_map(|found| Some((found.get(1)?.as_str(), found.get(2)?.as_str())))
        .collect();
    SET.captures_iter(text)
        .filter_map(|found| match (found.get(1), found.get(2)) {
            (Some(name), _) => Some(name.as_str()),
            (None, Some(constant)) => constants.get(constant.as_str()).copied(),
            (None, None) => None,
        })
        .collect()
}

/// A variable listed in configuration.md: the first cell of a table row.
static LISTED: LazyLock<Regex> = LazyLock::new(|| pattern(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|"));

/// Variables the toolchain or the operating system sets for programs, not configuration.
const NOT_CONFIGURATION: &[&str] = &["CARGO", "CARGO_MANIFEST_DIR", "CARGO_PKG_VERSION", "CARGO_TARGET_TMPDIR", "PATH"];

/// The second rule: the variables the code reads and the ones configuration.md lists (the
/// first column of its table of variables) are the same set. A test that sets a variable for
/// the child process it starts (`.env("DASHFLOW_CRASH_DB", ..)`) and reads it there is its
/// own plumbing, not configuration.
pub(crate) fn environment(rust: &[Source], configuration: &Source) -> Vec<Finding> {
    let listed: BTreeSet<&str> = configuration
        .text
        .lines()
        .skip_while(|line| !line.starts_with("| variable"))
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| LISTED.captures(line).and_then(|found| found.get(1)).map(|name| name.as_str()))
        .collect();
    let mut findings = Vec::new();
    let mut read = BTreeSet::new();
    for source in rust {
        let is_test = source.path.contains("/tests/");
        let set_here = if is_test { set_for_children(&source.text) } else { BTreeSet::new() };
        for (number, line) in source.text.lines().enumerate() {
            let (code, _) = split_comment(line);
            for found in READ.captures_iter(code) {
                let name = found.get(1).or_else(|| found.get(2)).or_else(|| found.get(3));
                let Some(name) = name.map(|name| name.as_str()) else { continue };
                if NOT_CONFIGURATION.contains(&name) || set_here.contains(name) {
                    continue;
                }
                read.insert(name.to_owned());
                if !listed.contains(name) {
                    findings.push(Finding {
                        file: source.path.clone(),
                        line: number + 1,
                        message: format!(
                            "reads `{name}`, which {} does not list; add a row for it",
                            configuration.path
                        ),
                    });
                }
            }
        }
    }
    // A listed variable may also be read through a helper (`non_empty("HOME")`): any string
    // literal of its name in code counts.
    let named_in_code = |name: &str| {
        let literal = format!("\"{name}\"");
        rust.iter().any(|source| source.text.lines().any(|line| split_comment(line).0.contains(&literal)))
    };
    for name in listed.iter().filter(|name| !read.contains(**name) && !named_in_code(name)) {
        findings.push(Finding {
            file: configuration.path.clone(),
            line: 0,
            message: format!("lists `{name}`, which no code reads; remove the row or the variable's reader"),
        });
    }
    findings
}

/// Figures of a measurement: durations below a millisecond, fractional milliseconds, rates,
/// ratios of speed and percentages next to words of speed.
static FIGURE: LazyLock<Regex> = LazyLock::new(|| {
    pattern(concat!(
        r"(?i)\d[\d,.]*\s*(?:µs|us|ns|nanoseconds?|microseconds?)\b",
        r"|\d+\.\d+\s*(?:ms|milliseconds?)\b",
        r"|\d[\d,.]*\s*[km]?\s*(?:ops|runs|records|puts|inserts|events|writes|requests|steps)?\s*(?:/s|/sec|per second)\b",
        r"|\d[\d,.]*\s*(?:[kmg]i?b|bytes)/s\b",
        r"|\d+(?:\.\d+)?\s*(?:x|×)\s*(?:faster|slower|quicker|the speed|as fast|as slow|more|less|fewer|speedup)",
    ))
});

/// A percentage, a figure when its comment speaks of speed or cost.
static PERCENT: LazyLock<Regex> = LazyLock::new(|| pattern(r"\d+(?:\.\d+)?\s*%"));
static SPEED: LazyLock<Regex> =
    LazyLock::new(|| pattern(r"(?i)faster|slower|speed|overhead|reduc|improv|cheaper|throughput|latency|costs? "));

/// A code span in a comment (`850µs` in the doc of a formatter shows output, not a
/// measurement).
static CODE_SPAN: LazyLock<Regex> = LazyLock::new(|| pattern(r"`[^`]*`"));

/// Code whose subject is figures: the benchmark report (its comments name targets and test
/// fixtures) and this check's own examples.
const FIGURES_ARE_THE_SUBJECT: &[&str] = &["xtask/src/bench/", "xtask/src/tidy/"];

/// The third rule: no comment in code carries a measured figure.
pub(crate) fn figures_in_comments(source: &Source) -> Vec<Finding> {
    let mut findings = Vec::new();
    if FIGURES_ARE_THE_SUBJECT.iter().any(|dir| source.path.starts_with(dir)) {
        return findings;
    }
    for (number, line) in source.text.lines().enumerate() {
        let comment = if source.path.ends_with(".toml") { toml_comment(line) } else { split_comment(line).1 };
        let Some(comment) = comment else { continue };
        let comment = CODE_SPAN.replace_all(comment, "``");
        let comment = comment.as_ref();
        let percent = PERCENT.find(comment).filter(|_| SPEED.is_match(comment));
        if let Some(figure) = FIGURE.find(comment).or(percent) {
            findings.push(Finding {
                file: source.path.clone(),
                line: number + 1,
                message: format!(
                    "comment carries the figure `{}`; figures go in docs/benchmarks.md or the commit message, comments say why",
                    figure.as_str().trim()
                ),
            });
        }
    }
    findings
}
