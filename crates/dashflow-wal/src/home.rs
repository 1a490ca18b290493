//! Where the WAL lives, and whether it is on, from the environment.
//!
//! Every function has a `_from` twin that reads variables through a closure, so tests (and
//! embedders with their own configuration source) need not touch the process environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Result, WalError};

/// The DashFlow home directory; default `$HOME/.dashflow`.
pub const HOME_VAR: &str = "DASHFLOW_HOME";
/// `0`, `false`, `off` or `no` (any case) turns the WAL off.
pub const WAL_VAR: &str = "DASHFLOW_WAL";
/// The WAL's directory inside the home.
pub const WAL_DIR: &str = "wal";

/// The DashFlow home: `DASHFLOW_HOME` if set and not empty, else `$HOME/.dashflow`.
pub fn home_dir() -> Result<PathBuf> {
    home_dir_from(|name| std::env::var_os(name))
}

/// [`home_dir`] reading variables through `var`.
pub fn home_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
    let non_empty = |name: &str| var(name).filter(|value| !value.is_empty());
    if let Some(home) = non_empty(HOME_VAR) {
        return Ok(PathBuf::from(home));
    }
    non_empty("HOME").map(|home| Path::new(&home).join(".dashflow")).ok_or(WalError::HomeNotFound)
}

/// Whether the WAL is on: it is unless `DASHFLOW_WAL` says `0`, `false`, `off` or `no`.
pub fn wal_enabled() -> bool {
    wal_enabled_from(|name| std::env::var_os(name))
}

/// [`wal_enabled`] reading variables through `var`.
pub fn wal_enabled_from(var: impl Fn(&str) -> Option<OsString>) -> bool {
    match var(WAL_VAR) {
        None => true,
        Some(value) => {
            let value = value.to_string_lossy();
            let value = value.trim();
            !["0", "false", "off", "no"].iter().any(|off| value.eq_ignore_ascii_case(off))
        }
    }
}

/// The WAL directory of `home`: `home/wal`.
pub fn wal_dir(home: &Path) -> PathBuf {
    home.join(WAL_DIR)
}

/// The WAL directory the environment asks for, or `None` when `DASHFLOW_WAL` turns it off.
pub fn wal_dir_from_env() -> Result<Option<PathBuf>> {
    wal_dir_from(|name| std::env::var_os(name))
}

/// [`wal_dir_from_env`] reading variables through `var`.
pub fn wal_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<Option<PathBuf>> {
    if !wal_enabled_from(&var) {
        return Ok(None);
    }
    home_dir_from(var).map(|home| Some(wal_dir(&home)))
}

#[cfg(test)]
mod tests;
