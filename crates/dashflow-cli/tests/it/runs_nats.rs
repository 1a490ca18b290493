//! `dashflow runs list --nats` and `runs show --nats`: the same runs recorded in the WAL and
//! published to a stream of the test's own read back in the same shapes. Needs the NATS server
//! named by `DASHFLOW_TEST_NATS_URL` (a skip line without it, a failure with
//! `DASHFLOW_TEST_NATS_REQUIRED=1`).

use std::time::Duration;

use dashflow::nats::NatsSink;
use dashflow::{RunConfig, RunId};
use dashflow_wal::StoreConfig;
use serde_json::Value;

use crate::common::{Home, block_on, echo_graph, later_than, nesting_graph, observed, support_graph, ticket};
use crate::tail_nats::{delete_stream, nats_url};

/// Runs recorded in both the home's WAL and a stream.
struct Recorded {
    stream: String,
    prefix: String,
    completed: RunId,
    failed: RunId,
    echo: RunId,
    outer: RunId,
}

fn record(home: &Home, url: &str) -> Recorded {
    let id = ulid::Ulid::new().to_string();
    let (stream, prefix) = (format!("DFCLI_RUNS_{id}"), format!("dfcli.runs.{}", id.to_lowercase()));
    let (sink, guard) = NatsSink::builder(url).stream(&stream).subject_prefix(&prefix).start().unwrap();
    let store = home.store(StoreConfig::default());
    let support = observed(support_graph(), &store).with_callback(sink.clone());
    let echo = observed(echo_graph(), &store).with_callback(sink.clone());
    let outer = observed(nesting_graph(), &store).with_callback(sink.clone());
    let completed = RunId::new();
    let failed = later_than(completed);
    let echo_run = later_than(failed);
    let outer_run = later_than(echo_run);
    block_on(async {
        let config = |thread: &str, run| RunConfig::thread(thread).run_id(run);
        support.invoke(ticket("refund for march"), config("t-1", completed)).await.unwrap();
        support.invoke(ticket("refund during the outage"), config("t-2", failed)).await.unwrap_err();
        echo.invoke(ticket("hello"), RunConfig::new().run_id(echo_run).tag("greeting")).await.unwrap();
        outer.invoke(ticket("nested"), RunConfig::new().run_id(outer_run)).await.unwrap();
    });
    store.flush().unwrap();
    sink.flush(Duration::from_secs(30)).unwrap();
    guard.shutdown(Duration::from_secs(10)).unwrap();
    Recorded { stream, prefix, completed, failed, echo: echo_run, outer: outer_run }
}

fn json(home: &Home, args: &[&str]) -> Value {
    let out = home.dashflow(args);
    serde_json::from_str(out.ok()).unwrap_or_else(|error| panic!("{error}: {}", out.stdout))
}

/// The fields both sources know the same way.
fn comparable(run: &Value) -> Value {
    let keys =
        ["run_id", "parent_run_id", "root_run_id", "depth", "graph", "thread_id", "tags", "status", "steps", "error"];
    keys.iter().map(|key| (key.to_string(), run[key].clone())).collect::<serde_json::Map<_, _>>().into()
}

#[test]
fn runs_list_nats_lists_the_streams_runs_as_runs_list_lists_the_wals() {
    let Some(url) = nats_url("runs_list_nats_lists_the_streams_runs_as_runs_list_lists_the_wals") else { return };
    let home = Home::new();
    let recorded = record(&home, &url);
    let nats = ["--nats", url.as_str(), "--stream", &recorded.stream, "--subject-prefix", &recorded.prefix];
    let from_wal = json(&home, &["runs", "list", "--json"]);
    let from_stream = json(&home, &[&["runs", "list", "--json"][..], &nats].concat());
    let wal: Vec<Value> = from_wal.as_array().unwrap().iter().map(comparable).collect();
    let stream: Vec<Value> = from_stream.as_array().unwrap().iter().map(comparable).collect();
    assert_eq!(stream, wal, "the same runs, newest first, with the same outcomes");
    assert_eq!(wal.len(), 5, "four runs and the subgraph run");
    let publisher = format!("{}@", std::process::id());
    assert!(
        from_stream
            .as_array()
            .unwrap()
            .iter()
            .all(|run| run["publisher"]["name"].as_str().unwrap().starts_with(&publisher))
    );

    // The table, and the filters.
    let table = home.dashflow(&[&["runs", "list"][..], &nats].concat());
    let lines: Vec<&str> = table.ok().lines().collect();
    for header in ["RUN", "GRAPH", "THREAD", "STATUS", "STARTED (UTC)", "DURATION", "STEPS", "PUBLISHER", "ERROR"] {
        assert!(lines[0].contains(header), "{header} missing: {}", lines[0]);
    }
    let failed = lines.iter().find(|line| line.starts_with(&recorded.failed.to_string())).unwrap();
    assert!(failed.contains("failed") && failed.contains("t-2") && failed.contains(&publisher), "{failed}");
    assert!(failed.contains("the payment system is down"), "{failed}");
    let ids = |args: &[&str]| -> Vec<String> {
        let out = home.dashflow(&[&["runs", "list"][..], &nats, args].concat());
        out.ok().lines().skip(1).map(|line| line.split_whitespace().next().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&["--status", "failed"]), [recorded.failed.to_string()]);
    assert_eq!(ids(&["--thread", "t-1"]), [recorded.completed.to_string()]);
    assert_eq!(ids(&["--tag", "greeting"]), [recorded.echo.to_string()]);
    assert_eq!(ids(&["--graph", "support", "--limit", "1"]), [recorded.failed.to_string()]);
    assert_eq!(ids(&["--since", "1h"]).len(), 5);
    let none = home.dashflow(&[&["runs", "list"][..], &nats, &["--since", "2999-01-01T00:00:00Z"]].concat());
    assert_eq!(none.ok(), "no runs match\n");
    let abandoned = home.dashflow(&[&["runs", "list"][..], &nats, &["--status", "abandoned"]].concat());
    assert!(abandoned.failed().contains("needs the WAL"), "{}", abandoned.stderr);
    delete_stream(&url, &recorded.stream);
}

