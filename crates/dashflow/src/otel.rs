//! Runs as OpenTelemetry traces (feature `otel`): [`OtelSink`] exports each run as a span,
//! its supersteps and task attempts as children, over OTLP, from a thread of its own.
//!
//! ```no_run
//! # async fn demo(app: dashflow::CompiledGraph<MyState>) -> Result<(), Box<dyn std::error::Error>> {
//! use dashflow::otel::{OtelSink, RunConfigOtelExt};
//! use dashflow::RunConfig;
//!
//! let (sink, _guard) = OtelSink::builder().endpoint("http://127.0.0.1:4317").start()?;
//! let app = app.with_callback(sink);
//! // A run that joins the caller's trace: its span is a child of the caller's span.
//! # let caller = dashflow::otel::opentelemetry::trace::SpanContext::NONE;
//! let config = RunConfig::thread("ticket-42").trace_parent(&caller)?;
//! app.invoke(MyState::default(), config).await?;
//! # Ok(()) }
//! # #[derive(Clone, Default, serde::Serialize, serde::Deserialize, dashflow::GraphState)]
//! # struct MyState { n: u32 }
//! ```
//!
//! See the `dashflow-otel` crate for the span names and attributes.

use dashflow_executor::RunConfig;
pub use dashflow_otel::{
    Error, OtelBuilder, OtelGuard, OtelSink, OtelStats, TRACE_PARENT_TAG_PREFIX, attributes, events, opentelemetry,
    opentelemetry_sdk, parse_trace_parent, trace_parent_tag,
};

/// Joins a run to a caller's trace.
pub trait RunConfigOtelExt: Sized {
    /// The run's span becomes a child of `parent` (the caller's current span, say
    /// `Context::current().span().span_context()`), in its trace. Carried as a tag
    /// ([`trace_parent_tag`]); fails when `parent` is not a valid span context.
    fn trace_parent(self, parent: &opentelemetry::trace::SpanContext) -> Result<Self, Error>;
}

impl RunConfigOtelExt for RunConfig {
    fn trace_parent(self, parent: &opentelemetry::trace::SpanContext) -> Result<Self, Error> {
        Ok(self.tag(trace_parent_tag(parent)?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    #[test]
    fn trace_parent_adds_the_callers_span_as_a_tag_and_refuses_an_invalid_one() {
        let caller = SpanContext::new(
            TraceId::from(5_u128),
            SpanId::from(6_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let config = RunConfig::new().tag("nightly").trace_parent(&caller).unwrap();
        assert_eq!(config.tags.len(), 2);
        let parsed = parse_trace_parent(config.tags[1].strip_prefix(TRACE_PARENT_TAG_PREFIX).unwrap()).unwrap();
        assert_eq!((parsed.trace_id(), parsed.span_id()), (caller.trace_id(), caller.span_id()));
        assert!(RunConfig::new().trace_parent(&SpanContext::NONE).is_err());
    }
}
