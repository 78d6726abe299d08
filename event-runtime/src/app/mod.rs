//! [`App`]: every registered handler, served as the axum routes the Dapr sidecar calls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;

use crate::config::{Config, Mode, ModeSource, Settings};
use crate::handler::def::HandlerDef;
use crate::handler::delivery::StateMap;
use crate::handler::registry::{AppError, Registry, ResolvedHandler};
use crate::http::ops::{OpsParts, OpsRoutes};
use crate::http::router::{router, RouterParts};
use crate::metrics::Metrics;
use crate::pipeline::{HandlerRuntime, Run, Runtime};
use crate::tooling::topics::TopicSpec;
use crate::transport::dapr::DaprClient;
use crate::transport::embedded::Broker;
use crate::transport::idempotency::{DaprStateStore, IdempotencyStore, MemoryStore};
use crate::transport::kv::Kv;
use crate::transport::publish::{AppIdentity, Publisher};
use crate::wire::subscription::DaprSubscription;

mod checks;
#[cfg(feature = "cli")]
mod cli;
mod declared;
mod layers;
mod serve;
#[cfg(feature = "grpc")]
mod stream;
#[cfg(feature = "grpc")]
pub use stream::StreamDeliveries;

/// The application: every `#[event_handler]` in the program, ready to serve.
///
/// ```
/// use event_runtime::{event_handler, App, Event};
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[event(type = "task.completed", version = "1.0")]
/// pub struct TaskCompleted { pub task_id: i64, pub user_id: String }
///
/// #[event_handler(pubsub = "kafka-pubsub", topic = "task-events", route = "/api/events/task-completed")]
/// async fn on_task_completed(event: TaskCompleted) -> anyhow::Result<()> { Ok(()) }
///
/// let app = App::new();
/// assert_eq!(app.subscriptions()[0].topic, "task-events");
/// let router: axum::Router = app.router();
/// ```
pub struct App {
    /// What runs: the handlers and what they share.
    run: Handlers,
    /// Where events come from and go.
    io: Io,
    /// What the app declares for its tooling (manifests, AsyncAPI).
    declared: Declared,
    metrics: Arc<Metrics>,
    /// The test harness's record of every run, when it asked for one.
    journal: Option<Arc<Mutex<Vec<Run>>>>,
    shutdown: Arc<watch::Sender<bool>>,
}

/// The handlers, resolved against the app-wide settings, and what they share.
struct Handlers {
    defs: Vec<&'static HandlerDef>,
    registry: Registry,
    settings: Settings,
    app_id: String,
    default_pubsub: String,
    state: StateMap,
    /// Delivery layers, app-wide and per handler.
    layers: layers::Layers,
}

/// The mode, and the sidecar or embedded broker and the idempotency store it implies.
struct Io {
    mode: Mode,
    mode_source: ModeSource,
    app_port: u16,
    broker: Arc<Broker>,
    dapr: DaprClient,
    /// A store given to [`App::with_idempotency_store`], else the mode's.
    store: Option<Arc<dyn IdempotencyStore>>,
    /// The embedded mode's idempotency store: this app's own, shared by the routers it builds.
    memory_store: MemoryStore,
    /// The outbox whose relay runs while the app serves.
    #[cfg(feature = "sqlx")]
    outbox: Option<crate::outbox::Outbox>,
}

