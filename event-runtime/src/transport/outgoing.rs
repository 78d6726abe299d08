//! An event on its way out (`OutgoingEvent`), the one writer of its CloudEvent envelope, and
//! why a publish failed (`PublishError`). Read by the sidecar client and the embedded broker alike.

use axum::body::Bytes;
use serde_json::{Map, Value};

use crate::event::Event;
use crate::wire::cloudevent::{write_envelope, Payload, Required, EXT_VERSION};
use crate::wire::names::InvalidName;
use crate::wire::trace::TraceContext;

/// An event on its way out, with everything the broker needs.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    /// Pubsub component.
    pub pubsub: String,
    /// Topic.
    pub topic: String,
    /// CloudEvent `id`.
    pub id: String,
    /// CloudEvent `type`.
    pub ty: String,
    /// CloudEvent `source`.
    pub source: String,
    /// The data, as JSON.
    pub data: Value,
    /// The partition key (Kafka record key).
    pub partition_key: Option<String>,
    /// Extension attributes; when non-empty the event is published as a full envelope.
    pub extensions: Map<String, Value>,
    /// W3C `traceparent` to carry on.
    pub traceparent: Option<String>,
    /// W3C `tracestate` to carry on, beside `traceparent`.
    pub tracestate: Option<String>,
    /// The exact bytes to write as the broker record, instead of an envelope built from the
    /// fields above (which then only describe it): retries, and replays of what arrived. On Dapr
    /// this is a publish with `rawPayload`, so the bytes reach Kafka unchanged.
    pub record: Option<Bytes>,
}

impl OutgoingEvent {
    /// Describes a typed event: its id is the event's own `event_id` when it has one, else a
    /// UUIDv5 of its type and data, so that publishing the same event twice yields the same id.
    pub fn from_event<E: Event>(
        pubsub: &str,
        topic: &str,
        source: &str,
        event: &E,
    ) -> Result<Self, PublishError> {
        let data = serde_json::to_value(event).map_err(|e| PublishError::Encode(e.to_string()))?;
        let ty = event.event_type();
        let id = event.event_id().unwrap_or_else(|| {
            let name = format!("{ty}\n{data}");
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
        });
        Ok(OutgoingEvent {
            pubsub: pubsub.to_owned(),
            topic: topic.to_owned(),
            id,
            ty: ty.to_owned(),
            source: source.to_owned(),
            data,
            partition_key: event.partition_key(),
            // The version travels with the event (a Kafka record header on Dapr, see `version`).
            extensions: Map::from_iter([(
                EXT_VERSION.to_owned(),
                Value::String(E::VERSION.to_owned()),
            )]),
            traceparent: None,
            tracestate: None,
            record: None,
        })
    }

    /// A record of exactly `bytes` for `topic`, keyed by `partition_key`. `id` and `ty` describe
    /// it (for logs, and the embedded broker's routing); `version` travels as publish metadata.
    pub fn record(
        pubsub: &str,
        topic: &str,
        id: &str,
        ty: &str,
        partition_key: Option<String>,
        version: Option<&str>,
        bytes: Bytes,
    ) -> Self {
        OutgoingEvent {
            pubsub: pubsub.to_owned(),
            topic: topic.to_owned(),
            id: id.to_owned(),
            ty: ty.to_owned(),
            source: String::new(),
            data: Value::Null,
            partition_key,
            extensions: version
                .map(|v| Map::from_iter([(EXT_VERSION.to_owned(), Value::String(v.to_owned()))]))
                .unwrap_or_default(),
            traceparent: None,
            tracestate: None,
            record: Some(bytes),
        }
    }
}

impl OutgoingEvent {
    /// The same event carrying `trace`.
    pub(crate) fn with_trace(mut self, trace: TraceContext) -> Self {
        self.traceparent = trace.traceparent;
        self.tracestate = trace.tracestate;
        self
    }

