//! R24: damage anywhere in a WAL segment, active or sealed (a flipped bit in a length, a
//! checksum, a payload or the first frame; a cut inside a record that is not the last; a
//! zeroed record) loses no valid record before or after it; the damaged bytes are kept aside
//! and the loss is reported with segment and offset; `verify` never modifies a file and never
//! says clean; logging goes on; `repair` makes the log read clean again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dashflow_telemetry::{Event, EventKind, RunIds};
use dashflow_wal::segment_file_name;
use dashflow_wal::{DamagedRange, Position, QUARANTINE_DIR, RunFilter, Wal, WalConfig, WalError, verify_dir};
use proptest::prelude::*;

use crate::common::*;

/// Small segments, so a few dozen records fill several sealed segments and an active one.
fn small() -> WalConfig {
    config().segment_size(700)
}

/// How a record is damaged.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// A low bit of the length field: the length stays plausible but wrong.
    LengthLow,
    /// A high bit of the length field: the length is larger than any record.
    LengthHigh,
    /// A bit of the stored checksum.
    Checksum,
    /// A bit in the middle of the payload.
    Payload,
    /// Five bytes cut out of the middle of the payload: everything after moves.
    Cut,
    /// The whole frame overwritten with zeros.
    Zeroed,
}

const KINDS: [Kind; 6] = [Kind::LengthLow, Kind::LengthHigh, Kind::Checksum, Kind::Payload, Kind::Cut, Kind::Zeroed];

/// Applies `kind` to the frame `frame` of `bytes`.
fn damage(bytes: &mut Vec<u8>, frame: std::ops::Range<usize>, kind: Kind) {
    let payload_mid = frame.start + 8 + (frame.len() - 8) / 2;
    match kind {
        Kind::LengthLow => bytes[frame.start] ^= 0x04,
        Kind::LengthHigh => bytes[frame.start + 3] ^= 0x40,
        Kind::Checksum => bytes[frame.start + 5] ^= 0x10,
        Kind::Payload => bytes[payload_mid] ^= 0x01,
        Kind::Cut => {
            bytes.drain(payload_mid - 2..payload_mid + 3);
        }
        Kind::Zeroed => bytes[frame].fill(0),
    }
}

/// A log of single-record appends (task events of one run, told apart by their step) over at
/// least four segments, the last (active) one holding six records or more. Returns the events
/// and each record's position and frame length.
fn fixture(dir: &Path) -> (RunIds, Vec<Event>, Vec<(Position, u64)>) {
    let run = root();
    let mut wal = Wal::open(dir, small()).unwrap();
    let mut events = Vec::new();
    let mut placed: Vec<Position> = Vec::new();
    while !(wal.end().segment >= 4 && placed.iter().filter(|at| at.segment == wal.end().segment).count() >= 6) {
        let step = events.len() as u64;
        let event = task(run, step, &"n".repeat(1 + step as usize % 7));
        placed.push(wal.append(std::slice::from_ref(&event)).unwrap()[0]);
        events.push(event);
    }
    let end = wal.end();
    wal.close().unwrap();
    let positions = placed
        .iter()
        .enumerate()
        .map(|(i, at)| {
            let next = match placed.get(i + 1) {
                Some(next) if next.segment == at.segment => next.offset,
                _ if at.segment == end.segment => end.offset,
                _ => std::fs::metadata(segment(dir, at.segment)).unwrap().len(),
            };
            (*at, next - at.offset)
        })
        .collect();
    (run, events, positions)
}

/// The steps of the task events read straight from the segments, and the damage skipped.
fn steps_in_segments(dir: &Path) -> (Vec<u64>, Vec<DamagedRange>) {
    let mut follower = dashflow_wal::Follower::new(dir, Position::START, small().max_record_size);
    let steps = follower.poll(usize::MAX).unwrap().into_iter().map(|(_, event)| step_of(&event)).collect();
    (steps, follower.take_damage())
}