/// What the app declares beyond its handlers.
#[derive(Default)]
struct Declared {
    topics: Vec<TopicSpec>,
    ops: OpsRoutes,
    published: Vec<crate::tooling::scopes::Published>,
    dapr_dead_letter_topic: Option<String>,
    /// Topics written in the CloudEvents Kafka binding's binary mode ([`App::with_binary_mode`]).
    binary_topics: Vec<String>,
    /// Where the manifests go (`EVENTS_ENV`, `KAFKA_CLUSTER`, `EVENTS_NAMESPACE`).
    manifests: crate::config::ManifestTarget,
    /// `EVENT_SCHEMAS_UPDATE`: `events schemas check` rewrites the snapshot.
    #[cfg_attr(not(feature = "cli"), allow(dead_code))]
    schemas_update: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("mode", &self.io.mode)
            .field(
                "handlers",
                &self
                    .run
                    .registry
                    .handlers
                    .iter()
                    .map(|h| h.def.qualified_name())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    /// Collects every registered handler. Panics when two of them conflict (the same route, or
    /// the same pubsub + topic + event type), naming both, as axum's `Router` does for
    /// overlapping routes, and when the environment's configuration is malformed (naming the
    /// variable and its value); [`App::try_new`] returns the error instead.
    pub fn new() -> Self {
        Self::try_new().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Collects every registered handler, or says which two conflict (or which two event types
    /// claim one CloudEvent type at one version), which environment variable is malformed, or
    /// which idempotent handler may run longer than its claim lease ([`AppError::Config`]).
    pub fn try_new() -> Result<Self, AppError> {
        Self::try_from_config(Config::from_env()?)
    }

    /// [`App::new`] with the settings of `config` instead of the process environment's: the app
    /// and everything it builds (its Dapr client, publisher, manifests) read them from here.
    /// Panics where [`App::try_from_config`] returns an error.
    ///
    /// ```
    /// use event_runtime::{config::Config, App};
    /// let env = |name: &str| (name == "APP_ID").then(|| "billing".to_owned());
    /// let app = App::from_config(Config::from_lookup(env).unwrap());
    /// assert_eq!(app.app_id(), "billing");
    /// ```
    pub fn from_config(config: Config) -> Self {
        Self::try_from_config(config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`App::try_new`] with the settings of `config` instead of the process environment's.
    pub fn try_from_config(config: Config) -> Result<Self, AppError> {
        crate::tooling::schema::check_unique()?;
        Self::build(crate::handler::def::registered(), config)
    }

    /// An app of only the given handlers (the framework's own tests, which each want a few of
    /// a binary's handlers; the registrations are not public API), configured by
    /// [`Config::from_env`].
    #[doc(hidden)]
    pub fn with_handlers(
        defs: impl IntoIterator<Item = &'static HandlerDef>,
    ) -> Result<Self, AppError> {
        Self::build(defs, Config::from_env()?)
    }

    fn build(
        defs: impl IntoIterator<Item = &'static HandlerDef>,
        config: Config,
    ) -> Result<Self, AppError> {
        let defs: Vec<&'static HandlerDef> = defs.into_iter().collect();
        let dapr = DaprClient::from_config(&config);
        let Config {
            mode,
            mode_source,
            app_port,
            dapr_endpoint: _,
            dapr_api_token: _,
            app_id,
            default_pubsub,
            settings,
            manifests,
            schemas_update,
        } = config;
        let registry =
            Registry::resolve_app(&defs, &app_id, &default_pubsub, &settings.default_dlq)?;
        let metrics = Arc::new(Metrics::new(
            registry.handlers.iter().map(|h| h.def.qualified_name()),
        ));
        let (shutdown, _) = watch::channel(false);
        let app = App {
            run: Handlers {
                defs,
                registry,
                settings,
                app_id,
                default_pubsub,
                state: StateMap::default(),
                layers: layers::Layers::default(),
            },
            io: Io {
                mode,
                mode_source,
                app_port,
                broker: Arc::new(Broker::default()),
                dapr,
                store: None,
                memory_store: MemoryStore::new(),
                #[cfg(feature = "sqlx")]
                outbox: None,
            },
            declared: Declared {
                manifests,
                schemas_update,
                ..Declared::default()
            },
            metrics,
            journal: None,
            shutdown: Arc::new(shutdown),
        };
        app.check_startup()?;
        Ok(app)
    }

    fn re_resolve(mut self) -> Result<Self, AppError> {
        self.run.registry = Registry::resolve_app(
            &self.run.defs,
            &self.run.app_id,
            &self.run.default_pubsub,
            &self.run.settings.default_dlq,
        )?;
        Ok(self)
    }

    /// Shares `value` with every handler that takes a [`State<T>`](crate::State) argument.
    pub fn with_state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.run.state.insert(value);
        self
    }

    /// The pubsub component of handlers that name none (default `EVENTS_PUBSUB`, else `kafka-pubsub`).
    pub fn with_default_pubsub(mut self, pubsub: &str) -> Self {
        self.run.default_pubsub = pubsub.to_owned();
        self.re_resolve().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The dead-letter topic of handlers that name none (default `EVENTS_DLQ`, else `dlq`).
    pub fn with_default_dlq(mut self, topic: &str) -> Self {
        self.run.settings.default_dlq = topic.to_owned();
        self.re_resolve().unwrap_or_else(|e| panic!("{e}"))
    }

    /// This app's id (default `APP_ID`, else `event-runtime-app`): the CloudEvent `source` of
    /// what it publishes, the namespace of its idempotency keys, and part of its retry topics'
    /// names, which keeps apps that share a topic out of each other's retries.
    ///
    /// ```
    /// # use event_runtime::App;
    /// let app = App::with_handlers([]).unwrap().with_app_id("todo");
    /// assert_eq!(app.app_id(), "todo");
    /// ```
    pub fn with_app_id(mut self, app_id: &str) -> Self {
        self.run.app_id = app_id.to_owned();
        self.re_resolve().unwrap_or_else(|e| panic!("{e}"))
    }

    /// This app's id.
    pub fn app_id(&self) -> &str {
        &self.run.app_id
    }

    /// Dapr sidecar or embedded broker (default: [`Config::mode`]).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.io.mode = mode;
        self.io.mode_source = ModeSource::Code;
        self
    }

    /// Runs on `broker` (embedded mode), for example one that outlives an app restart in a test.
    pub fn with_broker(mut self, broker: Arc<Broker>) -> Self {
        self.io.broker = broker;
        self.with_mode(Mode::Embedded)
    }

    /// Talks to the sidecar through `client` (Dapr mode), which publishes records of at most
    /// `EVENTS_MAX_MESSAGE_BYTES`.
    pub fn with_dapr_client(mut self, client: DaprClient) -> Self {
        self.io.dapr = client.with_max_message_bytes(self.run.settings.max_message_bytes);
        self.with_mode(Mode::Dapr)
    }

    /// Signs retry bookkeeping and dead letters with `secret` (default: `EVENTS_SIGNING_KEY`).
    /// Every replica of the app needs the same one; keep it in a secret store. Without one, an
    /// app on Dapr with delayed retries refuses to start, and any other app signs with a random
    /// key of its process, so its dead letters can be replayed only by that process.
    ///
    /// ```
    /// # use event_runtime::App;
    /// let app = App::with_handlers([]).unwrap().with_signing_key("a secret of 16+ bytes");
    /// ```
    pub fn with_signing_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.run.settings.signing_key =
            Some(crate::wire::signing::SigningKey::new(secret.as_ref()));
        self
    }

    /// Keeps idempotency keys in `store` (default: in memory when embedded, the Dapr state store
    /// `statestore` when on Dapr).
    pub fn with_idempotency_store(mut self, store: impl IdempotencyStore) -> Self {
        self.io.store = Some(Arc::new(store));
        self
    }

    /// Relays `outbox` while the app serves (and in a [`TestApp`](crate::testing::TestApp)):
    /// its events go out through [`App::publisher`], and its series join `GET /metrics`
    /// (`event_outbox_pending`, `event_outbox_oldest_pending_age_seconds`,
    /// `event_outbox_published_total`, `event_outbox_batches_total`,
    /// `event_outbox_publish_failures_total`, `event_outbox_dead_total`, `event_outbox_dead`,
    /// `event_outbox_buckets_held`). The relay stops when the app shuts down.
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::PgPool) -> anyhow::Result<()> {
    /// use event_runtime::{App, Outbox};
    /// let outbox = Outbox::postgres(pool);
    /// outbox.migrate().await?;
    /// App::new().with_outbox(outbox.clone()).serve().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sqlx")]
    pub fn with_outbox(mut self, outbox: crate::outbox::Outbox) -> Self {
        self.metrics.add_source(outbox.metrics());
        self.io.outbox = Some(outbox);
        self
    }

    /// The outbox the app relays, if any.
    #[cfg(feature = "sqlx")]
    pub(crate) fn outbox(&self) -> Option<&crate::outbox::Outbox> {
        self.io.outbox.as_ref()
    }

    /// The default per-run handler timeout (60 s). It must stay shorter than the claim lease
    /// for idempotent handlers without a `timeout` of their own, or `serve` refuses to start.
    pub fn with_handler_timeout(mut self, timeout: Duration) -> Self {
        self.run.settings.handler_timeout = timeout;
        self
    }

    /// The idempotency claim lease (120 s): how long a crashed holder blocks a key. It must stay
    /// longer than every idempotent handler's timeout, or `serve` refuses to start.
    pub fn with_claim_lease(mut self, lease: Duration) -> Self {
        self.run.settings.claim_lease = lease;
        self
    }

    /// The largest request body accepted (4 MiB, Dapr's default).
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.run.settings.body_limit = bytes;
        self
    }

    /// The largest record the broker takes (default `EVENTS_MAX_MESSAGE_BYTES`, else 1 MiB as
    /// Kafka's `message.max.bytes`). Every publish, retry and dead letter is checked against it
    /// before it is sent, and a bulk subscription must fit its batches in
    /// `EVENTS_MAX_BULK_BODY_BYTES`.
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.run.settings.max_message_bytes = bytes;
        self.io.dapr = self.io.dapr.with_max_message_bytes(bytes);
        self
    }