    /// The same event carrying the current span's context, when the `otel` feature is on and
    /// OpenTelemetry records that span (an outbox row written inside a delivery, say); else
    /// unchanged.
    #[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
    pub(crate) fn with_current_trace(self) -> Self {
        match TraceContext::current() {
            Some(trace) if self.traceparent.is_none() => self.with_trace(trace),
            _ => self,
        }
    }
}

/// What the broker's limit counts beside a record's value, at most: its key (added apart), its
/// headers, and for [`Form::Data`] the envelope daprd writes around the data.
const RECORD_OVERHEAD: usize = 1024;

/// The longest partition key sent as it is; a longer one is sent as its digest, which keeps
/// the key's records together and the publish request within what the sidecar reads.
pub(crate) const MAX_PARTITION_KEY: usize = 256;

impl OutgoingEvent {
    /// Refuses a record whose value is `value_len` bytes when, with its key and the broker's
    /// framing, it would be over `limit` bytes.
    pub(crate) fn check_size(&self, value_len: usize, limit: usize) -> Result<(), PublishError> {
        let key = self.partition_key.as_ref().map_or(0, |k| k.len());
        let size = value_len + key.min(MAX_PARTITION_KEY) + RECORD_OVERHEAD;
        if size <= limit {
            return Ok(());
        }
        Err(PublishError::TooLarge {
            pubsub: self.pubsub.clone(),
            topic: self.topic.clone(),
            id: self.id.clone(),
            size,
            limit,
        })
    }

    /// The value's size as the broker would store it (see [`Form`]).
    pub(crate) fn value_len(&self) -> usize {
        match self.form() {
            Form::Record(bytes) => bytes.len(),
            Form::Data | Form::Binary => self.data.to_string().len(),
            Form::Envelope => Value::Object(self.envelope()).to_string().len(),
        }
    }

    /// The partition key as sent: a long one as its digest.
    pub(crate) fn sent_partition_key(&self) -> Option<std::borrow::Cow<'_, str>> {
        let key = self.partition_key.as_deref()?;
        Some(if key.len() > MAX_PARTITION_KEY {
            crate::wire::signing::bounded(key, 0)
        } else {
            key.into()
        })
    }
}

/// How an outgoing event is written to the broker: the one rule both transports follow.
pub(crate) enum Form<'a> {
    /// Exactly these bytes (on Dapr, a publish with `rawPayload`).
    Record(&'a Bytes),
    /// The data alone, its CloudEvent attributes as publish metadata: Dapr writes the envelope.
    Data,
    /// A full CloudEvent envelope ([`OutgoingEvent::envelope`]), for extensions besides the
    /// version, which Dapr keeps only there.
    Envelope,
    /// The CloudEvents Kafka binding's binary mode: the data as the record value, the attributes
    /// as `ce_*` record headers ([`OutgoingEvent::binary_headers`]). On Dapr, a publish with
    /// `rawPayload` whose metadata the Kafka component writes as headers.
    Binary,
}

