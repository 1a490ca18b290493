use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashflow_telemetry::{Event, EventKind, RunOutcome};

use super::*;
use crate::testing::{finished, root, started, task, whole_run};

fn open() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open(dir.path()).unwrap();
    (dir, index)
}

/// Applies `events` as if they were records 100 bytes apart in segment 1.
fn apply(index: &mut Index, events: &[Event]) {
    let entries: Vec<_> = events.iter().enumerate().map(|(i, e)| (Position::new(1, i as u64 * 100), e)).collect();
    index.apply(entries, Position::new(1, events.len() as u64 * 100)).unwrap();
}

#[test]
fn a_new_index_has_no_high_water_mark() {
    let (_dir, index) = open();
    assert_eq!(index.high_water().unwrap(), None);
    assert!(index.list(&RunFilter::all()).unwrap().is_empty());
}

#[test]
fn applying_records_moves_the_high_water_mark() {
    let (_dir, mut index) = open();
    apply(&mut index, &whole_run(root(), "g", 1));
    assert_eq!(index.high_water().unwrap(), Some(Position::new(1, 300)));
    index.apply([] as [(Position, &Event); 0], Position::new(2, 0)).unwrap();
    assert_eq!(index.high_water().unwrap(), Some(Position::new(2, 0)));
}

#[test]
fn a_finished_run_has_its_status_timings_error_and_steps() {
    let (_dir, mut index) = open();
    let run = root();
    let events = [
        started(run, "triage", Some("t-1")),
        task(run, 1, "a"),
        task(run, 2, "b"),
        finished(run, RunOutcome::Failed, 2, Some("boom")),
    ];
    apply(&mut index, &events);
    let summary = index.get(run.run_id).unwrap().unwrap();
    assert_eq!(summary.ids, run);
    assert_eq!(summary.graph.as_deref(), Some("triage"));
    assert_eq!(summary.thread_id.as_deref(), Some("t-1"));
    assert_eq!(summary.status, RunStatus::Failed);
    assert_eq!(summary.error.as_deref(), Some("boom"));
    assert_eq!(summary.steps, 2);
    assert_eq!(summary.events, 4);
    assert_eq!(summary.duration, Some(Duration::from_millis(40)));
    assert!(summary.started_at.is_some() && summary.ended_at.is_some());
    assert!(!summary.partial);
    assert_eq!((summary.first, summary.last), (Position::new(1, 0), Position::new(1, 300)));
}

#[test]
fn a_run_shorter_than_a_millisecond_keeps_its_duration_in_microseconds() {
    let (_dir, mut index) = open();
    let run = root();
    let took = Duration::from_micros(412);
    let finished = Event::now(
        run,
        EventKind::RunFinished { outcome: RunOutcome::Completed, steps: 1, duration: took, error: None },
    );
    apply(&mut index, &[started(run, "fast", None), task(run, 1, "a"), finished]);
    assert_eq!(index.get(run.run_id).unwrap().unwrap().duration, Some(took));
}

#[test]
fn a_run_seen_across_batches_keeps_its_first_position_and_adds_up_its_events() {
    let (_dir, mut index) = open();
    let run = root();
    index.apply([(Position::new(1, 0), &started(run, "g", None))], Position::new(1, 50)).unwrap();
    assert_eq!(index.get(run.run_id).unwrap().unwrap().status, RunStatus::Running);
    index.apply([(Position::new(2, 0), &task(run, 4, "n"))], Position::new(2, 50)).unwrap();
    index
        .apply([(Position::new(2, 50), &finished(run, RunOutcome::Interrupted, 4, None))], Position::new(2, 90))
        .unwrap();
    let summary = index.get(run.run_id).unwrap().unwrap();
    assert_eq!(summary.status, RunStatus::Interrupted);
    assert_eq!((summary.first, summary.last), (Position::new(1, 0), Position::new(2, 50)));
    assert_eq!((summary.events, summary.steps), (3, 4));
    assert_eq!(summary.graph.as_deref(), Some("g"));
}

