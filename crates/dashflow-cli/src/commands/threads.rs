//! `dashflow threads history`: a thread's checkpoint records, newest first.
//!
//! The CLI does not know the state types of the graphs that wrote them, so it shows what the
//! records say (ids, lineage, step, kind, metadata, next nodes, size), never the state.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use dashflow_checkpoint::{CheckpointRecord, Checkpointer, ListOptions};
use dashflow_checkpoint_postgres::PostgresCheckpointer;
use dashflow_checkpoint_sqlite::SqliteCheckpointer;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;

use crate::cli::{DatabaseArgs, HistoryArgs};
use crate::render::{self, Table};
use crate::time::{format_rfc3339, format_utc};

/// Where the checkpoints are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    /// `postgres://...` or `postgresql://...` is PostgreSQL; `sqlite://path`, `sqlite:path`
    /// or a plain path is a SQLite file.
    pub(crate) fn parse(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Self::Postgres(url.to_owned());
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        Self::Sqlite(PathBuf::from(path))
    }
}

/// The database `args` names, checked, and a runtime to reach it on.
pub(crate) fn database(args: &DatabaseArgs) -> Result<(Database, tokio::runtime::Runtime)> {
    let database = Database::parse(&args.db);
    if args.schema.is_some() && matches!(database, Database::Sqlite(_)) {
        bail!("--schema applies to PostgreSQL only, and `{}` is a SQLite database", args.db);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime for the checkpoint database")?;
    Ok((database, runtime))
}

pub(crate) fn run(args: &HistoryArgs, out: &mut dyn Write) -> Result<()> {
    let (database, runtime) = database(&args.database)?;
    let records = runtime.block_on(async {
        let checkpointer = open(&database, args.database.schema.as_deref()).await?;
        let mut options = ListOptions::new();
        if let Some(namespace) = &args.namespace {
            options = options.namespace(namespace);
        }
        if args.limit > 0 {
            options = options.limit(args.limit);
        }
        checkpointer
            .list(&args.thread, &options)
            .await
            .with_context(|| format!("cannot list the checkpoints of thread `{}`", args.thread))
    })?;
    if records.is_empty() {
        bail!("thread `{}` has no checkpoints in {}", args.thread, describe(&database));
    }
    // Each blob's checksum is checked: a damaged checkpoint is listed, marked, and named on
    // stderr, since a run cannot resume from it or from a checkpoint after it in its chain.
    let damage: Vec<Option<String>> =
        records.iter().map(|record| record.verify().err().map(|error| error.to_string())).collect();
    let mut stderr = std::io::stderr().lock();
    for (record, damage) in records.iter().zip(&damage) {
        if let Some(damage) = damage {
            writeln!(
                stderr,
                "warning: checkpoint {} of thread `{}` is damaged: {damage}",
                record.checkpoint_id, args.thread
            )?;
        }
    }
    if args.json {
        let records: Vec<Value> = records
            .iter()
            .zip(&damage)
            .map(|(record, damage)| {
                let mut json = record_json(record);
                if let (Some(damage), Some(fields)) = (damage, json.as_object_mut()) {
                    fields.insert("damaged".to_owned(), Value::String(damage.clone()));
                }
                json
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?;
        return Ok(());
    }
    let namespaces = records.iter().any(|record| !record.namespace.is_empty());
    let mut headers = vec!["CHECKPOINT", "PARENT"];
    if namespaces {
        headers.push("NAMESPACE");
    }
    headers.extend([">STEP", "KIND", "SOURCE", ">BLOB", "CREATED (UTC)", "NEXT"]);
    let damaged = damage.iter().any(Option::is_some);
    if damaged {
        headers.push("CHECKSUM");
    }
    let mut table = Table::new(&headers);
    for (record, damage) in records.iter().zip(&damage) {
        let mut row = vec![record.checkpoint_id.to_string(), render::or_dash(record.parent_id.as_ref())];
        if namespaces {
            row.push(if record.namespace.is_empty() { "(top)".to_owned() } else { record.namespace.clone() });
        }
        let source = record.metadata.get("source").map(|source| match source {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        });
        let next = if record.next_nodes.is_empty() { "(done)".to_owned() } else { record.next_nodes.join(", ") };
        row.extend([
            record.step.to_string(),
            record.kind.as_str().to_owned(),
            render::or_dash(source),
            render::bytes(record.blob.len() as u64),
            format_utc(created_at(record)),
            next,
        ]);
        if damaged {
            row.push(if damage.is_some() { "DAMAGED".to_owned() } else { "ok".to_owned() });
        }
        table.row(row);
    }
    table.write(out)?;
    Ok(())
}

pub(crate) async fn open(database: &Database, schema: Option<&str>) -> Result<Box<dyn Checkpointer>> {
    Ok(match database {
        Database::Sqlite(path) => {
            // Opening would create a missing file: a mistyped path must not look like an
            // empty database.
            if !path.is_file() {
                bail!("no checkpoint database at {}: pass the file a graph's SqliteCheckpointer wrote", path.display());
            }
            Box::new(SqliteCheckpointer::open(path).await.with_context(|| format!("cannot open {}", path.display()))?)
        }
        Database::Postgres(url) => {
            // The URL is not repeated in errors: it may hold a password.
            let mut options: PgConnectOptions = url.parse().context("the --db URL is not a valid PostgreSQL URL")?;
            if let Some(schema) = schema {
                options = options.options([("search_path", schema)]);
            }
            Box::new(PostgresCheckpointer::connect_with(options).await.context("cannot open the checkpoints of --db")?)
        }
    })
}

pub(crate) fn describe(database: &Database) -> String {
    match database {
        Database::Sqlite(path) => path.display().to_string(),
        Database::Postgres(_) => "the PostgreSQL database".to_owned(),
    }
}

fn created_at(record: &CheckpointRecord) -> std::time::SystemTime {
    at_ms(record.created_at_ms)
}

/// Milliseconds since the Unix epoch as a time.
pub(crate) fn at_ms(ms: i64) -> std::time::SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    let at = if ms >= 0 { UNIX_EPOCH.checked_add(magnitude) } else { UNIX_EPOCH.checked_sub(magnitude) };
    at.unwrap_or(UNIX_EPOCH)
}

fn record_json(record: &CheckpointRecord) -> Value {
    json!({
        "checkpoint_id": record.checkpoint_id.to_string(),
        "parent_id": record.parent_id.as_ref().map(ToString::to_string),
        "thread_id": record.thread_id,
        "namespace": record.namespace,
        "step": record.step,
        "kind": record.kind.as_str(),
        "metadata": record.metadata,
        "next_nodes": record.next_nodes,
        "blob_bytes": record.blob.len(),
        "created_at": format_rfc3339(created_at(record)),
    })
}

#[cfg(test)]
mod tests;
