//! One delivery, from request body to Dapr's answer: decode, choose the handler, run it with
//! its retries and idempotency, dead-letter what cannot succeed.
//!
//! Every path ends in one of Dapr's three answers and none claims a success that did not happen:
//! SUCCESS once the handler succeeded (or a retry is safely scheduled in the broker), DROP once
//! the event is on the dead-letter topic (or the handler dropped it on purpose), RETRY whenever
//! the framework could not make the event safe (the broker then keeps it).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, Either};
use futures::FutureExt as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::cloudevent::{self, CloudEvent};
use crate::config::Settings;
use crate::context::{Delivery, StateMap};
use crate::dlq::DeadLetter;
use crate::handler::RetryMode;
use crate::idempotency::{render_key, Claim, ClaimToken, IdempotencyStore};
use crate::metrics::DeliveryOutcome;
use crate::outcome::Outcome;
use crate::publish::{OutgoingEvent, Publisher};
use crate::retry::{delay_after, Failure, RetryRejected, RetryState, SigningKey};
use crate::subscription::{Registry, Target};

/// Dapr's answer to one delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Acknowledge.
    Success,
    /// Redeliver.
    Retry,
    /// Acknowledge as failed (already dead-lettered, or dropped on purpose).
    Drop,
}

impl Status {
    /// The string Dapr expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "SUCCESS",
            Status::Retry => "RETRY",
            Status::Drop => "DROP",
        }
    }
}

/// One run of a handler, as the test harness records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The handler's function name.
    pub handler: &'static str,
    /// CloudEvent id.
    pub event_id: String,
    /// CloudEvent type.
    pub event_type: String,
    /// Attempt number (1 = first delivery).
    pub attempt: u32,
    /// `success`, `retry`, `dead_letter`, `drop`, or `skipped` (idempotent duplicate).
    pub outcome: &'static str,
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
    pub journal: Option<Arc<Mutex<Vec<Run>>>>,
    /// Held (not just subscribed to) so the channel stays open for as long as routes exist.
    pub shutdown: Arc<watch::Sender<bool>>,
    pub app_id: String,
    /// Signs and verifies retry bookkeeping.
    pub signing_key: SigningKey,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Per handler (same index as `registry.handlers`): what every delivery to it would
    /// otherwise look up or format again.
    pub handlers: Vec<HandlerRuntime>,
}

/// What one handler's deliveries share, worked out once with the router.
pub(crate) struct HandlerRuntime {
    /// `module::name`.
    pub name: String,
    pub metrics: crate::metrics::HandlerMetrics,
    /// The handler's topic, shared by its deliveries' `Delivery::topic` without a copy.
    pub topic: Arc<str>,
}

impl HandlerRuntime {
    /// One entry per registered handler.
    pub fn all(registry: &Registry, metrics: &crate::metrics::Metrics) -> Vec<HandlerRuntime> {
        registry
            .handlers
            .iter()
            .map(|h| {
                let name = h.def.qualified_name();
                HandlerRuntime {
                    metrics: metrics.handler(&name),
                    name,
                    topic: h.def.topic.into(),
                }
            })
            .collect()
    }
}

/// The Kafka record key Dapr passes along.
static KEY_HEADER: HeaderName = HeaderName::from_static("__key");
/// Our publisher's version (publish metadata, a Kafka header).
static VERSION_HEADER: HeaderName = HeaderName::from_static(crate::version::EXT_VERSION);

/// What the broker said about a record besides its bytes: its key, its version header, and
/// where it sits (topic, partition, offset), from the delivery's headers or a bulk entry's
/// metadata. Where it sits is read only by the dead letter of a record no handler takes.
pub(crate) struct RecordMeta {
    key: Option<String>,
    version: Option<String>,
    origin: Origin,
}

/// Where a record's broker metadata came from.
enum Origin {
    Headers(HeaderMap),
    Entry(Map<String, Value>),
}

impl RecordMeta {
    fn from_headers(headers: HeaderMap) -> Self {
        let get = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        RecordMeta {
            key: get(&KEY_HEADER),
            version: get(&VERSION_HEADER),
            origin: Origin::Headers(headers),
        }
    }

