//! Replaying dead letters: choosing them ([`ReplayFilter`]), checking them ([`verify`]), and
//! publishing each again to the topic it was delivered on ([`replay`]).

use serde_json::Value;

use crate::pipeline::dead_letter::letter::{DeadEvent, DeadLetter};
use crate::transport::outgoing::OutgoingEvent;
use crate::transport::publish::Publisher;

impl DeadLetter {
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

/// Which dead letters to replay: the JSON body of an app's `POST /dlq/replay`, and, with the
/// `cli` feature, clap arguments an app's own replay command flattens in (as the example's
/// `dlq replay` does).
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
