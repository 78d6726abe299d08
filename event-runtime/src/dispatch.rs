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
use serde_json::{json, Value};
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::cloudevent::CloudEvent;
use crate::config::Settings;
use crate::context::{Delivery, StateMap};
use crate::dlq::DeadLetter;
use crate::handler::RetryMode;
use crate::idempotency::{render_key, Claim, ClaimToken, IdempotencyStore};
use crate::metrics::DeliveryOutcome;
use crate::outcome::Outcome;
use crate::publish::{OutgoingEvent, Publisher};
use crate::retry::{delay_after, Failure, RetryState};
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
    let limit = rt.settings.body_limit;
    Either::Right(read_body(body, limit).then(move |body| match body {
        Ok(body) => Either::Left(deliver(rt, target, headers, body)),
        Err(refused) => Either::Right(std::future::ready(refused)),
    }))
}

/// A delivery whose body has been read. When the handler is known before the body is read (on
/// its own route, where Dapr's routing rules send its types, or on a topic it alone consumes), the
/// envelope and the handler's event are read in one pass, as a hand-written handler reads them;
/// anything else takes the general path.
fn deliver(
    rt: Arc<Runtime>,
    target: Target,
    headers: HeaderMap,
    body: Bytes,
) -> impl Future<Output = Response> + Send + 'static {
    let key_hint = headers
        .get(&KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The handler is known from the route, or is the only one on the topic (which `resolve`
    // still checks against the event's type before running it).
    let handler = match target {
        Target::Handler(h) => Some(h),
        Target::Topic(t) => match rt.registry.topics[t].handlers[..] {
            [h] => Some(h),
            _ => None,
        },
    };
    let one_pass = handler
        .and_then(|h| rt.registry.handlers[h].def.read_typed)
        .and_then(|read| read(&body));
    match one_pass {
        Some((ce, event)) => {
            let ce = with_version_header(ce, &headers);
            Either::Left(process(rt, target, ce, key_hint, Some(event)).map(answer))
        }
        // Boxed: its future is large, and only this less common path pays for it.
        None => Either::Right(Box::pin(async move {
            handle_general(&rt, target, &headers, body, key_hint).await
        })),
    }
}

/// A delivery the one-pass read did not take: the body is read once as an event, its `data` left
/// as raw text for the handler to decode; only a body that is no event (a bulk batch, or garbage)
/// is looked at again.
async fn handle_general(
    rt: &Arc<Runtime>,
    target: Target,
    headers: &HeaderMap,
    body: Bytes,
    key_hint: Option<String>,
) -> Response {
    let parsed = CloudEvent::from_slice(&body);
    if parsed.is_err() {
        let entries = serde_json::from_slice::<Value>(&body)
            .ok()
            .as_ref()
            .and_then(bulk_entries);
        if let Some(entries) = entries {
            let mut statuses = Vec::with_capacity(entries.len());
            for (entry_id, event) in entries {
                let status = match event {
                    Ok(ce) => process(rt.clone(), target, ce, None, None).await,
                    Err(reason) => {
                        Box::pin(dead_letter_undecodable(rt, target, &reason, Value::Null)).await
                    }
                };
                statuses.push(json!({"entryId": entry_id, "status": status.as_str()}));
            }
            return answer_json(json!({ "statuses": statuses }));
        }
    }
    let status = match parsed {
        Ok(ce) => {
            process(
                rt.clone(),
                target,
                with_version_header(ce, headers),
                key_hint,
                None,
            )
            .await
        }
        Err(err) => {
            let raw = Value::String(String::from_utf8_lossy(&body).into_owned());
            Box::pin(dead_letter_undecodable(rt, target, &err.to_string(), raw)).await
        }
    };
    answer(status)
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

/// Our publisher's version arrives as a header (publish metadata → Kafka header); an extension
/// in the envelope wins.
fn with_version_header(mut ce: CloudEvent, headers: &HeaderMap) -> CloudEvent {
    let version = headers.get(&VERSION_HEADER).and_then(|v| v.to_str().ok());
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

fn answer_json(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

/// The entries of a bulk delivery, or `None` when the body is a single event.
fn bulk_entries(v: &Value) -> Option<Vec<(String, Result<CloudEvent, String>)>> {
    if v.get("type").and_then(Value::as_str) != Some("com.dapr.event.sent.bulk") {
        return None;
    }
    let entries = v.get("entries")?.as_array()?;
    Some(
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let id = e
                    .get("entryId")
                    .and_then(Value::as_str)
                    .map_or_else(|| i.to_string(), str::to_owned);
                let event = match e.get("event") {
                    // rawPayload: the event is the base64 of the broker's bytes.
                    Some(Value::String(b64)) => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD
                            .decode(b64.trim())
                            .map_err(|e| format!("bulk entry is not valid base64: {e}"))
                            .and_then(|bytes| {
                                CloudEvent::from_slice(&bytes).map_err(|e| e.to_string())
                            })
                    }
                    Some(ev) => CloudEvent::from_value(ev.clone()).map_err(|e| e.to_string()),
                    None => Err("bulk entry has no event".to_owned()),
                };
                (id, event)
            })
            .collect(),
    )
}

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

/// Chooses the handler for an event arriving at `target`.
fn resolve(
    rt: &Runtime,
    target: Target,
    ce: &CloudEvent,
    retry: &RetryState,
) -> Result<usize, String> {
    let sub = match target {
        Target::Handler(h) => return Ok(h),
        Target::Topic(t) => &rt.registry.topics[t],
    };
    if sub.is_retry {
        let name = retry.handler.as_deref().unwrap_or_default();
        return sub
            .handlers
            .iter()
            .copied()
            .find(|&i| rt.handlers[i].name == name)
            .ok_or_else(|| {
                format!(
                    "retry message for unknown handler `{name}` on {}",
                    sub.topic
                )
            });
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
    if ce.ty == "com.dapr.event.sent" && sub.handlers.len() == 1 {
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
    key_hint: Option<String>,
    decoded: Option<Decoded>,
) -> impl Future<Output = Status> + Send + 'static {
    // rawPayload: the broker's bytes may be a whole envelope written by a Dapr publisher.
    let ce = ce.unwrap_raw();
    let mut retry = RetryState::from_event(&ce);
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
            let (pubsub, topic) = target_topic(&rt, target);
            tracing::warn!(event_id = %ce.id, event_type = %ce.ty, %topic, "{reason}");
            let letter =
                DeadLetter::new(&ce, pubsub, topic, partition_key(&ce, key_hint)).reason(reason);
            publish_dead_letter(&rt, &rt.settings.default_dlq, pubsub, letter).await
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
        if let Some(due) = retry.due_ms {
            if !Box::pin(hold_until(rt, due)).await {
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

/// Schedules the next attempt of a delayed retry: the event goes to the retry topic of `delay`,
/// carrying its attempt, due time, handler, origin and failures.
fn schedule_retry<'r>(
    rt: &'r Runtime,
    h: usize,
    pending: &Pending,
    retry: &mut RetryState,
    delay: u64,
) -> BoxFuture<'r, Status> {
    let handler = &rt.registry.handlers[h];
    let ce = &pending.ce;
    retry.attempt += 1;
    retry.due_ms = Some(crate::clock::now_ms() + delay * 1000);
    retry.handler = Some(rt.handlers[h].name.clone());
    retry.origin_topic = Some(pending.origin_topic.to_string());
    let mut extensions = ce.extensions.clone();
    extensions.extend(retry.to_extensions());
    let out = OutgoingEvent {
        pubsub: handler.pubsub.clone(),
        topic: handler.retry_topic(delay),
        id: ce.id.clone(),
        ty: ce.ty.clone(),
        source: ce.source.clone(),
        data: ce.data().clone(),
        partition_key: partition_key(ce, pending.key_hint.clone()),
        extensions,
        // The retry continues the event's trace as a child span.
        traceparent: Some(crate::trace::child(ce.traceparent.as_deref())),
    };
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
        Some(template) => render_key(template, ce.data()),
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

/// A body that is not a CloudEvent: dead-letter what we have of it, with the reason.
async fn dead_letter_undecodable(rt: &Runtime, target: Target, reason: &str, raw: Value) -> Status {
    let (pubsub, topic) = target_topic(rt, target);
    tracing::warn!(%topic, "undecodable delivery: {reason}");
    // Deterministic, so a redelivered bad body yields the same dead letter, not a second one.
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, raw.to_string().as_bytes()).to_string();
    let mut ce = CloudEvent::new(id, "event-runtime.undecodable", "", raw);
    ce.topic = Some(topic.to_owned());
    ce.pubsubname = Some(pubsub.to_owned());
    let letter =
        DeadLetter::new(&ce, pubsub, topic, None).reason(format!("undecodable delivery: {reason}"));
    publish_dead_letter(rt, &rt.settings.default_dlq, pubsub, letter).await
}
