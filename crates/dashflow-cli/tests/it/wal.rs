//! `dashflow wal verify`, `repair` and `compact`, and R24 through the binary: damage never
//! stops the CLI or logging, reading commands change no segment, verify changes no file.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use dashflow_wal::__private::{HEADER_LEN, ReadStep, RecordReader};
use dashflow_wal::QUARANTINE_DIR;
use dashflow_wal::segment_file_name;

use crate::common::{Home, record_runs, record_runs_with, small_segments};

/// Flips one bit of the first record's payload in segment `seq`.
fn flip_a_byte(home: &Home, seq: u64) -> PathBuf {
    let path = home.wal_dir().join(segment_file_name(seq));
    let mut file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let at = HEADER_LEN as u64 + 10;
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(at)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(&[byte[0] ^ 0x20]).unwrap();
    path
}

fn segments(home: &Home) -> usize {
    std::fs::read_dir(home.wal_dir())
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"))
        .count()
}

#[test]
fn wal_verify_reports_a_clean_store() {
    let home = Home::new();
    record_runs(&home);
    let out = home.dashflow(&["wal", "verify"]);
    let text = out.ok();
    assert!(text.starts_with("checked 1 segment(s), "), "{text}");
    assert!(text.ends_with("ok: no damage found\n"), "{text}");
}

#[test]
fn wal_verify_names_the_segment_and_offset_of_a_flipped_byte_and_exits_1() {
    let home = Home::new();
    record_runs_with(&home, small_segments());
    assert!(segments(&home) > 2, "the runs fill several segments");
    let damaged = flip_a_byte(&home, 1);
    let out = home.dashflow(&["wal", "verify"]);
    assert_eq!(out.code, 1, "{out:#?}");
    let expected = format!("damaged: {} at byte 0: ", damaged.display());
    assert!(out.stdout.lines().any(|line| line.starts_with(&expected)), "{}", out.stdout);
    assert!(out.stdout.contains("1 damaged range(s)"), "{}", out.stdout);
    assert!(!out.stdout.contains("ok:"), "{}", out.stdout);
}

#[test]
fn reading_a_run_in_a_damaged_segment_skips_the_record_and_warns_naming_segment_and_offset() {
    let home = Home::new();
    let runs = record_runs_with(&home, small_segments());
    let damaged = flip_a_byte(&home, 1);
    let out = home.dashflow(&["runs", "show", &runs.completed.to_string()]);
    // The first record is lost: the schema record of the run's graph, so the run reads
    // without its graph definition. The run's summary (from the index) is still shown.
    let text = out.ok();
    assert!(text.contains("status    completed"), "{out:#?}");
    let warning = format!("warning: skipped damaged bytes in the WAL: `{}` at byte 0: ", damaged.display());
    assert!(out.stderr.contains(&warning), "{out:#?}");
    let lost = format!("warning: the graph definition of run {} (graph `support`", runs.completed);
    assert!(out.stderr.contains(&lost), "{out:#?}");
    assert!(home.dashflow(&["runs", "list"]).ok().contains(&runs.completed.to_string()));
}

#[test]
fn damage_in_the_last_segment_is_reported_by_verify_too() {
    let home = Home::new();
    record_runs(&home);
    flip_a_byte(&home, 1);
    let out = home.dashflow(&["wal", "verify"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.contains(&segment_file_name(1)) && out.stdout.contains("at byte 0"), "{}", out.stdout);
}

#[test]
fn wal_compact_merges_sealed_segments_and_keeps_every_run() {
    let home = Home::new();
    let runs = record_runs_with(&home, small_segments());
    let before = segments(&home);
    let out = home.dashflow(&["wal", "compact"]);
    let expected = format!("compacted {} sealed segment(s) into 1: ", before - 1);
    assert!(out.ok().starts_with(&expected), "{}", out.stdout);
    assert_eq!(segments(&home), 2, "one compacted segment and the active one");
    let list = home.dashflow(&["runs", "list"]);
    for run in [runs.completed, runs.failed, runs.answered, runs.echo] {
        assert!(list.ok().contains(&run.to_string()));
    }
    assert!(home.dashflow(&["runs", "show", &runs.completed.to_string()]).ok().contains("answer"));
    assert_eq!(home.dashflow(&["wal", "verify"]).code, 0);
    assert!(home.dashflow(&["wal", "compact"]).ok().starts_with("nothing to compact"));
}

/// Every file under `dir` with its bytes.
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

/// The offsets of the frames of a segment file.
fn frame_offsets(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = RecordReader::new(Cursor::new(&bytes), 0, bytes.len() as u64, u32::MAX);
    let mut offsets = Vec::new();
    while let ReadStep::Record { offset, .. } = reader.next_record().unwrap() {
        offsets.push(offset);
    }
    offsets
}

/// Flips `mask` in byte `at` of `path`.
fn flip(path: &Path, at: u64, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at as usize] ^= mask;
    std::fs::write(path, bytes).unwrap();
}

