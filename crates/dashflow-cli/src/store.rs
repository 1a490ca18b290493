//! Finding and opening the WAL, and resolving the run ids people type.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dashflow_telemetry::RunId;
use dashflow_wal::{DamagedRange, MissingSchema, Retention, RunFilter, RunSummary, Wal, WalConfig};

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

/// The WAL directory of `home`, which must exist.
///
/// A missing directory is an error rather than a new empty WAL: a mistyped `--home` must not
/// look like a store with no runs.
pub(crate) fn existing_wal_dir(home: Option<&Path>) -> Result<PathBuf> {
    let dir = wal_dir(home)?;
    if !dir.is_dir() {
        bail!("no DashFlow store at {}: run a graph with DASHFLOW_WAL unset, or pass --home", dir.display());
    }
    Ok(dir)
}

/// The configuration the CLI opens the WAL with: retention off, so looking (or compacting,
/// or repairing) never deletes history; the processes that write the WAL apply theirs.
pub(crate) fn config() -> WalConfig {
    WalConfig::default().retention(Retention::KEEP_ALL)
}

/// Opens the WAL of `home` for reading only, runs `f` on it, and warns on stderr about every
/// damaged range the open or `f`'s reads skipped.
///
/// Reading never changes a segment: a torn tail is left for the next writer to cut and
/// damage is skipped, not set aside (`wal repair` does that).
pub(crate) fn read<T>(home: Option<&Path>, f: impl FnOnce(&Wal) -> Result<T>) -> Result<T> {
    let dir = existing_wal_dir(home)?;
    let wal = Wal::open_read_only(&dir, config())
        .with_context(|| format!("cannot open the DashFlow store at {}", dir.display()))?;
    let found_on_open = wal.damage();
    warn_damage(&found_on_open);
    let result = f(&wal);
    let found_reading: Vec<DamagedRange> =
        wal.damage().into_iter().filter(|range| !found_on_open.contains(range)).collect();
    warn_damage(&found_reading);
    warn_missing_schemas(&wal.missing_schemas());
    result
}

/// One warning line on stderr per run whose graph definition a read could not resolve.
pub(crate) fn warn_missing_schemas(missing: &[MissingSchema]) {
    let mut stderr = io::stderr().lock();
    for missing in missing {
        let _ = writeln!(stderr, "warning: {missing}; the run's other events are read");
    }
}

/// Opens the WAL of `home` for writing (`wal compact`, `wal repair`).
pub(crate) fn open_for_writing(home: Option<&Path>) -> Result<Wal> {
    let dir = existing_wal_dir(home)?;
    Wal::open(&dir, config()).with_context(|| format!("cannot open the DashFlow store at {}", dir.display()))
}

/// One warning line on stderr per damaged range.
pub(crate) fn warn_damage(damage: &[DamagedRange]) {
    let mut stderr = io::stderr().lock();
    for range in damage {
        let _ = if range.torn_tail {
            writeln!(stderr, "warning: the WAL ends in a torn write, skipped (the next writer cuts it): {range}")
        } else {
            writeln!(
                stderr,
                "warning: skipped damaged bytes in the WAL: {range}; `dashflow wal verify` lists all damage, \
                 `dashflow wal repair` sets it aside"
            )
        };
    }
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
