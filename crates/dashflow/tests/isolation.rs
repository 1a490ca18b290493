//! The test suite never logs into the user's home: cargo gives every process it runs in this
//! repository a DashFlow home of its own (`.cargo/config.toml`), unless one is set already.

#[test]
fn tests_run_with_a_dashflow_home_that_is_not_the_users() {
    let home = std::env::var_os("DASHFLOW_HOME").filter(|home| !home.is_empty());
    let home = std::path::PathBuf::from(home.expect("cargo sets DASHFLOW_HOME for every test"));
    if let Some(user) = std::env::var_os("HOME") {
        assert_ne!(home, std::path::Path::new(&user).join(".dashflow"), "tests would log into the user's home");
    }
    assert_eq!(dashflow::wal::home_dir().unwrap(), home);
}
