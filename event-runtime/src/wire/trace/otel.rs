//! OpenTelemetry (feature `otel`): the delivery's span joins the trace that arrived, and what is
//! published carries the current span's context, both in W3C Trace Context, Dapr's format
//! (whatever global propagator the app set). Only the OpenTelemetry API is used: the app brings
//! the SDK and its exporter.

use std::str::FromStr as _;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry::Context;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{parse, TraceContext, TraceParent};

/// Makes `span` (a delivery's) the child of the context that arrived with its event, when one
/// did. Without an OpenTelemetry layer in the subscriber this does nothing.
pub(crate) fn set_parent(
    span: &tracing::Span,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) {
    let Some(tp) = traceparent.and_then(parse) else {
        return;
    };
    // A `tracestate` that does not parse is dropped, as the specification asks.
    let state = tracestate
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    let remote = SpanContext::new(
        TraceId::from_bytes(tp.trace_id),
        SpanId::from_bytes(tp.parent_id),
        TraceFlags::new(tp.flags & 0x01),
        true,
        state,
    );
    // `LayerNotFound`: the app records no OpenTelemetry spans; the delivery runs all the same.
    let _ = span.set_parent(Context::new().with_remote_span_context(remote));
}

/// The current span's context, when OpenTelemetry records it (and it is valid).
pub(crate) fn current() -> Option<TraceContext> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    let tp = TraceParent {
        version: 0,
        trace_id: sc.trace_id().to_bytes(),
        parent_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8() & 0x01,
    };
    let state = sc.trace_state().header();
    Some(TraceContext {
        traceparent: Some(tp.to_string()),
        tracestate: (!state.is_empty()).then_some(state),
    })
}
