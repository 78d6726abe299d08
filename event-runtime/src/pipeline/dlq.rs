//! Dead letters: the record of an event the framework gave up on, and replaying it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::Event;
use crate::pipeline::retry::Failure;
use crate::transport::outgoing::OutgoingEvent;
use crate::transport::publish::Publisher;
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
    /// `EVENTS_SIGNING_KEY`, hex): the letter is the app's own, unchanged. See [`verify`].
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
    fn signed_parts(&self) -> Vec<String> {
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

    /// The original event, ready to publish again to the topic it was delivered on, with its
    /// original id and version (an idempotent handler that never succeeded on it will run it).
    /// A dead letter that kept the record is re-published as exactly those bytes.
    pub fn replay_event(&self, source: &str) -> OutgoingEvent {
        let e = &self.event;
        if let Some(bytes) = e.record_bytes() {
            return e.replay_record(bytes);
        }
        OutgoingEvent {
            pubsub: e.pubsub.clone(),
            topic: e.topic.clone(),
            id: e.id.clone(),
            ty: e.ty.clone(),
            source: if e.source.is_empty() {
                source.to_owned()
            } else {
                e.source.clone()
            },
            data: e.data.clone(),
            partition_key: e.partition_key.clone(),
            extensions: e
                .version
                .iter()
                .map(|v| {
                    (
                        crate::wire::cloudevent::EXT_VERSION.to_owned(),
                        Value::String(v.clone()),
                    )
                })
                .collect(),
            traceparent: None,
            tracestate: None,
            record: None,
        }
    }
}

/// Why a dead letter is not replayed without [`ReplayFilter::allow_unverified`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unreplayable {
    /// The publisher is not an app's ([`App::publisher`](crate::App::publisher)), so it has no
    /// key to check letters with.
    #[error(
        "this publisher is no app's, so it cannot check the letter: replay with `App::publisher()`"
    )]
    NoApp,
    /// The letter carries no signature (another producer wrote it, or an app before signed
    /// letters).
    #[error("the letter is not signed")]
    Unsigned,
    /// Another app wrote it.
    #[error("the letter was written by app `{0}`, not this one")]
    Foreign(String),
    /// The signature does not match: the letter was changed, or signed with another key.
    #[error("the letter's signature does not match: it was changed, or signed with another key")]
    Forged,
    /// It would be published to a topic this app does not consume.
    #[error("the letter names {pubsub}/{topic}, which this app does not consume")]
    NotConsumed {
        /// The pubsub component it names.
        pubsub: String,
        /// The topic it names.
        topic: String,
    },
}

/// Whether `letter` is one this app wrote, unchanged, for a topic it consumes: what [`replay`]
/// requires. `publisher` is the app's ([`App::publisher`](crate::App::publisher)), which knows
/// its key.
///
/// ```
/// use event_runtime::dlq::{verify, DeadLetter, Unreplayable};
/// use event_runtime::{testing::TestApp, App};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let app = TestApp::start(App::with_handlers([]).unwrap()).await;
/// let forged: DeadLetter = serde_json::from_value(serde_json::json!({
///     "event": {"id": "1", "type": "t", "source": "s", "data": {}, "topic": "payments", "pubsub": "p"},
///     "attempts": 1, "permanent": true, "reason": "planted", "app": "todo", "signature": "00"
/// })).unwrap();
/// assert!(verify(&app.publisher(), &forged).is_err());
/// # }
/// ```
pub fn verify(publisher: &Publisher, letter: &DeadLetter) -> Result<(), Unreplayable> {
    let app = publisher.app().ok_or(Unreplayable::NoApp)?;
    let signature = letter.signature.as_deref().ok_or(Unreplayable::Unsigned)?;
    match letter.app.as_deref() {
        Some(id) if id == app.app_id => {}
        Some(other) => return Err(Unreplayable::Foreign(other.to_owned())),
        None => return Err(Unreplayable::Unsigned),
    }
    let parts = letter.signed_parts();
    let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    if !app.key.verify(&parts, signature) {
        return Err(Unreplayable::Forged);
    }
    let e = &letter.event;
    if !app
        .consumed
        .iter()
        .any(|(p, t)| *p == e.pubsub && *t == e.topic)
    {
        return Err(Unreplayable::NotConsumed {
            pubsub: e.pubsub.clone(),
            topic: e.topic.clone(),
        });
    }
    Ok(())
}

/// Which dead letters to replay: the JSON body of an app's `POST /dlq/replay`, and the options
/// of `dlq replay` (feature `cli`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ReplayFilter {
    /// Only events of this CloudEvent type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long = "type", value_name = "TYPE"))]
    pub event_type: Option<String>,
    /// Only events this handler gave up on (`module::name` or just `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long, value_name = "HANDLER"))]
    pub handler: Option<String>,
    /// Only events whose last failure is at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long, value_name = "RFC3339", value_parser = rfc3339))]
    pub since: Option<String>,
    /// Only events whose last failure is before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "cli", arg(long, value_name = "RFC3339", value_parser = rfc3339))]
    pub until: Option<String>,
    /// Replay letters [`verify`] refuses too (not signed by this app, or for a topic it does
    /// not consume): the operator's explicit override, for letters they checked themselves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[cfg_attr(feature = "cli", arg(long))]
    pub allow_unverified: bool,
}

