//! The crate's error type.

/// What can go wrong publishing or following events.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The NATS server could not be reached.
    #[error("cannot connect to NATS at `{url}`")]
    Connect {
        /// The URL given.
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// JetStream refused to create or find the stream (is JetStream enabled on the server,
    /// `nats-server -js`?).
    #[error("cannot open JetStream stream `{stream}` (subjects `{subjects}`): {reason}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// Its subjects.
        subjects: String,
        /// JetStream's answer.
        reason: String,
    },
    /// A consumer of the stream could not be created or read.
    #[error("cannot read JetStream stream `{stream}`: {reason}")]
    Consume {
        /// The stream's name.
        stream: String,
        /// Why.
        reason: String,
    },
    /// A message of the stream is not a DashFlow message of a version this crate reads.
    #[error("message {stream_sequence} of the stream is not a DashFlow event: {reason}")]
    BadMessage {
        /// Its position in the stream.
        stream_sequence: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A state delta could not be read as the type asked for, or its publisher could not
    /// write it.
    #[error("the state delta of step {step} cannot be read: {reason}")]
    BadDelta {
        /// The step it belongs to.
        step: u64,
        /// Why.
        reason: String,
    },
    /// A message was written with a schema version this crate does not read.
    #[error(
        "message {stream_sequence} of the stream has schema version {version}; this reader knows versions 1 to {known}: upgrade the reader",
        known = crate::SCHEMA_VERSION
    )]
    UnknownVersion {
        /// Its position in the stream.
        stream_sequence: u64,
        /// The version it carries.
        version: u32,
    },
    /// The publisher's thread could not run at the niceness asked for
    /// ([`NatsBuilder::niceness`](crate::NatsBuilder::niceness)): outside -20..=19, refused by
    /// the operating system (raising priority needs `CAP_SYS_NICE`), or not on Linux.
    #[error("cannot run the NATS publisher's thread at niceness {requested}")]
    Niceness {
        /// The niceness asked for.
        requested: i32,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// A setting is out of range or malformed.
    #[error("invalid NATS setting: {0}")]
    InvalidConfig(String),
    /// The publisher's thread or runtime could not be started.
    #[error("cannot start the NATS publisher's thread")]
    Start(#[source] std::io::Error),
    /// The publisher has stopped (its guard was dropped).
    #[error("the NATS publisher has stopped")]
    Stopped,
    /// A flush or shutdown ran out of time with events not yet acknowledged.
    #[error("{unacknowledged} events were not acknowledged by JetStream within the limit")]
    Unacknowledged {
        /// How many.
        unacknowledged: u64,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
