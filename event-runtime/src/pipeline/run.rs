//! Running a handler: until it succeeds, its retries are scheduled or spent, or it gives up;
//! each run with its idempotency claim, timeout and panic capture.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures::future::{BoxFuture, Either};
use futures::FutureExt as _;
use tracing::Instrument as _;

use crate::event::outcome::{Outcome, OutcomeKind};
use crate::handler::def::RetryMode;
use crate::handler::delivery::{partition_key, Delivery};
use crate::handler::registry::Target;
use crate::pipeline::dead_letter::{dead_letter_failed, give_up, publish_dead_letter, DeadLetter};
use crate::pipeline::middleware::{call_layered, lane_key, DeliveryRequest};
use crate::pipeline::order::{self, End, Turn};
use crate::pipeline::retry::{
    further_hop, hold_until, next_step, publish_retry, schedule_retry, sleep_unless_shutdown,
    Failure, NextStep, RetryState,
};
use crate::pipeline::route::{expired, resolve, target_dlq, target_topic, Unrouted};
use crate::pipeline::{Run, Runtime};
use crate::transport::idempotency::{render_key, Claim, ClaimToken};
use crate::wire::bulk::Status;
use crate::wire::cloudevent::CloudEvent;
use crate::wire::trace::TraceContext;

/// Processes one event and decides Dapr's answer. `decoded` is the handler's event when the
/// body was read in one pass with it.
///
/// The choice of handler is made before the future is built, so the future holds only what the
/// run needs (the event behind an `Arc`), not the event itself: a smaller future to allocate
/// and move on every delivery.
pub(crate) fn process(
    rt: Arc<Runtime>,
    target: Target,
    ce: Arc<CloudEvent>,
    mut retry: RetryState,
    (key_hint, position): (Option<String>, Option<(u32, i64)>),
    decoded: Option<Decoded>,
) -> impl Future<Output = Status> + Send + 'static {
    match resolve(&rt, target, &ce, &retry) {
        Err(Unrouted {
            handler: Some(h),
            reason,
        }) => {
            // Found its handler, but must not run (expired): to that handler's dead letters.
            let origin = retry.origin_topic.take();
            let origin = origin.unwrap_or_else(|| rt.handlers[h].topic.to_string());
            let key = partition_key(&ce, key_hint);
            let failures = retry.failures;
            let expired: BoxFuture<'static, Status> = Box::pin(async move {
                let _in_flight = rt.metrics.in_flight();
                tracing::warn!(event_id = %ce.id, event_type = %ce.ty, "{reason}");
                give_up(&rt, h, &ce, &origin, key, failures, reason, true).await
            });
            Either::Right(expired)
        }
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
            #[cfg(feature = "otel")]
            crate::wire::trace::otel::set_parent(
                &span,
                ce.traceparent.as_deref(),
                ce.tracestate.as_deref(),
            );
            let pending = Pending {
                ce,
                decoded,
                origin_topic,
                key_hint,
                position,
                ran: None,
            };
            // Through the handler's delivery layers only when it has some.
            let run = if rt.handlers[h].layered.is_none() {
                Either::Left(run_with_retries(rt, h, pending, retry))
            } else {
                let request = DeliveryRequest {
                    rt,
                    h,
                    pending,
                    retry,
                };
                Either::Right(call_layered(request))
            };
            Either::Left(run.instrument(span))
        }
        Err(Unrouted {
            handler: None,
            reason,
        }) => Either::Right(Box::pin(async move {
            let _in_flight = rt.metrics.in_flight();
            let (pubsub, sub_topic) = target_topic(&rt, target);
            // A retry names the topic the event was first delivered on; the record came from there.
            let topic = retry.origin_topic.as_deref().unwrap_or(sub_topic);
            tracing::warn!(event_id = %ce.id, event_type = %ce.ty, %topic, "{reason}");
            let letter =
                DeadLetter::new(&ce, pubsub, topic, partition_key(&ce, key_hint)).reason(reason);
            let letter = letter.with_failures(retry.failures);
            let trace =
                TraceContext::continued(ce.traceparent.as_deref(), ce.tracestate.as_deref());
            publish_dead_letter(&rt, target_dlq(&rt, target), pubsub, letter, trace).await
        }) as BoxFuture<'static, Status>),
    }
}

/// The handler's event, decoded with the envelope (see [`CloudEvent`]'s `read_typed`).
pub(crate) type Decoded = Box<dyn std::any::Any + Send>;