#[test]
fn a_run_whose_start_the_index_never_saw_is_partial() {
    let (_dir, mut index) = open();
    let run = root();
    apply(&mut index, &[task(run, 3, "n")]);
    let summary = index.get(run.run_id).unwrap().unwrap();
    assert!(summary.partial);
    assert_eq!(summary.graph, None);
    assert_eq!(summary.status, RunStatus::Running);
}

#[test]
fn list_filters_by_status_graph_thread_since_root_and_limit() {
    let (_dir, mut index) = open();
    let (a, b, c) = (root(), root(), root());
    let child = a.child(dashflow_telemetry::RunId::new());
    let mut events = vec![started(a, "triage", Some("t-1")), finished(a, RunOutcome::Completed, 1, None)];
    events.extend([started(child, "sub", Some("t-1")), finished(child, RunOutcome::Completed, 1, None)]);
    events.extend([started(b, "triage", Some("t-2")), finished(b, RunOutcome::Failed, 1, Some("x"))]);
    events.push(started(c, "billing", None));
    apply(&mut index, &events);
    let ids = |filter: RunFilter| -> Vec<_> {
        let mut ids: Vec<_> = index.list(&filter).unwrap().into_iter().map(|r| r.ids.run_id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<dashflow_telemetry::RunId>| {
        v.sort();
        v
    };
    assert_eq!(ids(RunFilter::all()).len(), 4);
    assert_eq!(ids(RunFilter::all().status(RunStatus::Failed)), vec![b.run_id]);
    assert_eq!(ids(RunFilter::all().status(RunStatus::Running)), vec![c.run_id]);
    assert_eq!(ids(RunFilter::all().graph("triage")), sorted(vec![a.run_id, b.run_id]));
    assert_eq!(ids(RunFilter::all().thread_id("t-1")), sorted(vec![a.run_id, child.run_id]));
    assert_eq!(ids(RunFilter::all().root_run_id(a.run_id)), sorted(vec![a.run_id, child.run_id]));
    assert_eq!(ids(RunFilter::all().graph("triage").status(RunStatus::Completed)), vec![a.run_id]);
    assert_eq!(ids(RunFilter::all().limit(2)).len(), 2);
    assert!(ids(RunFilter::all().since(SystemTime::now() + Duration::from_secs(3600))).is_empty());
    assert_eq!(ids(RunFilter::all().since(UNIX_EPOCH)).len(), 4);
}

#[test]
fn list_filters_by_a_run_id_prefix_in_any_case() {
    let (_dir, mut index) = open();
    let runs = [root(), root(), root()];
    let events: Vec<_> = runs.iter().map(|&run| started(run, "g", None)).collect();
    apply(&mut index, &events);
    let matching = |prefix: &str| -> Vec<_> {
        index.list(&RunFilter::all().run_id_prefix(prefix)).unwrap().into_iter().map(|r| r.ids.run_id).collect()
    };
    let id = runs[1].run_id.to_string();
    assert_eq!(matching(&id), vec![runs[1].run_id]);
    // Ids made in one millisecond share all but their last characters: the whole id in
    // lower case is the prefix that is certainly unique.
    assert_eq!(matching(&id.to_ascii_lowercase()), vec![runs[1].run_id]);
    assert_eq!(matching("").len(), 3);
    assert!(matching("ZZZZ").is_empty());
    assert!(matching(&format!("{id}0")).is_empty());
}

#[test]
fn list_returns_the_newest_runs_first() {
    let (_dir, mut index) = open();
    let (old, new) = (root(), root());
    let mut early = started(old, "g", None);
    early.at = UNIX_EPOCH + Duration::from_secs(1_000);
    let mut late = started(new, "g", None);
    late.at = UNIX_EPOCH + Duration::from_secs(2_000);
    apply(&mut index, &[early, late]);
    let runs = index.list(&RunFilter::all()).unwrap();
    assert_eq!(runs.iter().map(|r| r.ids.run_id).collect::<Vec<_>>(), vec![new.run_id, old.run_id]);
    assert_eq!(index.list(&RunFilter::all().limit(1)).unwrap()[0].ids.run_id, new.run_id);
}

#[test]
fn forgetting_segments_removes_whole_runs_and_marks_cut_ones_partial() {
    let (_dir, mut index) = open();
    let (gone, cut, kept) = (root(), root(), root());
    let entries = [
        (Position::new(1, 0), started(gone, "g", None)),
        (Position::new(1, 10), finished(gone, RunOutcome::Completed, 0, None)),
        (Position::new(1, 20), started(cut, "g", None)),
        (Position::new(2, 0), finished(cut, RunOutcome::Completed, 0, None)),
        (Position::new(2, 10), started(kept, "g", None)),
    ];
    index.apply(entries.iter().map(|(at, e)| (*at, e)), Position::new(2, 20)).unwrap();
    assert_eq!(index.forget_segments_before(2).unwrap(), 1);
    assert_eq!(index.get(gone.run_id).unwrap(), None);
    let cut = index.get(cut.run_id).unwrap().unwrap();
    assert!(cut.partial);
    assert_eq!(cut.first, Position::new(2, 0));
    assert_eq!(cut.graph.as_deref(), Some("g"), "what was learned before the cut is kept");
    assert!(!index.get(kept.run_id).unwrap().unwrap().partial);
    assert_eq!(index.segment_stats().unwrap().iter().map(|s| s.segment).collect::<Vec<_>>(), vec![2]);
}

#[test]
fn forgetting_again_changes_nothing_and_a_later_cut_still_forgets() {
    let (_dir, mut index) = open();
    let (first, second, third) = (root(), root(), root());
    let entries = [
        (Position::new(1, 0), started(first, "g", None)),
        (Position::new(1, 10), finished(first, RunOutcome::Completed, 0, None)),
        (Position::new(2, 0), started(second, "g", None)),
        (Position::new(2, 10), finished(second, RunOutcome::Completed, 0, None)),
        (Position::new(2, 20), started(third, "g", None)),
        (Position::new(3, 0), finished(third, RunOutcome::Completed, 0, None)),
    ];
    index.apply(entries.iter().map(|(at, e)| (*at, e)), Position::new(3, 10)).unwrap();
    assert_eq!(index.forget_segments_before(2).unwrap(), 1);
    // Nothing older than segment 2 is left: the same cut again finds nothing to forget.
    assert_eq!(index.forget_segments_before(2).unwrap(), 0);
    assert!(index.get(second.run_id).unwrap().is_some());
    assert!(!index.get(third.run_id).unwrap().unwrap().partial);
    // A later cut still forgets what lay before it.
    assert_eq!(index.forget_segments_before(3).unwrap(), 1);
    assert_eq!(index.get(second.run_id).unwrap(), None);
    let third = index.get(third.run_id).unwrap().unwrap();
    assert!(third.partial);
    assert_eq!(third.first, Position::new(3, 0));
    assert_eq!(index.segment_stats().unwrap().iter().map(|s| s.segment).collect::<Vec<_>>(), vec![3]);
}

fn process_rows(index: &Index) -> i64 {
    index.conn.query_row("SELECT COUNT(*) FROM processes", [], |row| row.get(0)).unwrap()
}

#[test]
fn a_process_record_names_the_process_of_its_runs_and_goes_when_they_go() {
    let (_dir, mut index) = open();
    let (first, second, later) = (root(), root(), root());
    let process = crate::testing::some_process();
    let other = ProcessIdentity { pid: 7, ..process.clone() };
    let first_records = ProcessRecord::new(process.clone(), vec![first.run_id, second.run_id]);
    let later_records = ProcessRecord::new(other.clone(), vec![later.run_id]);
    let (a, b, c) = (started(first, "g", None), started(second, "g", None), started(later, "g", None));
    let entries = [
        (Position::new(1, 0), Entry::from(&a)),
        (Position::new(1, 10), Entry::from(&b)),
        (Position::new(1, 20), Entry::Process(&first_records)),
        (Position::new(2, 0), Entry::from(&c)),
        (Position::new(2, 10), Entry::Process(&later_records)),
    ];
    index.apply(entries, Position::new(2, 20)).unwrap();
    assert_eq!(index.get(first.run_id).unwrap().unwrap().process.as_ref(), Some(&process));
    assert_eq!(index.get(second.run_id).unwrap().unwrap().process.as_ref(), Some(&process));
    assert_eq!(index.get(later.run_id).unwrap().unwrap().process, Some(other));
    assert_eq!(process_rows(&index), 2);
    index.forget_segments_before(2).unwrap();
    assert_eq!(process_rows(&index), 1, "the process of removed runs only is forgotten");
    index.clear().unwrap();
    assert_eq!(process_rows(&index), 0);
}

#[test]
fn clearing_empties_runs_segments_and_the_high_water_mark() {
    let (_dir, mut index) = open();
    apply(&mut index, &whole_run(root(), "g", 2));
    index.clear().unwrap();
    assert_eq!(index.high_water().unwrap(), None);
    assert!(index.list(&RunFilter::all()).unwrap().is_empty());
    assert!(index.segment_stats().unwrap().is_empty());
}

#[test]
fn an_unreadable_index_file_is_replaced_by_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(INDEX_FILE), vec![0x5A; 8192]).unwrap();
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.high_water().unwrap(), None);
}