    fn from_entry(metadata: Map<String, Value>) -> Self {
        let get = |name: &str| {
            metadata
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        RecordMeta {
            key: get("__key"),
            version: get(crate::version::EXT_VERSION),
            origin: Origin::Entry(metadata),
        }
    }

    /// `topic/partition/offset`, when the broker says them.
    fn coordinates(&self) -> Option<String> {
        let get = |name: &str| match &self.origin {
            Origin::Headers(h) => h.get(name).and_then(|v| v.to_str().ok()),
            Origin::Entry(m) => m.get(name).and_then(Value::as_str),
        };
        let (partition, offset) = (get("__partition")?, get("__offset")?);
        Some(format!(
            "{}/{partition}/{offset}",
            get("__topic").unwrap_or("")
        ))
    }
}

/// Answers one request on a delivery route.
///
/// Written with combinators rather than as one `async fn`: axum boxes this future for every
/// request, and an `async fn` would keep the event it reads, and the run's future, twice over in
/// its state. This way the common path's future stays small, and so cheap to allocate and move.
pub(crate) fn handle(
    rt: Arc<Runtime>,
    target: Target,
    request: Request,
) -> impl Future<Output = Response> + Send + 'static {
    // The headers are taken, not cloned as axum's `HeaderMap` extractor would.
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    if !crate::server::token_ok(&headers, rt.settings.app_api_token.as_deref()) {
        return Either::Left(std::future::ready(crate::server::unauthorized()));
    }
    let limit = body_limit(&rt, target);
    Either::Right(read_body(body, limit).then(move |body| match body {
        Ok(body) => Either::Left(deliver(rt, target, headers, body)),
        Err(refused) => Either::Right(std::future::ready(refused)),
    }))
}

/// The largest body a route takes: the app's limit per event, so a bulk batch may hold up to
/// its subscription's `maxMessagesCount` events of that size (a batch refused as a whole would be
/// redelivered as a whole, forever).
fn body_limit(rt: &Runtime, target: Target) -> usize {
    let per_event = rt.settings.body_limit;
    match target {
        Target::Topic(t) => match rt.registry.topics[t].bulk {
            Some(bulk) => per_event.saturating_mul(bulk.max_messages.max(1) as usize),
            None => per_event,
        },
        Target::Handler(_) => per_event,
    }
}

/// A delivery whose body has been read. Every subscription is rawPayload, so the body is daprd's
/// wrapper around the broker record's bytes; the record is read here, whatever it holds. When the
/// handler is known before the record is read (on its own route, or on a topic it alone
/// consumes), the envelope and the handler's event are read in one pass, as a hand-written
/// handler reads them; anything else takes the general path.
fn deliver(
    rt: Arc<Runtime>,
    target: Target,
    headers: HeaderMap,
    body: Bytes,
) -> impl Future<Output = Response> + Send + 'static {
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
        Some((ce, event)) => {
            let ce = with_version(ce, meta.version.as_deref());
            let first = RetryState::first();
            Either::Left(process(rt, target, ce, first, meta.key, Some(event)).map(answer))
        }
        // Boxed: its future is large, and only this less common path pays for it.
        None => Either::Right(Box::pin(async move {
            handle_general(&rt, target, record, meta).await
        })),
    }
}

/// A delivery the one-pass read did not take: a bulk batch, a retry, or a record read the
/// general way (its `data` left as raw text for the handler to decode).
async fn handle_general(
    rt: &Arc<Runtime>,
    target: Target,
    record: Bytes,
    meta: RecordMeta,
) -> Response {
    if let Some(batch) = bulk_request(rt, target, &record) {
        let mut statuses = Vec::with_capacity(batch.entries.len());
        for (i, entry) in batch.entries.into_iter().enumerate() {
            let entry_id = entry.entry_id.unwrap_or_else(|| i.to_string());
            let meta = RecordMeta::from_entry(entry.metadata);
            let status = match entry.event.as_deref().map(entry_record) {
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
            };
            statuses.push(EntryStatus { entry_id, status });
        }
        return (StatusCode::OK, axum::Json(BulkResponse { statuses })).into_response();
    }
    answer(deliver_record(rt, target, record, meta).await)
}

/// One record, read the general way, to its handler or to the dead-letter topic.
async fn deliver_record(
    rt: &Arc<Runtime>,
    target: Target,
    record: Bytes,
    meta: RecordMeta,
) -> Status {
    match read_record(rt, target, record, &meta) {
        Read::Event(ce, retry) => process(rt.clone(), target, *ce, retry, meta.key, None).await,
        Read::Undecodable(reason, bytes) => {
            Box::pin(dead_letter_undecodable(rt, target, &reason, bytes, &meta)).await
        }
        Read::Foreign(reason) => {
            tracing::warn!(
                topic = target_topic(rt, target).1,
                "{reason}: acknowledged and ignored"
            );
            Status::Success
        }
    }
}

