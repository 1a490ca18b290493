use std::ffi::OsString;

use super::*;

fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
    move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
}

#[test]
fn dashflow_home_wins_over_home() {
    let vars = [("DASHFLOW_HOME", "/srv/df"), ("HOME", "/home/ann")];
    assert_eq!(home_dir_from(env(&vars)).unwrap(), PathBuf::from("/srv/df"));
    assert_eq!(wal_dir_from(env(&vars)).unwrap(), Some(PathBuf::from("/srv/df/wal")));
}

#[test]
fn the_default_home_is_dot_dashflow_under_home() {
    assert_eq!(home_dir_from(env(&[("HOME", "/home/ann")])).unwrap(), PathBuf::from("/home/ann/.dashflow"));
}

#[test]
fn an_empty_dashflow_home_counts_as_unset() {
    let vars = [("DASHFLOW_HOME", ""), ("HOME", "/home/ann")];
    assert_eq!(home_dir_from(env(&vars)).unwrap(), PathBuf::from("/home/ann/.dashflow"));
}

#[test]
fn without_any_home_variable_the_error_names_dashflow_home() {
    let error = home_dir_from(env(&[])).unwrap_err();
    assert!(matches!(error, WalError::HomeNotFound));
    assert!(error.to_string().contains("set DASHFLOW_HOME"));
}

#[test]
fn the_wal_is_on_unless_dashflow_wal_turns_it_off() {
    assert!(wal_enabled_from(env(&[])));
    for on in ["1", "true", "yes", ""] {
        assert!(wal_enabled_from(env(&[("DASHFLOW_WAL", on)])), "{on:?}");
    }
    for off in ["0", "false", "FALSE", "off", "No", " 0 "] {
        assert!(!wal_enabled_from(env(&[("DASHFLOW_WAL", off)])), "{off:?}");
    }
}

#[test]
fn a_disabled_wal_has_no_directory_even_without_a_home() {
    assert_eq!(wal_dir_from(env(&[("DASHFLOW_WAL", "0")])).unwrap(), None);
}

#[test]
fn trace_persistence_is_on_unless_dashflow_trace_turns_it_off() {
    assert!(trace_enabled_from(env(&[])));
    assert!(trace_enabled_from(env(&[("DASHFLOW_TRACE", "1")])));
    for off in ["0", "false", "Off", " no "] {
        assert!(!trace_enabled_from(env(&[("DASHFLOW_TRACE", off)])), "{off:?}");
    }
}

#[test]
fn trace_files_go_under_dashflow_trace_dir() {
    let vars = [("DASHFLOW_TRACE_DIR", "/srv/app")];
    assert_eq!(traces_dir_from(env(&vars)).unwrap(), Some(PathBuf::from("/srv/app/.dashflow/traces")));
    assert_eq!(traces_dir_from(env(&[("DASHFLOW_TRACE", "0"), ("DASHFLOW_TRACE_DIR", "/srv/app")])).unwrap(), None);
}

#[test]
fn a_directory_is_a_trace_base_only_when_it_has_a_dot_dashflow_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(project_base(dir.path().to_path_buf()), None, "no .dashflow/: no trace files");
    std::fs::write(dir.path().join(".dashflow"), b"").unwrap();
    assert_eq!(project_base(dir.path().to_path_buf()), None, "a file named .dashflow is not a project's directory");
    std::fs::remove_file(dir.path().join(".dashflow")).unwrap();
    std::fs::create_dir(dir.path().join(".dashflow")).unwrap();
    assert_eq!(project_base(dir.path().to_path_buf()), Some(dir.path().to_path_buf()));
}

#[test]
fn the_working_directory_gets_trace_files_only_if_it_asked_for_them() {
    // This crate's directory (the tests' working directory) has no `.dashflow/`.
    let cwd = std::env::current_dir().unwrap();
    let expected = cwd.join(".dashflow").is_dir().then(|| cwd.join(".dashflow/traces"));
    assert_eq!(traces_dir_from(env(&[])).unwrap(), expected);
}
