//! [`App`]: every registered handler, served as the axum routes the Dapr sidecar calls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::watch;

use crate::config::{Config, ConfigError, Mode, ModeSource, Settings};
use crate::context::StateMap;
use crate::dapr::DaprClient;
use crate::dispatch::{self, Run, Runtime};
use crate::embedded::Broker;
use crate::handler::HandlerDef;
use crate::idempotency::{DaprStateStore, IdempotencyStore, MemoryStore};
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::subscription::{AppError, DaprSubscription, Registry, ResolvedHandler};
use crate::topics::TopicSpec;

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
    defs: Vec<&'static HandlerDef>,
    registry: Registry,
    settings: Settings,
    default_pubsub: String,
    state: StateMap,
    mode: Mode,
    mode_source: ModeSource,
    app_port: u16,
    app_id: String,
    broker: Arc<Broker>,
    dapr: DaprClient,
    store: Option<Arc<dyn IdempotencyStore>>,
    journal: Option<Arc<Mutex<Vec<Run>>>>,
    dapr_dead_letter_topic: Option<String>,
    shutdown: Arc<watch::Sender<bool>>,
    topics: Vec<TopicSpec>,
    metrics: Arc<Metrics>,
    published: Vec<(&'static str, String)>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("mode", &self.mode)
            .field(
                "handlers",
                &self
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
        crate::schema::check_unique()?;
        Self::with_handlers(crate::handler::registered())
    }

    /// An app of only the given handlers (tests that each want a few of a binary's handlers).
    ///
    /// ```
    /// # use event_runtime::App;
    /// let app = App::with_handlers(event_runtime::registered().into_iter().filter(|h| h.topic == "none")).unwrap();
    /// assert!(app.subscriptions().is_empty());
    /// ```
    pub fn with_handlers(
        defs: impl IntoIterator<Item = &'static HandlerDef>,
    ) -> Result<Self, AppError> {
        let defs: Vec<&'static HandlerDef> = defs.into_iter().collect();
        let Config {
            mode,
            mode_source,
            app_port,
            dapr_endpoint,
            dapr_api_token,
            app_id,
            default_pubsub,
            settings,
        } = Config::from_env()?;
        let registry =
            Registry::resolve_app(&defs, &app_id, &default_pubsub, &settings.default_dlq)?;
        let metrics = Arc::new(Metrics::new(
            registry.handlers.iter().map(|h| h.def.qualified_name()),
        ));
        let (shutdown, _) = watch::channel(false);
        let app = App {
            defs,
            registry,
            settings,
            default_pubsub,
            state: StateMap::default(),
            mode,
            mode_source,
            app_port,
            app_id,
            broker: Arc::new(Broker::default()),
            dapr: DaprClient::new(&dapr_endpoint, dapr_api_token),
            store: None,
            journal: None,
            dapr_dead_letter_topic: None,
            metrics,
            topics: Vec::new(),
            published: Vec::new(),
            shutdown: Arc::new(shutdown),
        };
        app.check_startup()?;
        Ok(app)
    }

    /// The start-up checks, run when the app is built and again by `serve*` before it binds
    /// (the builder methods may have changed what they look at).
    fn check_startup(&self) -> Result<(), ConfigError> {
        self.check_names()?;
        self.check_timeouts()
    }

    /// Start-up check: every name a delivery may put into a sidecar URL follows its rule
    /// ([`crate::dapr::check_component`], [`crate::dapr::check_topic`]): each handler's pubsub
    /// component, dead-letter topic and retry topics (a long topic plus `.retry.<app>.<N>s` can pass
    /// Kafka's 249 characters), and the Dapr dead-letter topic. Caught here, not as a failed
    /// publish on every delivery.
    fn check_names(&self) -> Result<(), ConfigError> {
        use crate::dapr::{check_component, check_topic};
        for h in &self.registry.handlers {
            let refused = |invalid| ConfigError::InvalidName {
                owner: format!("handler `{}`", h.def.qualified_name()),
                invalid,
            };
            check_component("pubsub component", &h.pubsub).map_err(refused)?;
            check_topic(&h.dlq).map_err(refused)?;
        }
        // Every subscribed topic, the retry topics included.
        for sub in &self.registry.topics {
            let owner = sub.handlers.first().map(|&i| &self.registry.handlers[i]);
            let refused = |invalid| ConfigError::InvalidName {
                owner: owner.map_or_else(
                    || format!("topic `{}`", sub.topic),
                    |h| format!("handler `{}`", h.def.qualified_name()),
                ),
                invalid,
            };
            check_component("pubsub component", &sub.pubsub).map_err(refused)?;
            check_topic(&sub.topic).map_err(refused)?;
        }
        if let Some(topic) = &self.dapr_dead_letter_topic {
            check_topic(topic).map_err(|invalid| ConfigError::InvalidName {
                owner: "App::with_dapr_dead_letter_topic".into(),
                invalid,
            })?;
        }
        Ok(())
    }

    /// Start-up check: every idempotent handler's timeout (its own `timeout = N`, else the
    /// app-wide one) is shorter than the idempotency claim lease, so no duplicate delivery can
    /// take the claim over while the first run may still be going.
    fn check_timeouts(&self) -> Result<(), ConfigError> {
        let lease = self.settings.claim_lease;
        for h in self.registry.handlers.iter().filter(|h| h.def.idempotent) {
            let (timeout, timeout_from) = match h.def.timeout_secs {
                Some(secs) => (Duration::from_secs(secs), "its own `timeout`"),
                None => (
                    self.settings.handler_timeout,
                    "the app-wide handler timeout, EVENTS_HANDLER_TIMEOUT_SECS",
                ),
            };
            if timeout >= lease {
                return Err(ConfigError::TimeoutNotUnderLease {
                    handler: h.def.qualified_name(),
                    timeout_secs: timeout.as_secs(),
                    timeout_from,
                    lease_secs: lease.as_secs(),
                });
            }
        }
        Ok(())
    }

    fn re_resolve(mut self) -> Result<Self, AppError> {
        self.registry = Registry::resolve_app(
            &self.defs,
            &self.app_id,
            &self.default_pubsub,
            &self.settings.default_dlq,
        )?;
        Ok(self)
    }

    /// Shares `value` with every handler that takes a [`State<T>`](crate::State) argument.
    pub fn with_state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
        self
    }

    /// The pubsub component of handlers that name none (default `EVENTS_PUBSUB`, else `kafka-pubsub`).
    pub fn with_default_pubsub(mut self, pubsub: &str) -> Self {
        self.default_pubsub = pubsub.to_owned();
        self.re_resolve().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The dead-letter topic of handlers that name none (default `EVENTS_DLQ`, else `dlq`).
    pub fn with_default_dlq(mut self, topic: &str) -> Self {
        self.settings.default_dlq = topic.to_owned();
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
        self.app_id = app_id.to_owned();
        self.re_resolve().unwrap_or_else(|e| panic!("{e}"))
    }

    /// This app's id.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Dapr sidecar or embedded broker (default: [`Mode::from_env`]).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self.mode_source = ModeSource::Code;
        self
    }

    /// Runs on `broker` (embedded mode), for example one that outlives an app restart in a test.
    pub fn with_broker(mut self, broker: Arc<Broker>) -> Self {
        self.broker = broker;
        self.with_mode(Mode::Embedded)
    }

    /// Talks to the sidecar through `client` (Dapr mode).
    pub fn with_dapr_client(mut self, client: DaprClient) -> Self {
        self.dapr = client;
        self.with_mode(Mode::Dapr)
    }

    /// Keeps idempotency keys in `store` (default: in memory when embedded, the Dapr state store
    /// `statestore` when on Dapr).
    pub fn with_idempotency_store(mut self, store: impl IdempotencyStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The default per-run handler timeout (60 s). It must stay shorter than the claim lease
    /// for idempotent handlers without a `timeout` of their own, or `serve` refuses to start.
    pub fn with_handler_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handler_timeout = timeout;
        self
    }

    /// The idempotency claim lease (120 s): how long a crashed holder blocks a key. It must stay
    /// longer than every idempotent handler's timeout, or `serve` refuses to start.
    pub fn with_claim_lease(mut self, lease: Duration) -> Self {
        self.settings.claim_lease = lease;
        self
    }

    /// The largest request body accepted (4 MiB, Dapr's default).
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.settings.body_limit = bytes;
        self
    }

    /// Requires `dapr-api-token: token` on Dapr-facing routes (default: `APP_API_TOKEN`).
    pub fn with_app_api_token(mut self, token: Option<String>) -> Self {
        self.settings.app_api_token = token;
        self
    }

    /// Sets a Dapr-level `deadLetterTopic` on every subscription, for what only Dapr sees (events
    /// it cannot deliver at all). It must differ from the framework's DLQ: Dapr sends every DROP
    /// there too, and the framework has already dead-lettered those.
    pub fn with_dapr_dead_letter_topic(mut self, topic: &str) -> Self {
        self.dapr_dead_letter_topic = Some(topic.to_owned());
        self
    }

    /// Records every handler run (the test harness reads it).
    pub(crate) fn with_journal(mut self, journal: Arc<Mutex<Vec<Run>>>) -> Self {
        self.journal = Some(journal);
        self
    }

    pub(crate) fn app_api_token(&self) -> Option<String> {
        self.settings.app_api_token.clone()
    }

    /// The mode the app runs in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The embedded broker (used in embedded mode).
    pub fn broker(&self) -> Arc<Broker> {
        self.broker.clone()
    }

    /// The resolved handlers.
    pub fn handlers(&self) -> &[ResolvedHandler] {
        &self.registry.handlers
    }

    /// What `GET /dapr/subscribe` answers.
    pub fn subscriptions(&self) -> Vec<DaprSubscription> {
        self.registry
            .dapr_subscriptions(self.dapr_dead_letter_topic.as_deref())
    }

    /// A publisher for this app's mode.
    pub fn publisher(&self) -> Publisher {
        let p = match self.mode {
            Mode::Dapr => Publisher::from_dapr(self.dapr.clone()),
            Mode::Embedded => Publisher::embedded(self.broker.clone()),
        };
        p.with_pubsub(&self.default_pubsub)
            .with_source(&self.app_id)
    }

    fn store(&self) -> Arc<dyn IdempotencyStore> {
        match (&self.store, self.mode) {
            (Some(s), _) => s.clone(),
            (None, Mode::Dapr) => Arc::new(DaprStateStore::new(
                self.dapr.clone(),
                &self.settings.state_store,
            )),
            (None, Mode::Embedded) => {
                static EMBEDDED: std::sync::OnceLock<MemoryStore> = std::sync::OnceLock::new();
                Arc::new(EMBEDDED.get_or_init(MemoryStore::new).clone())
            }
        }
    }

    /// The axum router Dapr calls: `GET /dapr/subscribe`, one route per handler, one dispatch
    /// route per topic, and `GET /healthz`, `GET /metrics`, `GET /asyncapi.json`,
    /// `GET /events/schemas`. Merge it with your own routes. Building it starts nothing in the
    /// background.
    pub fn router(&self) -> Router {
        let rt = Arc::new(Runtime {
            registry: self.registry.clone(),
            settings: self.settings.clone(),
            state: Arc::new(self.state.clone()),
            publisher: self.publisher(),
            store: self.store(),
            journal: self.journal.clone(),
            shutdown: self.shutdown.clone(),
            app_id: self.app_id.clone(),
            signing_key: crate::retry::SigningKey::from_env(&self.app_id),
            metrics: self.metrics.clone(),
            handlers: dispatch::HandlerRuntime::all(&self.registry, &self.metrics),
        });
        let subscriptions = self.subscriptions();
        let token = self.settings.app_api_token.clone();
        let mut router = Router::new()
            .route(
                "/dapr/subscribe",
                get(move |headers: axum::http::HeaderMap| {
                    let subs = subscriptions.clone();
                    let token = token.clone();
                    async move { crate::server::subscribe_answer(&headers, token.as_deref(), subs) }
                }),
            )
            .route(
                "/healthz",
                get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
            );
        let metrics = self.metrics.clone();
        // Built on request, not with the router: it is rarely asked for and costs a schema walk.
        let asyncapi = Arc::new((
            self.app_id.clone(),
            self.registry.handlers.clone(),
            self.published.clone(),
        ));
        router = router
            .route(
                "/metrics",
                get(move || {
                    let metrics = metrics.clone();
                    async move {
                        (
                            [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                            metrics.render(),
                        )
                    }
                }),
            )
            .route(
                "/asyncapi.json",
                get(move || {
                    let parts = asyncapi.clone();
                    async move { axum::Json(asyncapi_doc(&parts.0, &parts.1, &parts.2)) }
                }),
            )
            .route(
                "/events/schemas",
                get(|| async { axum::Json(crate::schema::schemas()) }),
            );
        for (route, &target) in &self.registry.routes {
            let rt = rt.clone();
            router = router.route(
                route,
                post(move |request| dispatch::handle(rt.clone(), target, request)),
            );
        }
        router
    }

    /// Declares the app's topics once (partitions, retention); they drive `manifests()` (Strimzi
    /// `KafkaTopic`s) and whatever creates topics for tests.
    ///
    /// ```
    /// use event_runtime::{App, TopicSpec};
    /// let app = App::with_handlers([]).unwrap()
    ///     .with_topics([TopicSpec::new("task-events").partitions(12).retention_days(7).retention_cloud_days(30)]);
    /// assert_eq!(app.topics()[0].partitions, 12);
    /// ```
    pub fn with_topics(mut self, topics: impl IntoIterator<Item = TopicSpec>) -> Self {
        self.topics.extend(topics);
        self
    }

    /// Declares that this app publishes events of type `E` to `topic` (a `send` operation in the
    /// AsyncAPI document).
    pub fn publishes<E: crate::Event>(mut self, topic: &str) -> Self {
        for ty in E::TYPES {
            self.published.push((ty, topic.to_owned()));
        }
        self
    }

    /// The declared topics.
    pub fn topics(&self) -> &[TopicSpec] {
        &self.topics
    }

    /// The app's metrics (also served at `GET /metrics` in Prometheus' text format).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The Dapr declarative `Subscription` resources (`dapr.io/v2alpha1`) equivalent to
    /// `GET /dapr/subscribe`, retry topics included, and a Strimzi `KafkaTopic` per declared
    /// topic and its retry and dead-letter topics, as one multi-document YAML stream.
    /// `EVENTS_ENV=cloud` picks the cloud retention; `KAFKA_CLUSTER` names the Strimzi cluster.
    pub fn manifests(&self) -> String {
        let cluster = crate::config::non_empty("KAFKA_CLUSTER").unwrap_or_else(|| "kafka".into());
        crate::manifests::manifests_with(
            &self.subscriptions(),
            &self.topics,
            &self.app_id,
            &cluster,
            &self.manifest_options(),
        )
    }

    /// The Kafka topics the app needs: the declared ones, then their retry and dead-letter
    /// topics. The same list as the `KafkaTopic` manifests; test scripts create topics from it.
    pub fn kafka_topics(&self) -> Vec<crate::manifests::KafkaTopicPlan> {
        crate::manifests::kafka_topics(
            &self.subscriptions(),
            &self.topics,
            &self.manifest_options(),
        )
    }

    fn manifest_options(&self) -> crate::manifests::ManifestOptions {
        crate::manifests::ManifestOptions {
            deployment: crate::topics::Deployment::from_env(),
            namespace: crate::config::non_empty("EVENTS_NAMESPACE"),
            dead_letter_topics: crate::manifests::dead_letter_topics(
                self.handlers(),
                &self.settings.default_dlq,
            ),
        }
    }

    /// An AsyncAPI 3.0 document of every topic, message and operation, with the JSON Schemas of
    /// the registered event types (also served at `GET /asyncapi.json`).
    pub fn asyncapi(&self) -> serde_json::Value {
        asyncapi_doc(&self.app_id, self.handlers(), &self.published)
    }

    /// Serves the app on `0.0.0.0:$APP_PORT` (default 8080), with your own routes merged in;
    /// in embedded mode also runs the broker. Stops on SIGTERM or Ctrl-C, letting in-flight
    /// deliveries finish (those waiting on a retry delay are answered RETRY).
    ///
    /// An idempotent handler whose timeout is not shorter than the claim lease (see
    /// [`App::with_claim_lease`]), or a name a builder method set that breaks its rule, stops it
    /// before it binds, with an error of kind `InvalidInput` that wraps the [`AppError`].
    pub async fn serve(self) -> std::io::Result<()> {
        self.serve_with(Router::new()).await
    }

    /// [`App::serve`] with `routes` (your REST API, say) merged into the event routes.
    pub async fn serve_with(self, routes: Router) -> std::io::Result<()> {
        self.check_startup().map_err(refused)?;
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], self.app_port));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        self.serve_on(listener, routes).await
    }

    /// [`App::serve_with`] on a listener you bound (tests bind port 0).
    pub async fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        routes: Router,
    ) -> std::io::Result<()> {
        self.check_startup().map_err(refused)?;
        let router = self.router().merge(routes);
        crate::server::log_startup(&self, listener.local_addr()?);
        if let Some((level, notice)) = mode_notice(self.mode, self.mode_source) {
            if level == tracing::Level::WARN {
                tracing::warn!("{notice}");
            } else {
                tracing::info!("{notice}");
            }
        }
        if self.mode == Mode::Embedded {
            self.broker
                .start(router.clone(), self.settings.app_api_token.clone())
                .await
                .map_err(std::io::Error::other)?;
        }
        let shutdown = self.shutdown.clone();
        let result = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let mut requested = shutdown.subscribe();
                tokio::select! {
                    _ = crate::server::shutdown_signal() => {}
                    _ = requested.wait_for(|stopping| *stopping) => {}
                }
                tracing::info!("shutting down: finishing in-flight deliveries");
                let _ = shutdown.send(true);
            })
            .await;
        self.broker.stop();
        result
    }

    /// A handle that shuts a running [`App::serve`] down gracefully, as SIGTERM does.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }
}

