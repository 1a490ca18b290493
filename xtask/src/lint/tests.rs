use super::metadata::{self, Dependency, DependencyKind, Package};
use super::rules::{RULES, rule_for};
use super::{Violation, check};

fn package(name: &str, dependencies: &[(&str, DependencyKind)]) -> Package {
    Package {
        name: name.to_owned(),
        dependencies: dependencies
            .iter()
            .map(|(name, kind)| Dependency { name: (*name).to_owned(), kind: *kind })
            .collect(),
    }
}

fn normal(names: &[&'static str]) -> Vec<(&'static str, DependencyKind)> {
    names.iter().map(|name| (*name, DependencyKind::Normal)).collect()
}

/// The workspace as the design brief draws it, with every crate depending on all it may.
fn compliant_workspace() -> Vec<Package> {
    vec![
        package("dashflow-checkpoint", &normal(&["serde", "thiserror"])),
        package("dashflow-telemetry", &normal(&["serde"])),
        package("dashflow-scheduler", &normal(&["tokio"])),
        package("dashflow-derive", &normal(&["syn", "quote"])),
        package("dashflow-checkpoint-sqlite", &normal(&["dashflow-checkpoint", "rusqlite"])),
        package("dashflow-checkpoint-postgres", &normal(&["dashflow-checkpoint", "sqlx"])),
        package("dashflow-checkpoint-conformance", &normal(&["dashflow-checkpoint"])),
        package("dashflow-graph", &normal(&["dashflow-derive", "dashflow-telemetry"])),
        package(
            "dashflow-executor",
            &normal(&[
                "dashflow-graph",
                "dashflow-checkpoint",
                "dashflow-telemetry",
                "dashflow-scheduler",
                "dashflow-derive",
            ]),
        ),
        package("dashflow-wal", &normal(&["dashflow-telemetry"])),
        package("dashflow-otel", &normal(&["dashflow-telemetry", "opentelemetry"])),
        package("dashflow-nats", &normal(&["dashflow-telemetry", "async-nats"])),
        package(
            "dashflow-ui",
            &normal(&["dashflow-checkpoint", "dashflow-graph", "dashflow-telemetry", "dashflow-wal"]),
        ),
        package("dashflow", &normal(&["dashflow-executor", "dashflow-wal", "dashflow-checkpoint-sqlite"])),
        package("dashflow-cli", &normal(&["dashflow", "dashflow-wal"])),
        package("dashflow-benches", &normal(&["dashflow", "dashflow-checkpoint-sqlite"])),
        package("xtask", &normal(&["anyhow"])),
    ]
}

/// `packages` with `changed` added, replacing the package of the same name if there is one.
fn with(mut packages: Vec<Package>, changed: Package) -> Vec<Package> {
    packages.retain(|package| package.name != changed.name);
    packages.push(changed);
    packages
}

fn forbidden_pairs(violations: &[Violation]) -> Vec<(&str, &str)> {
    violations
        .iter()
        .filter_map(|violation| match violation {
            Violation::Forbidden { package, dependency, .. } => Some((package.as_str(), dependency.as_str())),
            Violation::NoRule { .. } => None,
        })
        .collect()
}

#[test]
fn an_event_exporter_that_names_the_executor_is_reported() {
    let packages =
        with(compliant_workspace(), package("dashflow-nats", &normal(&["dashflow-telemetry", "dashflow-executor"])));
    assert_eq!(forbidden_pairs(&check(&packages, RULES)), vec![("dashflow-nats", "dashflow-executor")]);
    let packages = with(compliant_workspace(), package("dashflow-otel", &normal(&["dashflow-wal"])));
    assert_eq!(forbidden_pairs(&check(&packages, RULES)), vec![("dashflow-otel", "dashflow-wal")]);
}

#[test]
fn a_workspace_that_follows_the_design_passes() {
    assert_eq!(check(&compliant_workspace(), RULES), vec![]);
}

#[test]
fn graph_depending_on_the_executor_is_reported_naming_both_crates() {
    let packages =
        with(compliant_workspace(), package("dashflow-graph", &normal(&["dashflow-derive", "dashflow-executor"])));

    let violations = check(&packages, RULES);

    assert_eq!(forbidden_pairs(&violations), vec![("dashflow-graph", "dashflow-executor")]);
    let message = violations[0].to_string();
    assert!(message.contains("dashflow-graph has a dependency on dashflow-executor"), "{message}");
    assert!(message.contains("only dashflow-derive, dashflow-telemetry"), "{message}");
}

#[test]
fn a_backend_that_sees_graph_types_is_reported() {
    let packages = with(
        compliant_workspace(),
        package("dashflow-checkpoint-memory", &normal(&["dashflow-checkpoint", "dashflow-graph"])),
    );
    assert_eq!(forbidden_pairs(&check(&packages, RULES)), vec![("dashflow-checkpoint-memory", "dashflow-graph")]);
}

#[test]
fn the_conformance_suite_may_not_depend_on_a_backend() {
    let packages = with(
        compliant_workspace(),
        package("dashflow-checkpoint-conformance", &normal(&["dashflow-checkpoint", "dashflow-checkpoint-sqlite"])),
    );
    assert_eq!(
        forbidden_pairs(&check(&packages, RULES)),
        vec![("dashflow-checkpoint-conformance", "dashflow-checkpoint-sqlite")]
    );
}

#[test]
fn the_memory_queue_may_not_name_another_engine_and_its_suite_no_backend() {
    let mut packages = compliant_workspace();
    for changed in [
        package("dashflow-queue", &normal(&["dashflow-checkpoint"])),
        package("dashflow-checkpoint-memory", &normal(&["dashflow-checkpoint"])),
        package(
            "dashflow-queue-memory",
            &normal(&["dashflow-queue", "dashflow-checkpoint-memory", "dashflow-checkpoint-postgres"]),
        ),
        package("dashflow-queue-conformance", &normal(&["dashflow-queue", "dashflow-queue-memory"])),
    ] {
        packages = with(packages, changed);
    }
    assert_eq!(
        forbidden_pairs(&check(&packages, RULES)),
        vec![
            ("dashflow-queue-memory", "dashflow-checkpoint-postgres"),
            ("dashflow-queue-conformance", "dashflow-queue-memory"),
        ]
    );
}

#[test]
fn the_executor_may_not_name_the_wal_or_a_backend() {
    let packages = with(
        compliant_workspace(),
        package("dashflow-executor", &normal(&["dashflow-wal", "dashflow-checkpoint-sqlite", "dashflow-graph"])),
    );
    assert_eq!(
        forbidden_pairs(&check(&packages, RULES)),
        vec![("dashflow-executor", "dashflow-wal"), ("dashflow-executor", "dashflow-checkpoint-sqlite")]
    );
}

#[test]
fn the_viewer_may_not_name_the_executor_or_a_backend() {
    let packages = with(
        compliant_workspace(),
        package("dashflow-ui", &normal(&["dashflow-wal", "dashflow-executor", "dashflow-checkpoint-sqlite"])),
    );
    assert_eq!(
        forbidden_pairs(&check(&packages, RULES)),
        vec![("dashflow-ui", "dashflow-executor"), ("dashflow-ui", "dashflow-checkpoint-sqlite")]
    );
}

#[test]
fn build_dependencies_are_checked_and_dev_dependencies_are_exempt() {
    let packages = with(
        compliant_workspace(),
        package(
            "dashflow-telemetry",
            &[("dashflow-derive", DependencyKind::Build), ("dashflow-graph", DependencyKind::Dev)],
        ),
    );
    let violations = check(&packages, RULES);
    assert_eq!(forbidden_pairs(&violations), vec![("dashflow-telemetry", "dashflow-derive")]);
    assert!(violations[0].to_string().contains("has a build-dependency on"));
}

#[test]
fn a_new_crate_without_a_rule_is_reported() {
    let packages = with(compliant_workspace(), package("dashflow-router", &normal(&["dashflow-graph"])));
    let violations = check(&packages, RULES);
    assert_eq!(violations, vec![Violation::NoRule { package: "dashflow-router".to_owned() }]);
    assert!(violations[0].to_string().contains("add a line for it to RULES"));
}

#[test]
fn only_workspace_members_count_as_internal_crates() {
    // A registry package that happens to share our prefix is a third-party dependency.
    let packages =
        with(compliant_workspace(), package("dashflow-wal", &normal(&["dashflow-unrelated-registry-crate"])));
    assert_eq!(check(&packages, RULES), vec![]);
}

#[test]
fn an_exact_rule_wins_over_a_matching_prefix() {
    let conformance = rule_for(RULES, "dashflow-checkpoint-conformance").map(|rule| rule.pattern);
    let backend = rule_for(RULES, "dashflow-checkpoint-sqlite").map(|rule| rule.pattern);
    let trait_crate = rule_for(RULES, "dashflow-checkpoint").map(|rule| rule.pattern);
    assert_eq!(conformance, Some("dashflow-checkpoint-conformance"));
    assert_eq!(backend, Some("dashflow-checkpoint-*"));
    assert_eq!(trait_crate, Some("dashflow-checkpoint"));
}

#[test]
fn cargo_metadata_output_is_read_with_dependency_kinds() -> anyhow::Result<()> {
    let json = r#"{
        "workspace_members": ["path+file:///w/crates/dashflow-graph#0.1.0"],
        "packages": [
            {
                "id": "path+file:///w/crates/dashflow-graph#0.1.0",
                "name": "dashflow-graph",
                "dependencies": [
                    {"name": "dashflow-derive", "kind": null, "rename": null},
                    {"name": "cc", "kind": "build"},
                    {"name": "trybuild", "kind": "dev"}
                ]
            },
            {"id": "registry+serde#1.0.0", "name": "serde", "dependencies": []}
        ]
    }"#;
    let packages = metadata::parse(json)?;
    assert_eq!(packages.len(), 1, "non-members are dropped");
    let kinds: Vec<DependencyKind> = packages[0].dependencies.iter().map(|dependency| dependency.kind).collect();
    assert_eq!(kinds, vec![DependencyKind::Normal, DependencyKind::Build, DependencyKind::Dev]);
    Ok(())
}
