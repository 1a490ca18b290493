//! Running child processes and turning their failures into errors that name the command.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

/// Runs `command` with the terminal attached and fails unless it exits successfully.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    println!("$ {}", display(command));
    let status = command.status().with_context(|| format!("could not start `{}`", display(command)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(command));
    }
    Ok(())
}

/// Runs `command` and returns its stdout; stderr still goes to the terminal.
pub(crate) fn stdout_of(command: &mut Command) -> Result<String> {
    let output = output_of(command)?;
    String::from_utf8(output.stdout).with_context(|| format!("`{}` printed invalid UTF-8", display(command)))
}

/// Whether `command` can be started and exits successfully, with its output discarded.
pub(crate) fn succeeds(command: &mut Command) -> bool {
    command.output().is_ok_and(|output| output.status.success())
}

fn output_of(command: &mut Command) -> Result<Output> {
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("could not start `{}`", display(command)))?;
    if !output.status.success() {
        bail!("`{}` failed ({})", display(command), output.status);
    }
    Ok(output)
}

/// The command as a shell line, with the environment variables it sets in front.
pub(crate) fn display(command: &Command) -> String {
    let envs = command.get_envs().filter_map(|(key, value)| {
        value.map(|value| format!("{}={}", key.to_string_lossy(), quote(&value.to_string_lossy())))
    });
    let program = std::iter::once(program_name(command));
    let args = command.get_args().map(|arg| quote(&arg.to_string_lossy()));
    envs.chain(program).chain(args).collect::<Vec<_>>().join(" ")
}

/// `cargo` rather than the toolchain path that `$CARGO` holds; other programs as given.
fn program_name(command: &Command) -> String {
    let program = Path::new(command.get_program());
    if program.file_stem().is_some_and(|stem| stem == "cargo") {
        "cargo".to_owned()
    } else {
        program.to_string_lossy().into_owned()
    }
}

fn quote(word: &str) -> String {
    if word.is_empty() || word.contains(char::is_whitespace) { format!("'{word}'") } else { word.to_owned() }
}