#[test]
fn an_index_of_another_schema_version_is_recreated_empty() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut index = Index::open(dir.path()).unwrap();
        apply(&mut index, &whole_run(root(), "g", 1));
        index.conn.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    let index = Index::open(dir.path()).unwrap();
    assert_eq!(index.high_water().unwrap(), None);
    assert!(index.list(&RunFilter::all()).unwrap().is_empty());
}

#[test]
fn times_round_trip_through_milliseconds_on_both_sides_of_the_epoch() {
    for ms in [0, 1, 1_700_000_000_123, -1, -86_400_000] {
        assert_eq!(system_time_to_ms(ms_to_system_time(ms)), ms);
    }
}

#[test]
fn run_status_parses_what_it_prints() {
    let statuses =
        [RunStatus::Running, RunStatus::Abandoned, RunStatus::Completed, RunStatus::Failed, RunStatus::Interrupted];
    for status in statuses {
        assert_eq!(status.to_string().parse::<RunStatus>().unwrap(), status);
    }
    let error = "done".parse::<RunStatus>().unwrap_err().to_string();
    assert!(error.contains("running, abandoned, completed, failed or interrupted"), "{error}");
}

#[test]
fn tags_of_a_start_are_kept_across_batches_and_filter_whole() {
    let (_dir, mut index) = open();
    let (tagged, plain) = (root(), root());
    let tagged_start = Event::now(
        tagged,
        EventKind::RunStarted { graph: "g".into(), thread_id: None, tags: vec!["nightly".into(), "eu".into()] },
    );
    // The start and the end in separate batches: the end's upsert keeps the tags.
    apply(&mut index, &[tagged_start]);
    apply(&mut index, &[finished(tagged, RunOutcome::Completed, 1, None)]);
    apply(&mut index, &whole_run(plain, "g", 1));
    let ids = |filter: RunFilter| -> Vec<RunId> {
        index.list(&filter).unwrap().into_iter().map(|run| run.ids.run_id).collect()
    };
    assert_eq!(ids(RunFilter::all().tag("nightly")), [tagged.run_id]);
    assert_eq!(ids(RunFilter::all().tag("eu")), [tagged.run_id]);
    assert!(ids(RunFilter::all().tag("night")).is_empty());
    assert_eq!(ids(RunFilter::all()).len(), 2);
    let listed = index.list(&RunFilter::all().tag("eu")).unwrap();
    assert_eq!(listed[0].tags, ["nightly", "eu"]);
    assert_eq!(listed[0].status, RunStatus::Completed);
    let untagged = index.list(&RunFilter::all()).unwrap().into_iter().find(|run| run.ids.run_id == plain.run_id);
    assert_eq!(untagged.map(|run| run.tags), Some(Vec::new()));
}