/// An event on its way to a handler, with what was learnt about it so far.
pub(crate) struct Pending {
    pub ce: Arc<CloudEvent>,
    pub decoded: Option<Decoded>,
    /// The topic the event was first delivered on (a retry message names it).
    pub origin_topic: Arc<str>,
    pub key_hint: Option<String>,
    /// Its partition and offset, when the broker said them.
    pub position: Option<(u32, i64)>,
    /// How a run of it already ended (an entry of a batch handler's call): its failure is
    /// retried or dead-lettered without running it first.
    pub ran: Option<Outcome>,
}

/// Runs the handler until it succeeds, its retries are scheduled or spent, or it gives up.
///
/// A plain function returning an `async` block rather than an `async fn`: an `async fn` keeps
/// its arguments twice in its future (as arguments, and moved into locals).
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn's future holds its arguments twice"
)]
pub(crate) fn run_with_retries(
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
            let due_ms = retry.due_ms.unwrap_or(0);
            if let Some(remaining) = further_hop(due_ms, crate::clock::now_ms()) {
                return publish_retry(rt, h, &pending, &retry, remaining).await;
            }
            if !Box::pin(hold_until(rt, retry.due_ms.unwrap_or(0))).await {
                return Status::Retry;
            }
        }
        // Whether it arrived on its topic, not from the retry ladder (scheduling a retry marks
        // `retry` as one, so this is read first).
        let live = retry.handler.is_none();
        // What an earlier step already did, taken out once; the rest stays borrowed.
        let (mut ran, mut decoded) = (pending.ran.take(), pending.decoded.take());
        let subject = pending.subject(live);
        // Its key's turn, when the handler keeps per-key order: boxed, as only a key the
        // replica does not know to be free pays for asking the store.
        let mut turn = match order::admit_known(rt, h, &subject) {
            Some(turn) => turn,
            None => match Box::pin(order::admit(rt, h, &subject)).await {
                Ok(turn) => turn,
                Err(answer) => return answer,
            },
        };
        // The handler's lane, when it has lanes (`concurrency = N`), held until Dapr's answer.
        let _lane = match &hrt.lanes {
            None => None,
            Some(lanes) => {
                let key = lane_key(&pending);
                match Box::pin(lanes.enter(key, &pending.ce.id)).await {
                    Some(guard) => Some(guard),
                    None => {
                        tracing::warn!("every delivery ahead in its lane outlasted the wait; asking for redelivery");
                        return Status::Retry;
                    }
                }
            }
        };
        // Borrowed, not moved out: this future then holds the event's parts once.
        let ce = &pending.ce;
        let origin_topic = &pending.origin_topic;
        let key_hint = &pending.key_hint;
        loop {
            // Checked once every wait is over (a hop, the lane, an inline delay): an event that
            // expires while it waits does not run, one that was alive when it began does.
            if retry.attempt > 1 {
                if let Some(reason) = expired(ce) {
                    let failures = std::mem::take(&mut retry.failures);
                    let key = partition_key(ce, key_hint.clone());
                    let status =
                        give_up(rt, h, ce, origin_topic, key, failures, reason, true).await;
                    return ended(rt, h, &subject, turn, End::DeadLettered, status).await;
                }
            }
            let run = Attempt {
                h,
                ce,
                topic: origin_topic,
                partition_key: key_hint.as_deref(),
                attempt: retry.attempt,
            };
            let outcome = match ran.take() {
                Some(ran) => Ok(ran),
                None => run_once(rt, run, decoded.take()).await,
            };
            let (err, permanent) = match outcome {
                // Not run: a duplicate of a handled event (SUCCESS), or a run of it in progress
                // elsewhere (RETRY).
                Err(answer) => return ended(rt, h, &subject, turn, End::Done, answer).await,
                Ok(Outcome::Success) => {
                    return ended(rt, h, &subject, turn, End::Done, Status::Success).await
                }
                Ok(Outcome::Drop(reason)) => {
                    tracing::info!(%reason, "handler dropped the event");
                    return ended(rt, h, &subject, turn, End::Done, Status::Drop).await;
                }
                Ok(Outcome::Retry(err)) => (err.to_string(), false),
                Ok(Outcome::DeadLetter(err)) => (err.to_string(), true),
            };
            tracing::warn!(error = %err, permanent, "handler failed");
            // An error's text travels in every retry message and dead letter: kept short.
            let err = crate::wire::names::cut(&err, MAX_ERROR_BYTES);
            retry.failures.push(Failure {
                attempt: retry.attempt,
                at: crate::clock::now_rfc3339(),
                error: err.clone(),
            });
            match next_step(handler.def, retry.attempt, permanent) {
                NextStep::GiveUp => {
                    let failures = std::mem::take(&mut retry.failures);
                    let status =
                        dead_letter_failed(rt, h, &pending, failures, &err, permanent).await;
                    return ended(rt, h, &subject, turn, End::DeadLettered, status).await;
                }
                NextStep::Inline(delay) => {
                    hrt.metrics.retry_scheduled(RetryMode::Inline);
                    // An event of the delivery's span (with `otel`, a span event).
                    tracing::info!(
                        attempt = retry.attempt + 1,
                        delay_secs = delay,
                        "retry scheduled inline"
                    );
                    if !Box::pin(sleep_unless_shutdown(rt, Duration::from_secs(delay))).await {
                        return Status::Retry;
                    }
                    retry.attempt += 1;
                }
                NextStep::Delayed(delay) => {
                    // The key's later events wait for this one from now on.
                    if turn == Turn::Free && rt.handlers[h].order.is_some() {
                        match Box::pin(order::begin(rt, h, &subject)).await {
                            Ok(true) => turn = Turn::Head,
                            // Another event holds the key's turn: this one is parked behind it.
                            Ok(false) => return Status::Success,
                            Err(answer) => return answer,
                        }
                    }
                    hrt.metrics.retry_scheduled(RetryMode::Delayed);
                    let status = schedule_retry(rt, h, &pending, &mut retry, delay).await;
                    // Refused for good, the retry was dead-lettered instead.
                    if status == Status::Drop {
                        return ended(rt, h, &subject, turn, End::DeadLettered, status).await;
                    }
                    return status;
                }
            }
        }
    }
}

