//! A caller's trace context, carried to the exporter in a run's tags.
//!
//! A run reaches its sinks through its events; the one per-run value its `RunStarted` carries
//! is the run's tags (`RunConfig::tag`). So a run joins a caller's trace through a tag holding
//! the W3C trace context header (`traceparent=00-{trace id}-{span id}-{flags}`), which the
//! exporter reads when the run starts: the run's span becomes a child of the caller's span.
//! The tag is stored like any other (the run log's index lists it), which also finds a run
//! by its trace.

use std::sync::Arc;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

use crate::error::{Error, Result};

/// What a trace-parent tag starts with.
pub const TRACE_PARENT_TAG_PREFIX: &str = "traceparent=";

/// The tag that makes a run's span a child of `parent` (see the module docs): add it with
/// `RunConfig::tag`.
///
/// Fails with [`Error::InvalidTraceParent`] when `parent` is not a valid span context (an
/// all-zero trace or span id, as the no-op span has).
pub fn trace_parent_tag(parent: &SpanContext) -> Result<String> {
    if !parent.is_valid() {
        return Err(Error::InvalidTraceParent {
            value: format!("{:032x}-{:016x}", parent.trace_id(), parent.span_id()),
            reason: "the span context is not valid (no current span?)",
        });
    }
    Ok(format!(
        "{TRACE_PARENT_TAG_PREFIX}00-{:032x}-{:016x}-{:02x}",
        parent.trace_id(),
        parent.span_id(),
        parent.trace_flags()
    ))
}

/// Reads a W3C `traceparent` header value (version `00`).
pub fn parse_trace_parent(value: &str) -> Result<SpanContext> {
    let invalid = |reason| Error::InvalidTraceParent { value: value.to_owned(), reason };
    let mut parts = value.split('-');
    let (Some(version), Some(trace), Some(span), Some(flags), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("expected four fields: 00-{32 hex}-{16 hex}-{2 hex}"));
    };
    if version != "00" {
        return Err(invalid("only version 00 is known"));
    }
    let hex = |text: &str, len| text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return Err(invalid("expected 32, 16 and 2 hexadecimal digits"));
    }
    let trace_id = TraceId::from_hex(trace).map_err(|_| invalid("bad trace id"))?;
    let span_id = SpanId::from_hex(span).map_err(|_| invalid("bad span id"))?;
    let flags = u8::from_str_radix(flags, 16).map_err(|_| invalid("bad flags"))?;
    let context = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, TraceState::default());
    if !context.is_valid() {
        return Err(invalid("an all-zero trace or span id"));
    }
    Ok(context)
}

/// The caller's span a run's tags name, if one does. A malformed tag is ignored (with a
/// warning): a run is never failed by its telemetry.
pub(crate) fn trace_parent_from_tags(tags: &[Arc<str>]) -> Option<SpanContext> {
    let value = tags.iter().find_map(|tag| tag.strip_prefix(TRACE_PARENT_TAG_PREFIX))?;
    parse_trace_parent(value)
        .inspect_err(|error| tracing::warn!(%error, "run span not joined to the caller's trace"))
        .ok()
}