#[test]
fn a_run_written_over_three_batches_is_found_by_every_filter_with_what_each_batch_said() {
    let (_dir, mut index) = open();
    let run = root();
    let child = run.child(dashflow_telemetry::RunId::new());
    let mut start = started(run, "triage", Some("t-9"));
    if let EventKind::RunStarted { tags, .. } = &mut start.kind {
        tags.push("tier=gold".into());
    }
    index
        .apply(
            [(Position::new(1, 0), &start), (Position::new(1, 10), &started(child, "sub", None))],
            Position::new(1, 20),
        )
        .unwrap();
    index
        .apply(
            [(Position::new(1, 20), &task(run, 1, "a")), (Position::new(1, 30), &task(run, 2, "b"))],
            Position::new(1, 40),
        )
        .unwrap();
    index
        .apply([(Position::new(2, 0), &finished(run, RunOutcome::Failed, 2, Some("boom")))], Position::new(2, 10))
        .unwrap();
    let summary = index.get(run.run_id).unwrap().unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    assert_eq!((summary.graph.as_deref(), summary.thread_id.as_deref()), (Some("triage"), Some("t-9")));
    assert_eq!((summary.events, summary.steps, summary.error.as_deref()), (4, 2, Some("boom")));
    assert_eq!(summary.tags, vec!["tier=gold".to_owned()]);
    assert_eq!((summary.first, summary.last), (Position::new(1, 0), Position::new(2, 0)));
    assert!(summary.started_at.is_some() && summary.ended_at.is_some() && summary.duration.is_some());
    assert_eq!(summary.ids, run);
    let ids =
        |filter: RunFilter| -> Vec<_> { index.list(&filter).unwrap().into_iter().map(|r| r.ids.run_id).collect() };
    for filter in [
        RunFilter::all().graph("triage"),
        RunFilter::all().thread_id("t-9"),
        RunFilter::all().tag("tier=gold"),
        RunFilter::all().status(RunStatus::Failed),
        RunFilter::all().run_id_prefix(run.run_id.to_string()),
        RunFilter::all().graph("triage").thread_id("t-9").status(RunStatus::Failed).since(UNIX_EPOCH),
    ] {
        assert_eq!(ids(filter.clone()), vec![run.run_id], "{filter:?}");
    }
    assert!(ids(RunFilter::all().status(RunStatus::Running)).contains(&child.run_id));
    assert!(!ids(RunFilter::all().status(RunStatus::Running)).contains(&run.run_id));
    let mut tree = ids(RunFilter::all().root_run_id(run.run_id));
    tree.sort();
    let mut expected = vec![run.run_id, child.run_id];
    expected.sort();
    assert_eq!(tree, expected);
    assert_eq!(ids(RunFilter::all().root_run_id(child.run_id)), Vec::new(), "a child is not a root");
    let child_summary = index.get(child.run_id).unwrap().unwrap();
    assert_eq!(child_summary.ids, child);
}

