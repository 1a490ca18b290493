use crate::common::{Home, block_on, nesting_graph, observed, record_runs, ticket};
use dashflow::{RunConfig, RunId};
use dashflow_wal::StoreConfig;

#[test]
fn runs_list_shows_every_run_newest_first_with_status_steps_and_error() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["runs", "list"]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert!(lines[0].starts_with("RUN "), "{}", out.stdout);
    for header in ["GRAPH", "THREAD", "STATUS", "STARTED (UTC)", "DURATION", "STEPS", "ERROR"] {
        assert!(lines[0].contains(header), "{header} missing: {}", lines[0]);
    }
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    let order = [runs.echo, runs.answered, runs.failed, runs.completed];
    for (line, run) in lines[1..].iter().zip(order) {
        assert!(line.starts_with(&run.to_string()), "{line}");
    }
    let failed = lines[3];
    assert!(failed.contains("support") && failed.contains("t-2") && failed.contains("failed"), "{failed}");
    assert!(failed.contains("the payment system is down"), "{failed}");
    let completed = lines[4];
    assert!(completed.contains("completed"), "{completed}");
    assert!(completed.split_whitespace().any(|cell| cell == "3"), "three steps: {completed}");
}

#[test]
fn runs_list_filters_by_status_graph_thread_and_since() {
    let home = Home::new();
    let runs = record_runs(&home);
    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["runs", "list"];
        all.extend_from_slice(args);
        let out = home.dashflow(&all);
        out.ok().lines().skip(1).map(|line| line.split_whitespace().next().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&["--status", "failed"]), vec![runs.failed.to_string()]);
    assert_eq!(ids(&["--graph", "echo"]), vec![runs.echo.to_string()]);
    assert_eq!(ids(&["--thread", "t-1"]), vec![runs.completed.to_string()]);
    assert_eq!(ids(&["--graph", "support", "--limit", "2"]), vec![runs.answered.to_string(), runs.failed.to_string()]);
    assert_eq!(ids(&["--since", "1h"]).len(), 4);
    assert_eq!(ids(&["--since", "2000-01-01"]).len(), 4);
    let none = home.dashflow(&["runs", "list", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(none.ok(), "no runs match\n");
}

#[test]
fn runs_list_refuses_an_unknown_status_or_a_bad_since_as_usage_errors() {
    let home = Home::new();
    record_runs(&home);
    let out = home.dashflow(&["runs", "list", "--status", "sleepy"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("unknown run status `sleepy`"), "{}", out.stderr);
    let out = home.dashflow(&["runs", "list", "--since", "yesterday"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("is neither a duration"), "{}", out.stderr);
}

#[test]
fn runs_list_json_is_an_array_of_run_summaries() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["runs", "list", "--status", "failed", "--json"]);
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let run = &list[0];
    assert_eq!(run["run_id"], runs.failed.to_string());
    assert_eq!(run["graph"], "support");
    assert_eq!(run["thread_id"], "t-2");
    assert_eq!(run["status"], "failed");
    assert_eq!(run["steps"], 2);
    assert_eq!(run["depth"], 0);
    assert!(run["error"].as_str().unwrap().contains("the payment system is down"));
    assert!(run["started_at"].as_str().unwrap().ends_with('Z'));
    assert!(run["duration_ms"].is_number());
}

#[test]
fn runs_list_of_an_empty_store_says_so() {
    let home = Home::new();
    drop(home.store(StoreConfig::default()));
    assert_eq!(home.dashflow(&["runs", "list"]).ok(), "no runs match\n");
    assert_eq!(home.dashflow(&["runs", "list", "--json"]).ok(), "[]\n");
}

#[test]
fn runs_show_draws_a_timeline_with_bars_routing_and_the_error_in_place() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["runs", "show", &runs.failed.to_string()]);
    let text = out.ok();
    for field in ["run       ", "graph     support", "thread    t-2", "status    failed", "steps     2"] {
        assert!(text.contains(field), "{field:?} missing:\n{text}");
    }
    assert!(text.contains("error     "), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.iter().position(|line| line.starts_with("STEP  NODE")).expect(text);
    let timeline = &lines[header + 1..];
    assert!(timeline[0].starts_with("   1  classify    1"), "{text}");
    assert_eq!(timeline[1].trim(), "↳ classify chose \"billing\" → billing", "{text}");
    assert!(timeline[2].starts_with("   2  billing     1"), "{text}");
    assert!(timeline[2].ends_with("✗ the payment system is down"), "{text}");
    assert!(timeline.iter().any(|line| line.contains(&"█".repeat(30))), "the longest task fills the bar:\n{text}");
    assert_eq!(timeline.len(), 3, "{text}");
}

#[test]
fn runs_show_accepts_an_id_in_lower_case() {
    let home = Home::new();
    let runs = record_runs(&home);
    let id = runs.completed.to_string();
    // Ids of one process made in one millisecond differ only in their last characters, so
    // the whole id is the prefix that is certainly unique (`ambiguous` prefixes: errors.rs).
    let out = home.dashflow(&["runs", "show", &id.to_ascii_lowercase()]);
    let text = out.ok();
    assert!(text.starts_with(&format!("run       {id}\n")), "{text}");
    for node in ["classify", "billing", "answer"] {
        assert!(text.contains(&format!("  {node} ")), "{node} missing:\n{text}");
    }
}

