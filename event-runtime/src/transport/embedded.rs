//! The embedded broker: an in-process stand-in for Dapr + Kafka, for `cargo run` with nothing
//! installed and for tests.
//!
//! It reads the app's own `GET /dapr/subscribe` and delivers through the very same axum routes
//! Dapr would call, with the same envelope, headers and answers, so the code path under test is
//! the one that runs in production. Topics have partitions chosen by partition key; each
//! partition is delivered in order, one event at a time (bulk subscriptions take batches), and
//! an event leaves its partition only once the app acknowledged it, so stopping and restarting
//! the app loses nothing.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::Request;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use crate::transport::outgoing::{OutgoingEvent, PublishError};
use crate::wire::bulk::{BulkEntry, BulkRequest, BulkResponse, BULK_TYPE};
use crate::wire::cloudevent::EXT_VERSION;
use crate::wire::subscription::DaprSubscription;

/// How many published events the broker remembers for [`Broker::published`] by default: a
/// served app needs none of them; the test harness raises it with [`Broker::keep_published`].
pub const LOG_CAPACITY: usize = 1_000;

/// Partitions per topic (the todo platform's `task-events` has 12).
pub const DEFAULT_PARTITIONS: usize = 12;

/// One record of a partition: the event, the bytes a Dapr publisher would have written for it,
/// and its offset.
#[derive(Clone)]
struct Stored {
    event: OutgoingEvent,
    record: Bytes,
    offset: u64,
}