#[test]
fn a_process_or_trace_record_applied_after_its_runs_start_still_lands_on_the_run() {
    let (_dir, mut index) = open();
    let (run, unknown) = (root(), root());
    let process = crate::testing::some_process();
    apply(&mut index, &[started(run, "g", None)]);
    // Alone in a later batch (a replay's chunk ended between them), and naming a run the
    // index does not know, which is left alone.
    let record = ProcessRecord::new(process.clone(), vec![run.run_id, unknown.run_id]);
    index.apply([(Position::new(1, 100), Entry::Process(&record))], Position::new(1, 150)).unwrap();
    assert_eq!(index.get(run.run_id).unwrap().unwrap().process, Some(process.clone()));
    assert_eq!(index.get(unknown.run_id).unwrap(), None);
    // With more of the run's events in the same batch: the row is written, then its process.
    let other = root();
    apply(&mut index, &[started(other, "g", None)]);
    let record = ProcessRecord::new(process.clone(), vec![other.run_id]);
    let step = task(other, 1, "n");
    index
        .apply(
            [(Position::new(1, 200), Entry::from(&step)), (Position::new(1, 210), Entry::Process(&record))],
            Position::new(1, 220),
        )
        .unwrap();
    assert_eq!(index.get(other.run_id).unwrap().unwrap().process, Some(process));

    let end = finished(run, RunOutcome::Completed, 0, None);
    index
        .apply(
            [(Position::new(1, 300), Entry::from(&end)), (Position::new(1, 310), Entry::Trace(run.run_id))],
            Position::new(1, 320),
        )
        .unwrap();
    assert_eq!(index.get(run.run_id).unwrap().unwrap().trace, Some(Position::new(1, 310)));
    index.apply([(Position::new(1, 400), Entry::Trace(other.run_id))], Position::new(1, 420)).unwrap();
    assert_eq!(index.get(other.run_id).unwrap().unwrap().trace, Some(Position::new(1, 400)));
    // A later batch without a trace keeps the one found.
    index.apply([(Position::new(1, 500), &task(run, 2, "n"))], Position::new(1, 520)).unwrap();
    assert_eq!(index.get(run.run_id).unwrap().unwrap().trace, Some(Position::new(1, 310)));
}

