//! Following the stream: typed events for programs (and `dashflow tail --nats`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use dashflow_telemetry::RunId;
use futures::Stream;

use crate::error::{Error, Result};
use crate::wire::{self, Received};

/// Where following the stream starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartAt {
    /// The first message the stream holds: a consumer that starts late replays everything.
    #[default]
    Beginning,
    /// Message `n` of the stream ([`Received::stream_sequence`]) and what follows.
    Sequence(u64),
    /// The first message stored at or after this time.
    Time(SystemTime),
    /// Only messages published from now on.
    New,
}

/// Which events to follow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Follow {
    start: StartAt,
    graph: Option<String>,
    run: Option<RunId>,
}

impl Follow {
    /// Every event of every graph and run, from the beginning of the stream.
    pub fn all() -> Self {
        Self::default()
    }

    /// Starts at `start`.
    pub fn start_at(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Only runs of graph `name`.
    pub fn graph(mut self, name: impl Into<String>) -> Self {
        self.graph = Some(name.into());
        self
    }

    /// Only run `run` (not its subgraph runs, which have ids of their own).
    pub fn run(mut self, run: RunId) -> Self {
        self.run = Some(run);
        self
    }

    fn filter_subject(&self, prefix: &str) -> String {
        let graph = self.graph.as_deref().map_or_else(|| "*".to_owned(), crate::subject_token);
        let run = self.run.map_or_else(|| "*".to_owned(), |run| run.to_string());
        format!("{prefix}.{graph}.{run}")
    }
}

/// Reads the events a [`NatsSink`](crate::NatsSink) publishes, from any host.
///
/// ```no_run
/// # async fn demo() -> Result<(), dashflow_nats::Error> {
/// use dashflow_nats::{Follow, NatsConsumer, StartAt};
/// use futures::StreamExt;
///
/// let consumer = NatsConsumer::connect("nats://127.0.0.1:4222").await?;
/// let mut events = consumer.follow(Follow::all().start_at(StartAt::Beginning)).await?;
/// while let Some(received) = events.next().await {
///     let received = received?;
///     println!("{} {} {:?}", received.publisher.name, received.graph, received.event.kind);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct NatsConsumer {
    js: jetstream::Context,
    stream: String,
    prefix: String,
}

impl NatsConsumer {
    /// Connects to the server at `url`, reading the stream `dashflow-events` (subjects
    /// `dashflow.events.>`).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_to(url, crate::DEFAULT_STREAM, crate::DEFAULT_PREFIX).await
    }

    /// Connects to the server at `url`, reading `stream`, whose subjects start with `prefix`
    /// (as the sink was configured).
    pub async fn connect_to(url: &str, stream: &str, prefix: &str) -> Result<Self> {
        crate::check_prefix(prefix)?;
        let client = crate::connect(url, "dashflow consumer").await?;
        let js = jetstream::new(client);
        Ok(Self { js, stream: stream.to_owned(), prefix: prefix.to_owned() })
    }

    /// Creates the stream when it does not exist yet, as a [`NatsSink`](crate::NatsSink)
    /// would, so that a consumer started before any publisher can wait for them. [`follow`](
    /// Self::follow) alone never creates anything (a missing stream is an error).
    pub async fn ensure_stream(&self) -> Result<()> {
        crate::open_stream(&self.js, &self.stream, &self.prefix).await
    }

    /// The events `follow` selects, in stream order, live: the stream waits for new events
    /// once it has delivered the stored ones. Reconnects by itself. Each run's events arrive
    /// in the order the run emitted them, except after a publisher re-sent some (see
    /// [`NatsSink`](crate::NatsSink)): their [`Received::seq`] restores it.
    pub async fn follow(&self, follow: Follow) -> Result<Events> {
        let consume = |reason: String| Error::Consume { stream: self.stream.clone(), reason };
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|error| consume(format!("{error} (a stream exists once a publisher has started with it)")))?;
        let deliver_policy = match follow.start {
            StartAt::Beginning => DeliverPolicy::All,
            StartAt::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            StartAt::Time(at) => DeliverPolicy::ByStartTime { start_time: at.into() },
            StartAt::New => DeliverPolicy::New,
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: follow.filter_subject(&self.prefix),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|error| consume(error.to_string()))?;
        let messages = consumer.messages().await.map_err(|error| consume(error.to_string()))?;
        Ok(Events { messages, stream: self.stream.clone() })
    }
}

/// The events a [`NatsConsumer::follow`] selects (a [`Stream`]).
pub struct Events {
    messages: jetstream::consumer::pull::Ordered,
    stream: String,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("stream", &self.stream).finish_non_exhaustive()
    }
}

impl Stream for Events {
    type Item = Result<Received>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.messages).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(Error::Consume { stream: this.stream.clone(), reason: error.to_string() })))
            }
            Poll::Ready(Some(Ok(message))) => {
                let (sequence, pending) =
                    message.info().map(|info| (info.stream_sequence, info.pending)).unwrap_or((0, 0));
                Poll::Ready(Some(wire::decode(sequence, pending, &message.payload)))
            }
        }
    }
}