#[derive(Default)]
struct Partition {
    queue: VecDeque<Stored>,
    /// The offset of the next record.
    next_offset: u64,
    worker: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct State {
    /// (pubsub, topic) → partitions.
    topics: HashMap<(String, String), Vec<Partition>>,
    /// What was published, in order: the last [`LOG_CAPACITY`] events.
    log: VecDeque<OutgoingEvent>,
    /// How many events were ever published (spreads unkeyed events over partitions).
    published: usize,
    /// How many published events `log` keeps.
    log_capacity: usize,
    router: Option<Router>,
    subscriptions: Vec<DaprSubscription>,
    api_token: Option<String>,
    stopped: bool,
    /// Records too large for their dead letter, by key (the state store's stand-in).
    parked: HashMap<String, Vec<u8>>,
}

/// An in-process broker with Kafka's ordering per partition key and Dapr's delivery protocol.
pub struct Broker {
    state: Mutex<State>,
    /// The apps' own bookkeeping (per-key order gates): the state store's stand-in, kept with
    /// the broker so that an app restarted on it finds it as it was.
    pub(crate) kv: crate::transport::kv::Kv,
    /// Its scheduled events' timers (see `Publisher::publish_at`).
    pub(crate) timers: crate::transport::jobs::timers::Timers,
    partitions: usize,
    /// Signals a change of the number of undelivered events.
    changed: Notify,
    /// Per-partition wake-ups.
    wake: Notify,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl Default for Broker {
    fn default() -> Self {
        Self::with_partitions(DEFAULT_PARTITIONS)
    }
}

impl Broker {
    /// A broker whose topics have `partitions` partitions.
    pub fn with_partitions(partitions: usize) -> Self {
        Broker {
            state: Mutex::new(State {
                log_capacity: LOG_CAPACITY,
                ..State::default()
            }),
            kv: crate::transport::kv::Kv::memory(),
            timers: Default::default(),
            partitions: partitions.max(1),
            changed: Notify::new(),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn partition_of(&self, key: Option<&str>, seq: usize) -> usize {
        match key {
            Some(k) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                k.hash(&mut h);
                (h.finish() % self.partitions as u64) as usize
            }
            None => seq % self.partitions,
        }
    }

    /// Appends an event to its topic; delivered when the app subscribes to the topic.
    pub fn publish(self: &Arc<Self>, event: OutgoingEvent) -> Result<(), PublishError> {
        let mut st = self.lock();
        let seq = st.published;
        st.published += 1;
        while st.log.len() >= st.log_capacity.max(1) {
            // A long-running embedded app must not grow without bound.
            st.log.pop_front();
        }
        st.log.push_back(event.clone());
        let subscribed = st
            .subscriptions
            .iter()
            .any(|s| s.pubsubname == event.pubsub && s.topic == event.topic);
        let p = self.partition_of(event.partition_key.as_deref(), seq);
        let partitions = st
            .topics
            .entry((event.pubsub.clone(), event.topic.clone()))
            .or_insert_with(|| (0..self.partitions).map(|_| Partition::default()).collect());
        let part = &mut partitions[p];
        let record = match &event.record {
            Some(bytes) => bytes.clone(),
            None => Bytes::from(envelope(&event).to_string()),
        };
        part.queue.push_back(Stored {
            event: event.clone(),
            record,
            offset: part.next_offset,
        });
        part.next_offset += 1;
        let needs_worker = subscribed && !st.stopped && st.router.is_some();
        if needs_worker {
            self.ensure_worker(&mut st, (event.pubsub, event.topic), p);
        }
        drop(st);
        self.wake.notify_waiters();
        self.changed.notify_waiters();
        Ok(())
    }

    fn ensure_worker(self: &Arc<Self>, st: &mut State, topic: (String, String), p: usize) {
        let part = &mut st.topics.get_mut(&topic).expect("topic exists")[p];
        if part.worker.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        let broker = Arc::clone(self);
        part.worker = Some(tokio::spawn(
            async move { broker.run_partition(topic, p).await },
        ));
    }

    /// Starts delivering to `router`, subscribing as its `GET /dapr/subscribe` says.
    /// `api_token` is sent as `dapr-api-token`, as daprd sends its `APP_API_TOKEN`.
    pub async fn start(
        self: &Arc<Self>,
        router: Router,
        api_token: Option<String>,
    ) -> Result<(), String> {
        let subs = fetch_subscriptions(&router, api_token.as_deref()).await?;
        let mut st = self.lock();
        st.router = Some(router);
        st.subscriptions = subs;
        st.stopped = false;
        st.api_token = api_token;
        let keys: Vec<(String, String)> = st
            .subscriptions
            .iter()
            .map(|s| (s.pubsubname.clone(), s.topic.clone()))
            .collect();
        for key in keys {
            st.topics
                .entry(key.clone())
                .or_insert_with(|| (0..self.partitions).map(|_| Partition::default()).collect());
            for p in 0..self.partitions {
                self.ensure_worker(&mut st, key.clone(), p);
            }
        }
        Ok(())
    }

    /// Stops delivering (as an app that went away): in-flight events stay at the head of their
    /// partitions and are delivered again on the next start.
    pub fn stop(&self) {
        let mut st = self.lock();
        st.stopped = true;
        st.router = None;
        for parts in st.topics.values_mut() {
            for p in parts {
                if let Some(w) = p.worker.take() {
                    w.abort();
                }
            }
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// Keeps the last `n` published events for [`Broker::published`] (tests look at them).
    pub fn keep_published(&self, n: usize) {
        self.lock().log_capacity = n;
    }

    /// The events published so far, in order (the last [`LOG_CAPACITY`], or as many as
    /// [`Broker::keep_published`] says).
    pub fn published(&self) -> Vec<OutgoingEvent> {
        self.lock().log.iter().cloned().collect()
    }

    /// Keeps a record too large for its dead letter (what the state store does on Dapr).
    pub(crate) fn park(&self, key: &str, bytes: &[u8]) {
        self.lock().parked.insert(key.to_owned(), bytes.to_vec());
    }

    /// A record [`Broker::park`] kept.
    pub(crate) fn parked(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().parked.get(key).cloned()
    }

    /// How many events wait on `topic` (on any pubsub; queued or being delivered).
    pub fn pending_on(&self, topic: &str) -> usize {
        let st = self.lock();
        st.topics
            .iter()
            .filter(|((_, t), _)| t == topic)
            .flat_map(|(_, parts)| parts.iter().map(|p| p.queue.len()))
            .sum()
    }

    /// How many events wait on subscribed topics (queued or being delivered).
    pub fn pending(&self) -> usize {
        let st = self.lock();
        st.subscriptions
            .iter()
            .filter_map(|s| st.topics.get(&(s.pubsubname.clone(), s.topic.clone())))
            .flat_map(|parts| parts.iter().map(|p| p.queue.len()))
            .sum()
    }

    /// Waits until every subscribed topic is drained, or `deadline` passes (then `false`).
    pub async fn wait_idle(&self, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let changed = self.changed.notified();
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return self.pending() == 0;
            }
        }
    }

    async fn run_partition(self: Arc<Self>, topic: (String, String), p: usize) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let wake = self.wake.notified();
            let next = {
                let st = self.lock();
                let Some(router) = st.router.clone() else {
                    return;
                };
                let sub = st
                    .subscriptions
                    .iter()
                    .find(|s| s.pubsubname == topic.0 && s.topic == topic.1)
                    .cloned();
                let batch: Vec<Stored> = match (&sub, st.topics.get(&topic)) {
                    (Some(sub), Some(parts)) => {
                        let n = sub
                            .bulk_subscribe
                            .map_or(1, |b| b.max_messages_count.max(1) as usize);
                        parts[p].queue.iter().take(n).cloned().collect()
                    }
                    _ => Vec::new(),
                };
                sub.map(|s| (router, s, batch, st.api_token.clone()))
            };
            let Some((router, sub, batch, token)) = next else {
                return;
            };
            if batch.is_empty() {
                wake.await;
                continue;
            }
            let acked = deliver(&router, &sub, p, &batch, token.as_deref()).await;
            let mut redeliver = false;
            {
                let mut st = self.lock();
                if let Some(parts) = st.topics.get_mut(&topic) {
                    // Acknowledged events leave; the others stay at the head, in order, and are
                    // delivered again (per-entry statuses of bulk deliveries, as Dapr honours them).
                    let q = &mut parts[p].queue;
                    let head: Vec<Stored> = q.drain(..batch.len().min(q.len())).collect();
                    for (ev, ok) in head.into_iter().zip(&acked).rev() {
                        if !ok {
                            q.push_front(ev);
                        }
                    }
                    redeliver = acked.iter().any(|a| !a);
                }
            }
            self.changed.notify_waiters();
            if redeliver {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            } else {
                backoff = Duration::from_millis(50);
            }
        }
    }