fn step_of(event: &Event) -> u64 {
    match event.kind {
        EventKind::TaskFinished { step, .. } => step,
        ref other => panic!("unexpected event {other:?}"),
    }
}

/// A digest of every file under `dir` (names and contents), to show nothing changed.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.insert(entry.path(), std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

/// The segment files and quarantine files only: what a read-only open must leave alone (it
/// may bring the index, a cache, up to date).
fn segments_and_quarantine(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    snapshot(dir)
        .into_iter()
        .filter(|(path, _)| {
            path.extension().is_some_and(|ext| ext == "wal") || path.starts_with(dir.join(QUARANTINE_DIR))
        })
        .collect()
}

/// One damaged record at `victim` of `kind`: checks everything R24 promises.
fn check_one(fixture_dir: &Path, events: &[Event], positions: &[(Position, u64)], victim: usize, kind: Kind) {
    let case = format!("record {victim} at {} ({kind:?})", positions[victim].0);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(fixture_dir, dir.path());
    let dir = dir.path();
    let (at, frame_len) = positions[victim];
    let path = segment(dir, at.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    damage(&mut bytes, at.offset as usize..(at.offset + frame_len) as usize, kind);
    std::fs::write(&path, &bytes).unwrap();
    let last_segment = positions.last().unwrap().0.segment;
    let is_torn_tail = at.segment == last_segment && victim == positions.len() - 1;
    let expected: Vec<u64> = (0..events.len() as u64).filter(|&step| step != victim as u64).collect();

    // Verify reads only, names the damage, and never says clean.
    let before = snapshot(dir);
    let report = verify_dir(dir, &small()).unwrap();
    assert!(snapshot(dir) == before, "{case}: verify changed a file");
    assert!(!report.is_clean(), "{case}: {report:?}");
    assert_eq!(report.damaged.len(), 1, "{case}: {report:?}");
    let range = report.damaged[0].clone();
    assert_eq!((range.segment.as_path(), range.offset), (path.as_path(), at.offset), "{case}");
    assert_eq!(range.torn_tail, is_torn_tail, "{case}");
    assert_eq!(report.records, events.len() as u64 - 1, "{case}");

    // Reading straight from the segments skips exactly the damaged record.
    let (steps, skipped) = steps_in_segments(dir);
    assert_eq!(steps, expected, "{case}");
    if !is_torn_tail {
        assert_eq!(skipped.len(), 1, "{case}: {skipped:?}");
        assert_eq!((skipped[0].offset, skipped[0].len), (range.offset, range.len), "{case}");
    }

    // A read-only open changes no segment and no quarantine file, and reads around the damage;
    // with the index up to date it changes no file at all.
    let before = segments_and_quarantine(dir);
    let everything = snapshot(dir);
    let mut reader = Wal::open_read_only(dir, small()).unwrap();
    assert_eq!(all_events(&reader).iter().map(step_of).collect::<Vec<_>>(), expected, "{case}");
    assert!(matches!(reader.append(&[task(root(), 0, "x")]), Err(WalError::ReadOnly { .. })), "{case}");
    drop(reader);
    assert!(segments_and_quarantine(dir) == before, "{case}: a read-only open changed a file");
    // A last segment now shorter than the index's mark makes the reader rebuild the index.
    let shorter = at.segment == last_segment && (is_torn_tail || matches!(kind, Kind::Cut));
    if !shorter {
        assert!(snapshot(dir) == everything, "{case}: a read-only open changed the index");
    }

    // A writer keeps every intact record, keeps the damaged bytes aside and goes on.
    let damaged_bytes = bytes[range.offset as usize..(range.offset + range.len) as usize].to_vec();
    let mut wal = Wal::open(dir, small()).unwrap();
    let recovery = wal.recovery().clone();
    if is_torn_tail {
        let torn = recovery.truncated.clone().unwrap_or_else(|| panic!("{case}: the torn tail was not cut"));
        assert_eq!(torn.offset, at.offset, "{case}");
        assert_eq!(std::fs::read(torn.quarantined.unwrap()).unwrap(), damaged_bytes, "{case}");
    } else if at.segment == last_segment {
        assert_eq!(recovery.damaged.len(), 1, "{case}: {recovery:?}");
        assert_eq!(recovery.damaged[0].offset, at.offset, "{case}");
        let copy = recovery.damaged[0].quarantined.clone().unwrap();
        assert_eq!(std::fs::read(copy).unwrap(), damaged_bytes, "{case}");
        assert_eq!(recovery.new_segment, Some(last_segment + 1), "{case}: appends go to a new segment");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{case}: the damaged segment is kept as it is");
    } else {
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{case}: a sealed segment is kept as it is");
    }
    assert_eq!(all_events(&wal).iter().map(step_of).collect::<Vec<_>>(), expected, "{case}");
    let run = events[0].run;
    let after = task(run, 1000, "after");
    wal.append(std::slice::from_ref(&after)).unwrap();
    let mut expected_after = expected.clone();
    expected_after.push(1000);
    // The run's events through the index skip the damage too.
    let through_index: Vec<u64> = wal.run_events(run.run_id).unwrap().iter().map(step_of).collect();
    assert_eq!(through_index, expected_after, "{case}");
    assert!(
        wal.damage().iter().any(|r| r.segment == path && r.offset == at.offset),
        "{case}: the damage read is reported: {:?}",
        wal.damage()
    );

    // Repair sets the damage aside and rewrites; afterwards verify is clean and every intact
    // record is still there, indexed.
    let repaired = wal.repair().unwrap();
    if !is_torn_tail {
        assert_eq!(repaired.damaged.len(), 1, "{case}: {repaired:?}");
        assert_eq!(repaired.damaged[0].offset, at.offset, "{case}");
        let copy = repaired.damaged[0].quarantined.clone().unwrap();
        assert_eq!(std::fs::read(copy).unwrap(), damaged_bytes, "{case}");
    }
    let report = verify_dir(dir, &small()).unwrap();
    assert!(report.is_clean(), "{case}: {report:?}");
    assert_eq!(all_events(&wal).iter().map(step_of).collect::<Vec<_>>(), expected_after, "{case}");
    assert_eq!(wal.run(run.run_id).unwrap().unwrap().events, expected_after.len() as u64, "{case}");
    wal.append(&[task(run, 1001, "after repair")]).unwrap();
    drop(wal);
    let wal = open(dir);
    assert_eq!(all_events(&wal).len(), expected_after.len() + 1, "{case}");
    assert!(wal.verify().unwrap().is_clean(), "{case}");
}

/// The first, a middle and the last record of each of `segments`.
fn victims(positions: &[(Position, u64)], segments: impl Fn(u64, u64) -> bool) -> Vec<usize> {
    let last = positions.last().unwrap().0.segment;
    let mut victims = Vec::new();
    for seq in 1..=last {
        if !segments(seq, last) {
            continue;
        }
        let in_segment: Vec<usize> = (0..positions.len()).filter(|&i| positions[i].0.segment == seq).collect();
        if in_segment.len() < 3 {
            continue;
        }
        victims.extend([in_segment[0], in_segment[in_segment.len() / 2], in_segment[in_segment.len() - 1]]);
    }
    victims
}

fn check_all(segments: impl Fn(u64, u64) -> bool) {
    let fixture_dir = tempfile::tempdir().unwrap();
    let (_, events, positions) = fixture(fixture_dir.path());
    let victims = victims(&positions, segments);
    assert!(victims.len() >= 3, "{victims:?}");
    for victim in victims {
        for kind in KINDS {
            check_one(fixture_dir.path(), &events, &positions, victim, kind);
        }
    }
}

#[test]
fn damage_of_any_kind_in_the_first_sealed_segment_loses_only_the_damaged_record() {
    check_all(|seq, _| seq == 1);
}

#[test]
fn damage_of_any_kind_in_a_middle_sealed_segment_loses_only_the_damaged_record() {
    check_all(|seq, last| seq == 2 && last >= 4);
}

#[test]
fn damage_of_any_kind_in_the_last_sealed_segment_loses_only_the_damaged_record() {
    check_all(|seq, last| seq == last - 1);
}

#[test]
fn damage_of_any_kind_in_the_active_segment_loses_only_the_damaged_record() {
    check_all(|seq, last| seq == last);
}

#[test]
fn damage_in_two_segments_at_once_loses_only_the_two_damaged_records() {
    let fixture_dir = tempfile::tempdir().unwrap();
    let (_, events, positions) = fixture(fixture_dir.path());
    let dir = fixture_dir.path();
    let last = positions.last().unwrap().0.segment;
    let sealed = positions.iter().position(|(at, _)| at.segment == 2).unwrap() + 1;
    let active = positions.iter().position(|(at, _)| at.segment == last).unwrap();
    for (victim, kind) in [(sealed, Kind::LengthLow), (active, Kind::Checksum)] {
        let (at, len) = positions[victim];
        let path = segment(dir, at.segment);
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes, at.offset as usize..(at.offset + len) as usize, kind);
        std::fs::write(&path, bytes).unwrap();
    }
    let report = verify_dir(dir, &small()).unwrap();
    let found: Vec<Position> = report
        .damaged
        .iter()
        .map(|r| Position::new(if r.segment == segment(dir, 2) { 2 } else { last }, r.offset))
        .collect();
    assert_eq!(found, [positions[sealed].0, positions[active].0], "{report:?}");
    remove_index(dir);
    let wal = Wal::open(dir, small()).unwrap();
    assert_eq!(wal.recovery().damaged.len(), 2, "a rebuild reads every segment: {:?}", wal.recovery());
    let expected: Vec<u64> = (0..events.len() as u64).filter(|&s| s != sealed as u64 && s != active as u64).collect();
    assert_eq!(all_events(&wal).iter().map(step_of).collect::<Vec<_>>(), expected);
    assert_eq!(wal.list_runs(&RunFilter::all()).unwrap()[0].events, expected.len() as u64);
}