/// What a record turned out to be.
enum Read {
    /// An event, with its retry bookkeeping (a first delivery's, except on this app's retry
    /// topics, where it was verified).
    Event(Box<CloudEvent>, RetryState),
    /// Not an event a handler can take: why, and the exact bytes.
    Undecodable(String, Bytes),
    /// A retry message of another app: not this app's to run or to dead-letter.
    Foreign(String),
}

/// Reads a record. Retry bookkeeping is honoured only on this app's own retry topics, and only
/// when this app signed it; everywhere else a delivery is a first attempt.
fn read_record(rt: &Runtime, target: Target, record: Bytes, meta: &RecordMeta) -> Read {
    let raw_payload = |h: Option<usize>| h.is_some_and(|h| rt.registry.handlers[h].def.raw_payload);
    let sub = match target {
        Target::Topic(t) => Some(&rt.registry.topics[t]),
        Target::Handler(_) => None,
    };
    if !sub.is_some_and(|s| s.is_retry) {
        let raw = match target {
            Target::Handler(h) => raw_payload(Some(h)),
            Target::Topic(t) => rt.registry.topics[t].raw_payload,
        };
        return match CloudEvent::from_record(record.clone(), raw) {
            Ok(ce) => Read::Event(
                Box::new(with_version(ce, meta.version.as_deref())),
                RetryState::first(),
            ),
            Err(e) => Read::Undecodable(format!("not a CloudEvent: {e}"), record),
        };
    }
    match RetryState::open(&record, &rt.registry.app_id, &rt.signing_key) {
        Ok(opened) => {
            let h = opened
                .state
                .handler
                .as_deref()
                .and_then(|name| rt.handlers.iter().position(|h| h.name == name));
            match CloudEvent::from_record(opened.record.clone(), raw_payload(h)) {
                Ok(mut ce) => {
                    ce.traceparent = opened.traceparent.or(ce.traceparent);
                    let ce = with_version(ce, opened.state.version.as_deref());
                    Read::Event(Box::new(ce), opened.state)
                }
                Err(e) => Read::Undecodable(format!("not a CloudEvent: {e}"), opened.record),
            }
        }
        Err(RetryRejected::Foreign(app)) => {
            Read::Foreign(format!("a retry message of app `{app}`"))
        }
        Err(e @ RetryRejected::Unverified(_)) => Read::Undecodable(e.to_string(), record),
    }
}

/// The record a bulk entry holds: the broker's bytes (base64, for rawPayload), or the event's
/// JSON text.
fn entry_record(event: &RawValue) -> Result<Bytes, String> {
    match serde_json::from_str::<String>(event.get()) {
        Ok(b64) => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map(Bytes::from)
                .map_err(|e| format!("bulk entry is not valid base64: {e}"))
        }
        Err(_) => Ok(Bytes::from(event.get().to_owned())),
    }
}

/// The request body, up to `limit` bytes. Beyond that the answer is 413, which Dapr does not take
/// as an acknowledgement, so the broker keeps the event.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
        if too_large {
            let message = format!("the body is larger than the limit of {limit} bytes");
            (StatusCode::PAYLOAD_TOO_LARGE, message).into_response()
        } else {
            (
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            )
                .into_response()
        }
    })
}

/// The version the broker carried beside the record (our publisher's header, a bulk entry's
/// metadata, a retry's bookkeeping); an extension in the envelope wins.
fn with_version(mut ce: CloudEvent, version: Option<&str>) -> CloudEvent {
    if let Some(v) = version {
        if !ce.extensions.contains_key(crate::version::EXT_VERSION) {
            ce.extensions.insert(
                crate::version::EXT_VERSION.to_owned(),
                Value::String(v.to_owned()),
            );
        }
    }
    ce
}

/// `{"status": ...}`, from constant bodies: the common answer costs no serialization.
fn answer(status: Status) -> Response {
    let body = match status {
        Status::Success => r#"{"status":"SUCCESS"}"#,
        Status::Retry => r#"{"status":"RETRY"}"#,
        Status::Drop => r#"{"status":"DROP"}"#,
    };
    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
}

