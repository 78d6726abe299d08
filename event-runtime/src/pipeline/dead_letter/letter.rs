//! The dead letter: the record of an event the framework gave up on, its wire form, and its
//! signature.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Event;
use crate::pipeline::retry::Failure;
use crate::wire::cloudevent::CloudEvent;
use crate::wire::signing::SigningKey;

/// The CloudEvent type of dead-letter records.
pub const DEAD_LETTER_TYPE: &str = "event-runtime.dead-letter";

/// The original event inside a dead-letter record.
///
/// On the wire the record travels once: a letter that keeps the record's bytes leaves `data`
/// out, and reading the letter back reads `data` from those bytes again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "DeadEventWire", into = "DeadEventWire")]
#[non_exhaustive]
pub struct DeadEvent {
    /// CloudEvent `id`.
    pub id: String,
    /// CloudEvent `type`.
    #[serde(rename = "type")]
    pub ty: String,
    /// CloudEvent `source`.
    pub source: String,
    /// CloudEvent `time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// The data as it arrived.
    pub data: Value,
    /// The partition key it was published with, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// The topic it was first delivered on.
    pub topic: String,
    /// The pubsub component.
    pub pubsub: String,
    /// The broker record exactly as it arrived, base64: what a replay writes back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// The event's version, as it arrived (data, envelope or record header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where the record was kept instead, when it was too large to travel in the letter: its
    /// key in the app's state store (`EVENTS_STATE_STORE`). Replay reads it from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_ref: Option<String>,
    /// Where the record sits in the broker (`topic/partition/offset`), when the broker said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_at: Option<String>,
}

/// [`DeadEvent`] as it travels: `data` only when no record carries it.
#[derive(Serialize, Deserialize)]
struct DeadEventWire {
    id: String,
    #[serde(rename = "type")]
    ty: String,
    source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition_key: Option<String>,
    topic: String,
    pubsub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record_at: Option<String>,
}

impl From<DeadEvent> for DeadEventWire {
    fn from(e: DeadEvent) -> Self {
        DeadEventWire {
            data: if e.record.is_some() {
                Value::Null
            } else {
                e.data
            },
            id: e.id,
            ty: e.ty,
            source: e.source,
            time: e.time,
            partition_key: e.partition_key,
            topic: e.topic,
            pubsub: e.pubsub,
            record: e.record,
            version: e.version,
            record_ref: e.record_ref,
            record_at: e.record_at,
        }
    }
}

impl From<DeadEventWire> for DeadEvent {
    fn from(w: DeadEventWire) -> Self {
        let mut e = DeadEvent {
            id: w.id,
            ty: w.ty,
            source: w.source,
            time: w.time,
            data: w.data,
            partition_key: w.partition_key,
            topic: w.topic,
            pubsub: w.pubsub,
            record: w.record,
            version: w.version,
            record_ref: w.record_ref,
            record_at: w.record_at,
        };
        if e.data.is_null() {
            if let Some(bytes) = e.record_bytes() {
                e.data = CloudEvent::from_record(bytes.into(), true)
                    .map(|ce| ce.data().clone())
                    .unwrap_or_default();
            }
        }
        e
    }
}

impl DeadEvent {
    /// The exact bytes of the record, when the dead letter kept them.
    pub fn record_bytes(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let b64 = self.record.as_deref()?;
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    }
}

