//! `dashflow runs list|show|cancel|retry|follow --postgres URL`: the runs of a PostgreSQL run
//! queue, which worker holds each, and their event streams.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use dashflow_queue::{RunFilter, RunQueue, RunRecord, RunState, StreamItem, next_wake};
use serde_json::{Value, json};

use crate::cli::{CancelArgs, FollowArgs, ListArgs, RetryArgs, ShowArgs};
use crate::commands::queue::open_at;
use crate::render::{self, Table};
use crate::time::format_utc;

/// Items of a run's event stream `runs show` prints, the last ones.
const SHOWN_EVENTS: usize = 20;

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn span(from_ms: i64, to_ms: i64) -> String {
    render::duration(Duration::from_millis(u64::try_from(to_ms - from_ms).unwrap_or(0)))
}

/// How long the run waited in the queue before its first claim.
fn queue_latency_ms(run: &RunRecord) -> Option<i64> {
    run.started_at_ms.map(|started| (started - run.created_at_ms).max(0))
}

fn run_json(run: &RunRecord) -> Value {
    json!({
        "run_id": run.run_id,
        "queue": run.queue,
        "graph": run.graph_key.as_str(),
        "thread_id": run.thread_id,
        "tenant": run.tenant,
        "priority": run.priority.level(),
        "kind": run.kind.as_str(),
        "state": run.state.as_str(),
        "worker_id": run.worker_id,
        "attempt": run.attempt,
        "epoch": run.lease_epoch,
        "cancel_requested": run.cancel_requested,
        "checkpoint_id": run.checkpoint_id,
        "error": run.error,
        "created_at_ms": run.created_at_ms,
        "started_at_ms": run.started_at_ms,
        "finished_at_ms": run.finished_at_ms,
        "queue_latency_ms": queue_latency_ms(run),
    })
}

