//! `dashflow tail --nats URL`: the events every publishing host sends to a JetStream stream,
//! one line each, live or replayed from a point of the stream.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::{Context, Result};
use dashflow_nats::{Follow, Item, NatsConsumer, Received, StartAt};
use dashflow_telemetry::RunId;
use futures::StreamExt;

use crate::cli::TailArgs;
use crate::commands::tail::line;

pub(crate) fn run(args: &TailArgs, out: &mut dyn Write) -> Result<()> {
    let Some(url) = args.nats.as_deref() else { return Ok(()) };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(follow(url, args, out))
}

async fn follow(url: &str, args: &TailArgs, out: &mut dyn Write) -> Result<()> {
    let consumer = NatsConsumer::connect_to(url, &args.stream, &args.subject_prefix).await?;
    let start = match (args.from_seq, args.from_start) {
        (Some(seq), _) => StartAt::Sequence(seq),
        (None, true) => StartAt::Beginning,
        (None, false) => StartAt::New,
    };
    let mut follow = Follow::all().start_at(start);
    if let Some(graph) = &args.graph {
        follow = follow.graph(graph.clone());
    }
    if let Some(run) = &args.run {
        let run: RunId = run.parse().map_err(|_| anyhow::anyhow!("`{run}` is not a run id (a 26-character ULID)"))?;
        follow = follow.run(run);
    }
    let mut events = consumer.follow(follow).await?;
    if !args.exit_when_idle {
        let what = if start == StartAt::New { "new events" } else { "events" };
        let _ = writeln!(io::stderr(), "following {what} of stream {} at {url} (Ctrl-C stops)", args.stream);
    }
    if args.max_events == Some(0) {
        return Ok(());
    }
    // With nothing matching, no message ever says the reader caught up: a quiet spell ends it.
    let idle = Duration::from_millis(args.interval_ms.max(1)) * 5;
    let mut printed = 0u64;
    loop {
        let next = if args.exit_when_idle {
            match tokio::time::timeout(idle, events.next()).await {
                Ok(next) => next,
                Err(_) => return Ok(()),
            }
        } else {
            events.next().await
        };
        let Some(received) = next else { return Ok(()) };
        let received = received.with_context(|| format!("reading stream {} at {url}", args.stream))?;
        if args.json {
            writeln!(out, "{}", json_line(&received)?)?;
        } else {
            match &received.item {
                Item::Event(event) => {
                    writeln!(out, "{}  ({})", line(event, Some(&received.graph)), received.publisher.name)?;
                }
                Item::Gap { count } => writeln!(
                    out,
                    "run {}: {count} message(s) from seq {} never arrived  ({})",
                    received.run.run_id, received.seq, received.publisher.name
                )?,
                _ => continue,
            }
        }
        out.flush()?;
        printed += 1;
        if args.max_events.is_some_and(|max| printed >= max) || (args.exit_when_idle && received.pending == 0) {
            return Ok(());
        }
    }
}

/// One received event as JSON: where it is in the stream, who sent it, its run's sequence
/// number, its graph, and the event as `tail --json` prints WAL events; for messages that
/// never arrived, `event` is null and `gap` says how many (from `seq`).
fn json_line(received: &Received) -> Result<String> {
    Ok(serde_json::to_string(&serde_json::json!({
        "stream_sequence": received.stream_sequence,
        "publisher": received.publisher,
        "seq": received.seq,
        "graph": received.graph,
        "event": received.event(),
        "gap": match received.item { Item::Gap { count } => Some(count), _ => None },
    }))?)
}
