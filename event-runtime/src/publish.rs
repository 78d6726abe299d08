//! Publishing events: through the Dapr sidecar, or into the embedded broker.

use std::sync::Arc;

use axum::body::Bytes;
use serde_json::{Map, Value};

use crate::dapr::DaprClient;
use crate::embedded::Broker;
use crate::event::Event;

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
                crate::version::EXT_VERSION.to_owned(),
                Value::String(E::VERSION.to_owned()),
            )]),
            traceparent: None,
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
                .map(|v| {
                    Map::from_iter([(
                        crate::version::EXT_VERSION.to_owned(),
                        Value::String(v.to_owned()),
                    )])
                })
                .unwrap_or_default(),
            traceparent: None,
            record: Some(bytes),
        }
    }
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// The pubsub or topic name breaks its rule: refused before anything was sent.
    #[error("publish refused before reaching the sidecar: {0}")]
    InvalidName(#[from] crate::dapr::InvalidName),
}

impl PublishError {
    /// Whether trying again may succeed: the sidecar was unreachable or answered 5xx.
    pub fn is_transient(&self) -> bool {
        match self {
            PublishError::Unreachable { .. } => true,
            PublishError::Rejected { status, .. } => *status >= 500,
            PublishError::Encode(_)
            | PublishError::Stopped { .. }
            | PublishError::InvalidName(_) => false,
        }
    }
}

#[derive(Clone)]
enum Backend {
    Dapr(DaprClient),
    Embedded(Arc<Broker>),
}

/// Publishes events to topics: a handler argument, or a standalone client.
///
/// ```no_run
/// use event_runtime::{Event, Publisher};
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[event(type = "task.created", version = "1.0")]
/// pub struct TaskCreated { pub task_id: i64, pub user_id: String }
///
/// # async fn run() -> Result<(), event_runtime::PublishError> {
/// let publisher = Publisher::dapr_from_env();
/// publisher.publish("task-events", &TaskCreated { task_id: 1, user_id: "u-1".into() }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Publisher {
    backend: Backend,
    default_pubsub: Arc<str>,
    source: Arc<str>,
    traceparent: Option<String>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.backend {
            Backend::Dapr(_) => "dapr",
            Backend::Embedded(_) => "embedded",
        };
        f.debug_struct("Publisher")
            .field("backend", &backend)
            .field("default_pubsub", &self.default_pubsub)
            .finish()
    }
}

impl Publisher {
    /// A publisher that talks to the sidecar at `DAPR_HTTP_PORT` (default 3500) on localhost,
    /// sending `DAPR_API_TOKEN` when set; pubsub `kafka-pubsub` unless `EVENTS_PUBSUB` says otherwise.
    pub fn dapr_from_env() -> Self {
        Self::from_dapr(DaprClient::from_env())
    }

    pub(crate) fn from_dapr(client: DaprClient) -> Self {
        Publisher {
            backend: Backend::Dapr(client),
            default_pubsub: crate::config::default_pubsub().into(),
            source: crate::config::app_id().into(),
            traceparent: None,
        }
    }

    pub(crate) fn embedded(broker: Arc<Broker>) -> Self {
        Publisher {
            backend: Backend::Embedded(broker),
            default_pubsub: crate::config::default_pubsub().into(),
            source: crate::config::app_id().into(),
            traceparent: None,
        }
    }

    /// The same publisher with another default pubsub component.
    pub fn with_pubsub(mut self, pubsub: &str) -> Self {
        self.default_pubsub = pubsub.into();
        self
    }

    /// The same publisher with another CloudEvent `source`.
    pub fn with_source(mut self, source: &str) -> Self {
        self.source = source.into();
        self
    }

    pub(crate) fn with_trace(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// The default pubsub component.
    pub fn default_pubsub(&self) -> &str {
        &self.default_pubsub
    }

    /// Publishes `event` to `topic` on the default pubsub component.
    pub async fn publish<E: Event>(&self, topic: &str, event: &E) -> Result<(), PublishError> {
        let pubsub = self.default_pubsub.clone();
        self.publish_to(&pubsub, topic, event).await
    }

    /// Publishes `event` to `topic` on `pubsub`.
    pub async fn publish_to<E: Event>(
        &self,
        pubsub: &str,
        topic: &str,
        event: &E,
    ) -> Result<(), PublishError> {
        let mut out = OutgoingEvent::from_event(pubsub, topic, &self.source, event)?;
        // On Dapr the sidecar's tracer starts a trace; the embedded broker has none, so a publish
        // outside any delivery starts one here.
        out.traceparent = self
            .traceparent
            .clone()
            .or_else(|| matches!(self.backend, Backend::Embedded(_)).then(crate::trace::new_root));
        self.send(out).await
    }

    /// Publishes a prepared event (used for retries, dead letters and replays).
    ///
    /// On Dapr, a sidecar that cannot be reached or answers 5xx (Kafka's "not the leader for
    /// that partition" right after a topic is created, say) is tried twice more, 100 ms and
    /// 400 ms later. A 4xx is the caller's mistake and is returned at once. The CloudEvent id is
    /// the same on every try, so an idempotent consumer applies a doubled publish once.
    pub async fn send(&self, event: OutgoingEvent) -> Result<(), PublishError> {
        let client = match &self.backend {
            Backend::Dapr(client) => client,
            Backend::Embedded(broker) => return broker.publish(event),
        };
        let mut result = client.publish(&event).await;
        for backoff_ms in [100, 400] {
            if !result.as_ref().is_err_and(PublishError::is_transient) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(backoff_ms)).await;
            result = client.publish(&event).await;
        }
        result
    }
}