/// A Dapr bulk delivery (`com.dapr.event.sent.bulk`).
#[derive(Deserialize)]
struct BulkRequest {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    entries: Vec<BulkEntry>,
}

#[derive(Deserialize)]
struct BulkEntry {
    #[serde(rename = "entryId")]
    entry_id: Option<String>,
    event: Option<Box<RawValue>>,
    #[serde(default)]
    metadata: Map<String, Value>,
}

/// The answer to a bulk delivery: one status per entry.
#[derive(Serialize)]
struct BulkResponse {
    statuses: Vec<EntryStatus>,
}

#[derive(Serialize)]
struct EntryStatus {
    #[serde(rename = "entryId")]
    entry_id: String,
    status: Status,
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The bulk batch of a delivery to a topic route, when it is one.
fn bulk_request(rt: &Runtime, target: Target, body: &[u8]) -> Option<BulkRequest> {
    // Dapr sends batches only to a topic subscribed in bulk.
    let Target::Topic(t) = target else {
        return None;
    };
    rt.registry.topics[t].bulk?;
    if !cloudevent::contains(body, BULK_TYPE.as_bytes()) {
        return None;
    }
    serde_json::from_slice::<BulkRequest>(body)
        .ok()
        .filter(|b| b.ty == BULK_TYPE)
}

/// The CloudEvent type of a bulk delivery.
const BULK_TYPE: &str = "com.dapr.event.sent.bulk";

/// The pubsub and topic a target stands for.
fn target_topic(rt: &Runtime, target: Target) -> (&str, &str) {
    match target {
        Target::Topic(t) => (&rt.registry.topics[t].pubsub, &rt.registry.topics[t].topic),
        Target::Handler(h) => {
            let h = &rt.registry.handlers[h];
            (&h.pubsub, h.def.topic)
        }
    }
}

/// The dead-letter topic of what no handler of `target` took: the handlers' own when they agree
/// on one, else the app's default.
fn target_dlq(rt: &Runtime, target: Target) -> &str {
    let dlq_of = |i: usize| rt.registry.handlers[i].dlq.as_str();
    let handlers = match target {
        Target::Handler(h) => return dlq_of(h),
        Target::Topic(t) => &rt.registry.topics[t].handlers,
    };
    match handlers.split_first() {
        Some((&first, rest)) if rest.iter().all(|&i| dlq_of(i) == dlq_of(first)) => dlq_of(first),
        _ => &rt.settings.default_dlq,
    }
}

/// Chooses the handler for an event arriving at `target`.
fn resolve(
    rt: &Runtime,
    target: Target,
    ce: &CloudEvent,
    retry: &RetryState,
) -> Result<usize, String> {
    // daprd drops an expired CloudEvent (a publish with `ttlInSeconds`) before a subscription
    // without rawPayload sees it; ours are rawPayload, so the app does, into the DLQ.
    if let Some(at) = ce.extension_str("expiration") {
        let expired = chrono::DateTime::parse_from_rfc3339(at)
            .is_ok_and(|at| at.timestamp_millis() <= crate::clock::now_ms() as i64);
        if expired {
            return Err(format!("expired at {at} (published with a time to live)"));
        }
    }
    let sub = match target {
        Target::Handler(h) => return Ok(h),
        Target::Topic(t) => &rt.registry.topics[t],
    };
    if sub.is_retry {
        // The bookkeeping is this app's own (verified when read): a handler it names that is
        // gone (removed since the retry was scheduled) leaves the event to the dead-letter topic.
        let name = retry.handler.as_deref().unwrap_or_default();
        return rt
            .handlers
            .iter()
            .position(|h| h.name == name)
            .ok_or_else(|| format!("retry for handler `{name}`, which this app no longer has"));
    }
    let by_type = |ty: &str| {
        sub.handlers
            .iter()
            .copied()
            .find(|&i| rt.registry.handlers[i].def.accepts(ty))
    };
    if let Some(h) = by_type(&ce.ty) {
        return Ok(h);
    }
    // Seed-style publishers (a bare JSON POST) produce `com.dapr.event.sent`; the real type is
    // inside the data.
    for &i in &sub.handlers {
        let tag = rt.registry.handlers[i]
            .def
            .event_tag
            .unwrap_or("event_type");
        if let Some(h) = ce.data().get(tag).and_then(Value::as_str).and_then(by_type) {
            return Ok(h);
        }
    }
    if let Some(ty) = ce.data().get("event_type").and_then(Value::as_str) {
        if let Some(h) = by_type(ty) {
            return Ok(h);
        }
    }
    if ce.ty == cloudevent::BARE_TYPE && sub.handlers.len() == 1 {
        return Ok(sub.handlers[0]);
    }
    Err(format!(
        "no handler on {}/{} takes events of type `{}`",
        sub.pubsub, sub.topic, ce.ty
    ))
}

/// The partition key of a delivered event: the Kafka record key Dapr sent (`__key`), else the
/// data's `user_id`. Only failure paths need it, so it is worked out there.
pub(crate) fn partition_key(ce: &CloudEvent, hint: Option<String>) -> Option<String> {
    hint.or_else(|| {
        ce.data()
            .get("user_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

/// Processes one event and decides Dapr's answer. `decoded` is the handler's event when the
/// body was read in one pass with it.
///
/// The choice of handler is made before the future is built, so the future holds only what the
/// run needs (the event behind an `Arc`), not the event itself: a smaller future to allocate
/// and move on every delivery.
pub(crate) fn process(
    rt: Arc<Runtime>,
    target: Target,
    ce: CloudEvent,
    mut retry: RetryState,
    key_hint: Option<String>,
    decoded: Option<Decoded>,
) -> impl Future<Output = Status> + Send + 'static {
    match resolve(&rt, target, &ce, &retry) {
        Ok(h) => {
            let topic = target_topic(&rt, target).1;
            let own_topic = &rt.handlers[h].topic;
            let origin_topic: Arc<str> = match retry.origin_topic.take() {
                Some(origin) => origin.into(),
                None if topic == &**own_topic => own_topic.clone(),
                None => topic.into(),
            };
            let span = tracing::info_span!(
                "delivery",
                event_id = %ce.id,
                event_type = %ce.ty,
                topic = %origin_topic,
                handler = rt.registry.handlers[h].def.name,
                attempt = retry.attempt,
                traceparent = ce.traceparent.as_deref().unwrap_or_default(),
            );
            let pending = Pending {
                ce: Arc::new(ce),
                decoded,
                origin_topic,
                key_hint,
            };
            Either::Left(run_with_retries(rt, h, pending, retry).instrument(span))
        }
        Err(reason) => Either::Right(Box::pin(async move {
            let _in_flight = rt.metrics.in_flight();
            let (pubsub, sub_topic) = target_topic(&rt, target);
            // A retry names the topic the event was first delivered on; the record came from there.
            let topic = retry.origin_topic.as_deref().unwrap_or(sub_topic);
            tracing::warn!(event_id = %ce.id, event_type = %ce.ty, %topic, "{reason}");
            let letter =
                DeadLetter::new(&ce, pubsub, topic, partition_key(&ce, key_hint)).reason(reason);
            let letter = letter.with_failures(retry.failures);
            publish_dead_letter(&rt, target_dlq(&rt, target), pubsub, letter).await
        })),
    }
}

/// The handler's event, decoded with the envelope (see [`CloudEvent`]'s `read_typed`).
pub(crate) type Decoded = Box<dyn std::any::Any + Send>;

/// An event on its way to a handler, with what was learnt about it so far.
struct Pending {
    ce: Arc<CloudEvent>,
    decoded: Option<Decoded>,
    /// The topic the event was first delivered on (a retry message names it).
    origin_topic: Arc<str>,
    key_hint: Option<String>,
}

/// Runs the handler until it succeeds, its retries are scheduled or spent, or it gives up.
///
/// A plain function returning an `async` block rather than an `async fn`: an `async fn` keeps
/// its arguments twice in its future (as arguments, and moved into locals).
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn's future holds its arguments twice"
)]
fn run_with_retries(
    rt: Arc<Runtime>,
    h: usize,
    mut pending: Pending,
    mut retry: RetryState,
) -> impl Future<Output = Status> + Send + 'static {
    async move {
        let rt = &rt;
        let _in_flight = rt.metrics.in_flight();
        let handler = &rt.registry.handlers[h];
        let hrt = &rt.handlers[h];
        // A retry waits out its hop on the retry tier, then runs, or takes the next tier when it
        // is due later still (more than a second: the shortest tier).
        if let Some(hop_due) = retry.hop_due_ms {
            if !Box::pin(hold_until(rt, hop_due)).await {
                return Status::Retry;
            }
            let remaining = retry
                .due_ms
                .unwrap_or(0)
                .saturating_sub(crate::clock::now_ms());
            if remaining >= 1000 {
                return publish_retry(rt, h, &pending, &retry, remaining / 1000).await;
            }
            if !Box::pin(hold_until(rt, retry.due_ms.unwrap_or(0))).await {
                return Status::Retry;
            }
        }
        // Borrowed, not moved out: this future then holds the event's parts once.
        let ce = &pending.ce;
        let origin_topic = &pending.origin_topic;
        let key_hint = &pending.key_hint;
        loop {
            let run = Attempt {
                h,
                ce,
                topic: origin_topic,
                partition_key: key_hint.as_deref(),
                attempt: retry.attempt,
            };
            let outcome = run_once(rt, run, pending.decoded.take()).await;
            let (err, permanent) = match outcome {
                RunResult::Done(Outcome::Success) | RunResult::Skipped => return Status::Success,
                RunResult::Busy => return Status::Retry,
                RunResult::Done(Outcome::Drop(reason)) => {
                    tracing::info!(%reason, "handler dropped the event");
                    return Status::Drop;
                }
                RunResult::Done(Outcome::Retry(err)) => (err.to_string(), false),
                RunResult::Done(Outcome::DeadLetter(err)) => (err.to_string(), true),
            };
            tracing::warn!(error = %err, permanent, "handler failed");
            retry.failures.push(Failure {
                attempt: retry.attempt,
                at: crate::clock::now_rfc3339(),
                error: err.clone(),
            });
            let next_delay = if permanent {
                None
            } else {
                delay_after(handler.def.retry, retry.attempt)
            };
            let Some(delay) = next_delay else {
                let failures = std::mem::take(&mut retry.failures);
                return dead_letter_failed(rt, h, &pending, failures, &err, permanent).await;
            };
            match handler.def.retry_mode {
                RetryMode::Inline => {
                    hrt.metrics.retry_scheduled(RetryMode::Inline);
                    if !Box::pin(sleep_unless_shutdown(rt, Duration::from_secs(delay))).await {
                        return Status::Retry;
                    }
                    retry.attempt += 1;
                }
                RetryMode::Delayed => {
                    hrt.metrics.retry_scheduled(RetryMode::Delayed);
                    return schedule_retry(rt, h, &pending, &mut retry, delay).await;
                }
            }
        }
    }
}

// The failure paths build their messages in plain functions and return boxed futures, so that
// none of what they build is kept in `run_with_retries`' future, which every delivery allocates.

/// Dead-letters an event whose handler failed for good (or ran out of retries).
fn dead_letter_failed<'r>(
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
    Box::pin(publish_dead_letter(
        rt,
        &handler.dlq,
        &handler.pubsub,
        letter.reason(reason),
    ))
}