/// What lands on the dead-letter topic: the original event and why it was given up.
///
/// It is an [`Event`] itself, so a handler can consume the DLQ:
///
/// ```
/// use event_runtime::{event_handler, dlq::DeadLetter};
///
/// #[event_handler(topic = "dlq")]
/// async fn on_dead_letter(letter: DeadLetter) {
///     eprintln!("{} gave up on {}: {}", letter.handler.unwrap_or_default(), letter.event.id, letter.reason);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The original event.
    pub event: DeadEvent,
    /// The handler that gave up (`module::name`); `None` when no handler could take the event.
    #[serde(default)]
    pub handler: Option<String>,
    /// How many runs were made.
    pub attempts: u32,
    /// Every failure, in order.
    #[serde(default)]
    pub failures: Vec<Failure>,
    /// First failure (RFC 3339).
    #[serde(default)]
    pub first_failure_at: Option<String>,
    /// Last failure (RFC 3339).
    #[serde(default)]
    pub last_failure_at: Option<String>,
    /// Whether the failure was classified permanent (no retries were tried or left).
    pub permanent: bool,
    /// The final reason, in one sentence.
    pub reason: String,
    /// The app that wrote the letter (its `APP_ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// That app's signature over what a replay would publish (HMAC-SHA256 with its
    /// `EVENTS_SIGNING_KEY`, hex): the letter is the app's own, unchanged. See
    /// [`verify`](super::replay::verify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Event for DeadLetter {
    const TYPES: &'static [&'static str] = &[DEAD_LETTER_TYPE];
    const VERSION: &'static str = "1.0";
    const FIELDS: &'static [&'static str] =
        &["event", "handler", "attempts", "permanent", "reason"];

    fn event_type(&self) -> &'static str {
        DEAD_LETTER_TYPE
    }

    fn partition_key(&self) -> Option<String> {
        self.event.partition_key.clone()
    }

    fn event_id(&self) -> Option<String> {
        // One record per event and handler: publishing it twice must not make two.
        Some(format!(
            "dlq:{}:{}",
            self.handler.as_deref().unwrap_or("-"),
            self.event.id
        ))
    }
}

impl DeadLetter {
    /// A record for `ce`, delivered on `pubsub`/`topic`.
    pub fn new(ce: &CloudEvent, pubsub: &str, topic: &str, partition_key: Option<String>) -> Self {
        use base64::Engine as _;
        DeadLetter {
            event: DeadEvent {
                id: ce.id.clone(),
                ty: ce.ty.clone(),
                source: ce.source.clone(),
                time: ce.time.clone(),
                data: ce.data().clone(),
                partition_key,
                topic: topic.to_owned(),
                pubsub: pubsub.to_owned(),
                record: ce
                    .record()
                    .map(|r| base64::engine::general_purpose::STANDARD.encode(r)),
                version: crate::event::version::version_of(ce),
                record_ref: None,
                record_at: None,
            },
            app: None,
            signature: None,
            handler: None,
            attempts: 0,
            failures: Vec::new(),
            first_failure_at: None,
            last_failure_at: None,
            permanent: true,
            reason: String::new(),
        }
    }

    /// Sets the final reason.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Sets the failures (and the first/last failure times from them).
    pub fn with_failures(mut self, failures: Vec<Failure>) -> Self {
        self.first_failure_at = failures.first().map(|f| f.at.clone());
        self.last_failure_at = failures.last().map(|f| f.at.clone());
        self.attempts = failures.last().map_or(self.attempts, |f| f.attempt);
        self.failures = failures;
        self
    }

    /// What the signature covers: who wrote the letter, for which handler, everything a replay
    /// publishes, and the account of the failure an operator decides on (an absent part is
    /// told from an empty one).
    pub(crate) fn signed_parts(&self) -> Vec<String> {
        let opt = |v: &Option<String>| v.as_ref().map_or("0".to_owned(), |v| format!("1{v}"));
        let e = &self.event;
        let payload = match (&e.record, &e.record_ref) {
            (Some(record), _) => format!("record:{record}"),
            (None, Some(key)) => format!("ref:{key}"),
            (None, None) => format!("data:{}", e.data),
        };
        vec![
            opt(&self.app),
            opt(&self.handler),
            e.id.clone(),
            e.ty.clone(),
            e.source.clone(),
            opt(&e.partition_key),
            e.topic.clone(),
            e.pubsub.clone(),
            opt(&e.version),
            payload,
            self.attempts.to_string(),
            self.permanent.to_string(),
            self.reason.clone(),
            opt(&self.first_failure_at),
            opt(&self.last_failure_at),
            serde_json::to_string(&self.failures).unwrap_or_default(),
        ]
    }

    /// The letter signed by app `app_id` with `key`.
    pub(crate) fn signed(mut self, app_id: &str, key: &SigningKey) -> Self {
        self.app = Some(app_id.to_owned());
        let parts = self.signed_parts();
        let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
        self.signature = Some(key.sign(&parts));
        self
    }
}
