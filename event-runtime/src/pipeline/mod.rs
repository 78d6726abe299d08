//! One delivery, from request body to Dapr's answer: decode, choose the handler, run it with
//! its retries and idempotency, dead-letter what cannot succeed.
//!
//! Every path ends in one of Dapr's three answers and none claims a success that did not happen:
//! SUCCESS once the handler succeeded (or a retry is safely scheduled in the broker), DROP once
//! the event is on the dead-letter topic (or the handler dropped it on purpose), RETRY whenever
//! the framework could not make the event safe (the broker then keeps it).
//!
//! The stages, a file each: [`record`] reads what arrived, [`route`] chooses the handler,
//! [`middleware`] passes the delivery through the handler's tower layers, if any, [`lanes`]
//! holds it until its partition key's lane is free (`concurrency = N`), [`run`] runs it (claim, timeout, panic capture, inline waits), [`retry`] decides what follows a
//! failure and puts a delayed retry on the app's retry ladder, with its signed bookkeeping,
//! [`dead_letter`] sends what failed for good, and is the dead letter's shape and its replay.

mod batch;
pub(crate) mod dead_letter;
pub(crate) mod lanes;
pub(crate) mod middleware;
pub(crate) mod order;
mod record;
pub(crate) mod retry;
mod route;
pub(crate) mod run;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde_json::Value;
use tokio::sync::watch;

use crate::config::Settings;
use crate::event::outcome::OutcomeKind;
use crate::handler::def::HandlerDef;
use crate::handler::delivery::{AppServices, StateMap};
use crate::handler::registry::{Registry, Target};
use crate::metrics::{HandlerMetrics, Metrics};
use crate::pipeline::dead_letter::dead_letter_undecodable;
use crate::pipeline::lanes::Lanes;
use crate::pipeline::middleware::DeliveryService;
use crate::pipeline::record::{bulk_request, deliver_record, entry_record, RecordMeta};
use crate::pipeline::retry::bookkeeping::{RetryState, SigningKey};
use crate::pipeline::run::process;
use crate::transport::idempotency::IdempotencyStore;
use crate::transport::kv::Kv;
use crate::transport::publish::Publisher;
use crate::wire::bulk::{BulkEntry, BulkResponse, EntryStatus, Status};
use crate::wire::cloudevent;

/// One run of a handler, as the test harness records it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Run {
    /// The handler's function name.
    pub handler: &'static str,
    /// CloudEvent id.
    pub event_id: String,
    /// CloudEvent type.
    pub event_type: String,
    /// Attempt number (1 = first delivery).
    pub attempt: u32,
    /// How it ended (compares with its label: `run.outcome == "success"`).
    pub outcome: OutcomeKind,
    /// The error, for failures.
    pub error: Option<String>,
    /// The event data.
    pub data: Value,
}

/// Everything a delivery needs, shared by every route of one app.
pub(crate) struct Runtime {
    pub registry: Registry,
    pub settings: Settings,
    pub state: Arc<StateMap>,
    pub publisher: Publisher,
    pub store: Arc<dyn IdempotencyStore>,
    /// Where the per-key order gates live (see [`order`]).
    pub gates: Kv,
    pub journal: Option<Arc<Mutex<Vec<Run>>>>,
    /// Held (not just subscribed to) so the channel stays open for as long as routes exist.
    pub shutdown: Arc<watch::Sender<bool>>,
    pub app_id: String,
    /// Signs and verifies retry bookkeeping.
    pub signing_key: SigningKey,
    pub metrics: Arc<Metrics>,
    /// Per handler (same index as `registry.handlers`): what every delivery to it would
    /// otherwise look up or format again.
    pub handlers: Vec<HandlerRuntime>,
}

/// What one handler's deliveries share, worked out once with the router.
pub(crate) struct HandlerRuntime {
    /// `module::name`.
    pub name: String,
    pub metrics: HandlerMetrics,
    /// The handler's topic, shared by its deliveries' `Delivery::topic` without a copy.
    pub topic: Arc<str>,
    /// Its lanes, when it runs at most `concurrency = N` deliveries at once.
    pub lanes: Option<Lanes>,
    /// Its pipeline wrapped in delivery layers, when any apply (see [`middleware`]).
    pub layered: Option<Mutex<DeliveryService>>,
    /// What this replica knows of its keys' order gates, when it keeps per-key order.
    pub order: Option<order::view::View>,
}