    /// What a sidecar would have: the app's subscriptions as it answered them.
    pub fn subscriptions(&self) -> Vec<DaprSubscription> {
        self.lock().subscriptions.clone()
    }
}

async fn fetch_subscriptions(
    router: &Router,
    token: Option<&str>,
) -> Result<Vec<DaprSubscription>, String> {
    let mut req = Request::get("/dapr/subscribe");
    if let Some(t) = token {
        req = req.header("dapr-api-token", t);
    }
    let req = req.body(Body::empty()).map_err(|e| e.to_string())?;
    let resp = router
        .clone()
        .oneshot(req)
        .await
        .map_err(|e| e.to_string())?;
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("GET /dapr/subscribe answered an invalid list: {e}"))
}

/// The envelope a Dapr publisher writes for an event published with our publisher: the event's
/// own envelope, with what daprd adds to it.
fn envelope(ev: &OutgoingEvent) -> Value {
    let mut m = ev.envelope();
    m.insert("topic".into(), json!(ev.topic));
    m.insert("pubsubname".into(), json!(ev.pubsub));
    m.insert("time".into(), json!(crate::clock::now_rfc3339()));
    if let Some(tp) = &ev.traceparent {
        m.insert("traceparent".into(), json!(tp));
    }
    if let Some(ts) = &ev.tracestate {
        m.insert("tracestate".into(), json!(ts));
    }
    Value::Object(m)
}