pub(crate) fn list(args: &ListArgs, out: &mut dyn Write) -> Result<()> {
    let url = args.postgres.as_deref().context("runs list over a queue needs --postgres")?;
    let (queue, runtime) = open_at(url, args.schema.as_deref(), "--postgres")?;
    let mut filter = RunFilter::new().limit(if args.limit == 0 { usize::MAX } else { args.limit });
    if let Some(state) = args.state {
        filter = filter.state(state);
    }
    if let Some(thread) = &args.thread {
        filter = filter.thread(thread.as_str());
    }
    let runs = runtime.block_on(queue.list(&filter)).context("cannot list the queue's runs")?;
    if args.json {
        let runs: Vec<Value> = runs.iter().map(run_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
        return Ok(());
    }
    if runs.is_empty() {
        writeln!(out, "no runs match")?;
        return Ok(());
    }
    let mut table = Table::new(&[
        "RUN",
        "GRAPH",
        "THREAD",
        "STATE",
        "WORKER",
        ">ATTEMPT",
        ">EPOCH",
        ">QUEUED",
        "SUBMITTED (UTC)",
        "ERROR",
    ]);
    for run in &runs {
        table.row(vec![
            run.run_id.clone(),
            run.graph_key.to_string(),
            run.thread_id.clone(),
            run.state.as_str().to_owned(),
            render::or_dash(run.worker_id.as_deref()),
            run.attempt.to_string(),
            render::or_dash(run.lease_epoch),
            render::or_dash(queue_latency_ms(run).map(|ms| span(0, ms))),
            format_utc(at(run.created_at_ms)),
            run.error.as_deref().map(|e| render::excerpt(e, 80)).unwrap_or_default(),
        ]);
    }
    table.write(out)?;
    Ok(())
}

/// One line for an item of a run's stream.
fn describe(item: &StreamItem) -> String {
    let payload = &item.payload;
    if let Some(lost) = payload.get("lost") {
        return format!("{lost} events lost");
    }
    let Some((kind, body)) = payload.get("kind").and_then(Value::as_object).and_then(|kind| kind.iter().next()) else {
        return render::excerpt(&payload.to_string(), 100);
    };
    let field =
        |name: &str| body.get(name).map(|value| value.as_str().map_or_else(|| value.to_string(), str::to_owned));
    let mut line = kind.clone();
    for name in ["step", "node", "label", "target", "outcome", "error"] {
        if let Some(value) = field(name).filter(|value| value != "null") {
            line.push_str(&format!(" {name}={}", render::excerpt(&value, 60)));
        }
    }
    line
}

pub(crate) fn show(args: &ShowArgs, out: &mut dyn Write) -> Result<()> {
    let url = args.postgres.as_deref().context("runs show over a queue needs --postgres")?;
    let (queue, runtime) = open_at(url, args.schema.as_deref(), "--postgres")?;
    let (run, items) = runtime.block_on(async {
        let run = queue.get(&args.run).await.context("cannot read the run")?;
        let Some(run) = run else {
            bail!("no run {} in the queue (give its full id; `runs list --postgres` lists them)", args.run)
        };
        // The stream's end: its length first, then its last items.
        let streams = queue.streams().context("this queue keeps no event streams")?;
        let mut items = Vec::new();
        let mut after = 0;
        loop {
            let page = streams.read(&run.run_id, after, 1000).await.context("cannot read the run's event stream")?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            items.extend(page);
            let keep = items.len().saturating_sub(SHOWN_EVENTS);
            items.drain(..keep);
        }
        anyhow::Ok((run, (items, after)))
    })?;
    let (items, streamed) = items;
    if args.json {
        let mut value = run_json(&run);
        value["events_streamed"] = streamed.into();
        value["last_events"] = items
            .iter()
            .map(|item| json!({ "seq": item.seq, "attempt": item.attempt, "epoch": item.epoch, "rerun": item.rerun, "item": item.payload }))
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    writeln!(out, "run       {}", run.run_id)?;
    writeln!(out, "graph     {}", run.graph_key)?;
    writeln!(out, "thread    {}", run.thread_id)?;
    writeln!(
        out,
        "queue     {} (priority {}, tenant {})",
        run.queue,
        run.priority.level(),
        render::or_dash(Some(&run.tenant).filter(|t| !t.is_empty()))
    )?;
    writeln!(out, "kind      {}", run.kind)?;
    let cancel = if run.cancel_requested && run.state == RunState::Running { " (cancel requested)" } else { "" };
    writeln!(out, "state     {}{cancel}", run.state)?;
    writeln!(out, "worker    {}", render::or_dash(run.worker_id.as_deref()))?;
    writeln!(out, "attempt   {} (fence epoch {})", run.attempt, render::or_dash(run.lease_epoch))?;
    writeln!(out, "submitted {}", format_utc(at(run.created_at_ms)))?;
    if let Some(started) = run.started_at_ms {
        writeln!(out, "claimed   {} (queued {})", format_utc(at(started)), span(run.created_at_ms, started))?;
    }
    if let Some(finished) = run.finished_at_ms {
        let ran = run.started_at_ms.map(|started| format!(" (ran {})", span(started, finished))).unwrap_or_default();
        writeln!(out, "finished  {}{ran}", format_utc(at(finished)))?;
    }
    writeln!(out, "checkpoint {}", render::or_dash(run.checkpoint_id.as_deref()))?;
    if let Some(error) = &run.error {
        writeln!(out, "error     {error}")?;
    }
    if streamed == 0 {
        writeln!(out, "\nno events streamed")?;
        return Ok(());
    }
    writeln!(out, "\nevents {streamed} streamed; the last {}:", items.len())?;
    let mut table = Table::new(&[">SEQ", ">ATTEMPT", "EVENT"]);
    for item in &items {
        let rerun = if item.rerun { " (re-run after a takeover)" } else { "" };
        table.row(vec![item.seq.to_string(), item.attempt.to_string(), format!("{}{rerun}", describe(item))]);
    }
    table.write(out)?;
    Ok(())
}

pub(crate) fn cancel(args: &CancelArgs, out: &mut dyn Write) -> Result<()> {
    let (queue, runtime) = open_at(&args.queue.postgres, args.queue.schema.as_deref(), "--postgres")?;
    let state = runtime.block_on(queue.cancel(&args.run)).with_context(|| format!("cannot cancel run {}", args.run))?;
    let what = match state {
        RunState::Cancelled => "cancelled".to_owned(),
        RunState::Running => "cancel requested: its worker stops it at its next heartbeat".to_owned(),
        finished => format!("already {finished}: nothing to cancel"),
    };
    writeln!(out, "run {}: {what}", args.run)?;
    Ok(())
}

pub(crate) fn retry(args: &RetryArgs, out: &mut dyn Write) -> Result<()> {
    let (queue, runtime) = open_at(&args.queue.postgres, args.queue.schema.as_deref(), "--postgres")?;
    let state = runtime
        .block_on(queue.retry(&args.run, args.attempts))
        .with_context(|| format!("cannot retry run {}", args.run))?;
    writeln!(
        out,
        "run {}: {state} again, with {} more attempt{}; it continues from its thread's last checkpoint",
        args.run,
        args.attempts,
        if args.attempts == 1 { "" } else { "s" }
    )?;
    Ok(())
}

/// Items of a run's event stream read per round trip while following it.
const FOLLOW_PAGE: usize = 1000;

pub(crate) fn follow(args: &FollowArgs, out: &mut dyn Write) -> Result<()> {
    let (queue, runtime) = open_at(&args.queue.postgres, args.queue.schema.as_deref(), "--postgres")?;
    let streams = queue.streams().context("this queue keeps no event streams")?;
    let missing = || format!("no run {} in the queue (give its full id; `runs list --postgres` lists them)", args.run);
    let interval = Duration::from_millis(args.interval_ms);
    let ended = runtime.block_on(async {
        let run = queue.get(&args.run).await.context("cannot read the run")?.with_context(missing)?;
        eprintln!("following run {} ({}); it ends when the run does", run.run_id, run.state);
        // Listening before the first read, nothing appended after a read is missed, nor the
        // run's end. Without notifications (a queue that sends none, a lost listener) it
        // looks every interval.
        let mut wakeups = streams.wakeups().await.ok().flatten();
        let mut after = args.after;
        loop {
            // The run's state before its items: items appended before it ended are read
            // after, so the last round prints every one of them.
            let run = queue.get(&args.run).await.context("cannot read the run")?.with_context(missing)?;
            loop {
                let page =
                    streams.read(&args.run, after, FOLLOW_PAGE).await.context("cannot read the run's event stream")?;
                for item in &page {
                    write_item(item, args.json, out)?;
                }
                out.flush()?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                if page.len() < FOLLOW_PAGE {
                    break;
                }
            }
            if run.state.is_terminal() {
                return anyhow::Ok(run);
            }
            let until = tokio::time::Instant::now() + interval;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => break,
                    wake = next_wake(&mut wakeups) => match wake {
                        Some(wake) if wake.may_concern(&args.run) => break,
                        Some(_) => {}
                        None => wakeups = None,
                    },
                }
            }
        }
    })?;
    if args.json {
        let end = json!({ "run_id": ended.run_id, "state": ended.state.as_str(), "error": ended.error });
        writeln!(out, "{end}")?;
    } else {
        let error = ended.error.as_deref().map(|error| format!(": {error}")).unwrap_or_default();
        writeln!(out, "run {}: {}{error}", ended.run_id, ended.state)?;
    }
    Ok(())
}

fn write_item(item: &StreamItem, json: bool, out: &mut dyn Write) -> Result<()> {
    if json {
        let line = json!({ "seq": item.seq, "attempt": item.attempt, "epoch": item.epoch, "rerun": item.rerun, "item": item.payload });
        writeln!(out, "{line}")?;
    } else {
        let rerun = if item.rerun { " (re-run after a takeover)" } else { "" };
        writeln!(out, "{:>6}  #{}  {}{rerun}", item.seq, item.attempt, describe(item))?;
    }
    Ok(())
}
