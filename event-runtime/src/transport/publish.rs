//! Publishing events: through the Dapr sidecar, or into the embedded broker.

use std::sync::Arc;

use crate::event::Event;
use crate::transport::dapr::DaprClient;
use crate::transport::embedded::Broker;
use crate::transport::outgoing::{OutgoingEvent, PublishError};
use crate::wire::trace::TraceContext;

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
    /// The delivery's trace, for a handler's publisher.
    trace: Option<TraceContext>,
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
            trace: None,
        }
    }

    pub(crate) fn embedded(broker: Arc<Broker>) -> Self {
        Publisher {
            backend: Backend::Embedded(broker),
            default_pubsub: crate::config::default_pubsub().into(),
            source: crate::config::app_id().into(),
            trace: None,
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

    pub(crate) fn with_trace(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The CloudEvent `source` of what it publishes.
    #[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
    pub(crate) fn source(&self) -> &str {
        &self.source
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
        let out = OutgoingEvent::from_event(pubsub, topic, &self.source, event)?;
        // With `otel`, the span current now (the delivery's, or the handler's own); else the
        // delivery's trace. On Dapr the sidecar's tracer starts a trace; the embedded broker has
        // none, so a publish outside any delivery starts one here.
        let trace = match (TraceContext::current(), &self.trace) {
            (Some(current), _) => current,
            (None, Some(delivery)) => delivery.clone(),
            (None, None) => TraceContext {
                traceparent: matches!(self.backend, Backend::Embedded(_))
                    .then(crate::wire::trace::new_root),
                tracestate: None,
            },
        };
        self.send(out.with_trace(trace)).await
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