/// Schedules the next attempt of a delayed retry, due in `delay` seconds.
fn schedule_retry<'r>(
    rt: &'r Runtime,
    h: usize,
    pending: &Pending,
    retry: &mut RetryState,
    delay: u64,
) -> BoxFuture<'r, Status> {
    retry.attempt += 1;
    retry.due_ms = Some(crate::clock::now_ms() + delay * 1000);
    retry.handler = Some(rt.handlers[h].name.clone());
    retry.version = crate::version::version_of(&pending.ce);
    publish_retry(rt, h, pending, retry, delay)
}

/// Publishes a retry to the tier of `wait` seconds (see [`crate::subscription::RETRY_TIERS`]):
/// the event's record, byte for byte, with its bookkeeping signed beside it.
fn publish_retry<'r>(
    rt: &'r Runtime,
    h: usize,
    pending: &Pending,
    retry: &RetryState,
    wait: u64,
) -> BoxFuture<'r, Status> {
    let ce = &pending.ce;
    let tier = crate::subscription::retry_tier(wait);
    let mut retry = retry.clone();
    retry.hop_due_ms = Some(crate::clock::now_ms() + tier * 1000);
    retry.origin_topic = Some(pending.origin_topic.to_string());
    // The retry continues the event's trace as a child span.
    let traceparent = crate::trace::child(ce.traceparent.as_deref());
    let sealed = retry.seal(
        &rt.app_id,
        &rt.signing_key,
        ce,
        &ce.record_or_envelope(),
        Some(&traceparent),
    );
    let out = OutgoingEvent::record(
        rt.publisher.default_pubsub(),
        &crate::subscription::retry_topic(&rt.app_id, tier),
        &ce.id,
        &ce.ty,
        partition_key(ce, pending.key_hint.clone()),
        None,
        Bytes::from(sealed),
    );
    tracing::debug!(handler = %rt.handlers[h].name, tier, "retry scheduled");
    Box::pin(async move {
        match publish_with_retries(&rt.publisher, out).await {
            Ok(()) => Status::Success,
            Err(e) => {
                tracing::error!(error = %e, "could not schedule the retry; asking the broker to redeliver");
                Status::Retry
            }
        }
    })
}

