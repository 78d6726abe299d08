//! Dead-lettering: what failed for good, and records no handler can take, go to a dead-letter
//! topic with their exact bytes; only once that publish succeeded is the event dropped.

use axum::body::Bytes;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::handler::delivery::partition_key;
use crate::handler::registry::Target;
use crate::pipeline::dlq::DeadLetter;
use crate::pipeline::record::RecordMeta;
use crate::pipeline::route::{target_dlq, target_topic};
use crate::pipeline::run::Pending;
use crate::pipeline::seal::Failure;
use crate::pipeline::Runtime;
use crate::transport::outgoing::OutgoingEvent;
use crate::wire::bulk::Status;
use crate::wire::cloudevent::{self, CloudEvent};
use crate::wire::trace::TraceContext;

// The failure paths build their messages in plain functions and return boxed futures, so that
// none of what they build is kept in `run_with_retries`' future, which every delivery allocates.

/// Dead-letters an event whose handler failed for good (or ran out of retries).
pub(crate) fn dead_letter_failed<'r>(
    rt: &'r Runtime,
    h: usize,
    pending: &Pending,
    failures: Vec<Failure>,
    err: &str,
    permanent: bool,
) -> BoxFuture<'r, Status> {
    let handler = &rt.registry.handlers[h];
    let attempts = failures.last().map_or(1, |f| f.attempt);
    let reason = if permanent {
        format!("permanent failure: {err}")
    } else if handler.def.retry.is_empty() {
        format!("failed with no retries configured: {err}")
    } else {
        format!("retries exhausted after {attempts} attempts: {err}")
    };
    let ce = &pending.ce;
    let key = partition_key(ce, pending.key_hint.clone());
    let mut letter =
        DeadLetter::new(ce, &handler.pubsub, &pending.origin_topic, key).with_failures(failures);
    letter.handler = Some(rt.handlers[h].name.clone());
    letter.permanent = permanent;
    let trace = TraceContext::continued(ce.traceparent.as_deref(), ce.tracestate.as_deref());
    Box::pin(publish_dead_letter(
        rt,
        &handler.dlq,
        &handler.pubsub,
        letter.reason(reason),
        trace,
    ))
}

/// Publishes `letter` to `dlq`, carrying `trace` (the failed event's, continued).
pub(crate) async fn publish_dead_letter(
    rt: &Runtime,
    dlq: &str,
    pubsub: &str,
    letter: DeadLetter,
    trace: TraceContext,
) -> Status {
    let out = match OutgoingEvent::from_event(pubsub, dlq, &rt.app_id, &letter) {
        Ok(out) => out.with_trace(trace),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the dead letter; asking for redelivery");
            return Status::Retry;
        }
    };
    match rt.publisher.send(out).await {
        Ok(()) => {
            rt.metrics
                .dead_letter(letter.handler.as_deref().unwrap_or(""));
            // An event of the delivery's span (with `otel`, a span event).
            tracing::warn!(dlq, reason = %letter.reason, event_id = %letter.event.id, "event dead-lettered");
            Status::Drop
        }
        Err(e) => {
            tracing::error!(error = %e, "dead-letter publish failed; asking the broker to redeliver");
            Status::Retry
        }
    }
}

/// A record that is no event a handler can take: dead-letter its exact bytes, with the reason
/// and where it came from.
pub(crate) async fn dead_letter_undecodable(
    rt: &Runtime,
    target: Target,
    reason: &str,
    record: Bytes,
    meta: &RecordMeta,
) -> Status {
    let (pubsub, topic) = target_topic(rt, target);
    tracing::warn!(%topic, "undecodable delivery: {reason}");
    // Deterministic, so a redelivered record yields the same dead letter, not a second one; and
    // distinct for distinct records, even of the same bytes.
    let mut name = meta.coordinates().unwrap_or_default().into_bytes();
    name.push(b'\n');
    name.extend_from_slice(&record);
    let mut ce = CloudEvent::new(
        cloudevent::record_digest(&name),
        "event-runtime.undecodable",
        "",
        Value::Null,
    )
    .with_record(record);
    ce.topic = Some(topic.to_owned());
    ce.pubsubname = Some(pubsub.to_owned());
    let letter = DeadLetter::new(&ce, pubsub, topic, meta.key.clone())
        .reason(format!("undecodable delivery: {reason}"));
    let trace = TraceContext::current().unwrap_or_default();
    publish_dead_letter(rt, target_dlq(rt, target), pubsub, letter, trace).await
}
