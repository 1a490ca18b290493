use std::ffi::OsString;
use std::fs::File;

use dashflow_telemetry::RunOutcome;

use super::*;
use crate::testing::{finished, root, started};
use crate::trace::TraceBuilder;

fn finished_trace() -> ExecutionTrace {
    let run = root();
    let mut builder = TraceBuilder::new(run);
    builder.push(&started(run, "g", None));
    builder.push(&finished(run, RunOutcome::Completed, 0, None));
    builder.build()
}

/// Trace files for `n` runs, with their run ids sorted oldest first.
fn write_traces(dir: &Path, n: usize) -> Vec<RunId> {
    let mut ids: Vec<RunId> = (0..n).map(|_| write_trace(dir, &finished_trace()).unwrap()).map(run_id_of).collect();
    ids.sort();
    ids
}

fn run_id_of(path: PathBuf) -> RunId {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

fn listed(dir: &Path) -> Vec<RunId> {
    list_traces(dir).unwrap().into_iter().map(|file| file.run_id).collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn set_age(path: &Path, age: Duration) {
    File::options().write(true).open(path).unwrap().set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn a_written_trace_reads_back_equal_and_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let traces = dir.path().join("nested/.dashflow/traces");
    let trace = finished_trace();
    let path = write_trace(&traces, &trace).unwrap();
    assert_eq!(path, traces.join(format!("{}.json", trace.run.run_id)));
    assert_eq!(read_trace(&traces, trace.run.run_id).unwrap(), Some(trace.clone()));
    assert_eq!(names(&traces), [trace_file_name(trace.run.run_id)]);
}

#[test]
fn writing_a_trace_again_replaces_the_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut trace = finished_trace();
    write_trace(dir.path(), &trace).unwrap();
    trace.error = Some("second".into());
    write_trace(dir.path(), &trace).unwrap();
    assert_eq!(read_trace(dir.path(), trace.run.run_id).unwrap(), Some(trace));
    assert_eq!(names(dir.path()).len(), 1);
}

#[test]
fn reading_a_missing_trace_is_none_and_a_damaged_one_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let run_id = RunId::new();
    assert_eq!(read_trace(dir.path(), run_id).unwrap(), None);
    assert_eq!(read_trace(&dir.path().join("absent"), run_id).unwrap(), None);
    let path = dir.path().join(trace_file_name(run_id));
    std::fs::write(&path, b"{\"run\": ").unwrap();
    let error = read_trace(dir.path(), run_id).unwrap_err();
    assert!(matches!(&error, WalError::BadTrace { path: p, .. } if *p == path), "{error}");
}

#[test]
fn listing_shows_trace_files_newest_run_first_and_ignores_other_files() {
    let dir = tempfile::tempdir().unwrap();
    let ids = write_traces(dir.path(), 3);
    std::fs::write(dir.path().join("notes.json"), b"{}").unwrap();
    std::fs::write(dir.path().join(".abc.1-1.tmp"), b"{").unwrap();
    std::fs::create_dir(dir.path().join(format!("{}.json", RunId::new()))).unwrap();
    assert_eq!(listed(dir.path()), ids.into_iter().rev().collect::<Vec<_>>());
    assert!(list_traces(&dir.path().join("absent")).unwrap().is_empty());
}

#[test]
fn retention_by_count_keeps_the_newest_runs() {
    let dir = tempfile::tempdir().unwrap();
    let ids = write_traces(dir.path(), 5);
    let report = apply_trace_retention(dir.path(), &TraceRetention::new(Some(2), None), SystemTime::now()).unwrap();
    assert_eq!((report.removed, report.kept), (3, 2));
    assert_eq!(listed(dir.path()), [ids[4], ids[3]]);
}

#[test]
fn retention_by_age_removes_files_written_before_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let ids = write_traces(dir.path(), 3);
    let day = Duration::from_secs(24 * 60 * 60);
    set_age(&dir.path().join(trace_file_name(ids[2])), 40 * day);
    set_age(&dir.path().join(trace_file_name(ids[0])), 2 * day);
    let retention = TraceRetention::new(None, Some(30 * day));
    apply_trace_retention(dir.path(), &retention, SystemTime::now()).unwrap();
    assert_eq!(listed(dir.path()), [ids[1], ids[0]]);
}

#[test]
fn retention_removes_temporary_files_only_once_they_are_stale() {
    let dir = tempfile::tempdir().unwrap();
    let (stale, fresh) = (dir.path().join(".a.1-1.tmp"), dir.path().join(".b.1-2.tmp"));
    std::fs::write(&stale, b"{").unwrap();
    std::fs::write(&fresh, b"{").unwrap();
    set_age(&stale, Duration::from_secs(2 * 60 * 60));
    let report = apply_trace_retention(dir.path(), &TraceRetention::KEEP_ALL, SystemTime::now()).unwrap();
    assert_eq!(report.stale_temporaries, 1);
    assert!(!stale.exists() && fresh.exists());
}

#[test]
fn retention_of_a_missing_directory_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let report = apply_trace_retention(&dir.path().join("absent"), &TraceRetention::default(), SystemTime::now());
    assert_eq!(report.unwrap(), TraceRetentionReport::default());
}

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
    move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
}

#[test]
fn the_environment_puts_trace_files_under_dashflow_trace_dir_else_builds_no_traces() {
    let config = TraceConfig::from_env_with(env(&[("DASHFLOW_TRACE_DIR", "/srv/app")])).unwrap();
    assert_eq!(config.traces_dir(), Some(PathBuf::from("/srv/app/.dashflow/traces")));
    assert!(config.wal);
    // The tests' working directory (this crate's) has no `.dashflow/`: no files, and no trace
    // records either (a run's trace is built from its events when read).
    assert!(!std::env::current_dir().unwrap().join(".dashflow").exists());
    let config = TraceConfig::from_env_with(env(&[("DASHFLOW_TRACE_DIR", "")])).unwrap();
    assert_eq!(config, TraceConfig::off());
}

#[test]
fn dashflow_trace_off_turns_files_and_records_off() {
    for off in ["0", "false", "OFF", "no"] {
        let config = TraceConfig::from_env_with(env(&[("DASHFLOW_TRACE", off), ("DASHFLOW_TRACE_DIR", "/x")])).unwrap();
        assert_eq!(config, TraceConfig::off(), "{off}");
        assert!(!config.is_on());
    }
    let on = TraceConfig::from_env_with(env(&[("DASHFLOW_TRACE", "1"), ("DASHFLOW_TRACE_DIR", "/x")])).unwrap();
    assert!(on.is_on());
}