/// What daprd delivers for a record on a rawPayload subscription.
fn raw_envelope(sub: &DaprSubscription, record: &[u8]) -> Value {
    json!({"id": uuid::Uuid::new_v4().to_string(), "specversion": "1.0", "datacontenttype": "application/octet-stream",
        "source": "Dapr", "type": "com.dapr.event.sent", "topic": sub.topic, "pubsubname": sub.pubsubname,
        "data_base64": base64::engine::general_purpose::STANDARD.encode(record)})
}

/// The metadata Dapr's Kafka component passes along with a record: the record key, the
/// coordinates, and the record headers (our publisher writes the version as one).
fn record_metadata(
    sub: &DaprSubscription,
    p: usize,
    stored: &Stored,
) -> Vec<(&'static str, String)> {
    let ev = &stored.event;
    let mut m = vec![
        ("__topic", sub.topic.clone()),
        ("__partition", p.to_string()),
        ("__offset", stored.offset.to_string()),
    ];
    if let Some(k) = &ev.partition_key {
        m.push(("__key", k.clone()));
    }
    if let Some(v) = ev.version() {
        m.push((EXT_VERSION, v.to_owned()));
    }
    m
}

/// Delivers a batch; per event, whether it is acknowledged (SUCCESS or DROP).
async fn deliver(
    router: &Router,
    sub: &DaprSubscription,
    p: usize,
    batch: &[Stored],
    token: Option<&str>,
) -> Vec<bool> {
    let Ok(req) = request(sub, p, batch, token) else {
        return vec![false; batch.len()];
    };
    let Ok(resp) = router.clone().oneshot(req).await;
    let status = resp.status();
    let bytes = match http_body_util::BodyExt::collect(resp.into_body()).await {
        Ok(b) => b.to_bytes(),
        Err(_) => return vec![false; batch.len()],
    };
    acknowledged(sub, status, &bytes, batch.len())
}

/// Whether the subscription takes records raw (daprd wraps them, undecoded).
fn is_raw(sub: &DaprSubscription) -> bool {
    sub.metadata.get("rawPayload").is_some_and(|v| v == "true")
}

/// Whether the subscription takes records in bulk.
fn is_bulk(sub: &DaprSubscription) -> bool {
    sub.bulk_subscribe.is_some_and(|b| b.enabled)
}

/// The request daprd sends for `batch`: to the subscription's route, with its headers.
fn request(
    sub: &DaprSubscription,
    p: usize,
    batch: &[Stored],
    token: Option<&str>,
) -> Result<Request<Body>, axum::http::Error> {
    let (body, content_type) = if is_bulk(sub) {
        (bulk_body(sub, p, batch), "application/json")
    } else {
        (single_body(sub, &batch[0]), "application/cloudevents+json")
    };
    // daprd matches routing rules against the envelope it delivers, which for a rawPayload
    // subscription is its own wrapper, so our subscriptions carry none: the default route.
    let path = &sub.routes.default;
    let mut req = Request::post(path)
        .header("content-type", content_type)
        .header("pubsubname", &sub.pubsubname);
    if !is_bulk(sub) {
        for (k, v) in record_metadata(sub, p, &batch[0]) {
            req = req.header(k, v);
        }
    }
    if let Some(t) = token {
        req = req.header("dapr-api-token", t);
    }
    req.body(Body::from(body))
}

/// The body of one record's delivery: the record, or daprd's wrapper around it when raw.
fn single_body(sub: &DaprSubscription, stored: &Stored) -> Bytes {
    if is_raw(sub) {
        Bytes::from(raw_envelope(sub, &stored.record).to_string())
    } else {
        stored.record.clone()
    }
}

/// The body of a bulk delivery: a bulk request with an entry per record.
fn bulk_body(sub: &DaprSubscription, p: usize, batch: &[Stored]) -> Bytes {
    let entries = batch
        .iter()
        .enumerate()
        .map(|(i, stored)| bulk_entry(sub, p, i, stored))
        .collect();
    let request = BulkRequest {
        id: uuid::Uuid::new_v4().to_string(),
        ty: BULK_TYPE.to_owned(),
        topic: sub.topic.clone(),
        pubsubname: sub.pubsubname.clone(),
        metadata: Default::default(),
        entries,
    };
    Bytes::from(serde_json::to_vec(&request).unwrap_or_default())
}

