//! The crate's error type.

/// What can go wrong setting up the exporter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A trace context could not be read or written as a W3C `traceparent`.
    #[error("invalid trace parent `{value}`: {reason}")]
    InvalidTraceParent {
        /// The value (or the context's ids).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The OTLP exporter could not be built (a malformed endpoint, say).
    #[error("cannot build the OTLP exporter for `{endpoint}`")]
    Exporter {
        /// The endpoint configured.
        endpoint: String,
        /// Why.
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The exporter's thread or its runtime could not be started.
    #[error("cannot start the OpenTelemetry exporter's thread")]
    Start(#[source] std::io::Error),
    /// The exporter's thread could not run at the niceness asked for
    /// ([`OtelBuilder::niceness`](crate::OtelBuilder::niceness)): outside -20..=19, refused
    /// by the operating system (raising priority needs `CAP_SYS_NICE`), or not on Linux.
    #[error("cannot run the OpenTelemetry exporter's thread at niceness {requested}")]
    Niceness {
        /// The niceness asked for.
        requested: i32,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// A setting is out of range.
    #[error("invalid OpenTelemetry exporter setting: {0}")]
    InvalidConfig(&'static str),
    /// The exporter's thread has stopped (its guard was dropped).
    #[error("the OpenTelemetry exporter has stopped")]
    Stopped,
    /// Spans could not be exported (the collector refused them or could not be reached).
    #[error("exporting {spans} spans failed: {message}")]
    Export {
        /// How many spans were lost.
        spans: usize,
        /// The exporter's message.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
