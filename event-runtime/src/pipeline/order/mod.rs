//! Per-key order across delayed retries: while one of a key's events waits on the retry ladder,
//! the key's later events on the topic are parked in the state store, not run; other keys keep
//! flowing. When the waiting event succeeds (or is dead-lettered, per the handler's
//! [`AfterDeadLetter`]), the key's parked events run in their order, one at a time, each through
//! the retry ladder's first tier, then the key's live traffic resumes.
//!
//! The state of a key is its [`gate`]; what a replica knows without asking is its [`view`]. A
//! delivery is *admitted* ([`admit`]) as the key's head or as free (no gate), or it is parked.
//! How its run ends moves the gate ([`begin`] before a delayed retry, [`finish`] after a
//! success or a dead letter). Every step that publishes does so before it records: a crash in
//! between repeats the publish (an idempotent handler skips the copy), and never loses an event.

pub(crate) mod gate;
pub(crate) mod view;

use axum::body::Bytes;

use crate::handler::def::AfterDeadLetter;
use crate::handler::delivery::partition_key;
use crate::pipeline::dead_letter::give_up;
use crate::pipeline::retry::bookkeeping::RetryState;
use crate::pipeline::retry::ladder::retry_record;
use crate::pipeline::run::Pending;
use crate::pipeline::Runtime;
use crate::transport::dapr::StateError;
use crate::wire::bulk::Status;
use crate::wire::cloudevent::CloudEvent;
use crate::wire::ladder::RETRY_TIERS;
use crate::wire::trace::TraceContext;
use gate::{Gate, Parked};

/// How a delivery stands with its key's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// The key has no gate (or the handler keeps no order): the event runs as any other.
    Free,
    /// The key's gate names this event: it runs, and how it ends moves the gate.
    Head,
}

/// How a run that moves a gate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// It succeeded, was dropped on purpose, or was handled before.
    Done,
    /// It was dead-lettered.
    DeadLettered,
}

/// What the order of a key needs to know of an event on its way to a handler.
pub(crate) struct Subject<'a> {
    pub ce: &'a CloudEvent,
    pub key_hint: Option<&'a str>,
    /// Its partition and offset, when the broker said them.
    pub position: Option<(u32, i64)>,
    /// The topic it arrived on.
    pub origin_topic: &'a str,
    /// Whether it arrived on the topic (not from the retry ladder): only such a delivery, read
    /// by the one consumer of its key's partition, gates its key.
    pub live: bool,
}

impl Pending {
    /// The delivery of this event, `live` when it arrived on its topic.
    pub(crate) fn subject(&self, live: bool) -> Subject<'_> {
        Subject {
            ce: &self.ce,
            key_hint: self.key_hint.as_deref(),
            position: self.position,
            origin_topic: &self.origin_topic,
            live,
        }
    }
}

/// The key an ordered handler orders `pending` by, `None` when it keeps no order for it.
fn ordered_key(rt: &Runtime, h: usize, pending: &Subject<'_>) -> Option<String> {
    if !rt.registry.handlers[h].def.keeps_order() {
        return None;
    }
    partition_key(pending.ce, pending.key_hint.map(str::to_owned))
}

/// The turn of a delivery known without asking the store: free when the handler keeps no
/// order, the event has no key, or this replica knows the key has no gate. `None`: ask
/// ([`admit`]).
pub(crate) fn admit_known(rt: &Runtime, h: usize, pending: &Subject<'_>) -> Option<Turn> {
    let Some(key) = ordered_key(rt, h, pending) else {
        return Some(Turn::Free);
    };
    let view = rt.handlers[h].order.as_ref()?;
    match pending.position {
        Some((partition, offset)) if pending.live => {
            view.vouches(partition, offset, &key).then_some(Turn::Free)
        }
        _ => None,
    }
}

