use crate::common::{Home, record_runs, support_graph};

#[test]
fn graph_prints_the_mermaid_of_the_graph_the_run_used() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["graph", &runs.failed.to_string()]);
    assert_eq!(out.ok(), support_graph().schema().to_mermaid());
    assert!(out.stdout.contains("classify -. \"billing\" .-> billing"), "{}", out.stdout);
}

#[test]
fn graph_json_prints_the_schema_nodes_and_edges() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["graph", &runs.echo.to_string(), "--format", "json"]);
    let schema: dashflow::GraphSchema = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(schema.name, "echo");
    assert_eq!(schema.nodes.iter().map(|node| node.name.as_str()).collect::<Vec<_>>(), ["answer"]);
    assert_eq!(schema.edges.len(), 2);
}

#[test]
fn graph_refuses_an_unknown_format() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["graph", &runs.echo.to_string(), "--format", "svg"]);
    assert_eq!(out.code, 2, "{out:#?}");
}
