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

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn with_otel(f: impl FnOnce()) {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
    }

    #[test]
    fn the_current_span_is_the_child_of_what_arrived_and_names_itself() {
        with_otel(|| {
            let span = tracing::info_span!("delivery");
            set_parent(&span, Some(TP), Some("a=1,b=2"));
            let _entered = span.enter();
            let current = current().expect("a span OpenTelemetry records");
            let tp = parse(current.traceparent.as_deref().unwrap()).unwrap();
            assert_eq!(tp.trace_id, parse(TP).unwrap().trace_id);
            assert_ne!(tp.parent_id, parse(TP).unwrap().parent_id);
            let own = span.context().span().span_context().span_id().to_bytes();
            assert_eq!(tp.parent_id, own);
            assert_eq!(current.tracestate.as_deref(), Some("a=1,b=2"));
            // What is published inside it goes on from it, whatever arrived.
            let continued = TraceContext::continued(Some(TP), None);
            assert_eq!(continued, current);
        });
    }

    #[test]
    fn without_a_trace_or_a_layer_nothing_is_current() {
        assert_eq!(current(), None);
        with_otel(|| {
            let span = tracing::info_span!("delivery");
            set_parent(&span, Some("junk"), Some("a=1"));
            let _entered = span.enter();
            // A new root: valid, with no tracestate.
            let current = current().unwrap();
            assert_eq!(current.tracestate, None);
        });
    }
}