#[test]
fn quarantine_files_are_never_removed_and_a_second_open_adds_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, positions) = fixture(dir.path());
    let last = positions.last().unwrap().0.segment;
    let (at, _) = *positions.iter().find(|(at, _)| at.segment == last).unwrap();
    let path = segment(dir.path(), last);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at.offset as usize + 9] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    remove_index(dir.path());
    drop(Wal::open(dir.path(), small()).unwrap());
    let quarantine = dir.path().join(QUARANTINE_DIR);
    let first = snapshot(&quarantine);
    assert_eq!(first.len(), 1);
    // A rebuild meets the same damage again: the same copy stands for it.
    remove_index(dir.path());
    drop(Wal::open(dir.path(), small()).unwrap());
    assert!(snapshot(&quarantine) == first);
    let mut wal = open(dir.path());
    wal.repair().unwrap();
    wal.compact().unwrap();
    assert!(snapshot(&quarantine) == first, "repair and compaction keep the copies");
    let name = first.keys().next().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&segment_file_name(last)), "{name}");
}

#[test]
fn compaction_sets_damage_aside_and_keeps_every_intact_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small()).unwrap();
    let run = root();
    // Compaction keeps the records of runs whose start is in the log.
    let mut events = vec![started(run, "g", None)];
    let mut positions = wal.append(&events).unwrap();
    for step in 1..30 {
        let event = task(run, step, "node");
        positions.extend(wal.append(std::slice::from_ref(&event)).unwrap());
        events.push(event);
    }
    drop(wal);
    let (at, next) = (positions[5], positions[6]);
    assert_eq!(at.segment, next.segment);
    let path = segment(dir.path(), at.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    damage(&mut bytes, at.offset as usize..next.offset as usize, Kind::Payload);
    std::fs::write(&path, bytes).unwrap();
    let mut wal = Wal::open(dir.path(), small().segment_size(4096)).unwrap();
    let report = wal.compact().unwrap();
    assert_eq!((report.damaged_ranges, report.damaged_bytes), (1, next.offset - at.offset), "{report:?}");
    events.remove(5);
    assert_eq!(all_events(&wal), events);
    assert_eq!(wal.run_events(run.run_id).unwrap(), events);
    assert!(wal.verify().unwrap().is_clean());
    assert_eq!(snapshot(&dir.path().join(QUARANTINE_DIR)).len(), 1);
}

