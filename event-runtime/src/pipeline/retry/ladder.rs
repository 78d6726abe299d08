//! The retry ladder: its tiers and topic names, publishing a delayed retry to a tier, and
//! holding a retry until its hop is over.

use std::time::Duration;

use axum::body::Bytes;
use futures::future::BoxFuture;

use crate::handler::delivery::partition_key;
use crate::pipeline::dead_letter::give_up;
use crate::pipeline::retry::bookkeeping::RetryState;
use crate::pipeline::run::Pending;
use crate::pipeline::Runtime;
use crate::transport::outgoing::OutgoingEvent;
use crate::wire::bulk::Status;
use crate::wire::cloudevent::CloudEvent;
use crate::wire::trace::TraceContext;

pub use crate::wire::ladder::{retry_tier, retry_topic, RETRY_TIERS};

/// Schedules the next attempt of a delayed retry, due in `delay` seconds.
pub(crate) fn schedule_retry<'r>(
    rt: &'r Runtime,
    h: usize,
    pending: &Pending,
    retry: &mut RetryState,
    delay: u64,
) -> BoxFuture<'r, Status> {
    retry.attempt += 1;
    retry.due_ms = Some(crate::clock::now_ms() + delay * 1000);
    retry.handler = Some(rt.handlers[h].name.clone());
    retry.version = crate::event::version::version_of(&pending.ce);
    publish_retry(rt, h, pending, retry, delay)
}

/// Publishes a retry to the tier of `wait` seconds (see [`RETRY_TIERS`]):
/// the event's record, byte for byte, with its bookkeeping signed beside it.
pub(crate) fn publish_retry<'r>(
    rt: &'r Runtime,
    h: usize,
    pending: &Pending,
    retry: &RetryState,
    wait: u64,
) -> BoxFuture<'r, Status> {
    let ce = &pending.ce;
    let tier = retry_tier(wait);
    let mut retry = retry.clone();
    retry.hop_due_ms = Some(crate::clock::now_ms() + tier * 1000);
    retry.origin_topic = Some(pending.origin_topic.to_string());
    // The retry continues the event's trace as a child span (with `otel`, of the delivery's).
    let trace = TraceContext::continued(ce.traceparent.as_deref(), ce.tracestate.as_deref());
    let key = partition_key(ce, pending.key_hint.clone());
    let out = retry_record(rt, &retry, ce, &ce.record_or_envelope(), key, tier, &trace);
    // An event of the delivery's span (with `otel`, a span event).
    tracing::info!(
        handler = %rt.handlers[h].name,
        attempt = retry.attempt,
        due_ms = retry.due_ms.unwrap_or(0),
        tier,
        "retry scheduled"
    );
    // What a retry the broker refuses for good (larger than it takes) needs to be dead-lettered.
    let (ce, origin_topic) = (pending.ce.clone(), pending.origin_topic.clone());
    let key = out.partition_key.clone();
    Box::pin(async move {
        match rt.publisher.send(out).await {
            Ok(()) => Status::Success,
            Err(e) if e.is_transient() => {
                tracing::error!(error = %e, "could not schedule the retry; asking the broker to redeliver");
                Status::Retry
            }
            Err(e) => {
                let reason = format!("the delayed retry cannot be scheduled: {e}");
                give_up(rt, h, &ce, &origin_topic, key, retry.failures, reason, true).await
            }
        }
    })
}

/// The message of the retry ladder's tier of `tier` seconds that carries `record` (the event
/// `ce` as it arrived, byte for byte) with its bookkeeping `state`, signed beside it.
pub(crate) fn retry_record(
    rt: &Runtime,
    state: &RetryState,
    ce: &CloudEvent,
    record: &[u8],
    partition_key: Option<String>,
    tier: u64,
    trace: &TraceContext,
) -> OutgoingEvent {
    let sealed = state.seal(&rt.app_id, &rt.signing_key, ce, record, Some(trace));
    OutgoingEvent::record(
        rt.publisher.default_pubsub(),
        &retry_topic(&rt.app_id, tier),
        &ce.id,
        &ce.ty,
        partition_key,
        None,
        Bytes::from(sealed),
    )
}

/// Waits until `due_ms`, at most `max_hold`; false when the delivery should be answered RETRY
/// (not yet due, or shutting down) so the broker redelivers it later.
pub(crate) async fn hold_until(rt: &Runtime, due_ms: u64) -> bool {
    let now = crate::clock::now_ms();
    if due_ms <= now {
        return true;
    }
    let wait = Duration::from_millis(due_ms - now);
    if wait > rt.settings.max_hold {
        sleep_unless_shutdown(rt, rt.settings.max_hold).await;
        return false;
    }
    sleep_unless_shutdown(rt, wait).await
}

/// Sleeps; false when shutdown began first.
pub(crate) async fn sleep_unless_shutdown(rt: &Runtime, d: Duration) -> bool {
    let mut shutdown = rt.shutdown.subscribe();
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.wait_for(|stopping| *stopping) => false,
    }
}
