//! The reading API the CLI uses: list runs, one run's events, follow, verify.

use std::time::{Duration, SystemTime};

use dashflow_telemetry::RunOutcome;
use dashflow_wal::__private::{TAG_EVENT_JSON, encode_frame};
use dashflow_wal::{Damage, Follower, Position, RunFilter, RunStatus, Wal, WalError};

use crate::common::*;

#[test]
fn list_runs_filters_by_status_graph_thread_and_since_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open(dir.path());
    let (a, b, c) = (root(), root(), root());
    let mut old_start = started(a, "triage", Some("t-1"));
    old_start.at = SystemTime::now() - Duration::from_secs(7200);
    wal.append(&[old_start, finished(a, RunOutcome::Completed, 2, None)]).unwrap();
    wal.append(&[started(b, "triage", Some("t-2")), finished(b, RunOutcome::Failed, 1, Some("boom"))]).unwrap();
    wal.append(&[started(c, "billing", Some("t-1"))]).unwrap();

    let ids = |filter: RunFilter| wal.list_runs(&filter).unwrap().into_iter().map(|r| r.ids.run_id).collect::<Vec<_>>();
    assert_eq!(ids(RunFilter::all()), vec![c.run_id, b.run_id, a.run_id]);
    assert_eq!(ids(RunFilter::all().status(RunStatus::Running)), vec![c.run_id]);
    assert_eq!(ids(RunFilter::all().graph("triage")), vec![b.run_id, a.run_id]);
    assert_eq!(ids(RunFilter::all().thread_id("t-1")), vec![c.run_id, a.run_id]);
    assert_eq!(ids(RunFilter::all().since(SystemTime::now() - Duration::from_secs(3600))), vec![c.run_id, b.run_id]);
    assert_eq!(ids(RunFilter::all().limit(1)), vec![c.run_id]);
    let failed = wal.run(b.run_id).unwrap().unwrap();
    assert_eq!((failed.status, failed.error.as_deref()), (RunStatus::Failed, Some("boom")));
}

#[test]
fn a_run_whose_start_was_lost_lists_after_every_started_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open(dir.path());
    let (lost, old, new) = (root(), root(), root());
    wal.append(&[finished(lost, RunOutcome::Completed, 1, None)]).unwrap();
    let mut old_start = started(old, "g", None);
    old_start.at = SystemTime::now() - Duration::from_secs(60);
    wal.append(&[old_start, started(new, "g", None)]).unwrap();
    let ids = |filter: RunFilter| wal.list_runs(&filter).unwrap().into_iter().map(|r| r.ids.run_id).collect::<Vec<_>>();
    assert_eq!(ids(RunFilter::all()), vec![new.run_id, old.run_id, lost.run_id]);
    assert_eq!(ids(RunFilter::all().limit(2)), vec![new.run_id, old.run_id]);
}

#[test]
fn run_events_returns_one_runs_events_in_order_among_interleaved_runs_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(300)).unwrap();
    let (a, b) = (root(), root());
    let (mut a_events, mut b_events) = (vec![started(a, "g", None)], vec![started(b, "g", None)]);
    wal.append(&[a_events[0].clone(), b_events[0].clone()]).unwrap();
    for step in 1..=10 {
        let (ea, eb) = (task(a, step, "x"), task(b, step, "y"));
        wal.append(&[ea.clone(), eb.clone()]).unwrap();
        a_events.push(ea);
        b_events.push(eb);
    }
    let end = finished(a, RunOutcome::Completed, 10, None);
    wal.append(std::slice::from_ref(&end)).unwrap();
    a_events.push(end);

    assert!(wal.end().segment > 3);
    assert_eq!(wal.run_events(a.run_id).unwrap(), a_events);
    assert_eq!(wal.run_events(b.run_id).unwrap(), b_events);
    let a_run = wal.run(a.run_id).unwrap().unwrap();
    assert_eq!((a_run.events, a_run.steps, a_run.first.segment), (12, 10, 1));
}

#[test]
fn the_events_of_an_unknown_run_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path());
    let missing = root().run_id;
    let error = wal.run_events(missing).unwrap_err();
    assert!(matches!(error, WalError::RunNotFound { run_id } if run_id == missing), "{error}");
    assert!(wal.run(missing).unwrap().is_none());
}

#[test]
fn a_follower_sees_new_records_across_segment_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(200)).unwrap();
    let mut follower = Follower::new(dir.path(), Position::START, 1 << 20);
    assert!(follower.poll(100).unwrap().is_empty());
    let run = root();
    let mut seen = Vec::new();
    for step in 0..20 {
        let event = task(run, step, "n");
        wal.append(std::slice::from_ref(&event)).unwrap();
        if step % 3 == 0 {
            seen.extend(follower.poll(100).unwrap());
        }
        assert!(follower.position() <= wal.end());
    }
    seen.extend(follower.poll(100).unwrap());
    assert_eq!(seen.len(), 20);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert!(seen.last().unwrap().0.segment > 3);
    assert_eq!(follower.position(), wal.end());
}

