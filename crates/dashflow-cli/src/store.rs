//! Finding and opening the WAL, and resolving the run ids people type.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dashflow_telemetry::RunId;
use dashflow_wal::{Retention, RunFilter, RunSummary, Wal, WalConfig};

use crate::time::format_utc;

/// The characters of a run id (a ULID in Crockford base32).
const RUN_ID_ALPHABET: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters in a whole run id.
const RUN_ID_LEN: usize = 26;
/// Candidates listed when a prefix names several runs.
const AMBIGUOUS_SHOWN: usize = 10;

/// The WAL directory of `home`, or of the default home when `None`.
pub(crate) fn wal_dir(home: Option<&Path>) -> Result<PathBuf> {
    let home = match home {
        Some(home) => home.to_owned(),
        None => dashflow_wal::home_dir()?,
    };
    Ok(dashflow_wal::wal_dir(&home))
}

/// Opens the WAL of `home` for reading (and for `wal compact`).
///
/// A missing directory is an error rather than a new empty WAL: a mistyped `--home` must not
/// look like a store with no runs. Retention is off, so looking never deletes history; the
/// processes that write the WAL apply theirs.
pub(crate) fn open(home: Option<&Path>) -> Result<Wal> {
    let dir = wal_dir(home)?;
    if !dir.is_dir() {
        bail!("no DashFlow store at {}: run a graph with DASHFLOW_WAL unset, or pass --home", dir.display());
    }
    let config = WalConfig::default().retention(Retention::KEEP_ALL);
    Wal::open(&dir, config).with_context(|| format!("cannot open the DashFlow store at {}", dir.display()))
}

/// The run that `text` names: a whole run id, or a prefix of exactly one (in any case).
pub(crate) fn resolve_run(wal: &Wal, text: &str) -> Result<RunSummary> {
    let prefix = text.trim().to_ascii_uppercase();
    if prefix.is_empty() || prefix.len() > RUN_ID_LEN || !prefix.chars().all(|c| RUN_ID_ALPHABET.contains(c)) {
        bail!(
            "`{text}` is not a run id: run ids are {RUN_ID_LEN} characters of 0-9 and A-Z (without I, L, O \
             and U); `dashflow runs list` shows them"
        );
    }
    if prefix.len() == RUN_ID_LEN
        && let Ok(run_id) = prefix.parse::<RunId>()
    {
        return wal.run(run_id)?.ok_or_else(|| unknown_run(text));
    }
    let mut matches = wal.list_runs(&RunFilter::all().run_id_prefix(&prefix).limit(AMBIGUOUS_SHOWN + 1))?;
    match matches.len() {
        0 => Err(unknown_run(text)),
        1 => Ok(matches.remove(0)),
        n => {
            let count = if n > AMBIGUOUS_SHOWN { format!("more than {AMBIGUOUS_SHOWN}") } else { n.to_string() };
            let mut message =
                format!("run id prefix `{text}` is ambiguous: it matches {count} runs; type more of the id:");
            for run in matches.iter().take(AMBIGUOUS_SHOWN) {
                let started = run.started_at.map_or_else(|| "-".to_owned(), format_utc);
                let graph = run.graph.as_deref().unwrap_or("-");
                let _ = write!(message, "\n  {}  {graph}  {started}", run.ids.run_id);
            }
            Err(anyhow::Error::msg(message))
        }
    }
}

fn unknown_run(text: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "no run `{text}` in the WAL: check the id with `dashflow runs list` (retention may have removed old runs)"
    )
}