/// The report: one flipped bit in a length field of the newest segment (or of its
/// first frame) made every command cut the segment there and then call the log clean.
#[test]
fn a_flipped_length_bit_in_the_newest_segment_is_reported_by_verify_which_changes_nothing() {
    for frame in ["first", "middle"] {
        let home = Home::new();
        let runs = record_runs(&home);
        let path = home.wal_dir().join(segment_file_name(1));
        let offsets = frame_offsets(&path);
        // "middle": the second record, with intact ones on both sides and the echo run's
        // (recorded last, in run blocks of its own) after it.
        let at = if frame == "first" { offsets[0] } else { offsets[1] };
        assert!(offsets.len() > 3, "{frame}: {offsets:?}");
        flip(&path, at + 1, 0x02);

        let before = snapshot(&home.wal_dir());
        let out = home.dashflow(&["wal", "verify"]);
        assert!(snapshot(&home.wal_dir()) == before, "{frame}: verify changed a file");
        assert_eq!(out.code, 1, "{frame}: {out:#?}");
        let line = format!("damaged: {} at byte {at}: ", path.display());
        assert!(out.stdout.lines().any(|l| l.starts_with(&line) && l.contains(" bytes), ")), "{frame}: {}", out.stdout);
        assert!(!out.stdout.contains("ok:"), "{frame}: {}", out.stdout);

        // Reading commands still work, warn, and change no file (the index is up to date).
        let before = snapshot(&home.wal_dir());
        let list = home.dashflow(&["runs", "list"]);
        for run in [runs.completed, runs.failed, runs.answered, runs.echo] {
            assert!(list.ok().contains(&run.to_string()), "{frame}: {list:#?}");
        }
        let warning = format!("`{}` at byte {at}: ", path.display());
        assert!(list.stderr.contains(&warning), "{frame}: {list:#?}");
        let tail = home.dashflow(&["tail", "--from-start", "--exit-when-idle"]);
        assert!(tail.ok().contains(&runs.echo.to_string()), "{frame}: {tail:#?}");
        assert_eq!(tail.stderr.matches(&warning).count(), 1, "{frame}: warned once: {tail:#?}");
        assert!(home.dashflow(&["runs", "show", &runs.echo.to_string()]).ok().contains("answer"));
        assert!(home.dashflow(&["graph", &runs.echo.to_string()]).ok().contains("answer"));
        assert!(snapshot(&home.wal_dir()) == before, "{frame}: a reading command changed a file");
        // Still damaged, still reported.
        assert_eq!(home.dashflow(&["wal", "verify"]).code, 1, "{frame}");
    }
}

/// A checksum error used to stop logging for every process and keep the CLI from starting.
#[test]
fn a_checksum_error_in_the_newest_segment_stops_neither_the_cli_nor_logging_and_repair_sets_it_aside() {
    let home = Home::new();
    let first = record_runs(&home);
    let path = home.wal_dir().join(segment_file_name(1));
    let offsets = frame_offsets(&path);
    // The second record: intact ones on both sides, the echo run's (recorded last) after it.
    let at = offsets[1];
    assert!(offsets.len() > 3, "{offsets:?}");
    flip(&path, at + 5, 0x80);
    assert!(home.dashflow(&["runs", "list"]).ok().contains(&first.echo.to_string()));

    // A new process logs on, in a new segment.
    let second = record_runs(&home);
    assert!(home.wal_dir().join(segment_file_name(2)).exists(), "logging went on in a new segment");
    let list = home.dashflow(&["runs", "list"]);
    for run in [first.completed, first.echo, second.completed, second.echo] {
        assert!(list.ok().contains(&run.to_string()), "{list:#?}");
    }
    // That writer kept the damaged bytes aside already; verify still names the damage.
    let quarantined = snapshot(&home.wal_dir().join(QUARANTINE_DIR));
    assert_eq!(quarantined.len(), 1);
    assert_eq!(home.dashflow(&["wal", "verify"]).code, 1);

    let out = home.dashflow(&["wal", "repair"]);
    let text = out.ok();
    assert!(text.contains(&format!("damaged: {} at byte {at}: ", path.display())), "{text}");
    assert!(text.contains("; kept in "), "{text}");
    assert!(text.contains("repaired: set 1 damaged range(s) aside, rewrote 1 segment(s)"), "{text}");
    assert!(snapshot(&home.wal_dir().join(QUARANTINE_DIR)) == quarantined, "the copy is kept as it was");
    let verify = home.dashflow(&["wal", "verify"]);
    assert!(verify.ok().ends_with("ok: no damage found\n"), "{verify:#?}");
    let list = home.dashflow(&["runs", "list"]);
    assert!(list.stderr.is_empty(), "{list:#?}");
    for run in [first.completed, first.echo, second.completed, second.echo] {
        assert!(list.ok().contains(&run.to_string()), "{list:#?}");
    }
    assert!(home.dashflow(&["wal", "repair"]).ok().starts_with("nothing to repair"));
}

#[test]
fn verify_of_a_torn_tail_reports_it_and_changes_nothing() {
    let home = Home::new();
    record_runs(&home);
    let path = home.wal_dir().join(segment_file_name(1));
    let len = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 3).unwrap();
    let before = snapshot(&home.wal_dir());
    let out = home.dashflow(&["wal", "verify"]);
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.contains("torn tail (cut by the next writer): "), "{}", out.stdout);
    assert!(snapshot(&home.wal_dir()) == before);
    let list = home.dashflow(&["runs", "list"]);
    assert!(list.stderr.contains("warning: the WAL ends in a torn write"), "{list:#?}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len - 3, "reading does not cut");
}
