//! `dashflow threads list`: the threads of a checkpoint database, most recently updated
//! first, filtered and paged as `Checkpointer::list_threads` does.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use dashflow_checkpoint::{ThreadListOptions, ThreadSummary};
use serde_json::{Value, json};

use crate::cli::ThreadsListArgs;
use crate::commands::threads::{at_ms, database, describe, open};
use crate::render::{self, Table};
use crate::time::{format_rfc3339, format_utc};

pub(crate) fn run(args: &ThreadsListArgs, out: &mut dyn Write) -> Result<()> {
    let options = options(args);
    let (database, runtime) = database(&args.database)?;
    let threads = runtime.block_on(async {
        let checkpointer = open(&database, args.database.schema.as_deref()).await?;
        checkpointer
            .list_threads(&options)
            .await
            .with_context(|| format!("cannot list the threads of {}", describe(&database)))
    })?;
    // A full page may have a next one; a shorter page is the last.
    let next = (args.limit > 0 && threads.len() == args.limit).then(|| threads.last().map(ThreadSummary::cursor));
    let next = next.flatten();
    if args.json {
        let listed: Vec<Value> = threads.iter().map(thread_json).collect();
        let page = json!({ "threads": listed, "next": next.as_ref().map(ToString::to_string) });
        writeln!(out, "{}", serde_json::to_string_pretty(&page)?)?;
        return Ok(());
    }
    if threads.is_empty() {
        writeln!(out, "no threads in {} match", describe(&database))?;
        return Ok(());
    }
    let mut table = Table::new(&["THREAD", "LATEST CHECKPOINT", ">STEP", "SOURCE", ">CHECKPOINTS", "UPDATED (UTC)"]);
    for thread in &threads {
        let source = thread.metadata.get("source").map(|source| match source {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        });
        table.row(vec![
            thread.thread_id.clone(),
            thread.checkpoint_id.to_string(),
            thread.step.to_string(),
            render::or_dash(source),
            thread.checkpoints.to_string(),
            format_utc(at_ms(thread.updated_at_ms)),
        ]);
    }
    table.write(out)?;
    if let Some(next) = next {
        writeln!(out, "more: --after '{next}'")?;
    }
    Ok(())
}

fn options(args: &ThreadsListArgs) -> ThreadListOptions {
    let mut options = ThreadListOptions::new();
    if let Some(prefix) = &args.prefix {
        options = options.prefix(prefix);
    }
    if let Some(since) = args.since {
        options = options.updated_since_ms(ms(since));
    }
    if let Some(before) = args.before {
        options = options.updated_before_ms(ms(before));
    }
    for (key, value) in &args.metadata {
        options = options.metadata(key, value.clone());
    }
    if let Some(after) = &args.after {
        options = options.after(after.clone());
    }
    if args.limit > 0 {
        options = options.limit(args.limit);
    }
    options
}

fn ms(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

fn thread_json(thread: &ThreadSummary) -> Value {
    json!({
        "thread_id": thread.thread_id,
        "checkpoint_id": thread.checkpoint_id.to_string(),
        "step": thread.step,
        "metadata": thread.metadata,
        "checkpoints": thread.checkpoints,
        "updated_at": format_rfc3339(at_ms(thread.updated_at_ms)),
        "updated_at_ms": thread.updated_at_ms,
        "cursor": thread.cursor().to_string(),
    })
}