/// Dapr's answer for a run that ended its event's turn, once the key's order has moved on
/// (nothing to do for a handler that keeps none). An answer that lets the broker forget the
/// event stands only once the turn has passed: RETRY when it could not pass yet.
async fn ended(
    rt: &Runtime,
    h: usize,
    pending: &order::Subject<'_>,
    turn: Turn,
    end: End,
    status: Status,
) -> Status {
    let forgotten = matches!(status, Status::Success | Status::Drop);
    if !forgotten || rt.handlers[h].order.is_none() || (turn == Turn::Free && end == End::Done) {
        return status;
    }
    Box::pin(order::finish(rt, h, pending, turn, end))
        .await
        .unwrap_or(status)
}

/// The longest error text kept with a failure.
const MAX_ERROR_BYTES: usize = 2048;

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

/// One run of the handler: idempotency claim, timeout, panic capture. `Err` is Dapr's answer
/// when the handler must not run. (Not an `async fn`, for the reason given on
/// [`run_with_retries`].)
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn's future holds its arguments twice"
)]
fn run_once<'a>(
    rt: &'a Arc<Runtime>,
    run: Attempt<'a>,
    decoded: Option<Decoded>,
) -> impl Future<Output = Result<Outcome, Status>> + Send + 'a {
    async move {
        let Attempt { h, ce, attempt, .. } = run;
        let hrt = &rt.handlers[h];
        let def = rt.registry.handlers[h].def;
        // The store's calls are boxed: only idempotent handlers pay for their futures.
        let token = if def.idempotent {
            match Box::pin(claim(rt, run)).await {
                Ok(token) => Some(token),
                Err(NotRun::Answer(status)) => return Err(status),
                // The store refuses this event's claim for good: it cannot run safely, and
                // asking again would loop, so it is dead-lettered, without running.
                Err(NotRun::Refused(why)) => return Ok(Outcome::dead_letter(why)),
            }
        } else {
            None
        };
        let started = tokio::time::Instant::now();
        let outcome = call(rt, run, decoded).await;
        hrt.metrics.handler_duration(started.elapsed());
        hrt.metrics.delivery(outcome.kind());
        let error = match &outcome {
            Outcome::Retry(e) | Outcome::DeadLetter(e) => Some(e.to_string()),
            Outcome::Drop(r) => Some(r.clone()),
            Outcome::Success => None,
        };
        record(rt, def.name, ce, attempt, outcome.kind(), error);
        if let Some(token) = token {
            Box::pin(settle(rt, token, &outcome)).await;
        }
        Ok(outcome)
    }
}