#[test]
fn a_writer_keeps_appending_while_another_opens_the_damaged_log() {
    let dir = tempfile::tempdir().unwrap();
    let run = root();
    let mut a = Wal::open(dir.path(), config()).unwrap();
    let first: Vec<Event> = (0..5).map(|step| task(run, step, "a")).collect();
    let positions = a.append(&first).unwrap();
    // Damage a record in the middle of the segment `a` is appending to.
    let path = segment(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[positions[2].offset as usize + 12] ^= 0x08;
    std::fs::write(&path, bytes).unwrap();

    // A reader sees the damage and changes nothing; `a` goes on.
    let reader = Wal::open_read_only(dir.path(), config()).unwrap();
    assert_eq!(reader.recovery().damaged.len(), 1);
    a.append(&[task(run, 5, "a")]).unwrap();
    // A second writer sets the damage aside and starts a new segment; `a` follows it there.
    let mut b = Wal::open(dir.path(), config()).unwrap();
    assert_eq!(b.recovery().new_segment, Some(2));
    let at = a.append(&[task(run, 6, "a")]).unwrap()[0];
    assert_eq!(at, Position::new(2, 0), "nothing is appended after the damage");
    b.append(&[task(run, 7, "b")]).unwrap();
    a.append(&[task(run, 8, "a")]).unwrap();
    drop((a, b));
    let wal = open(dir.path());
    assert_eq!(all_events(&wal).iter().map(step_of).collect::<Vec<_>>(), [0, 1, 3, 4, 5, 6, 7, 8]);
    assert_eq!(wal.run_events(run.run_id).unwrap().len(), 8);
}

#[test]
fn an_event_store_goes_on_logging_after_another_process_finds_damage() {
    use dashflow_telemetry::EventCallback as _;
    use dashflow_wal::{EventStore, StoreConfig};

    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let store = EventStore::open(&wal_dir, StoreConfig::default()).unwrap();
    let run = root();
    // Flushed one by one, so that each event is a record of its own (a batch's events of one
    // run would share a run block, and the damage below would take all of them).
    for step in 0..5 {
        store.on_event(&task(run, step, "s"));
        store.flush().unwrap();
    }
    let path = segment(&wal_dir, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x02;
    std::fs::write(&path, bytes).unwrap();
    // Another process opens the log for writing: it sets the damage aside and rotates.
    let other = Wal::open(&wal_dir, config()).unwrap();
    assert_eq!(other.recovery().damaged.len(), 1, "{:?}", other.recovery());
    drop(other);
    for step in 5..8 {
        store.on_event(&task(run, step, "s"));
    }
    store.flush().unwrap();
    let wal = Wal::open_read_only(&wal_dir, config()).unwrap();
    let steps: Vec<u64> = all_events(&wal).iter().map(step_of).collect();
    assert_eq!(steps.len(), 7, "one record lost, the later ones logged: {steps:?}");
    assert_eq!(&steps[4..], [5, 6, 7]);
}

#[test]
fn verify_of_a_directory_without_an_index_or_lock_file_creates_neither() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, positions) = fixture(dir.path());
    remove_index(dir.path());
    std::fs::remove_file(dir.path().join("LOCK")).unwrap();
    let (at, _) = positions[3];
    let path = segment(dir.path(), at.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at.offset as usize] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let before = snapshot(dir.path());
    let report = verify_dir(dir.path(), &small()).unwrap();
    assert!(snapshot(dir.path()) == before);
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(report.index_up_to_date, Some(false));
}

