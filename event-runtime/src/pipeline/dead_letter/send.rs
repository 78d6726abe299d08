//! Dead-lettering: what failed for good, and records no handler can take, go to a dead-letter
//! topic with their exact bytes; only once that publish succeeded is the event dropped.

use axum::body::Bytes;
use futures::future::BoxFuture;
use serde_json::Value;

use crate::handler::delivery::partition_key;
use crate::handler::registry::Target;
use crate::pipeline::dead_letter::letter::DeadLetter;
use crate::pipeline::record::RecordMeta;
use crate::pipeline::retry::Failure;
use crate::pipeline::route::{target_dlq, target_topic};
use crate::pipeline::run::Pending;
use crate::pipeline::Runtime;
use crate::transport::dapr::StateError;
use crate::transport::outgoing::{OutgoingEvent, PublishError};
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
    let attempts = failures.last().map_or(1, |f| f.attempt);
    let reason = if permanent {
        format!("permanent failure: {err}")
    } else if rt.registry.handlers[h].def.retry.is_empty() {
        format!("failed with no retries configured: {err}")
    } else {
        format!("retries exhausted after {attempts} attempts: {err}")
    };
    let key = partition_key(&pending.ce, pending.key_hint.clone());
    give_up(
        rt,
        h,
        &pending.ce,
        &pending.origin_topic,
        key,
        failures,
        reason,
        permanent,
    )
}

/// Dead-letters an event of handler `h` to the handler's dead-letter topic, with `reason`:
/// the one letter of every way a handler's event can end there.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one letter, each named"
)]
pub(crate) fn give_up<'r>(
    rt: &'r Runtime,
    h: usize,
    ce: &CloudEvent,
    origin_topic: &str,
    partition_key: Option<String>,
    failures: Vec<Failure>,
    reason: String,
    permanent: bool,
) -> BoxFuture<'r, Status> {
    let handler = &rt.registry.handlers[h];
    let mut letter =
        DeadLetter::new(ce, &handler.pubsub, origin_topic, partition_key).with_failures(failures);
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

/// Publishes `letter` to `dlq`, signed by this app, carrying `trace` (the failed event's,
/// continued).
///
/// A letter the broker refuses for good (larger than `EVENTS_MAX_MESSAGE_BYTES`, mostly) goes
/// out again pointing at its record, which is kept in the state store; when the store refuses
/// the record too, the letter goes out without it, saying so (the record stays where the broker
/// holds it). Only what may pass on a later try, an outage, is answered RETRY.
pub(crate) async fn publish_dead_letter(
    rt: &Runtime,
    dlq: &str,
    pubsub: &str,
    letter: DeadLetter,
    trace: TraceContext,
) -> Status {
    let send = |letter: DeadLetter| {
        let letter = letter.signed(&rt.app_id, &rt.signing_key);
        let trace = trace.clone();
        async move {
            let out = OutgoingEvent::from_event(pubsub, dlq, &rt.app_id, &letter)?;
            rt.publisher.send(out.with_trace(trace)).await?;
            Ok::<_, PublishError>(letter)
        }
    };
    let refused = match send(letter.clone()).await {
        Ok(sent) => return dead_lettered(rt, dlq, &sent),
        Err(e) if e.is_transient() => return redeliver(&e),
        Err(e) => e,
    };
    tracing::warn!(error = %refused, "the dead letter was refused; it goes out pointing at its record instead");
    let smaller = match park_record(rt, letter).await {
        Ok(smaller) => smaller,
        Err(outage) => {
            tracing::error!(error = %outage, "cannot keep the record of a dead letter; asking the broker to redeliver");
            return Status::Retry;
        }
    };
    match send(smaller).await {
        Ok(sent) => dead_lettered(rt, dlq, &sent),
        // Refused even without the record: the dead-letter topic itself is unusable (its name,
        // the sidecar's scopes), a fault of configuration that nothing here can mend.
        Err(e) => redeliver(&e),
    }
}

fn dead_lettered(rt: &Runtime, dlq: &str, letter: &DeadLetter) -> Status {
    rt.metrics
        .dead_letter(letter.handler.as_deref().unwrap_or(""));
    // An event of the delivery's span (with `otel`, a span event).
    tracing::warn!(dlq, reason = %letter.reason, event_id = %letter.event.id, "event dead-lettered");
    Status::Drop
}

fn redeliver(e: &PublishError) -> Status {
    tracing::error!(error = %e, "dead-letter publish failed; asking the broker to redeliver");
    Status::Retry
}

/// `letter` without its record: the record kept in the state store under a key named for its
/// content, and the letter pointing at it; or, when the store refuses it for good (larger than
/// the sidecar takes, say), the letter saying the record was left out. `Err` is an outage of
/// the store.
async fn park_record(rt: &Runtime, mut letter: DeadLetter) -> Result<DeadLetter, StateError> {
    let Some(bytes) = letter.event.record_bytes() else {
        return Ok(letter);
    };
    letter.event.record = None;
    let key = format!(
        "{}|dead-record|{}",
        rt.app_id,
        cloudevent::record_digest(&bytes)
    );
    let store = &rt.settings.state_store;
    match rt.publisher.park(store, &key, &bytes).await {
        Ok(()) => {
            letter.event.record_ref = Some(key);
            letter.event.data = Value::Null;
        }
        Err(e) if e.is_refusal() => {
            letter.event.data = Value::Null;
            letter.reason = format!(
                "{}; the record ({} bytes, digest {}) was too large for the letter and the \
                 state store refused it ({e}): read it from the broker",
                letter.reason,
                bytes.len(),
                cloudevent::record_digest(&bytes)
            );
        }
        Err(e) => return Err(e),
    }
    Ok(letter)
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
    let mut letter = DeadLetter::new(&ce, pubsub, topic, meta.key.clone())
        .reason(format!("undecodable delivery: {reason}"));
    letter.event.record_at = meta.coordinates();
    let trace = TraceContext::current().unwrap_or_default();
    publish_dead_letter(rt, target_dlq(rt, target), pubsub, letter, trace).await
}
