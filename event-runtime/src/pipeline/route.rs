//! Choosing the handler for an event, and the topic and dead-letter topic a route stands for.

use serde_json::Value;

use crate::handler::registry::Target;
use crate::pipeline::retry::RetryState;
use crate::pipeline::Runtime;
use crate::wire::cloudevent::{self, CloudEvent};

/// The pubsub and topic a target stands for.
pub(crate) fn target_topic(rt: &Runtime, target: Target) -> (&str, &str) {
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
pub(crate) fn target_dlq(rt: &Runtime, target: Target) -> &str {
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

/// Why an event is not run: the reason, and the handler it was for, when one was found.
#[derive(Debug)]
pub(crate) struct Unrouted {
    pub handler: Option<usize>,
    pub reason: String,
}

/// Why `ce` must not run any more, when it expired (a publish with `ttlInSeconds`).
///
/// daprd drops an expired CloudEvent before a subscription without rawPayload sees it; ours
/// are rawPayload, so the app does, into the DLQ.
pub(crate) fn expired(ce: &CloudEvent) -> Option<String> {
    let at = ce.extension_str("expiration")?;
    let expired = chrono::DateTime::parse_from_rfc3339(at)
        .is_ok_and(|at| at.timestamp_millis() <= crate::clock::now_ms() as i64);
    expired.then(|| format!("expired at {at} (published with a time to live)"))
}

/// Chooses the handler for an event arriving at `target`, and refuses an expired first
/// delivery. A retry's expiry is checked when its wait is over, before it runs.
pub(crate) fn resolve(
    rt: &Runtime,
    target: Target,
    ce: &CloudEvent,
    retry: &RetryState,
) -> Result<usize, Unrouted> {
    let h = choose(rt, target, ce, retry).map_err(|reason| Unrouted {
        handler: None,
        reason,
    })?;
    let is_retry = matches!(target, Target::Topic(t) if rt.registry.topics[t].is_retry);
    match expired(ce) {
        Some(reason) if !is_retry => Err(Unrouted {
            handler: Some(h),
            reason,
        }),
        _ => Ok(h),
    }
}

/// The handler of an event arriving at `target`.
fn choose(
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