impl HandlerRuntime {
    /// One entry per registered handler.
    /// `layers` gives each handler's layers (see [`middleware::layered`]).
    pub(crate) fn all(
        registry: &Registry,
        settings: &Settings,
        metrics: &Metrics,
        mut layers: impl FnMut(&HandlerDef) -> Option<Mutex<DeliveryService>>,
    ) -> Vec<HandlerRuntime> {
        registry
            .handlers
            .iter()
            .map(|h| {
                let name = h.def.qualified_name();
                // A delivery waits for its lane at most as long as one run may take.
                let wait = h
                    .def
                    .timeout_secs
                    .map(Duration::from_secs)
                    .unwrap_or(settings.handler_timeout);
                HandlerRuntime {
                    metrics: metrics.handler(&name),
                    name,
                    topic: h.def.topic.into(),
                    lanes: h.def.concurrency.map(|n| Lanes::new(n, wait)),
                    layered: layers(h.def),
                    order: h.def.keeps_order().then(order::view::View::default),
                }
            })
            .collect()
    }
}

/// What Dapr is told about one delivery: one status, or one per entry of a bulk batch.
pub(crate) enum Answer {
    One(Status),
    Bulk(BulkResponse),
}

impl AppServices for Runtime {
    fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    fn state(&self) -> &StateMap {
        &self.state
    }

    fn pubsub(&self, h: usize) -> &str {
        &self.registry.handlers[h].pubsub
    }
}

/// A delivery whose body has been read. Every subscription is rawPayload, so the body is daprd's
/// wrapper around the broker record's bytes; the record is read here, whatever it holds. When the
/// handler is known before the record is read (on its own route, or on a topic it alone
/// consumes), the envelope and the handler's event are read in one pass, as a hand-written
/// handler reads them; anything else takes the general path.
///
/// The run's future is boxed: it is large, and the router's layers move it several times, which
/// costs more than the allocation (`benches/profile.sh`).
pub(crate) fn deliver(
    rt: Arc<Runtime>,
    target: Target,
    headers: HeaderMap,
    body: Bytes,
) -> BoxFuture<'static, Answer> {
    let meta = RecordMeta::from_headers(headers);
    let record = cloudevent::dapr_raw_record(&body).unwrap_or(body);
    // The handler is known from the route, or is the only one on the topic (which `resolve`
    // still checks against the event's type before running it).
    let handler = match target {
        Target::Handler(h) => Some(h),
        Target::Topic(t) => match &rt.registry.topics[t] {
            sub if sub.is_retry || sub.bulk.is_some() => None,
            sub => match sub.handlers[..] {
                [h] => Some(h),
                _ => None,
            },
        },
    };
    let one_pass = handler
        .and_then(|h| rt.registry.handlers[h].def.read_typed)
        .and_then(|read| read(&record));
    match one_pass {
        Some((mut ce, event)) => {
            meta.complete(&mut ce);
            let first = RetryState::first();
            // Only per-key order reads the record's partition and offset.
            let keeps_order = handler.is_some_and(|h| rt.handlers[h].order.is_some());
            let at = keeps_order.then(|| meta.position()).flatten();
            let event = Some(event);
            let ce = Arc::new(ce);
            process(rt, target, ce, first, (meta.key, at), event)
                .map(Answer::One)
                .boxed()
        }
        None => async move { handle_general(&rt, target, record, meta).await }.boxed(),
    }
}

/// A delivery the one-pass read did not take: a bulk batch, a retry, or a record read the
/// general way (its `data` left as raw text for the handler to decode).
async fn handle_general(
    rt: &Arc<Runtime>,
    target: Target,
    record: Bytes,
    meta: RecordMeta,
) -> Answer {
    if let Some(batch) = bulk_request(rt, target, &record) {
        if let Some(h) = batch::batch_handler(rt, target) {
            return Answer::Bulk(Box::pin(batch::deliver_batch(rt, target, h, batch)).await);
        }
        let mut statuses = Vec::with_capacity(batch.entries.len());
        for (i, entry) in batch.entries.into_iter().enumerate() {
            let entry_id = entry.entry_id.clone().unwrap_or_else(|| i.to_string());
            let status = deliver_entry(rt, target, entry).await;
            statuses.push(EntryStatus { entry_id, status });
        }
        return Answer::Bulk(BulkResponse { statuses });
    }
    Answer::One(deliver_record(rt, target, record, meta).await)
}

/// One entry of a bulk delivery, on its own: to its handler, or to the dead-letter topic.
async fn deliver_entry(rt: &Arc<Runtime>, target: Target, entry: BulkEntry) -> Status {
    let meta = RecordMeta::from_entry(entry.metadata);
    match entry.event.as_deref().map(entry_record) {
        Some(Ok(record)) => deliver_record(rt, target, record, meta).await,
        Some(Err(reason)) => {
            let bytes = entry.event.map(|e| Bytes::from(e.get().to_owned()));
            let bytes = bytes.unwrap_or_default();
            Box::pin(dead_letter_undecodable(rt, target, &reason, bytes, &meta)).await
        }
        None => {
            let reason = "bulk entry has no event";
            Box::pin(dead_letter_undecodable(
                rt,
                target,
                reason,
                Bytes::new(),
                &meta,
            ))
            .await
        }
    }
}