#[test]
fn a_follower_polls_at_most_the_number_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open(dir.path());
    wal.append(&whole_run(root(), "g", 8)).unwrap();
    let mut follower = wal.follow(Position::START);
    assert_eq!(follower.poll(4).unwrap().len(), 4);
    assert_eq!(follower.poll(100).unwrap().len(), 6);
    assert!(follower.poll(100).unwrap().is_empty());
}

#[test]
fn a_follower_from_the_end_sees_only_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open(dir.path());
    wal.append(&whole_run(root(), "g", 3)).unwrap();
    let mut follower = wal.follow(wal.end());
    assert!(follower.poll(100).unwrap().is_empty());
    let new = started(root(), "new", None);
    wal.append(std::slice::from_ref(&new)).unwrap();
    let got = follower.poll(100).unwrap();
    assert_eq!(got.into_iter().map(|(_, e)| e).collect::<Vec<_>>(), vec![new]);
}

#[test]
fn a_follower_waits_at_a_record_still_being_written_and_returns_it_once_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = open(dir.path());
    let run = root();
    wal.append(&[started(run, "g", None)]).unwrap();
    drop(wal);
    let mut follower = Follower::new(dir.path(), Position::START, 1 << 20);
    assert_eq!(follower.poll(100).unwrap().len(), 1);

    let next = task(run, 1, "n");
    let bytes = frames(std::slice::from_ref(&next));
    let (first_half, second_half) = bytes.split_at(bytes.len() / 2);
    append_bytes(&segment(dir.path(), 1), first_half);
    assert!(follower.poll(100).unwrap().is_empty());
    append_bytes(&segment(dir.path(), 1), second_half);
    assert_eq!(follower.poll(100).unwrap().into_iter().map(|(_, e)| e).collect::<Vec<_>>(), vec![next]);
}

#[test]
fn readers_skip_records_of_kinds_they_do_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let run = root();
    open(dir.path()).append(&[started(run, "g", None)]).unwrap();
    let mut unknown = Vec::new();
    encode_frame(&[TAG_EVENT_JSON + 100, b'{', b'}'], &mut unknown);
    append_bytes(&segment(dir.path(), 1), &unknown);
    let mut wal = open(dir.path());
    wal.append(&[finished(run, RunOutcome::Completed, 0, None)]).unwrap();

    assert_eq!(wal.run_events(run.run_id).unwrap().len(), 2);
    let mut follower = wal.follow(Position::START);
    assert_eq!(follower.poll(100).unwrap().len(), 2);
    assert_eq!(follower.skipped(), 1);
    assert!(wal.verify().unwrap().is_clean());
}

#[test]
fn an_intact_record_that_does_not_decode_is_a_decode_error_naming_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let run = root();
    open(dir.path()).append(&[started(run, "g", None)]).unwrap();
    let offset = std::fs::metadata(segment(dir.path(), 1)).unwrap().len();
    let mut garbage = Vec::new();
    encode_frame(&[TAG_EVENT_JSON, b'{', b'x'], &mut garbage);
    append_bytes(&segment(dir.path(), 1), &garbage);
    let mut wal = open(dir.path());
    assert_eq!(wal.recovery().undecodable, 1);
    wal.append(&[finished(run, RunOutcome::Completed, 0, None)]).unwrap();

    let report = wal.verify().unwrap();
    assert_eq!(report.undecodable.len(), 1);
    assert_eq!(report.undecodable[0].offset, offset);
    // Reading the run's range meets the record and says where it is.
    let error = wal.run_events(run.run_id).unwrap_err();
    assert!(matches!(&error, WalError::Decode { offset: o, .. } if *o == offset), "{error}");
}

#[test]
fn verify_reports_a_healthy_wal_as_clean() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(200)).unwrap();
    for _ in 0..4 {
        wal.append(&whole_run(root(), "g", 2)).unwrap();
    }
    let report = wal.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    // Four runs of four events, each appended in one batch with its process record.
    assert_eq!(report.records, 16 + process_records(4));
    assert_eq!(report.segments, wal.end().segment);
    assert_eq!(report.index_up_to_date, Some(true));
}