#[test]
fn runs_show_nats_shows_the_timeline_runs_show_shows_from_the_wal() {
    let Some(url) = nats_url("runs_show_nats_shows_the_timeline_runs_show_shows_from_the_wal") else { return };
    let home = Home::new();
    let recorded = record(&home, &url);
    let nats = ["--nats", url.as_str(), "--stream", &recorded.stream, "--subject-prefix", &recorded.prefix];
    for run in [recorded.completed, recorded.failed, recorded.outer] {
        let run = run.to_string();
        let from_wal = json(&home, &["runs", "show", &run, "--json"]);
        let from_stream = json(&home, &[&["runs", "show", &run, "--json"][..], &nats].concat());
        // Durations are kept to the microsecond by the WAL and to the nanosecond by the stream.
        let without_durations = |timeline: &Value| -> Vec<Value> {
            let mut entries = timeline.as_array().unwrap().clone();
            for entry in &mut entries {
                entry.as_object_mut().unwrap().remove("duration_ms");
            }
            entries
        };
        assert_eq!(without_durations(&from_stream["timeline"]), without_durations(&from_wal["timeline"]), "run {run}");
        assert_eq!(comparable(&from_stream["run"]), comparable(&from_wal["run"]));
        let children =
            |value: &Value| value["subgraph_runs"].as_array().unwrap().iter().map(comparable).collect::<Vec<_>>();
        assert_eq!(children(&from_stream), children(&from_wal));
    }
    // The text, by a prefix of the id.
    let failed = recorded.failed.to_string();
    let listed = json(&home, &[&["runs", "list", "--json"][..], &nats].concat());
    let others: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["run_id"].as_str().unwrap().to_owned())
        .filter(|id| *id != failed)
        .collect();
    let shared = |prefix: &str| others.iter().any(|id| id.starts_with(prefix));
    let unique = (1..=failed.len()).map(|len| &failed[..len]).find(|prefix| !shared(prefix)).unwrap();
    let common = failed.chars().zip(recorded.completed.to_string().chars()).take_while(|(a, b)| a == b).count();
    assert!(common > 0, "ids made a moment apart share their first characters");
    let ambiguous = home.dashflow(&[&["runs", "show", &failed[..common]][..], &nats].concat());
    assert!(ambiguous.failed().contains("is ambiguous"), "{}", ambiguous.stderr);
    let out = home.dashflow(&[&["runs", "show", unique][..], &nats].concat());
    let text = out.ok();
    assert!(text.contains("status    failed"), "{text}");
    assert!(text.contains(&format!("publisher {}@", std::process::id())), "{text}");
    assert!(text.lines().any(|line| line.contains("billing") && line.contains('✗')), "{text}");
    let outer = home.dashflow(&[&["runs", "show", &recorded.outer.to_string()][..], &nats].concat());
    assert!(outer.ok().contains("subgraph runs:") && outer.ok().contains("echo"), "{}", outer.stdout);
    let unknown = home.dashflow(&[&["runs", "show", "0000000000"][..], &nats].concat());
    assert!(unknown.failed().contains("no run `0000000000` in stream"), "{}", unknown.stderr);
    delete_stream(&url, &recorded.stream);
}