/// `--since` and `--until` are refused while parsing when they are no RFC 3339 time.
#[cfg(feature = "cli")]
fn rfc3339(value: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|_| value.to_owned())
        .map_err(|e| format!("not an RFC 3339 time ({e})"))
}

impl ReplayFilter {
    /// Whether `letter` passes the filter.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let at = letter.last_failure_at.as_deref().unwrap_or("");
        self.event_type
            .as_ref()
            .is_none_or(|t| *t == letter.event.ty)
            && self.handler.as_ref().is_none_or(|h| {
                letter
                    .handler
                    .as_deref()
                    .is_some_and(|lh| lh == h || lh.rsplit("::").next() == Some(h.as_str()))
            })
            && self
                .since
                .as_ref()
                .is_none_or(|s| parse_time(at) >= parse_time(s))
            && self
                .until
                .as_ref()
                .is_none_or(|u| parse_time(at) < parse_time(u))
    }
}

fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ReplayReport {
    /// Dead letters that passed the filter.
    pub matched: usize,
    /// Re-published to their original topic.
    pub replayed: usize,
    /// `(event id, error)` of those that could not be re-published.
    pub failed: Vec<(String, String)>,
    /// `(event id, why)` of those not replayed because [`verify`] refused them.
    #[serde(default)]
    pub refused: Vec<(String, String)>,
}

/// Re-publishes the dead letters that pass `filter` to their original topics, with their
/// original ids, logging progress as it goes.
///
/// Only letters this app wrote, unchanged, for topics it consumes are replayed ([`verify`],
/// with `publisher` the app's own); the others are listed in [`ReplayReport::refused`], unless
/// the filter says [`ReplayFilter::allow_unverified`]. A letter whose record was too large to
/// travel in it is replayed from where it was kept.
///
/// ```
/// use event_runtime::dlq::{replay, DeadLetter, ReplayFilter};
/// use event_runtime::{testing::TestApp, App};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let app = TestApp::start(App::with_handlers([]).unwrap()).await;
/// let letters: Vec<DeadLetter> = app.dead_letters("dlq"); // or wherever you keep them
/// let only_completed = ReplayFilter { event_type: Some("task.completed".into()), ..Default::default() };
/// let report = replay(&app.publisher(), &letters, &only_completed).await;
/// assert_eq!(report.replayed, report.matched);
/// # }
/// ```
pub async fn replay(
    publisher: &crate::Publisher,
    letters: &[DeadLetter],
    filter: &ReplayFilter,
) -> ReplayReport {
    let chosen: Vec<&DeadLetter> = letters.iter().filter(|l| filter.matches(l)).collect();
    let mut report = ReplayReport {
        matched: chosen.len(),
        ..ReplayReport::default()
    };
    tracing::info!(
        matched = report.matched,
        of = letters.len(),
        "DLQ replay starting"
    );
    for (i, letter) in chosen.iter().enumerate() {
        let id = letter.event.id.clone();
        if !filter.allow_unverified {
            if let Err(why) = verify(publisher, letter) {
                tracing::warn!(event_id = %id, %why, "DLQ replay: letter refused");
                report.refused.push((id, why.to_string()));
                continue;
            }
        }
        let sent = match replay_event(publisher, letter).await {
            Ok(event) => publisher.send(event).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match sent {
            Ok(()) => report.replayed += 1,
            Err(e) => report.failed.push((id, e)),
        }
        if (i + 1) % 100 == 0 || i + 1 == chosen.len() {
            tracing::info!(
                done = i + 1,
                total = chosen.len(),
                failed = report.failed.len(),
                refused = report.refused.len(),
                "DLQ replay progress"
            );
        }
    }
    report
}

/// The event a replay of `letter` publishes, its record read back from the state store when the
/// letter only points at it.
async fn replay_event(publisher: &Publisher, letter: &DeadLetter) -> Result<OutgoingEvent, String> {
    let e = &letter.event;
    let (Some(key), None) = (&e.record_ref, &e.record) else {
        return Ok(letter.replay_event(""));
    };
    let store = publisher
        .app()
        .map_or("statestore", |a| a.state_store.as_str());
    let bytes = publisher
        .parked(store, key)
        .await?
        .ok_or_else(|| format!("the record kept under `{key}` in {store} is gone"))?;
    Ok(e.replay_record(bytes))
}

impl DeadEvent {
    /// The record `bytes` of this event, for its topic, id, key and version: what a replay sends.
    fn replay_record(&self, bytes: Vec<u8>) -> OutgoingEvent {
        OutgoingEvent::record(
            &self.pubsub,
            &self.topic,
            &self.id,
            &self.ty,
            self.partition_key.clone(),
            self.version.as_deref(),
            bytes.into(),
        )
    }
}