#[test]
fn verify_reports_a_torn_tail_and_a_sealed_checksum_mismatch_with_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(200)).unwrap();
    let positions = wal.append(&whole_run(root(), "g", 6)).unwrap();
    let sealed_record = positions[1];
    assert_eq!(sealed_record.segment, 1);
    let last = wal.end();
    let seg1 = segment(dir.path(), 1);
    let mut bytes = std::fs::read(&seg1).unwrap();
    bytes[sealed_record.offset as usize + 12] ^= 0x04;
    std::fs::write(&seg1, bytes).unwrap();
    append_bytes(&segment(dir.path(), last.segment), &[0; 40]);

    let report = wal.verify().unwrap();
    assert_eq!(report.damaged.len(), 2, "{report:?}");
    let (sealed, tail) = (&report.damaged[0], &report.damaged[1]);
    assert_eq!(
        (sealed.segment.as_path(), sealed.offset, sealed.torn_tail),
        (seg1.as_path(), sealed_record.offset, false)
    );
    assert!(matches!(sealed.damage, Damage::Checksum { .. }));
    // Exactly the damaged record: its frame boundaries and the next frame are intact.
    let sealed_len = positions[2].offset - sealed_record.offset;
    assert_eq!((sealed.len, sealed.records), (sealed_len, Some(1)));
    assert_eq!((tail.offset, tail.torn_tail, tail.damage), (last.offset, true, Damage::ZeroLength));
    assert_eq!(tail.len, 40);
    assert_eq!(report.index_up_to_date, Some(true));
    assert!(!report.is_clean());
}

/// The frames of `events` as earlier versions wrote them: JSON event records.
fn json_frames(events: &[dashflow_telemetry::Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        let mut payload = Vec::new();
        dashflow_wal::__private::encode_event_json(event, &mut payload).unwrap();
        encode_frame(&payload, &mut out);
    }
    out
}

#[test]
fn a_wal_written_with_json_event_records_reads_as_before_and_takes_binary_ones_after() {
    let dir = tempfile::tempdir().unwrap();
    let old = root();
    let old_events = whole_run(old, "legacy", 3);
    // A segment written by an earlier version: JSON event records, no index yet.
    append_bytes(&segment(dir.path(), 1), &json_frames(&old_events));
    let mut wal = open(dir.path());
    let new = root();
    let new_events = whole_run(new, "current", 2);
    wal.append(&new_events).unwrap();

    // The index was built from the old records on open.
    let runs = wal.list_runs(&RunFilter::all().graph("legacy")).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Completed);
    assert_eq!(runs[0].steps, 3);
    assert_eq!(wal.run_events(old.run_id).unwrap(), old_events);
    assert_eq!(wal.run_events(new.run_id).unwrap(), new_events);
    let followed: Vec<_> = wal.follow(Position::START).poll(usize::MAX).unwrap().into_iter().map(|(_, e)| e).collect();
    assert_eq!(followed, [old_events.clone(), new_events].concat());
    assert!(wal.verify().unwrap().is_clean());

    // A rebuilt index reads both kinds too.
    drop(wal);
    remove_index(dir.path());
    let wal = open(dir.path());
    assert_eq!(wal.run(old.run_id).unwrap().unwrap().events, old_events.len() as u64);
    assert_eq!(wal.run(new.run_id).unwrap().unwrap().status, RunStatus::Completed);
}

#[test]
fn an_intact_binary_record_that_does_not_decode_is_a_decode_error() {
    let dir = tempfile::tempdir().unwrap();
    let run = root();
    open(dir.path()).append(&[started(run, "g", None)]).unwrap();
    let offset = std::fs::metadata(segment(dir.path(), 1)).unwrap().len();
    let mut garbage = Vec::new();
    encode_frame(&[dashflow_wal::__private::TAG_EVENT_BIN, 0, 1, 2], &mut garbage);
    append_bytes(&segment(dir.path(), 1), &garbage);
    let wal = open(dir.path());
    assert_eq!(wal.recovery().undecodable, 1);
    let report = wal.verify().unwrap();
    assert_eq!(report.undecodable.len(), 1);
    assert_eq!(report.undecodable[0].offset, offset);
}

#[test]
fn a_read_only_wal_reads_everything_and_refuses_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = open(dir.path());
    let run = root();
    let events = whole_run(run, "g", 2);
    writer.append(&events).unwrap();
    let mut reader = Wal::open_read_only(dir.path(), config()).unwrap();
    assert_eq!(reader.end(), writer.end());
    assert_eq!(reader.run_events(run.run_id).unwrap(), events);
    assert_eq!(reader.list_runs(&RunFilter::all()).unwrap().len(), 1);
    let refused = |result: Result<(), WalError>| matches!(result, Err(WalError::ReadOnly { .. }));
    assert!(refused(reader.append(&events).map(drop)));
    assert!(refused(reader.compact().map(drop)));
    assert!(refused(reader.repair().map(drop)));
    assert!(refused(reader.apply_retention(SystemTime::now()).map(drop)));
    // The writer is not disturbed.
    writer.append(&[task(run, 9, "later")]).unwrap();
    assert_eq!(all_events(&reader).len(), events.len() + 1);
}

#[test]
fn a_read_only_open_of_a_missing_directory_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("wal");
    let error = Wal::open_read_only(&missing, config()).unwrap_err();
    assert!(error.to_string().contains(&missing.display().to_string()), "{error}");
    assert!(!missing.exists());
}
