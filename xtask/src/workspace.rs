//! Where the workspace is and how to call cargo inside it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root: xtask always lives one level below it.
pub(crate) fn root() -> PathBuf {
    let xtask_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask_dir.parent().unwrap_or(xtask_dir).to_path_buf()
}

/// A `cargo` command run from the workspace root, using the same cargo that runs xtask.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root());
    command
}