/// A start-up error as `serve` returns it.
fn refused(e: ConfigError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, AppError::Config(e))
}

/// What a served app says about its mode: a warning when it fell back to the embedded broker
/// because nothing named a mode or a sidecar, a note when embedded was asked for.
fn mode_notice(mode: Mode, source: ModeSource) -> Option<(tracing::Level, &'static str)> {
    match (mode, source) {
        (Mode::Dapr, _) => None,
        (Mode::Embedded, ModeSource::Default) => Some((
            tracing::Level::WARN,
            "EMBEDDED MODE: neither EVENTS_MODE nor a Dapr sidecar variable (DAPR_HTTP_PORT, \
             DAPR_HTTP_ENDPOINT) is set, so events stay in memory in this process and are LOST \
             when it exits. To use the Dapr sidecar set EVENTS_MODE=dapr (or DAPR_HTTP_PORT); to \
             keep the embedded broker and silence this warning set EVENTS_MODE=embedded",
        )),
        (Mode::Embedded, _) => Some((
            tracing::Level::INFO,
            "embedded mode: events stay in memory in this process and are lost when it exits",
        )),
    }
}

/// The AsyncAPI document of `handlers`, with every registered event type's schema and the
/// declared publish targets.
fn asyncapi_doc(
    app_id: &str,
    handlers: &[ResolvedHandler],
    published: &[(&'static str, String)],
) -> serde_json::Value {
    let schemas: Vec<crate::asyncapi::EventSchema> = crate::schema::defs()
        .into_iter()
        .map(|d| crate::asyncapi::EventSchema {
            rust_name: d.rust_name,
            event_types: d.types,
            version: d.version,
            schema: (d.schema)(),
            topics: published
                .iter()
                .filter(|(ty, _)| d.types.contains(ty))
                .map(|(_, topic)| topic.clone())
                .collect(),
        })
        .collect();
    crate::asyncapi::asyncapi(app_id, handlers, &schemas)
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
