//! A key's gate, as stored: whose turn it is, and the key's parked events, in their order.
//!
//! The gate is one small value (`{head, first, end}`) under `order|app|handler|key`; each parked
//! event is its own value under `…#seq`, so parking and releasing cost the same however many
//! events wait. Every change of the gate is a compare-and-set: the live consumer parks while
//! another replica's retry consumer releases, and neither loses the other's write.

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::transport::dapr::StateError;
use crate::transport::kv::{Kv, Version};
use crate::wire::cloudevent::CloudEvent;

/// The longest key kept as it is in a gate's name; a longer one is kept as its digest.
const MAX_KEY_BYTES: usize = 128;

/// A key's gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Gate {
    /// The event whose turn it is ([`identity`]): on the retry ladder, or dead-lettered and held.
    pub head: String,
    /// The sequence number of the next parked event to release.
    pub first: u64,
    /// The sequence number the next parked event takes.
    pub end: u64,
}

/// An event parked behind its key's head: what it takes to run it later as it arrived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Parked {
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// The record as it arrived (base64).
    pub record: String,
    pub key: String,
    /// The topic it arrived on.
    pub topic: String,
    pub version: Option<String>,
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl Parked {
    pub(crate) fn of(ce: &CloudEvent, key: &str, topic: &str) -> Self {
        use base64::Engine as _;
        Parked {
            id: ce.id.clone(),
            source: ce.source.clone(),
            ty: ce.ty.clone(),
            record: base64::engine::general_purpose::STANDARD.encode(ce.record_or_envelope()),
            key: key.to_owned(),
            topic: topic.to_owned(),
            version: crate::event::version::version_of(ce),
            traceparent: ce.traceparent.clone(),
            tracestate: ce.tracestate.clone(),
        }
    }

    /// The record's bytes; `None` when what was stored is not base64.
    pub(crate) fn record(&self) -> Option<Bytes> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(&self.record);
        bytes.ok().map(Bytes::from)
    }

    /// The event's identity, as a gate's head names it.
    pub(crate) fn identity(&self) -> String {
        identity_of(&self.source, &self.id)
    }
}

/// How a gate names an event: its CloudEvents identity, source and id, escaped and bounded.
pub(crate) fn identity(ce: &CloudEvent) -> String {
    identity_of(&ce.source, &ce.id)
}

fn identity_of(source: &str, id: &str) -> String {
    let escaped = crate::pipeline::run::escaped_identity(source, id);
    crate::wire::signing::bounded(&escaped, MAX_KEY_BYTES).into_owned()
}

/// The name of the gate of `key` for handler `handler` of app `app`.
pub(crate) fn gate_key(app: &str, handler: &str, key: &str) -> String {
    let key = crate::wire::signing::bounded(key, MAX_KEY_BYTES);
    format!(
        "order|{app}|{handler}|{}",
        crate::pipeline::run::escape(&key)
    )
}

fn item_key(gate: &str, seq: u64) -> String {
    format!("{gate}#{seq}")
}

/// The gate and its version, `None` when the key has none. A value that is not a gate counts
/// as none: the store holds what this code wrote, so it means a foreign write, not a turn.
pub(crate) async fn read(kv: &Kv, key: &str) -> Result<Option<(Gate, Version)>, StateError> {
    Ok(kv
        .get(key)
        .await?
        .and_then(|(v, version)| Some((serde_json::from_value(v).ok()?, version))))
}

/// Creates the gate with `head` at its head; false when the key has one already.
pub(crate) async fn create(kv: &Kv, key: &str, head: &str) -> Result<bool, StateError> {
    let gate = Gate {
        head: head.to_owned(),
        first: 0,
        end: 0,
    };
    kv.put(key, &to_value(&gate), None).await
}

/// Replaces the gate if it is still at `version`; false when someone else changed it first.
pub(crate) async fn replace(
    kv: &Kv,
    key: &str,
    gate: &Gate,
    version: &str,
) -> Result<bool, StateError> {
    kv.put(key, &to_value(gate), Some(version)).await
}

/// Removes the gate if it is still at `version`.
pub(crate) async fn remove(kv: &Kv, key: &str, version: &str) -> Result<bool, StateError> {
    kv.delete(key, Some(version)).await
}

/// Stores `parked` as the gate's event number `seq` (the gate's `end` is moved by the caller).
pub(crate) async fn put_parked(
    kv: &Kv,
    key: &str,
    seq: u64,
    parked: &Parked,
) -> Result<(), StateError> {
    kv.set(&item_key(key, seq), &to_value(parked)).await
}

/// The gate's parked event number `seq`, `None` when there is none (or it is unreadable).
pub(crate) async fn parked(kv: &Kv, key: &str, seq: u64) -> Result<Option<Parked>, StateError> {
    let found = kv.get(&item_key(key, seq)).await?;
    Ok(found.and_then(|(v, _)| serde_json::from_value(v).ok()))
}

/// Forgets the gate's parked event number `seq` (once it was released).
pub(crate) async fn drop_parked(kv: &Kv, key: &str, seq: u64) -> Result<bool, StateError> {
    kv.delete(&item_key(key, seq), None).await
}

fn to_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_keep_distinct_keys_apart() {
        let long = "k".repeat(10_000);
        assert!(gate_key("app", "m::h", &long).len() < 200);
        assert_ne!(gate_key("a", "h", "x|y"), gate_key("a", "h|x", "y"));
        let ce = CloudEvent::new("i|d", "t", "s", Value::Null);
        assert_eq!(identity(&ce), "s|i%7Cd");
    }

    /// Stored claims and gates are found again only if keys are written as before: each `%`
    /// and `|` of a part percent-encoded, the separators not.
    #[test]
    fn keys_are_escaped_as_stored_keys_were() {
        let before = |part: &str| part.replace('%', "%25").replace('|', "%7C");
        for part in ["", "plain", "a|b", "%", "%7C|%25", "||%%", "é|ü%"] {
            assert_eq!(crate::pipeline::run::escape(part), before(part), "{part:?}");
            assert_eq!(
                crate::pipeline::run::escaped_identity(part, "i|d"),
                format!("{}|{}", before(part), before("i|d"))
            );
        }
        assert_eq!(gate_key("app", "m::h", "u|1%"), "order|app|m::h|u%7C1%25");
    }

    #[test]
    fn a_parked_event_keeps_its_record_and_identity() {
        let ce = CloudEvent::new("e-2", "task.updated", "svc", serde_json::json!({"n": 2}));
        let parked = Parked::of(&ce, "u1", "task-events");
        assert_eq!(parked.identity(), identity(&ce));
        let back: Parked = serde_json::from_value(to_value(&parked)).unwrap();
        assert_eq!(back.record(), Some(ce.record_or_envelope()));
    }
}
