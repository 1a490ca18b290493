use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use dashflow_wal::{HEADER_LEN, segment_file_name};

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
    assert!(out.stdout.contains("1 damaged record(s)"), "{}", out.stdout);
}

#[test]
fn reading_a_run_in_a_damaged_segment_fails_naming_segment_and_offset() {
    let home = Home::new();
    let runs = record_runs_with(&home, small_segments());
    let damaged = flip_a_byte(&home, 1);
    let out = home.dashflow(&["runs", "show", &runs.completed.to_string()]);
    let stderr = out.failed();
    assert!(stderr.contains(&format!("WAL segment `{}` is damaged at byte 0", damaged.display())), "{stderr}");
    // The index still lists the run: only reading its records meets the damage.
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