/// The turn of a delivery, from its key's gate: free (no gate), head (the gate names it), or
/// not to run: parked behind the head (a live event) or a stale copy of a turn that has passed
/// (a retry message), both answered SUCCESS. A store out of reach asks for redelivery; a store
/// that refuses the key for good lets the event run unordered, so that nothing loops.
pub(crate) async fn admit(rt: &Runtime, h: usize, pending: &Subject<'_>) -> Result<Turn, Status> {
    let Some(key) = ordered_key(rt, h, pending) else {
        return Ok(Turn::Free);
    };
    let name = gate::gate_key(&rt.app_id, &rt.handlers[h].name, &key);
    let me = gate::identity(pending.ce);
    let live = pending.live;
    loop {
        let (gate, version) = match gate::read(&rt.gates, &name).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                if let (true, Some((partition, _)), Some(view)) =
                    (live, pending.position, &rt.handlers[h].order)
                {
                    view.free(partition, &key);
                }
                return Ok(Turn::Free);
            }
            Err(e) => return unreadable(e),
        };
        if gate.head == me {
            return Ok(Turn::Head);
        }
        if !live {
            tracing::info!(
                event_id = %pending.ce.id,
                "a retry of an event whose turn has passed: acknowledged, not run"
            );
            return Err(Status::Success);
        }
        match park(rt, &name, gate, &version, pending, &key).await {
            Ok(true) => {
                tracing::info!(event_id = %pending.ce.id, %key, "parked behind its key's earlier event");
                rt.handlers[h].metrics.parked();
                return Err(Status::Success);
            }
            Ok(false) => continue,
            Err(e) => return unreadable(e),
        }
    }
}

/// What the store's error means for a delivery.
fn unreadable(e: StateError) -> Result<Turn, Status> {
    if e.is_refusal() {
        tracing::error!(error = %e, "the state store refuses this key's order gate: the event runs unordered");
        Ok(Turn::Free)
    } else {
        tracing::error!(error = %e, "state store unavailable; asking for redelivery");
        Err(Status::Retry)
    }
}

/// Parks `pending` as the gate's last event; false when the gate changed meanwhile.
async fn park(
    rt: &Runtime,
    name: &str,
    gate: Gate,
    version: &str,
    pending: &Subject<'_>,
    key: &str,
) -> Result<bool, StateError> {
    let parked = Parked::of(pending.ce, key, pending.origin_topic);
    gate::put_parked(&rt.gates, name, gate.end, &parked).await?;
    let moved = Gate {
        end: gate.end + 1,
        ..gate
    };
    gate::replace(&rt.gates, name, &moved, version).await
}

/// Before a free event takes the retry ladder (or is held after a dead letter): gates its key
/// with it at the head, so the key's later events wait for it. `Ok(false)`: another event
/// gated the key first, and this one was parked behind it instead (answer SUCCESS).
pub(crate) async fn begin(rt: &Runtime, h: usize, pending: &Subject<'_>) -> Result<bool, Status> {
    let Some(key) = ordered_key(rt, h, pending) else {
        return Ok(true);
    };
    // A retry found its key without a gate (scheduled before the handler kept order, or a copy
    // of a turn that has passed): it runs on without one. Gating the key from the retry
    // consumer would hide the gate from the key's live consumer, which knows the key as free.
    if !pending.live {
        return Ok(true);
    }
    let name = gate::gate_key(&rt.app_id, &rt.handlers[h].name, &key);
    let me = gate::identity(pending.ce);
    if let (Some((partition, _)), Some(view)) = (pending.position, &rt.handlers[h].order) {
        view.gated(partition, &key);
    }
    loop {
        match gate::create(&rt.gates, &name, &me).await {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(e) => return unreadable(e).map(|_| true),
        }
        let (gate, version) = match gate::read(&rt.gates, &name).await {
            Ok(Some(found)) => found,
            Ok(None) => continue,
            Err(e) => return unreadable(e).map(|_| true),
        };
        if gate.head == me {
            return Ok(true);
        }
        match park(rt, &name, gate, &version, pending, &key).await {
            Ok(true) => return Ok(false),
            Ok(false) => continue,
            Err(e) => return unreadable(e).map(|_| true),
        }
    }
}

/// After a run that ended the event's turn: the key's next parked event gets its turn, or the
/// gate goes. `Some(RETRY)` when that could not be done now: the delivery is asked for again,
/// so that the turn passes on its redelivery.
pub(crate) async fn finish(
    rt: &Runtime,
    h: usize,
    pending: &Subject<'_>,
    turn: Turn,
    end: End,
) -> Option<Status> {
    let hold = rt.registry.handlers[h].def.after_dead_letter == AfterDeadLetter::Hold;
    match (turn, end) {
        (Turn::Free, End::Done) => None,
        (Turn::Free, End::DeadLettered) if !hold => None,
        // Held: the key waits for the dead letter's replay.
        (Turn::Free, End::DeadLettered) => begin(rt, h, pending).await.err(),
        (Turn::Head, End::DeadLettered) if hold => None,
        (Turn::Head, _) => {
            let key = ordered_key(rt, h, pending)?;
            let name = gate::gate_key(&rt.app_id, &rt.handlers[h].name, &key);
            match pass_turn(rt, h, &name, &gate::identity(pending.ce)).await {
                Ok(()) => None,
                Err(e) => {
                    tracing::error!(error = %e, "could not release the key's next event; asking for redelivery");
                    Some(Status::Retry)
                }
            }
        }
    }
}

