//! Where the WAL and the trace files live, and whether they are on, from the environment.
//!
//! Each public function reads the process environment through a crate-private `_from` twin
//! that takes variables from a closure, so tests need not touch the environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::{Result, WalError};

/// The DashFlow home directory; default `$HOME/.dashflow`.
pub const HOME_VAR: &str = "DASHFLOW_HOME";
/// `0`, `false`, `off` or `no` (any case) turns the WAL off.
pub const WAL_VAR: &str = "DASHFLOW_WAL";
/// The WAL's directory inside the home.
pub const WAL_DIR: &str = "wal";
/// `0`, `false`, `off` or `no` (any case) turns trace persistence off.
pub const TRACE_VAR: &str = "DASHFLOW_TRACE";
/// The base directory of trace files; traces go to `$DASHFLOW_TRACE_DIR/.dashflow/traces/`.
/// Unset, trace files are written only into a working directory that has a `.dashflow/`
/// directory already (a project that asked for local traces).
pub const TRACE_DIR_VAR: &str = "DASHFLOW_TRACE_DIR";
/// The trace files' directory inside their base directory.
pub const TRACES_DIR: &str = ".dashflow/traces";
/// A project's own DashFlow directory: its presence in the working directory asks for
/// trace files there.
const PROJECT_DIR: &str = ".dashflow";

/// The DashFlow home: `DASHFLOW_HOME` if set and not empty, else `$HOME/.dashflow`.
pub fn home_dir() -> Result<PathBuf> {
    home_dir_from(|name| std::env::var_os(name))
}

/// [`home_dir`] reading variables through `var`.
pub(crate) fn home_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf> {
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
pub(crate) fn wal_enabled_from(var: impl Fn(&str) -> Option<OsString>) -> bool {
    !var(WAL_VAR).is_some_and(|value| is_off(&value))
}

/// Whether trace persistence is on: it is unless `DASHFLOW_TRACE` says `0`, `false`, `off`
/// or `no`.
pub fn trace_enabled() -> bool {
    trace_enabled_from(|name| std::env::var_os(name))
}

/// [`trace_enabled`] reading variables through `var`.
pub(crate) fn trace_enabled_from(var: impl Fn(&str) -> Option<OsString>) -> bool {
    !var(TRACE_VAR).is_some_and(|value| is_off(&value))
}

/// Whether an opt-out variable's value turns its feature off.
fn is_off(value: &std::ffi::OsStr) -> bool {
    let value = value.to_string_lossy();
    let value = value.trim();
    ["0", "false", "off", "no"].iter().any(|off| value.eq_ignore_ascii_case(off))
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
pub(crate) fn wal_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<Option<PathBuf>> {
    if !wal_enabled_from(&var) {
        return Ok(None);
    }
    home_dir_from(var).map(|home| Some(wal_dir(&home)))
}

/// The trace files' directory of base directory `base`: `base/.dashflow/traces`.
pub fn traces_dir(base: &Path) -> PathBuf {
    base.join(TRACES_DIR)
}

/// The base directory of trace files, `None` when no trace files are written (the traces
/// are still in the WAL, where `dashflow runs show --json` prints them):
/// `DASHFLOW_TRACE_DIR` if set and not empty, else the working directory if it has a
/// `.dashflow/` directory, else none. A run never creates `.dashflow/` in the working
/// directory by itself.
pub fn trace_base_dir() -> Result<Option<PathBuf>> {
    trace_base_dir_from(|name| std::env::var_os(name))
}

/// [`trace_base_dir`] reading variables through `var` (the working directory is still the
/// process's).
pub(crate) fn trace_base_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<Option<PathBuf>> {
    if let Some(base) = var(TRACE_DIR_VAR).filter(|value| !value.is_empty()) {
        return Ok(Some(PathBuf::from(base)));
    }
    let cwd = std::env::current_dir().map_err(|e| WalError::io("read the working directory", ".", e))?;
    Ok(project_base(cwd))
}

/// `dir` when it holds a project's `.dashflow/` directory.
fn project_base(dir: PathBuf) -> Option<PathBuf> {
    dir.join(PROJECT_DIR).is_dir().then_some(dir)
}

/// The trace files' directory the environment asks for, or `None` when `DASHFLOW_TRACE`
/// turns trace persistence off: where the CLI looks for trace files.
pub fn traces_dir_from_env() -> Result<Option<PathBuf>> {
    traces_dir_from(|name| std::env::var_os(name))
}

/// [`traces_dir_from_env`] reading variables through `var`.
pub(crate) fn traces_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<Option<PathBuf>> {
    if !trace_enabled_from(&var) {
        return Ok(None);
    }
    Ok(trace_base_dir_from(var)?.map(|base| traces_dir(&base)))
}

#[cfg(test)]
mod tests;