/// Why a handler is not run: Dapr's answer (a duplicate of a handled event, a run of it in
/// progress, the store out of reach), or the store's refusal of the claim for good.
enum NotRun {
    Answer(Status),
    Refused(String),
}

/// The longest event key kept as it is in a claim's key; a longer one is kept as its digest, so
/// that a claim's key always fits the sidecar's request line and the store.
const MAX_CLAIM_KEY_BYTES: usize = 128;

/// The claim key of an event for handler `h`: `app|handler|key`, where the event's key is its
/// `idempotency_key` template rendered, else its CloudEvents identity, source and id. Each part
/// is escaped (`%` and `|`), so distinct events never share a key, and Dapr's `||` never
/// appears; a long key is digested.
pub(crate) fn claim_key(rt: &Runtime, h: usize, ce: &CloudEvent) -> String {
    let def = rt.registry.handlers[h].def;
    let key = match def.idempotency_key {
        Some(template) => match def.key_fields.and_then(|fields| fields(ce)) {
            Some(fields) => render_key(template, &fields),
            None => render_key(template, ce.data()),
        },
        None => escaped_identity(&ce.source, &ce.id),
    };
    let key = crate::wire::signing::bounded(&key, MAX_CLAIM_KEY_BYTES);
    // Written out rather than with `format!`, which costs more than the rest of the key on
    // every idempotent delivery.
    let (app, handler) = (&*rt.app_id, &*rt.handlers[h].name);
    let mut claim = String::with_capacity(app.len() + handler.len() + key.len() + 8);
    claim.push_str(app);
    claim.push('|');
    claim.push_str(handler);
    claim.push('|');
    escape_into(&mut claim, &key);
    claim
}

/// An event's CloudEvents identity, `source|id`, each part escaped.
pub(crate) fn escaped_identity(source: &str, id: &str) -> String {
    let mut identity = String::with_capacity(source.len() + id.len() + 1);
    escape_into(&mut identity, source);
    identity.push('|');
    escape_into(&mut identity, id);
    identity
}

/// `%` and `|` percent-encoded.
pub(crate) fn escape(part: &str) -> std::borrow::Cow<'_, str> {
    if !part.bytes().any(|b| b == b'%' || b == b'|') {
        return part.into();
    }
    let mut escaped = String::with_capacity(part.len() + 8);
    escape_into(&mut escaped, part);
    escaped.into()
}

/// [`escape`], appended to `out`, in one pass.
fn escape_into(out: &mut String, part: &str) {
    let mut rest = part;
    while let Some(i) = rest.bytes().position(|b| b == b'%' || b == b'|') {
        out.push_str(&rest[..i]);
        out.push_str(if rest.as_bytes()[i] == b'%' {
            "%25"
        } else {
            "%7C"
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

/// Claims the event's idempotency key for this run: the token, or why the handler must not run.
async fn claim(rt: &Runtime, run: Attempt<'_>) -> Result<ClaimToken, NotRun> {
    let Attempt { h, ce, attempt, .. } = run;
    let hrt = &rt.handlers[h];
    let def = rt.registry.handlers[h].def;
    let key = claim_key(rt, h, ce);
    match rt.store.claim(&key, rt.settings.claim_lease).await {
        Ok(Claim::Acquired(token)) => Ok(token),
        Ok(Claim::Done) => {
            tracing::info!(%key, "duplicate of an event already handled: skipped");
            hrt.metrics.idempotent_skip();
            hrt.metrics.delivery(OutcomeKind::Skipped);
            record(rt, def.name, ce, attempt, OutcomeKind::Skipped, None);
            Err(NotRun::Answer(Status::Success))
        }
        Ok(Claim::Busy) => {
            tracing::info!(%key, "another delivery of this event is running; asking for redelivery");
            Err(NotRun::Answer(Status::Retry))
        }
        Err(e) if e.is_refusal() => {
            tracing::error!(error = %e, "the idempotency store refuses this event's claim");
            Err(NotRun::Refused(format!(
                "the idempotency store refuses the claim: {e}"
            )))
        }
        Err(e) => {
            tracing::error!(error = %e, "idempotency store unavailable; asking for redelivery");
            Err(NotRun::Answer(Status::Retry))
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
        app: rt.clone(),
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

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

pub(crate) fn record(
    rt: &Runtime,
    handler: &'static str,
    ce: &CloudEvent,
    attempt: u32,
    outcome: OutcomeKind,
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