#[test]
fn runs_show_json_lists_tasks_and_routing_decisions() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["runs", "show", &runs.answered.to_string(), "--json"]);
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(json["run"]["status"], "completed");
    let timeline = json["timeline"].as_array().unwrap();
    let kinds: Vec<&str> = timeline.iter().map(|entry| entry["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["task", "routed", "task"]);
    assert_eq!(timeline[0]["node"], "classify");
    assert_eq!(timeline[1]["label"], "other");
    assert_eq!(timeline[1]["target"], "answer");
    assert_eq!(timeline[2]["node"], "answer");
    assert_eq!(timeline[2]["step"], 2);
    assert!(timeline[2]["duration_ms"].is_number());
    assert!(timeline[2]["error"].is_null());
    assert_eq!(json["subgraph_runs"], serde_json::json!([]));
}

#[test]
fn runs_show_json_carries_the_runs_trace_from_the_log_without_trace_files() {
    let home = Home::new();
    // Traces in the log only, as the process's store keeps them unless trace files are asked for.
    let store = std::sync::Arc::new(
        dashflow_wal::EventStore::open(
            home.wal_dir(),
            StoreConfig::default().traces(dashflow_wal::TraceConfig::wal_only()),
        )
        .unwrap(),
    );
    let app = observed(crate::common::support_graph(), &store);
    let run = RunId::new();
    block_on(app.invoke(ticket("how do I export?"), RunConfig::thread("t-9").run_id(run))).unwrap();
    store.flush().unwrap();
    assert_eq!(store.traces_dir(), None);

    let out = home.dashflow(&["runs", "show", &run.to_string(), "--json"]);
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let trace = &json["trace"];
    assert_eq!(trace["run"]["run_id"], run.to_string(), "{trace}");
    assert_eq!(trace["status"], "completed", "{trace}");
    let nodes: Vec<&str> =
        trace["tasks"].as_array().unwrap().iter().map(|task| task["node"].as_str().unwrap()).collect();
    assert_eq!(nodes, ["classify", "answer"], "{trace}");
}

#[test]
fn runs_show_of_a_subgraph_run_names_its_parent_and_the_parent_lists_it() {
    let home = Home::new();
    let store = home.store(StoreConfig::default());
    let app = observed(nesting_graph(), &store);
    let outer = RunId::new();
    block_on(app.invoke(ticket("nested"), RunConfig::new().run_id(outer))).unwrap();
    store.flush().unwrap();

    let out = home.dashflow(&["runs", "list", "--graph", "echo", "--json"]);
    let json: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    let inner = json[0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(json[0]["parent_run_id"], outer.to_string());

    let out = home.dashflow(&["runs", "show", &inner]);
    assert!(out.ok().contains(&format!("parent    {outer} (root {outer}, depth 1)")), "{}", out.stdout);

    let out = home.dashflow(&["runs", "show", &outer.to_string()]);
    let text = out.ok();
    assert!(text.contains("subgraph runs:"), "{text}");
    assert!(text.lines().any(|line| line.starts_with(&inner) && line.contains("echo")), "{text}");

    let list = home.dashflow(&["runs", "list"]);
    assert!(list.ok().lines().any(|line| line.starts_with(&inner) && line.contains("↳ echo")), "{}", list.stdout);
}

#[test]
fn runs_list_filters_by_tag_and_tags_reach_the_index_the_trace_and_runs_show() {
    let home = Home::new();
    let store = home.store(StoreConfig::default());
    let app = observed(crate::common::support_graph(), &store);
    let (tagged, plain) = (RunId::new(), RunId::new());
    block_on(async {
        let config = RunConfig::thread("t-9").run_id(tagged).tag("nightly").tag("eu-west");
        app.invoke(ticket("refund for march"), config).await.unwrap();
        app.invoke(ticket("refund for april"), RunConfig::thread("t-9").run_id(plain).tag("eu-west")).await.unwrap();
    });
    store.flush().unwrap();

    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["runs", "list"];
        all.extend_from_slice(args);
        let out = home.dashflow(&all);
        out.ok().lines().skip(1).map(|line| line.split_whitespace().next().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&["--tag", "nightly"]), [tagged.to_string()]);
    assert_eq!(ids(&["--tag", "eu-west"]).len(), 2);
    assert_eq!(home.dashflow(&["runs", "list", "--tag", "night"]).ok(), "no runs match\n", "tags match whole");

    let out = home.dashflow(&["runs", "list", "--tag", "nightly", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(listed[0]["tags"], serde_json::json!(["nightly", "eu-west"]), "in the order given");

    let out = home.dashflow(&["runs", "show", &tagged.to_string()]);
    assert!(out.ok().lines().any(|line| line == "tags      nightly, eu-west"), "{}", out.stdout);

    let wal = dashflow_wal::Wal::open_read_only(home.wal_dir(), dashflow_wal::WalConfig::default()).unwrap();
    let trace = wal.trace(tagged).unwrap().expect("the tagged run's trace");
    assert_eq!(trace.tags, ["nightly", "eu-west"]);
    assert!(wal.trace(plain).unwrap().expect("the plain run's trace").tags == ["eu-west"]);
}