    /// The largest bulk delivery body read (default `EVENTS_MAX_BULK_BODY_BYTES`, else 256
    /// MiB). Every bulk subscription's largest batch must fit in it, or the app refuses to start.
    pub fn with_max_bulk_body_bytes(mut self, bytes: usize) -> Self {
        self.run.settings.max_bulk_body_bytes = bytes;
        self
    }

    /// Requires `dapr-api-token: token` on Dapr-facing routes (default: `APP_API_TOKEN`).
    pub fn with_app_api_token(mut self, token: Option<String>) -> Self {
        self.run.settings.app_api_token = token;
        self
    }

    /// Sets a Dapr-level `deadLetterTopic` on every subscription, for what only Dapr sees (events
    /// it cannot deliver at all). It must differ from the framework's DLQ: Dapr sends every DROP
    /// there too, and the framework has already dead-lettered those.
    pub fn with_dapr_dead_letter_topic(mut self, topic: &str) -> Self {
        self.declared.dapr_dead_letter_topic = Some(topic.to_owned());
        self
    }

    /// Records every handler run (the test harness reads it).
    pub(crate) fn with_journal(mut self, journal: Arc<Mutex<Vec<Run>>>) -> Self {
        self.journal = Some(journal);
        self
    }

    pub(crate) fn app_api_token(&self) -> Option<String> {
        self.run.settings.app_api_token.clone()
    }