#[test]
fn verify_leaves_a_live_writers_index_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small()).unwrap();
    wal.append(&whole_run(root(), "g", 3)).unwrap();
    let before = snapshot(dir.path());
    let report = verify_dir(dir.path(), &small()).unwrap();
    assert!(snapshot(dir.path()) == before);
    assert!(report.is_clean(), "{report:?}");
    assert_ne!(report.index_up_to_date, Some(false), "{report:?}");
}

proptest! {
    // Each case opens an SQLite index: fewer, larger cases.
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn any_one_damaged_record_in_any_segment_loses_only_that_record(
        nodes in prop::collection::vec("[a-z]{1,40}", 12..40),
        victim in any::<prop::sample::Index>(),
        kind in 0..KINDS.len(),
        byte in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let run = root();
        let events: Vec<Event> =
            nodes.iter().enumerate().map(|(step, node)| task(run, step as u64, node)).collect();
        let mut wal = Wal::open(dir.path(), config().segment_size(500)).unwrap();
        let positions: Vec<Position> =
            events.iter().map(|event| wal.append(std::slice::from_ref(event)).unwrap()[0]).collect();
        let end = wal.end();
        drop(wal);
        let victim = victim.index(events.len());
        let at = positions[victim];
        let path = segment(dir.path(), at.segment);
        let mut bytes = std::fs::read(&path).unwrap();
        let frame_end = match positions.get(victim + 1) {
            Some(next) if next.segment == at.segment => next.offset,
            _ => bytes.len() as u64,
        };
        let frame = at.offset as usize..frame_end as usize;
        // A named kind, or one flipped bit anywhere in the frame.
        if kind + 1 < KINDS.len() {
            damage(&mut bytes, frame, KINDS[kind]);
        } else {
            let i = frame.start + byte.index(frame.len());
            bytes[i] ^= 1 << bit;
        }
        std::fs::write(&path, &bytes).unwrap();
        let expected: Vec<u64> = (0..events.len() as u64).filter(|&s| s != victim as u64).collect();

        let report = verify_dir(dir.path(), &config()).unwrap();
        prop_assert!(!report.is_clean());
        prop_assert_eq!(report.damaged[0].offset, at.offset);
        let torn = at.segment == end.segment && victim == events.len() - 1;
        prop_assert_eq!(report.damaged[0].torn_tail, torn);
        remove_index(dir.path());
        let mut wal = Wal::open(dir.path(), config().segment_size(500)).unwrap();
        prop_assert_eq!(all_events(&wal).iter().map(step_of).collect::<Vec<_>>(), expected.clone());
        prop_assert_eq!(wal.run(run.run_id).unwrap().unwrap().events, expected.len() as u64);
        wal.repair().unwrap();
        prop_assert!(wal.verify().unwrap().is_clean());
        prop_assert_eq!(all_events(&wal).iter().map(step_of).collect::<Vec<_>>(), expected);
    }
}