#[test]
fn id_prefixes_select_exactly_the_ids_whose_text_starts_with_them() {
    let ids: Vec<dashflow_telemetry::RunId> = [0u128, 1, u128::MAX, u128::MAX - 1, 1 << 127, (1 << 127) - 1]
        .into_iter()
        .map(dashflow_telemetry::RunId::from_u128)
        .chain((0..40).map(|_| dashflow_telemetry::RunId::new()))
        .collect();
    let mut prefixes: Vec<String> =
        vec![String::new(), "0".into(), "7".into(), "8".into(), "Z".into(), "I".into(), "u".into()];
    for id in &ids {
        let text = id.to_string();
        for len in [1, 2, 5, 10, 25, 26] {
            prefixes.push(text[..len].to_owned());
            prefixes.push(text[..len].to_ascii_lowercase());
        }
        prefixes.push(format!("{text}0"));
    }
    prefixes.push(format!("7{}", "Z".repeat(25)));
    for prefix in &prefixes {
        let expected: Vec<bool> =
            ids.iter().map(|id| id.to_string().starts_with(&prefix.to_ascii_uppercase())).collect();
        let range = id_prefix_range(prefix);
        let found: Vec<bool> = ids
            .iter()
            .map(|id| match range {
                None => false,
                Some((low, high)) => id_bytes(*id) >= low && high.is_none_or(|high| id_bytes(*id) < high),
            })
            .collect();
        assert_eq!(found, expected, "prefix {prefix:?}");
    }
}

/// How SQLite answers `filter`'s query: the plan's lines.
fn plan(index: &Index, filter: &RunFilter) -> Vec<String> {
    let (sql, values) = list_query(filter);
    let mut stmt = index.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map(params_from_iter(values), |row| row.get::<_, String>(3)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn every_filter_of_the_cli_and_the_viewer_is_answered_from_an_index() {
    let (_dir, mut index) = open();
    let run = root();
    apply(&mut index, &whole_run(run, "g", 1));
    let limited = |filter: RunFilter| filter.limit(50);
    for filter in [
        limited(RunFilter::all()),
        limited(RunFilter::all().graph("g")),
        limited(RunFilter::all().thread_id("t")),
        RunFilter::all().root_run_id(run.run_id),
        RunFilter::all().run_id_prefix("01AB").limit(11),
        limited(RunFilter::all().since(UNIX_EPOCH)),
    ] {
        let plan = plan(&index, &filter);
        // The runs table is never read whole: every `runs` step uses its key or an index.
        for line in plan.iter().filter(|line| line.contains(" r ") || line.ends_with(" r")) {
            assert!(line.contains("USING"), "{filter:?} reads the runs table whole: {plan:?}");
        }
        // Newest first comes from an index, not a sort of every match.
        if filter.root_run_id.is_none() && filter.run_id_prefix.is_none() {
            assert!(!plan.iter().any(|line| line.contains("TEMP B-TREE")), "{filter:?} sorts: {plan:?}");
        }
    }
}
