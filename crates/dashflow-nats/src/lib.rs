//! DashFlow run events on a NATS JetStream stream, so that runs on every host can be followed
//! in one place.
//!
//! [`NatsSink`] is an event sink that publishes every event of every run it hears to a
//! JetStream stream, one JSON message per event ([`wire`] documents the schema, version 1),
//! on the subject `{prefix}.{graph}.{run id}` (default prefix `dashflow.events`, stream
//! `dashflow-events`, created when missing). JetStream acknowledges each one; what is not
//! acknowledged is sent again with the same message id (stored once). Runs are never slowed:
//! when the server is away for longer than the buffers cover, new events are dropped and
//! counted (see [`NatsSink`] for the policy).
//!
//! [`NatsConsumer`] reads them back as typed [`Event`](dashflow_telemetry::Event)s, live or
//! replayed from any point of the stream, with the publisher that sent each (a ULID per sink
//! and a `{pid}@{host}` name), so runs of many processes on one stream are told apart. Each
//! run's messages come in the order the run emitted them, within a reorder window; a message
//! that never comes is reported as a gap.
//!
//! With [`NatsBuilder::state_deltas`] the sink also publishes each run's starting state and
//! each superstep's merged update, which a consumer that asks ([`Follow::state_deltas`])
//! reads as [`Delta`]s, so that it can rebuild a thread's state without the checkpoint
//! database.
//!
//! ```no_run
//! # fn main() -> Result<(), dashflow_nats::Error> {
//! use dashflow_nats::NatsSink;
//!
//! let (sink, _guard) = NatsSink::builder("nats://127.0.0.1:4222").start()?;
//! // let app = graph.compile()?.with_callback(sink);
//! # drop(sink);
//! # Ok(()) }
//! ```
//!
//! The `dashflow tail --nats URL` command follows the stream.
//!
//! This crate has no feature flags.

mod consumer;
mod error;
mod publisher;
pub mod wire;

pub use consumer::{Events, Follow, NatsConsumer, StartAt};
pub use error::{Error, Result};
pub use publisher::{DEFAULT_INTEREST, NatsBuilder, NatsGuard, NatsSink, NatsStats};
pub use wire::{Delta, Item, Publisher, Received, SCHEMA_VERSION};

/// The stream a sink publishes to unless told otherwise.
pub const DEFAULT_STREAM: &str = "dashflow-events";
/// The first tokens of every subject unless told otherwise.
pub const DEFAULT_PREFIX: &str = "dashflow.events";

/// A graph's name as one subject token: characters other than ASCII letters, digits, `-` and
/// `_` become `_` (NATS gives `.`, `*`, `>` and spaces meanings of their own).
pub fn subject_token(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn check_prefix(prefix: &str) -> Result<()> {
    let valid = !prefix.is_empty()
        && prefix.split('.').all(|token| !token.is_empty() && !token.contains(['*', '>', ' ', '\t']));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "subject prefix `{prefix}`: use dot-separated tokens without spaces or wildcards, such as `dashflow.events`"
        )))
    }
}

async fn connect(url: &str, name: &str) -> Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .name(name)
        // Reconnect for ever, quickly at first: a publisher keeps what it holds meanwhile.
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            std::time::Duration::from_millis((attempts as u64).saturating_mul(100).min(2_000))
        })
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|source| Error::Connect { url: url.to_owned(), source })
}

async fn open_stream(js: &async_nats::jetstream::Context, stream: &str, prefix: &str) -> Result<()> {
    let subjects = format!("{prefix}.>");
    let config = async_nats::jetstream::stream::Config {
        name: stream.to_owned(),
        subjects: vec![subjects.clone()],
        ..Default::default()
    };
    js.get_or_create_stream(config).await.map(drop).map_err(|error| Error::Stream {
        stream: stream.to_owned(),
        subjects,
        reason: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_names_become_single_subject_tokens() {
        assert_eq!(subject_token("tickets"), "tickets");
        assert_eq!(subject_token("a.b *>c"), "a_b___c");
        assert_eq!(subject_token(""), "_");
    }

    #[test]
    fn a_prefix_with_wildcards_or_empty_tokens_is_refused_with_an_example() {
        assert!(check_prefix("dashflow.events").is_ok());
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a"] {
            let error = check_prefix(bad).unwrap_err().to_string();
            assert!(error.contains("dashflow.events"), "{error}");
        }
    }
}
