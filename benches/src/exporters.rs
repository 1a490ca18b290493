//! The exporters B1 and B3 are measured with, alone (the `/otel` and `/nats` rows of the
//! criterion benches) or next to the default observers (`benches/examples/profile.rs`).

use std::hint::black_box;

use dashflow::nats::{NatsGuard, NatsSink};
use dashflow::otel::opentelemetry_sdk::error::OTelSdkResult;
use dashflow::otel::opentelemetry_sdk::trace::{SpanData, SpanExporter};
use dashflow::otel::{OtelGuard, OtelSink};

/// The OpenTelemetry exporter of the `/otel` rows: spans are built and handed over, then
/// dropped, so the rows measure what a run and the sink's thread cost without a collector.
#[derive(Debug)]
pub struct DiscardSpans;

impl SpanExporter for DiscardSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

/// The OpenTelemetry sink exporting to [`DiscardSpans`].
pub fn otel_sink() -> Result<(OtelSink, OtelGuard), String> {
    OtelSink::builder()
        .start_with_exporter(|| Ok(DiscardSpans))
        .map_err(|error| format!("the OpenTelemetry sink: {error}"))
}

/// The stream of the NATS rows, kept to its newest [`BENCH_STREAM_LIMIT`] events.
pub const BENCH_STREAM: &str = "dashflow-bench";

/// Events the NATS rows' stream keeps: enough for a run of the rows, bounded so that
/// repeated bench runs do not fill the server's disk.
pub const BENCH_STREAM_LIMIT: i64 = 100_000;

/// The NATS sink publishing to the server at `url`, on [`BENCH_STREAM`] (created with its
/// limit unless it exists) under the subject prefix `dashflow.bench`.
pub fn nats_sink(url: &str) -> Result<(NatsSink, NatsGuard), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("a runtime to create the NATS bench stream: {error}"))?;
    runtime.block_on(limited_stream(url)).map_err(|error| format!("the NATS bench stream at {url}: {error}"))?;
    NatsSink::builder(url)
        .stream(BENCH_STREAM)
        .subject_prefix("dashflow.bench")
        .start()
        .map_err(|error| format!("the NATS sink: {error}"))
}

/// Creates [`BENCH_STREAM`], holding at most the newest [`BENCH_STREAM_LIMIT`] events, unless
/// it exists.
async fn limited_stream(url: &str) -> Result<(), String> {
    let client = async_nats::connect(url).await.map_err(|error| error.to_string())?;
    let config = async_nats::jetstream::stream::Config {
        name: BENCH_STREAM.to_owned(),
        subjects: vec!["dashflow.bench.>".to_owned()],
        max_messages: BENCH_STREAM_LIMIT,
        ..Default::default()
    };
    async_nats::jetstream::new(client).get_or_create_stream(config).await.map(drop).map_err(|error| error.to_string())
}