    /// The mode the app runs in.
    pub fn mode(&self) -> Mode {
        self.io.mode
    }

    /// The embedded broker (used in embedded mode).
    pub fn broker(&self) -> Arc<Broker> {
        self.io.broker.clone()
    }

    /// The resolved handlers.
    pub fn handlers(&self) -> &[ResolvedHandler] {
        &self.run.registry.handlers
    }

    /// What `GET /dapr/subscribe` answers.
    pub fn subscriptions(&self) -> Vec<DaprSubscription> {
        self.run
            .registry
            .dapr_subscriptions(self.declared.dapr_dead_letter_topic.as_deref())
    }

    /// A publisher for this app's mode. It publishes for this app: it checks dead letters
    /// against the app's key before [`dlq::replay`](crate::dlq::replay) sends them.
    pub fn publisher(&self) -> Publisher {
        let p = match self.io.mode {
            Mode::Dapr => Publisher::from_dapr(self.io.dapr.clone()),
            Mode::Embedded => Publisher::embedded(self.io.broker.clone()),
        };
        let consumed = self.run.registry.topics.iter().filter(|t| !t.is_retry);
        let identity = AppIdentity {
            app_id: self.run.app_id.clone(),
            // An app that may not start without a key has none to check letters with either.
            key: self
                .signing_key()
                .unwrap_or_else(|_| crate::wire::signing::SigningKey::process()),
            stable_key: self.run.settings.signing_key.is_some(),
            consumed: consumed
                .map(|t| (t.pubsub.clone(), t.topic.clone()))
                .collect(),
            state_store: self.run.settings.state_store.clone(),
            binary_topics: self.declared.binary_topics.clone(),
        };
        p.with_pubsub(&self.run.default_pubsub)
            .with_source(&self.run.app_id)
            .with_max_message_bytes(self.run.settings.max_message_bytes)
            .for_app(identity)
    }

    fn store(&self) -> Arc<dyn IdempotencyStore> {
        match (&self.io.store, self.io.mode) {
            (Some(s), _) => s.clone(),
            (None, Mode::Dapr) => Arc::new(DaprStateStore::new(
                self.io.dapr.clone(),
                &self.run.settings.state_store,
            )),
            (None, Mode::Embedded) => Arc::new(self.io.memory_store.clone()),
        }
    }

    /// The axum router Dapr calls: `GET /dapr/subscribe`, one route per handler, one dispatch
    /// route per topic, and the ops routes `GET /healthz`, `/readyz`, `/metrics`,
    /// `/asyncapi.json`, `/events/schemas` (where [`App::with_ops_routes`] puts them). Merge it
    /// with your own routes. Building it starts nothing in the background.
    ///
    /// # Panics
    ///
    /// Where `serve` would refuse to start for want of a secret or a bound: on Dapr with delayed
    /// retries and no signing key ([`App::with_signing_key`]), with an empty API token, or with
    /// a bulk subscription whose batches could pass [`App::with_max_bulk_body_bytes`].
    pub fn router(&self) -> Router {
        self.router_on(self.runtime(), self.answered_subscriptions())
    }