#[test]
fn a_repair_by_another_writer_never_loses_what_a_running_writer_appends_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = root();
    let mut a = Wal::open(dir.path(), config()).unwrap();
    let positions = a.append(&(0..5).map(|step| task(run, step, "a")).collect::<Vec<_>>()).unwrap();
    let path = segment(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[positions[1].offset as usize + 10] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    // `b` seals `a`'s segment, then rewrites it: `a` must not append to the old file.
    let mut b = Wal::open(dir.path(), config()).unwrap();
    let report = b.repair().unwrap();
    assert_eq!((report.damaged.len(), report.segments_rewritten), (1, 1), "{report:?}");
    a.append(&[task(run, 5, "a")]).unwrap();
    b.append(&[task(run, 6, "b")]).unwrap();
    drop((a, b));
    let wal = open(dir.path());
    assert_eq!(all_events(&wal).iter().map(step_of).collect::<Vec<_>>(), [0, 2, 3, 4, 5, 6]);
    assert!(wal.verify().unwrap().is_clean());
}

#[test]
fn repair_discards_the_rewrite_an_interrupted_repair_left_and_keeps_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (_, events, _) = fixture(dir.path());
    let leftover = dir.path().join(format!("{}.repair", segment_file_name(1)));
    std::fs::write(&leftover, b"half a rewrite").unwrap();
    let mut wal = Wal::open(dir.path(), small()).unwrap();
    assert!(wal.repair().unwrap().is_clean());
    assert!(!leftover.exists());
    assert_eq!(all_events(&wal).len(), events.len());
}

