use crate::common::{Home, command, dashflow, output, record_runs};

#[test]
fn a_missing_store_is_a_clear_error_with_exit_code_1() {
    let home = Home::new();
    for args in
        [&["runs", "list"][..], &["runs", "show", "01ARZ3NDEK"], &["tail"], &["graph", "01"], &["wal", "verify"]]
    {
        let out = home.dashflow(args);
        let expected = format!(
            "error: no DashFlow store at {}: run a graph with DASHFLOW_WAL unset, or pass --home\n",
            home.wal_dir().display()
        );
        assert_eq!(out.failed(), expected, "{args:?}");
    }
    assert!(!home.wal_dir().exists(), "looking must not create a store");
}

#[test]
fn the_home_defaults_to_dashflow_home() {
    let home = Home::new();
    let runs = record_runs(&home);
    let out = output(command().env("DASHFLOW_HOME", home.path()).args(["runs", "list", "--graph", "echo"]));
    assert!(out.ok().contains(&runs.echo.to_string()), "{out:#?}");
}

#[test]
fn without_a_home_the_default_is_under_home() {
    let out = dashflow(&["runs", "list"]);
    assert!(out.failed().contains("/nonexistent/dashflow-cli-test-home/.dashflow/wal"), "{out:#?}");
}

#[test]
fn an_unknown_run_id_is_an_error() {
    let home = Home::new();
    record_runs(&home);
    let out = home.dashflow(&["runs", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]);
    assert!(out.failed().contains("no run `01ARZ3NDEKTSV4RRFFQ69G5FAV` in the WAL"), "{out:#?}");
    let out = home.dashflow(&["graph", "7ZZZ"]);
    assert!(out.failed().contains("no run `7ZZZ` in the WAL"), "{out:#?}");
}

#[test]
fn an_ambiguous_prefix_lists_the_candidates() {
    let home = Home::new();
    let runs = record_runs(&home);
    let (a, b) = (runs.completed.to_string(), runs.failed.to_string());
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    let prefix = &a[..common.max(1)];
    let out = home.dashflow(&["runs", "show", prefix]);
    let stderr = out.failed();
    assert!(stderr.contains(&format!("run id prefix `{prefix}` is ambiguous")), "{stderr}");
    assert!(stderr.contains(&a) && stderr.contains(&b), "{stderr}");
}

#[test]
fn a_malformed_run_id_is_an_error() {
    let home = Home::new();
    record_runs(&home);
    let out = home.dashflow(&["runs", "show", "not-a-run!"]);
    assert!(out.failed().contains("`not-a-run!` is not a run id"), "{out:#?}");
}

#[test]
fn a_usage_error_exits_with_code_2() {
    let out = dashflow(&["runs", "frobnicate"]);
    assert_eq!(out.code, 2, "{out:#?}");
    assert!(out.stderr.contains("frobnicate"), "{out:#?}");
}

#[test]
fn help_describes_every_command() {
    let out = dashflow(&["--help"]);
    for command in ["runs", "tail", "threads", "graph", "wal"] {
        assert!(out.ok().contains(command), "{command} missing:\n{}", out.stdout);
    }
}
