//! The checkpoint contract, as `sqlite/{group}/{case}` trials (`harness = false`), each on a
//! fresh database file in a temporary directory removed at the end.
#![allow(clippy::expect_used, reason = "a test binary reports a failed setup by panicking")]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use dashflow_checkpoint::{BlobLocation, Checkpointer};
use dashflow_checkpoint_conformance::{Capabilities, Tamper};
use dashflow_checkpoint_sqlite::SqliteCheckpointer;
use rusqlite::{Connection, OptionalExtension};

/// Changes stored bytes with raw SQL on a second connection to the file.
struct RawSql(PathBuf);

impl RawSql {
    fn alter(&self, select: &str, update: &str, key: &[&str], offset: usize, mask: u8) -> Result<(), String> {
        let connection = Connection::open(&self.0).map_err(|error| error.to_string())?;
        connection.busy_timeout(std::time::Duration::from_secs(5)).map_err(|error| error.to_string())?;
        let params = rusqlite::params_from_iter(key.iter());
        let blob: Option<Vec<u8>> =
            connection.query_row(select, params, |row| row.get(0)).optional().map_err(|error| error.to_string())?;
        let mut blob = blob.ok_or_else(|| format!("no row for {key:?}"))?;
        let byte = blob.get_mut(offset).ok_or_else(|| format!("offset {offset} is past the blob's end"))?;
        *byte ^= mask;
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&blob];
        values.extend(key.iter().map(|value| value as &dyn rusqlite::ToSql));
        let changed = connection.execute(update, values.as_slice()).map_err(|error| error.to_string())?;
        if changed == 1 { Ok(()) } else { Err(format!("{changed} rows changed")) }
    }
}

#[async_trait]
impl Tamper for RawSql {
    async fn alter_blob(&self, at: &BlobLocation, offset: usize, mask: u8) -> Result<(), String> {
        let checkpoint = [at.thread_id.as_str(), at.namespace.as_str(), at.checkpoint_id.as_str()];
        match &at.write_id {
            None => self.alter(
                "SELECT blob FROM checkpoints WHERE thread_id = ?1 AND namespace = ?2 AND checkpoint_id = ?3",
                "UPDATE checkpoints SET blob = ?1 WHERE thread_id = ?2 AND namespace = ?3 AND checkpoint_id = ?4",
                &checkpoint,
                offset,
                mask,
            ),
            Some(write_id) => self.alter(
                "SELECT blob FROM pending_writes \
                 WHERE thread_id = ?1 AND namespace = ?2 AND checkpoint_id = ?3 AND task_id = ?4",
                "UPDATE pending_writes SET blob = ?1 \
                 WHERE thread_id = ?2 AND namespace = ?3 AND checkpoint_id = ?4 AND task_id = ?5",
                &[checkpoint.as_slice(), &[write_id.as_str()]].concat(),
                offset,
                mask,
            ),
        }
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory for the databases");
    let root = Arc::new(dir.path().to_owned());
    let counter = Arc::new(AtomicUsize::new(0));
    let fresh = move || {
        let path = root.join(format!("trial-{}.db", counter.fetch_add(1, Ordering::Relaxed)));
        async move {
            let checkpointer = SqliteCheckpointer::open(&path).await.expect("a fresh database opens");
            (Arc::new(checkpointer) as Arc<dyn Checkpointer>, path)
        }
    };
    let plain = fresh.clone();
    let mut trials = dashflow_checkpoint_conformance::trials("sqlite", Capabilities::all(), move || {
        let fresh = plain();
        async move { fresh.await.0 }
    });
    trials.extend(dashflow_checkpoint_conformance::integrity_trials("sqlite", move || {
        let fresh = fresh();
        async move {
            let (checkpointer, path) = fresh.await;
            (checkpointer, Arc::new(RawSql(path)) as Arc<dyn Tamper>)
        }
    }));
    let conclusion = dashflow_checkpoint_conformance::run(trials);
    drop(dir);
    conclusion.exit();
}
