//! A batch handler's bulk delivery: every entry it takes, in one call, and each entry's result
//! as that entry's status. An entry it does not take (a record that is no event of its type)
//! goes the usual way on its own, and so does a failed entry: its retries and dead letter are a
//! single delivery's.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use tracing::Instrument as _;

use crate::event::outcome::Outcome;
use crate::handler::batch::each;
use crate::handler::delivery::Delivery;
use crate::handler::registry::Target;
use crate::pipeline::record::{entry_meta, entry_record, with_broker_meta, MetaName, KEY};
use crate::pipeline::retry::RetryState;
use crate::pipeline::route::resolve;
use crate::pipeline::run::{panic_message, record, run_with_retries, Pending};
use crate::pipeline::{deliver_entry, Runtime};
use crate::wire::bulk::{BulkEntry, BulkRequest, BulkResponse, EntryStatus, Status};
use crate::wire::cloudevent::CloudEvent;

/// The batch handler of a topic route: the topic's one handler, when it takes batches.
pub(crate) fn batch_handler(rt: &Runtime, target: Target) -> Option<usize> {
    let Target::Topic(t) = target else {
        return None;
    };
    let sub = &rt.registry.topics[t];
    match sub.handlers[..] {
        [h] if !sub.is_retry && rt.registry.handlers[h].def.call_batch.is_some() => Some(h),
        _ => None,
    }
}

/// Runs handler `h` once over the entries of `batch` it takes; answers each entry.
pub(crate) async fn deliver_batch(
    rt: &Arc<Runtime>,
    target: Target,
    h: usize,
    batch: BulkRequest,
) -> BulkResponse {
    let n = batch.entries.len();
    let mut ids = Vec::with_capacity(n);
    let mut statuses = vec![Status::Retry; n];
    let mut taken = Vec::with_capacity(n);
    for (i, entry) in batch.entries.into_iter().enumerate() {
        ids.push(entry.entry_id.clone().unwrap_or_else(|| i.to_string()));
        match take(rt, target, h, &entry) {
            Some(pending) => taken.push((i, pending)),
            None => statuses[i] = Box::pin(deliver_entry(rt, target, entry)).await,
        }
    }
    if !taken.is_empty() {
        let span = tracing::info_span!(
            "batch",
            handler = rt.registry.handlers[h].def.name,
            events = taken.len()
        );
        run_batch(rt, h, taken, &mut statuses)
            .instrument(span)
            .await;
    }
    let statuses = ids
        .into_iter()
        .zip(statuses)
        .map(|(entry_id, status)| EntryStatus { entry_id, status })
        .collect();
    BulkResponse { statuses }
}

/// The entry as a first run of handler `h`, when it holds an event `h` takes.
fn take(rt: &Runtime, target: Target, h: usize, entry: &BulkEntry) -> Option<Pending> {
    let def = rt.registry.handlers[h].def;
    let record = entry_record(entry.event.as_deref()?).ok()?;
    let meta = |name: &MetaName| entry_meta(&entry.metadata, name);
    let (mut ce, decoded) = match def.read_typed.and_then(|read| read(&record)) {
        Some((ce, event)) => (ce, Some(event)),
        None => (CloudEvent::from_record(record, def.raw_payload).ok()?, None),
    };
    with_broker_meta(&mut ce, meta);
    if resolve(rt, target, &ce, &RetryState::first()).ok()? != h {
        return None;
    }
    Some(Pending {
        ce: Arc::new(ce),
        decoded,
        origin_topic: rt.handlers[h].topic.clone(),
        key_hint: meta(&KEY).map(str::to_owned),
        position: None,
        ran: None,
    })
}

/// One call of the batch handler over `taken`, then each entry's status: SUCCESS or DROP as
/// it says, and a failure retried or dead-lettered as a single delivery's would be.
async fn run_batch(
    rt: &Arc<Runtime>,
    h: usize,
    mut taken: Vec<(usize, Pending)>,
    statuses: &mut [Status],
) {
    let _in_flight = rt.metrics.in_flight();
    let def = rt.registry.handlers[h].def;
    let hrt = &rt.handlers[h];
    let deliveries: Vec<Delivery> = taken
        .iter_mut()
        .map(|(_, p)| Delivery {
            event: p.ce.clone(),
            topic: p.origin_topic.clone(),
            attempt: 1,
            partition_key: p.key_hint.clone(),
            decoded: std::cell::Cell::new(p.decoded.take()),
            handler: def,
            app: rt.clone(),
            h,
        })
        .collect();
    let started = tokio::time::Instant::now();
    let outcomes = call(rt, h, deliveries).await;
    hrt.metrics.handler_duration(started.elapsed());
    let missing = || Outcome::retry("the batch handler returned no result for this event");
    let outcomes = outcomes.into_iter().chain(std::iter::repeat_with(missing));
    for ((i, mut pending), outcome) in taken.into_iter().zip(outcomes) {
        hrt.metrics.delivery(outcome.kind());
        let error = match &outcome {
            Outcome::Retry(e) | Outcome::DeadLetter(e) => Some(e.to_string()),
            Outcome::Drop(reason) => Some(reason.clone()),
            Outcome::Success => None,
        };
        record(rt, def.name, &pending.ce, 1, outcome.kind(), error);
        statuses[i] = match outcome {
            Outcome::Success => Status::Success,
            Outcome::Drop(reason) => {
                tracing::info!(%reason, event_id = %pending.ce.id, "handler dropped the event");
                Status::Drop
            }
            failed => {
                pending.ran = Some(failed);
                run_with_retries(rt.clone(), h, pending, RetryState::first()).await
            }
        };
    }
}

/// The batch adapter's call, with the handler's timeout and its panics caught: either fails
/// every event of the batch (to be retried).
async fn call(rt: &Runtime, h: usize, deliveries: Vec<Delivery>) -> Vec<Outcome> {
    let def = rt.registry.handlers[h].def;
    let n = deliveries.len();
    let Some(call) = def.call_batch else {
        return each(Outcome::retry("not a batch handler"), n);
    };
    let limit = def
        .timeout_secs
        .map(Duration::from_secs)
        .unwrap_or(rt.settings.handler_timeout);
    let run = AssertUnwindSafe(call(deliveries)).catch_unwind();
    match tokio::time::timeout(limit, run).await {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(panic)) => each(
            Outcome::retry(format!("handler panicked: {}", panic_message(&*panic))),
            n,
        ),
        Err(_) => each(
            Outcome::retry(format!("handler timed out after {} s", limit.as_secs_f64())),
            n,
        ),
    }
}
