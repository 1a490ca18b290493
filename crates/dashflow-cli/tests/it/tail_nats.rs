//! `dashflow tail --nats`: the binary following a JetStream stream that a sink (another
//! process's, as far as the binary knows) published runs to. Needs the NATS server named by
//! `DASHFLOW_TEST_NATS_URL`; without it the tests print a skip line, which
//! `DASHFLOW_TEST_NATS_REQUIRED=1` turns into a failure.

use std::time::Duration;

use dashflow::nats::NatsSink;
use dashflow::{RunConfig, RunId};

use crate::common::{Home, block_on, support_graph, ticket};

pub(crate) fn nats_url(test: &str) -> Option<String> {
    match std::env::var("DASHFLOW_TEST_NATS_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("DASHFLOW_TEST_NATS_REQUIRED").as_deref() != Ok("1"),
                "{test}: DASHFLOW_TEST_NATS_REQUIRED=1 but DASHFLOW_TEST_NATS_URL is not set"
            );
            eprintln!("skipped {test}: DASHFLOW_TEST_NATS_URL is not set (set it to a NATS server with JetStream)");
            None
        }
    }
}

/// Publishes a completed and a failed run of the support graph to a stream of the test's own.
fn publish(url: &str) -> (String, String, RunId, RunId) {
    let id = ulid::Ulid::new().to_string();
    let (stream, prefix) = (format!("DFCLI_{id}"), format!("dfcli.{}", id.to_lowercase()));
    let (sink, guard) = NatsSink::builder(url).stream(&stream).subject_prefix(&prefix).start().unwrap();
    let app = support_graph().with_callback(sink.clone());
    let (ok, failed) = (RunId::new(), RunId::new());
    block_on(async {
        app.invoke(ticket("a question"), RunConfig::thread("t-1").run_id(ok)).await.unwrap();
        app.invoke(ticket("refund, outage"), RunConfig::thread("t-2").run_id(failed)).await.unwrap_err();
    });
    sink.flush(Duration::from_secs(30)).unwrap();
    guard.shutdown(Duration::from_secs(10)).unwrap();
    (stream, prefix, ok, failed)
}

/// Deletes a test's stream, so that runs of the suite leave none on the server.
pub(crate) fn delete_stream(url: &str, stream: &str) {
    block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        async_nats::jetstream::new(client).delete_stream(stream).await.unwrap();
    });
}

#[test]
fn tail_nats_replays_the_stream_naming_each_publisher() {
    let Some(url) = nats_url("tail_nats_replays_the_stream_naming_each_publisher") else { return };
    let (stream, prefix, ok, failed) = publish(&url);
    let home = Home::new();
    let args =
        ["tail", "--nats", &url, "--stream", &stream, "--subject-prefix", &prefix, "--from-start", "--exit-when-idle"];
    let out = home.dashflow(&args);
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    let of = |run: RunId| lines.iter().copied().filter(|line| line.contains(&run.to_string())).collect::<Vec<_>>();
    let publisher = format!("{}@", std::process::id());
    assert!(lines.iter().all(|line| line.contains(&publisher)), "{text}");
    assert!(of(ok)[0].contains("support  graph defined"), "{text}");
    assert!(of(ok).last().unwrap().contains("support  run completed"), "{text}");
    assert!(of(failed).iter().any(|line| line.contains("step 2 billing FAILED")), "{text}");
    assert!(of(failed).last().unwrap().contains("run failed"), "{text}");
    // Nothing was written to the home: the stream is the source.
    assert!(!home.wal_dir().exists());
    delete_stream(&url, &stream);
}

#[test]
fn tail_nats_replays_from_a_point_and_filters_by_run() {
    let Some(url) = nats_url("tail_nats_replays_from_a_point_and_filters_by_run") else { return };
    let (stream, prefix, ok, failed) = publish(&url);
    let home = Home::new();
    let base = ["tail", "--nats", &url, "--stream", &stream, "--subject-prefix", &prefix, "--exit-when-idle", "--json"];
    let all: Vec<serde_json::Value> = home
        .dashflow(&[&base[..], &["--from-start"]].concat())
        .ok()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let middle = all[all.len() / 2]["stream_sequence"].as_u64().unwrap();
    let rest: Vec<serde_json::Value> = home
        .dashflow(&[&base[..], &["--from-seq", &middle.to_string()]].concat())
        .ok()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rest, all[all.len() / 2..]);
    let run = failed.to_string();
    let one = home.dashflow(&[&base[..], &["--from-start", "--run", &run]].concat());
    let events: Vec<serde_json::Value> = one.ok().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(!events.is_empty());
    assert!(events.iter().all(|event| event["event"]["run"]["run_id"] == run.as_str()), "{}", one.stdout);
    let seqs: Vec<u64> = events.iter().map(|event| event["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
    assert!(all.iter().any(|event| event["event"]["run"]["run_id"] == ok.to_string().as_str()));
    delete_stream(&url, &stream);
}

#[test]
fn tail_nats_names_an_unreachable_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("nats://127.0.0.1:{port}");
    let out = Home::new().dashflow(&["tail", "--nats", &url, "--exit-when-idle"]);
    assert!(out.failed().contains(&url), "{}", out.stderr);
}