/// Entry `i` of a bulk delivery: the record (base64 when raw) and its metadata.
fn bulk_entry(sub: &DaprSubscription, p: usize, i: usize, stored: &Stored) -> BulkEntry {
    let raw = is_raw(sub);
    let event = if raw {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&stored.record);
        serde_json::value::to_raw_value(&b64).ok()
    } else {
        serde_json::from_slice(&stored.record).ok()
    };
    let metadata = record_metadata(sub, p, stored)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    let content_type = if raw {
        "application/octet-stream"
    } else {
        "application/cloudevents+json"
    };
    BulkEntry {
        entry_id: Some(i.to_string()),
        event,
        metadata,
        content_type: Some(content_type.to_owned()),
    }
}

/// Per record of a batch of `n`, whether the app's answer acknowledges it, as daprd reads it.
fn acknowledged(
    sub: &DaprSubscription,
    status: axum::http::StatusCode,
    body: &[u8],
    n: usize,
) -> Vec<bool> {
    if status.as_u16() == 404 {
        // Dapr drops on 404.
        return vec![true; n];
    }
    if !status.is_success() {
        return vec![false; n];
    }
    if is_bulk(sub) {
        bulk_acknowledged(body, n)
    } else {
        // Dapr: no body, non-JSON or no status means success.
        let answer: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let st = answer.get("status").and_then(Value::as_str);
        vec![st.is_none() || matches!(st, Some("SUCCESS" | "DROP"))]
    }
}

/// Per entry of a bulk delivery of `n`, whether its status acknowledges it (a missing one does not).
fn bulk_acknowledged(body: &[u8], n: usize) -> Vec<bool> {
    let statuses = serde_json::from_slice::<BulkResponse>(body)
        .map(|r| r.statuses)
        .unwrap_or_default();
    (0..n)
        .map(|i| {
            let id = i.to_string();
            statuses
                .iter()
                .find(|s| s.entry_id == id)
                .is_some_and(|s| s.status.acknowledges())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(key: &str) -> OutgoingEvent {
        OutgoingEvent::record(
            "p",
            "t",
            key,
            "x",
            Some(key.to_owned()),
            None,
            Bytes::from_static(b"{}"),
        )
    }

    /// A topic has 12 partitions, as the todo platform's `task-events`; a key always lands on the
    /// same one, and each partition numbers its records from 0.
    #[tokio::test]
    async fn topics_have_twelve_partitions_and_a_key_keeps_its_partition() {
        let broker = Arc::new(Broker::default());
        for i in 0..1200 {
            broker.publish(keyed(&format!("user-{}", i % 300))).unwrap();
        }
        let st = broker.lock();
        let parts = &st.topics[&("p".to_owned(), "t".to_owned())];
        assert_eq!(parts.len(), DEFAULT_PARTITIONS);
        assert_eq!(DEFAULT_PARTITIONS, 12);
        assert!(
            parts.iter().all(|p| !p.queue.is_empty()),
            "every partition used"
        );
        for part in parts {
            let offsets: Vec<u64> = part.queue.iter().map(|s| s.offset).collect();
            assert_eq!(offsets, (0..part.queue.len() as u64).collect::<Vec<_>>());
            let mut keys: Vec<&str> = part
                .queue
                .iter()
                .filter_map(|s| s.event.partition_key.as_deref())
                .collect();
            keys.sort_unstable();
            keys.dedup();
            for other in parts.iter().filter(|o| !std::ptr::eq(*o, part)) {
                assert!(other
                    .queue
                    .iter()
                    .all(|s| !keys.contains(&s.event.partition_key.as_deref().unwrap())));
            }
        }
    }
}
