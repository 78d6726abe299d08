//! Publishing events: through the Dapr sidecar, or into the embedded broker.

use std::sync::Arc;

use crate::config::{Config, DEFAULT_APP_ID, DEFAULT_PUBSUB};
use crate::event::Event;
use crate::transport::dapr::DaprClient;
use crate::transport::embedded::Broker;
use crate::transport::outgoing::{OutgoingEvent, PublishError};
use crate::wire::signing::SigningKey;
use crate::wire::trace::TraceContext;

#[derive(Clone)]
pub(crate) enum Backend {
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
/// let publisher = Publisher::from_config(&event_runtime::config::Config::from_env().unwrap());
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
    /// The largest record it writes (`EVENTS_MAX_MESSAGE_BYTES`).
    max_message_bytes: usize,
    /// The app it publishes for, when it came from one: what lets it sign and check dead letters.
    app: Option<Arc<AppIdentity>>,
}

/// The app a publisher publishes for: its id, its signing key, the topics it consumes and the
/// state store it keeps records in.
#[derive(Debug)]
pub(crate) struct AppIdentity {
    pub app_id: String,
    pub key: SigningKey,
    /// Whether the key was given (the same in every replica and after a restart), not this
    /// process's own.
    pub stable_key: bool,
    /// `(pubsub, topic)` of every subscription but the retry ladder's.
    pub consumed: Vec<(String, String)>,
    pub state_store: String,
    /// Topics whose events are written in the CloudEvents Kafka binding's binary mode.
    pub binary_topics: Vec<String>,
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
    /// A publisher that talks to the sidecar `config` names ([`DaprClient::from_config`]),
    /// publishing to its `default_pubsub` as its `app_id`, records of at most
    /// `max_message_bytes`.
    pub fn from_config(config: &Config) -> Self {
        Self::from_dapr(DaprClient::from_config(config))
            .with_pubsub(&config.default_pubsub)
            .with_source(&config.app_id)
            .with_max_message_bytes(config.settings.max_message_bytes)
    }

    /// [`Publisher::from_config`] of [`Config::from_env`].
    ///
    /// # Panics
    ///
    /// When the environment's configuration is malformed.
    #[deprecated(
        since = "0.1.0",
        note = "use `Publisher::from_config(&Config::from_env()?)`"
    )]
    pub fn dapr_from_env() -> Self {
        Self::from_config(&Config::from_env().unwrap_or_else(|e| panic!("{e}")))
    }

    pub(crate) fn from_dapr(client: DaprClient) -> Self {
        Self::on(Backend::Dapr(client))
    }

    pub(crate) fn embedded(broker: Arc<Broker>) -> Self {
        Self::on(Backend::Embedded(broker))
    }

    fn on(backend: Backend) -> Self {
        Publisher {
            backend,
            default_pubsub: DEFAULT_PUBSUB.into(),
            source: DEFAULT_APP_ID.into(),
            trace: None,
            max_message_bytes: 1024 * 1024,
            app: None,
        }
    }

    /// The same publisher writing records of at most `bytes` (on Dapr, its client's limit).
    pub(crate) fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// The same publisher, publishing for `app`.
    pub(crate) fn for_app(mut self, app: AppIdentity) -> Self {
        self.app = Some(Arc::new(app));
        self
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    pub(crate) fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// The app it publishes for, if it came from one.
    pub(crate) fn app(&self) -> Option<&AppIdentity> {
        self.app.as_deref()
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
            Backend::Embedded(broker) => {
                // As Kafka would refuse it.
                event.check_size(event.value_len(), self.max_message_bytes)?;
                return broker.publish(event);
            }
        };
        let binary = self
            .app
            .as_ref()
            .is_some_and(|app| app.binary_topics.contains(&event.topic));
        let mut result = client.publish_in(&event, binary).await;
        for backoff_ms in [100, 400] {
            if !result.as_ref().is_err_and(PublishError::is_transient) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(backoff_ms)).await;
            result = client.publish_in(&event, binary).await;
        }
        result
    }
}

impl Publisher {
    /// Keeps `bytes` under `key` in `store` (the embedded broker keeps them in memory), for a
    /// record too large to travel in its dead letter. Writing the same key twice is harmless:
    /// keys are named for their content.
    pub(crate) async fn park(
        &self,
        store: &str,
        key: &str,
        bytes: &[u8],
    ) -> Result<(), crate::transport::dapr::StateError> {
        use base64::Engine as _;
        match &self.backend {
            Backend::Embedded(broker) => {
                broker.park(key, bytes);
                Ok(())
            }
            Backend::Dapr(client) => {
                let value = serde_json::Value::String(
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                );
                // A first write. Losing it to another writer is fine: the key is named for its
                // content, so the bytes it holds are these.
                let kv = crate::transport::kv::Kv::Dapr(client.clone(), store.into());
                kv.put(key, &value, None).await.map(|_| ())
            }
        }
    }

    /// The bytes [`Publisher::park`] kept under `key`, `None` when there are none.
    pub(crate) async fn parked(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        use base64::Engine as _;
        match &self.backend {
            Backend::Embedded(broker) => Ok(broker.parked(key)),
            Backend::Dapr(client) => {
                let found = client
                    .get_state(store, key)
                    .await
                    .map_err(|e| e.to_string())?;
                let Some((value, _)) = found else {
                    return Ok(None);
                };
                let b64 = value.as_str().ok_or("the parked record is not a string")?;
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map(Some)
                    .map_err(|e| format!("the parked record is not base64: {e}"))
            }
        }
    }
}