    /// Whether daprd hands events over gRPC streams the app opens (`EVENTS_TRANSPORT=grpc-stream`
    /// on Dapr), rather than by calling its routes.
    fn streamed(&self) -> bool {
        self.io.mode == Mode::Dapr
            && self.run.settings.transport == crate::config::Transport::GrpcStream
    }

    /// What `GET /dapr/subscribe` answers: the subscriptions, or none when they are streamed
    /// (daprd would deliver each event twice).
    fn answered_subscriptions(&self) -> Vec<DaprSubscription> {
        if self.streamed() {
            Vec::new()
        } else {
            self.subscriptions()
        }
    }

    /// The pipeline every delivery goes through, whatever brought it.
    fn runtime(&self) -> Arc<Runtime> {
        let signing_key = self
            .check_bounds()
            .and_then(|()| self.signing_key())
            .unwrap_or_else(|e| panic!("{e}"));
        Arc::new(Runtime {
            registry: self.run.registry.clone(),
            settings: self.run.settings.clone(),
            state: Arc::new(self.run.state.clone()),
            publisher: self.publisher(),
            store: self.store(),
            gates: match self.io.mode {
                Mode::Dapr => Kv::Dapr(
                    self.io.dapr.clone(),
                    self.run.settings.state_store.as_str().into(),
                ),
                Mode::Embedded => self.io.broker.kv.clone(),
            },
            journal: self.journal.clone(),
            shutdown: self.shutdown.clone(),
            app_id: self.run.app_id.clone(),
            signing_key,
            metrics: self.metrics.clone(),
            handlers: HandlerRuntime::all(
                &self.run.registry,
                &self.run.settings,
                &self.metrics,
                |def| self.run.layers.of(def),
            ),
        })
    }

    /// The router on `rt`, answering `subscriptions` at `GET /dapr/subscribe`.
    fn router_on(&self, rt: Arc<Runtime>, subscriptions: Vec<DaprSubscription>) -> Router {
        let ops = OpsParts {
            settings: self.declared.ops.clone(),
            metrics: self.metrics.clone(),
            asyncapi: (
                self.run.app_id.clone(),
                self.run.registry.handlers.clone(),
                self.declared.published.clone(),
            ),
            readiness: Default::default(),
            sidecar: (self.io.mode == Mode::Dapr).then(|| self.io.dapr.clone()),
        };
        router(RouterParts {
            rt,
            subscriptions,
            ops,
        })
    }

    /// Where the operational routes (`/healthz`, `/readyz`, `/metrics`, `/asyncapi.json`,
    /// `/events/schemas`) are served, and whether a token guards them: at the root and open
    /// unless this says otherwise (see [`OpsRoutes`]).
    pub fn with_ops_routes(mut self, ops: OpsRoutes) -> Self {
        self.declared.ops = ops;
        self
    }

    /// The app's metrics (also served at `GET /metrics` in Prometheus' text format).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// A handle that shuts a running [`App::serve`] down gracefully, as SIGTERM does.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }
}

/// Shuts a serving app down: it stops accepting connections, lets in-flight deliveries finish,
/// and cuts short those waiting on an inline retry delay or a not-yet-due retry (they answer
/// RETRY, so the broker keeps the event).
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Starts shutting down.
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::checks::mode_notice;
    use super::*;

    #[test]
    fn embedded_by_default_is_a_loud_warning_and_says_how_to_switch() {
        let (level, text) = mode_notice(Mode::Embedded, ModeSource::Default).unwrap();
        assert_eq!(level, tracing::Level::WARN);
        for part in [
            "in memory in this process",
            "LOST",
            "EVENTS_MODE=dapr",
            "DAPR_HTTP_PORT",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        for source in [ModeSource::EventsMode, ModeSource::Code] {
            let (level, text) = mode_notice(Mode::Embedded, source).unwrap();
            assert_eq!(level, tracing::Level::INFO);
            assert!(text.contains("lost when it exits"), "{text}");
        }
        for source in [
            ModeSource::EventsMode,
            ModeSource::SidecarVariable,
            ModeSource::Code,
        ] {
            assert_eq!(mode_notice(Mode::Dapr, source), None);
        }
    }
}