/// Gives the turn of the gate `name`, held by `me`, to its next parked event (published to the
/// retry ladder's first tier, due at once), or removes the gate when none is parked.
async fn pass_turn(rt: &Runtime, h: usize, name: &str, me: &str) -> Result<(), String> {
    loop {
        let Some((gate, version)) = gate::read(&rt.gates, name).await.map_err(text)? else {
            return Ok(());
        };
        if gate.head != me {
            return Ok(()); // passed already, by an earlier run of this turn
        }
        if gate.first >= gate.end {
            if gate::remove(&rt.gates, name, &version)
                .await
                .map_err(text)?
            {
                return Ok(());
            }
            continue; // an event was parked meanwhile
        }
        let seq = gate.first;
        let next = gate::parked(&rt.gates, name, seq).await.map_err(text)?;
        let released = match &next {
            Some(parked) => release(rt, h, parked).await?,
            None => {
                tracing::error!(gate = %name, seq, "a parked event is missing from the state store: skipped");
                false
            }
        };
        let head = match &next {
            Some(parked) if released => parked.identity(),
            _ => me.to_owned(),
        };
        // The event is on the ladder: the turn is its own now. Only parks can race this write,
        // and they only move `end`.
        let mut gate = gate;
        let mut version = version;
        loop {
            let moved = Gate {
                head: head.clone(),
                first: seq + 1,
                end: gate.end,
            };
            if gate::replace(&rt.gates, name, &moved, &version)
                .await
                .map_err(text)?
            {
                break;
            }
            match gate::read(&rt.gates, name).await.map_err(text)? {
                Some((now, v)) if now.head == me && now.first == seq => (gate, version) = (now, v),
                _ => return Ok(()),
            }
        }
        if let Err(e) = gate::drop_parked(&rt.gates, name, seq).await {
            tracing::warn!(error = %e, "a released event's parked copy stays in the state store");
        }
        if released {
            return Ok(());
        }
        // The event was skipped or dead-lettered: the turn is still ours, for the one after it.
    }
}

/// Publishes a parked event to the retry ladder's first tier, due at once, as a first attempt;
/// false when the broker refuses it for good and it was dead-lettered instead.
async fn release(rt: &Runtime, h: usize, parked: &Parked) -> Result<bool, String> {
    let record: Bytes = parked
        .record()
        .ok_or("a parked event's record is not base64")?;
    let ce = CloudEvent::new(
        &parked.id,
        &parked.ty,
        &parked.source,
        serde_json::Value::Null,
    );
    let state = RetryState {
        handler: Some(rt.handlers[h].name.clone()),
        origin_topic: Some(parked.topic.clone()),
        version: parked.version.clone(),
        ..RetryState::first()
    };
    let trace = TraceContext::received(parked.traceparent.as_deref(), parked.tracestate.as_deref());
    let out = retry_record(
        rt,
        &state,
        &ce,
        &record,
        Some(parked.key.clone()),
        RETRY_TIERS[0],
        &trace,
    );
    match rt.publisher.send(out).await {
        Ok(()) => {
            rt.handlers[h].metrics.released();
            Ok(true)
        }
        Err(e) if e.is_transient() => Err(e.to_string()),
        // Refused for good (larger than the broker takes with its bookkeeping, say): it cannot
        // run in its turn, so it goes to the dead letters, and the turn passes on.
        Err(e) => {
            let ce = CloudEvent::from_record(record, rt.registry.handlers[h].def.raw_payload)
                .unwrap_or(ce);
            let reason = format!("a parked event cannot be released: {e}");
            let key = Some(parked.key.clone());
            let letter = give_up(rt, h, &ce, &parked.topic, key, Vec::new(), reason, true);
            match letter.await {
                Status::Retry => Err(format!("could not dead-letter a parked event: {e}")),
                _ => Ok(false),
            }
        }
    }
}

fn text(e: StateError) -> String {
    e.to_string()
}