enum RunResult {
    Done(Outcome),
    Skipped,
    Busy,
}

/// Which attempt of which handler on which event.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    h: usize,
    ce: &'a Arc<CloudEvent>,
    /// The topic the event was first delivered on.
    topic: &'a Arc<str>,
    partition_key: Option<&'a str>,
    attempt: u32,
}

/// One run of the handler: idempotency claim, timeout, panic capture. (Not an `async fn`, for
/// the reason given on [`run_with_retries`].)
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn's future holds its arguments twice"
)]
fn run_once<'a>(
    rt: &'a Arc<Runtime>,
    run: Attempt<'a>,
    decoded: Option<Decoded>,
) -> impl Future<Output = RunResult> + Send + 'a {
    async move {
        let Attempt { h, ce, attempt, .. } = run;
        let hrt = &rt.handlers[h];
        let def = rt.registry.handlers[h].def;
        // The store's calls are boxed: only idempotent handlers pay for their futures.
        let token = if def.idempotent {
            match Box::pin(claim(rt, run)).await {
                Ok(token) => Some(token),
                Err(skipped_or_busy) => return skipped_or_busy,
            }
        } else {
            None
        };
        let started = tokio::time::Instant::now();
        let outcome = call(rt, run, decoded).await;
        hrt.metrics.handler_duration(started.elapsed());
        let kind = match outcome {
            Outcome::Success => DeliveryOutcome::Success,
            Outcome::Retry(_) => DeliveryOutcome::Retry,
            Outcome::DeadLetter(_) => DeliveryOutcome::DeadLetter,
            Outcome::Drop(_) => DeliveryOutcome::Drop,
        };
        hrt.metrics.delivery(kind);
        let error = match &outcome {
            Outcome::Retry(e) | Outcome::DeadLetter(e) => Some(e.to_string()),
            Outcome::Drop(r) => Some(r.clone()),
            Outcome::Success => None,
        };
        record(rt, def.name, ce, attempt, outcome.kind(), error);
        if let Some(token) = token {
            Box::pin(settle(rt, token, &outcome)).await;
        }
        RunResult::Done(outcome)
    }
}