#[test]
fn retention_never_removes_quarantine_files() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, positions) = fixture(dir.path());
    let (at, _) = positions[1];
    let path = segment(dir.path(), at.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at.offset as usize + 3] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    remove_index(dir.path());
    drop(Wal::open(dir.path(), small()).unwrap());
    let copies = snapshot(&dir.path().join(QUARANTINE_DIR));
    assert_eq!(copies.len(), 1);
    let mut wal = Wal::open(dir.path(), small().retention(dashflow_wal::Retention::new(None, Some(1)))).unwrap();
    wal.apply_retention(std::time::SystemTime::now()).unwrap();
    assert_eq!(segment_count(dir.path()), 1, "retention removed every sealed segment");
    assert!(snapshot(&dir.path().join(QUARANTINE_DIR)) == copies);
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"))
        .count()
}

#[test]
fn a_writer_that_finds_damage_the_index_had_seen_rebuilds_the_index_to_match_the_segments() {
    let dir = tempfile::tempdir().unwrap();
    let run = root();
    let events = whole_run(run, "g", 4);
    let positions = open(dir.path()).append(&events).unwrap();
    let path = segment(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[positions[2].offset as usize + 12] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    // A reader reports the damage and leaves the index alone.
    let reader = Wal::open_read_only(dir.path(), config()).unwrap();
    assert!(!reader.recovery().rebuilt && reader.recovery().damaged.len() == 1);
    assert_eq!(reader.run(run.run_id).unwrap().unwrap().events, events.len() as u64);
    drop(reader);
    let wal = open(dir.path());
    assert!(wal.recovery().rebuilt, "{:?}", wal.recovery());
    assert_eq!(wal.recovery().damaged.len(), 1, "{:?}", wal.recovery());
    assert_eq!(wal.run(run.run_id).unwrap().unwrap().events, events.len() as u64 - 1);
    drop(wal);
    // Once: the damaged segment is sealed now.
    assert!(!open(dir.path()).recovery().rebuilt);
}

#[test]
fn a_damaged_trace_record_is_one_error_item_and_the_traces_after_it_are_read() {
    use dashflow_telemetry::RunOutcome;
    use dashflow_wal::ExecutionTrace;

    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), config().segment_size(1500)).unwrap();
    let mut traced = Vec::new();
    for _ in 0..4 {
        let run = root();
        let events = [started(run, "g", None), finished(run, RunOutcome::Completed, 0, None)];
        wal.append(&events).unwrap();
        let at = wal.append_trace(&ExecutionTrace::from_events(&events).unwrap()).unwrap();
        traced.push((run, at));
    }
    let (victim, at) = traced[1];
    let path = segment(dir.path(), at.segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at.offset as usize + 40] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let items: Vec<_> = wal.traces(Position::START).collect();
    assert_eq!(items.len(), 4, "{items:?}");
    assert!(
        matches!(&items[1], Err(WalError::Corrupt { segment, offset, .. }) if *segment == path && *offset == at.offset),
        "{items:?}"
    );
    let read: Vec<_> = items.iter().filter_map(|item| item.as_ref().ok()).map(|(_, trace)| trace.run.run_id).collect();
    assert_eq!(read, [traced[0].0.run_id, traced[2].0.run_id, traced[3].0.run_id]);
    // The run's own trace, read through the index, names the damage.
    assert!(matches!(wal.trace(victim.run_id), Err(WalError::Corrupt { .. })));
}
