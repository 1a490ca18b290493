use std::io::{BufRead, BufReader};
use std::process::Stdio;

use dashflow::{RunConfig, RunId};
use dashflow_wal::StoreConfig;

use crate::common::{Home, block_on, command, echo_graph, observed, record_runs, ticket};

#[test]
fn tail_from_start_replays_every_event_and_exits_when_idle() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["tail", "--from-start", "--exit-when-idle"]);
    let lines: Vec<&str> = out.ok().lines().collect();
    let failed = runs.failed.to_string();
    let of_failed: Vec<&str> = lines.iter().copied().filter(|line| line.contains(&failed)).collect();
    assert!(of_failed[0].contains("support  graph defined: 3 nodes"), "{}", out.stdout);
    assert!(of_failed[1].ends_with("support  run started on thread t-2"), "{}", out.stdout);
    assert!(
        of_failed.iter().any(|line| line.contains("step 1 classify chose \"billing\" -> billing")),
        "{}",
        out.stdout
    );
    assert!(of_failed.iter().any(|line| line.contains("step 2 billing FAILED after")), "{}", out.stdout);
    assert!(of_failed.last().unwrap().contains("run failed after 2 step(s)"), "{}", out.stdout);
    // Every event of every run, in the order written: the echo run comes last.
    assert!(lines.last().unwrap().contains(&runs.echo.to_string()), "{}", out.stdout);
    assert!(lines.last().unwrap().contains("echo  run completed"), "{}", out.stdout);
}

#[test]
fn tail_filters_by_graph_and_stops_after_max_events() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["tail", "--from-start", "--exit-when-idle", "--graph", "echo"]);
    let text = out.ok();
    assert!(!text.is_empty());
    assert!(text.lines().all(|line| line.contains(&runs.echo.to_string())), "{text}");

    let out = home.dashflow(&["tail", "--from-start", "--max-events", "3"]);
    assert_eq!(out.ok().lines().count(), 3, "{}", out.stdout);
}

#[test]
fn tail_json_prints_one_event_per_line() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = home.dashflow(&["tail", "--from-start", "--exit-when-idle", "--graph", "echo", "--json"]);
    let events: Vec<dashflow::Event> = out.ok().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(events.iter().all(|event| event.run.run_id == runs.echo));
    assert!(matches!(events[0].kind, dashflow::EventKind::GraphDefined { .. }));
}

#[test]
fn tail_follows_events_written_after_it_started() {
    let home = Home::new();
    record_runs(&home);
    let mut child = command()
        .args(["--home", &home.path().display().to_string(), "tail", "--max-events", "2", "--interval-ms", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once it says it is following, every event written is new to it.
    let mut notice = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut notice).unwrap();
    assert!(notice.starts_with("following new events in "), "{notice}");

    let store = home.store(StoreConfig::default());
    let run = RunId::new();
    block_on(observed(echo_graph(), &store).invoke(ticket("live"), RunConfig::new().run_id(run))).unwrap();
    store.flush().unwrap();

    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines.iter().all(|line| line.contains(&run.to_string())), "only the new run: {stdout}");
    assert!(lines[0].contains("graph defined") && lines[1].contains("run started"), "{stdout}");
}