/// Claims the event's idempotency key for this run: the token, or why the handler must not run
/// (a duplicate of a handled event, or a run of it in progress).
async fn claim(rt: &Runtime, run: Attempt<'_>) -> Result<ClaimToken, RunResult> {
    let Attempt { h, ce, attempt, .. } = run;
    let hrt = &rt.handlers[h];
    let def = rt.registry.handlers[h].def;
    let key = match def.idempotency_key {
        Some(template) => match def.key_fields.and_then(|fields| fields(ce)) {
            Some(fields) => render_key(template, &fields),
            None => render_key(template, ce.data()),
        },
        None => ce.id.clone(),
    };
    // Dapr refuses state keys containing `||` (its key-prefix separator): one `|` between
    // the parts, and none inside the event's own key.
    let key = format!("{}|{}|{}", rt.app_id, hrt.name, key.replace('|', "%7C"));
    match rt.store.claim(&key, rt.settings.claim_lease).await {
        Ok(Claim::Acquired(token)) => Ok(token),
        Ok(Claim::Done) => {
            tracing::info!(%key, "duplicate of an event already handled: skipped");
            hrt.metrics.idempotent_skip();
            hrt.metrics.delivery(DeliveryOutcome::Skipped);
            record(rt, def.name, ce, attempt, "skipped", None);
            Err(RunResult::Skipped)
        }
        Ok(Claim::Busy) => {
            tracing::info!(%key, "another delivery of this event is running; asking for redelivery");
            Err(RunResult::Busy)
        }
        Err(e) => {
            tracing::error!(error = %e, "idempotency store unavailable; asking for redelivery");
            Err(RunResult::Busy)
        }
    }
}