impl OutgoingEvent {
    /// How this event is written (see [`Form`]).
    pub(crate) fn form(&self) -> Form<'_> {
        match &self.record {
            Some(bytes) => Form::Record(bytes),
            None if self.extensions.len() == usize::from(self.version().is_some()) => Form::Data,
            None => Form::Envelope,
        }
    }

    /// How this event is written to a topic that takes binary mode (`binary`) or not: exact
    /// bytes stay exact bytes.
    pub(crate) fn form_in(&self, binary: bool) -> Form<'_> {
        match self.form() {
            Form::Record(bytes) => Form::Record(bytes),
            _ if binary => Form::Binary,
            form => form,
        }
    }

    /// The record headers of binary mode, as the CloudEvents Kafka binding names them:
    /// `ce_specversion`, `ce_id`, `ce_source`, `ce_type`, each extension as `ce_<name>` (the
    /// version included), the trace context as `ce_traceparent` and `ce_tracestate`, and
    /// `content-type` for the data.
    pub(crate) fn binary_headers(&self) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = [
            ("ce_specversion", "1.0"),
            ("ce_id", self.id.as_str()),
            ("ce_source", self.source.as_str()),
            ("ce_type", self.ty.as_str()),
            ("content-type", "application/json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (name, value) in &self.extensions {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            headers.push((format!("ce_{name}"), value));
        }
        let trace = [
            ("ce_traceparent", &self.traceparent),
            ("ce_tracestate", &self.tracestate),
        ];
        for (name, value) in trace {
            if let Some(value) = value {
                headers.push((name.to_owned(), value.clone()));
            }
        }
        headers
    }

    /// The event's version. It travels as publish metadata, which Kafka keeps as a record
    /// header and Dapr delivers as an HTTP header, so a version alone needs no envelope.
    pub(crate) fn version(&self) -> Option<&str> {
        self.extensions.get(EXT_VERSION).and_then(Value::as_str)
    }

    /// The CloudEvent envelope of the event: its attributes, its extensions (a version alone
    /// travels as metadata instead) and its data.
    pub(crate) fn envelope(&self) -> Map<String, Value> {
        let attributes = match self.form() {
            Form::Data | Form::Binary => Map::new(),
            Form::Record(_) | Form::Envelope => self.extensions.clone(),
        };
        let required = Required {
            id: &self.id,
            ty: &self.ty,
            source: &self.source,
            content_type: Some("application/json"),
        };
        write_envelope(attributes, required, Payload::Json(self.data.clone()))
    }
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event could not be serialized.
    #[error("cannot encode the event as JSON: {0}")]
    Encode(String),
    /// The sidecar could not be reached or did not answer in time.
    #[error("publish to {pubsub}/{topic} failed: cannot reach the Dapr sidecar: {message}")]
    Unreachable {
        /// Pubsub component.
        pubsub: String,
        /// Topic.
        topic: String,
        /// What went wrong.
        message: String,
    },
    /// The sidecar answered with an error.
    #[error("publish to {pubsub}/{topic} failed: Dapr answered {status} {error_code}: {message}")]
    Rejected {
        /// Pubsub component.
        pubsub: String,
        /// Topic.
        topic: String,
        /// HTTP status.
        status: u16,
        /// Dapr's `errorCode` (empty when the body had none).
        error_code: String,
        /// Dapr's `message`.
        message: String,
    },
    /// The embedded broker is shut down.
    #[error("publish to {pubsub}/{topic} failed: the embedded broker is stopped")]
    Stopped {
        /// Pubsub component.
        pubsub: String,
        /// Topic.
        topic: String,
    },
    /// A schedule or job name that cannot be used, or a job the scheduler refused.
    #[error("cannot schedule the event: {0}")]
    Schedule(String),
    /// The pubsub or topic name breaks its rule: refused before anything was sent.
    #[error("publish refused before reaching the sidecar: {0}")]
    InvalidName(#[from] InvalidName),
    /// The record would be larger than the broker takes (`EVENTS_MAX_MESSAGE_BYTES`, 1 MiB as
    /// Kafka's default): refused before anything was sent, as the broker would refuse it on
    /// every try.
    #[error(
        "publish of event {id} to {pubsub}/{topic} refused: its record would be about {size} \
         bytes, over the broker's limit of {limit} (EVENTS_MAX_MESSAGE_BYTES)"
    )]
    TooLarge {
        /// Pubsub component.
        pubsub: String,
        /// Topic.
        topic: String,
        /// The event's id.
        id: String,
        /// The record's size, with its key and what the broker adds around it.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl PublishError {
    /// Whether trying again may succeed: the sidecar was unreachable or answered 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            PublishError::Unreachable { .. } => true,
            PublishError::Rejected { status, .. } => *status >= 500,
            PublishError::Encode(_)
            | PublishError::Stopped { .. }
            | PublishError::InvalidName(_)
            | PublishError::Schedule(_)
            | PublishError::TooLarge { .. } => false,
        }
    }
}
