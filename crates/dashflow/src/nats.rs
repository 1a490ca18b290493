//! Run events on a NATS JetStream stream (feature `nats`): [`NatsSink`] publishes every event
//! of the runs it hears (JSON, schema version 2: [`wire`]), and with
//! [`NatsBuilder::state_deltas`] each run's starting state and merged updates; [`NatsConsumer`]
//! follows the stream from any host, live or from any point, as typed events and deltas, each
//! run's in order.
//!
//! ```no_run
//! # async fn demo(app: dashflow::CompiledGraph<MyState>) -> Result<(), Box<dyn std::error::Error>> {
//! use dashflow::nats::NatsSink;
//!
//! let (sink, _guard) = NatsSink::builder("nats://127.0.0.1:4222").start()?;
//! let app = app.with_callback(sink);
//! app.invoke(MyState::default(), dashflow::RunConfig::new()).await?;
//! // `_guard` publishes what is left when dropped; `dashflow tail --nats URL` follows.
//! # Ok(()) }
//! # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, dashflow::GraphState)]
//! # struct MyState { n: u32 }
//! ```

pub use dashflow_nats::{
    DEFAULT_INTEREST, DEFAULT_PREFIX, DEFAULT_STREAM, Delta, Error, Events, Follow, Item, NatsBuilder, NatsConsumer,
    NatsGuard, NatsSink, NatsStats, Publisher, Received, SCHEMA_VERSION, StartAt, subject_token, wire,
};