/// Completes the claim after a run that succeeded (or dropped the event on purpose), releases
/// it after a failure.
async fn settle(rt: &Runtime, token: ClaimToken, outcome: &Outcome) {
    let stored = match outcome {
        Outcome::Success | Outcome::Drop(_) => {
            rt.store
                .complete(&token, rt.settings.idempotency_retention)
                .await
        }
        Outcome::Retry(_) | Outcome::DeadLetter(_) => rt.store.release(&token).await,
    };
    if let Err(e) = stored {
        // The lease will run out and free the key; a completed run may then run once more,
        // which is why we ask for redelivery only on failure paths.
        tracing::error!(error = %e, "idempotency store update failed");
    }
}

/// One call of the handler: its arguments built, a panic caught, a timeout applied. A plain
/// function returning the future, so the delivery it builds is not kept in the caller's future.
fn call<'r>(
    rt: &'r Arc<Runtime>,
    run: Attempt<'_>,
    decoded: Option<Decoded>,
) -> impl Future<Output = Outcome> + Send + 'r {
    let Attempt {
        h,
        ce,
        topic,
        partition_key,
        attempt,
    } = run;
    let def = rt.registry.handlers[h].def;
    let delivery = Delivery {
        event: ce.clone(),
        topic: topic.clone(),
        attempt,
        partition_key: partition_key.map(str::to_owned),
        decoded: std::cell::Cell::new(decoded),
        handler: def,
        rt: rt.clone(),
        h,
    };
    let limit = def
        .timeout_secs
        .map(Duration::from_secs)
        .unwrap_or(rt.settings.handler_timeout);
    let started = tokio::time::Instant::now();
    let run = AssertUnwindSafe((def.call)(delivery)).catch_unwind();
    async move {
        let mut run = std::pin::pin!(run);
        // Most handlers finish in their first poll; the timer is armed only for those that do not.
        let finished = match futures::poll!(run.as_mut()) {
            Poll::Ready(done) => Ok(done),
            Poll::Pending => match started.checked_add(limit) {
                Some(deadline) => tokio::time::timeout_at(deadline, run).await,
                None => Ok(run.await),
            },
        };
        match finished {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(panic)) => {
                Outcome::retry(format!("handler panicked: {}", panic_message(&*panic)))
            }
            Err(_) => Outcome::retry(format!("handler timed out after {} s", limit.as_secs_f64())),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

fn record(
    rt: &Runtime,
    handler: &'static str,
    ce: &CloudEvent,
    attempt: u32,
    outcome: &'static str,
    error: Option<String>,
) {
    if let Some(journal) = &rt.journal {
        let run = Run {
            handler,
            event_id: ce.id.clone(),
            event_type: ce.ty.clone(),
            attempt,
            outcome,
            error,
            data: ce.data().clone(),
        };
        journal.lock().unwrap_or_else(|p| p.into_inner()).push(run);
    }
}

/// Waits until `due_ms`, at most `max_hold`; false when the delivery should be answered RETRY
/// (not yet due, or shutting down) so the broker redelivers it later.
async fn hold_until(rt: &Runtime, due_ms: u64) -> bool {
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
async fn sleep_unless_shutdown(rt: &Runtime, d: Duration) -> bool {
    let mut shutdown = rt.shutdown.subscribe();
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.wait_for(|stopping| *stopping) => false,
    }
}

async fn publish_with_retries(
    publisher: &Publisher,
    event: OutgoingEvent,
) -> Result<(), crate::PublishError> {
    let mut last = None;
    for backoff_ms in [0u64, 100, 500, 2000] {
        if backoff_ms > 0 {
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        }
        match publisher.send(event.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

async fn publish_dead_letter(rt: &Runtime, dlq: &str, pubsub: &str, letter: DeadLetter) -> Status {
    let out = match OutgoingEvent::from_event(pubsub, dlq, &rt.app_id, &letter) {
        Ok(out) => out,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the dead letter; asking for redelivery");
            return Status::Retry;
        }
    };
    match publish_with_retries(&rt.publisher, out).await {
        Ok(()) => {
            rt.metrics
                .dead_letter(letter.handler.as_deref().unwrap_or(""));
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
async fn dead_letter_undecodable(
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
    publish_dead_letter(rt, target_dlq(rt, target), pubsub, letter).await
}
