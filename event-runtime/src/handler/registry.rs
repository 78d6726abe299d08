//! What the app subscribes to: the resolved handler table and Dapr's `GET /dapr/subscribe` list.
//!
//! One Dapr subscription per pubsub + topic, rawPayload, with one route that dispatches across
//! the whole topic on each record's type (seed-style events, `com.dapr.event.sent`, on the
//! `event_type` in their data); and the app's retry ladder, when a handler has delayed retries.

use std::collections::{BTreeMap, HashMap};

use crate::handler::def::{BulkConfig, HandlerDef, RetryMode};
use crate::wire::ladder::{retry_topic, RETRY_TIERS};
use crate::wire::subscription::{BulkSubscribe, DaprSubscription, Routes};

/// A handler with its app-wide defaults applied.
#[derive(Debug, Clone)]
pub struct ResolvedHandler {
    /// The registration.
    pub(crate) def: &'static HandlerDef,
    /// Its pubsub component.
    pub(crate) pubsub: String,
    /// Its route.
    pub(crate) route: String,
    /// Its dead-letter topic.
    pub(crate) dlq: String,
}

impl ResolvedHandler {
    /// The function's name.
    pub fn name(&self) -> &'static str {
        self.def.name
    }

    /// `module::function`: how logs, metrics and dead letters name the handler.
    pub fn qualified_name(&self) -> String {
        self.def.qualified_name()
    }

    /// The topic it subscribes to.
    pub fn topic(&self) -> &'static str {
        self.def.topic
    }

    /// Its pubsub component (its own, else the app's default).
    pub fn pubsub(&self) -> &str {
        &self.pubsub
    }

    /// The route the sidecar delivers its topic to.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Its dead-letter topic (its own, else the app's default).
    pub fn dlq(&self) -> &str {
        &self.dlq
    }

    /// The delays of its retries, in seconds.
    pub fn retry(&self) -> &'static [u64] {
        self.def.retry
    }

    /// How its retries run.
    pub fn retry_mode(&self) -> RetryMode {
        self.def.retry_mode
    }

    /// Whether its runs are claimed (at most one effect per event).
    pub fn is_idempotent(&self) -> bool {
        self.def.idempotent
    }

    /// Its `idempotency_key` template, when it has one (else the key is the event's source and
    /// id).
    pub fn idempotency_key(&self) -> Option<&'static str> {
        self.def.idempotency_key
    }

    /// The CloudEvent types it takes.
    pub fn event_types(&self) -> &'static [&'static str] {
        self.def.event_types
    }

    /// The registration the macro submitted (not public API).
    #[doc(hidden)]
    pub fn def(&self) -> &'static HandlerDef {
        self.def
    }
}

/// Where a delivery route leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A handler's own route (a rule matched its type).
    Handler(usize),
    /// A topic's default route: dispatch by type, or by the `event_type` field of seed events.
    Topic(usize),
}

/// One subscription (pubsub + topic) and the handlers behind it.
#[derive(Debug, Clone)]
pub(crate) struct TopicSubscription {
    /// Pubsub component.
    pub pubsub: String,
    /// Topic.
    pub topic: String,
    /// The default route.
    pub default_route: String,
    /// Handlers (indexes into the handler table), in rule priority order.
    pub handlers: Vec<usize>,
    /// Whether this is one of this app's retry topics.
    pub is_retry: bool,
    /// The wait of its tier, in seconds, when it is a retry topic (0 otherwise).
    pub tier_secs: u64,
    /// Whether a handler of the topic takes raw payloads (records that are no CloudEvent).
    pub raw_payload: bool,
    /// Subscription metadata (string values only).
    pub metadata: BTreeMap<String, String>,
    /// Bulk subscription.
    pub bulk: Option<BulkConfig>,
}

/// Why the registered handlers cannot make an app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// Two handlers claim one route.
    #[error("handlers `{first}` and `{second}` both claim route `{route}`: give one of them another `route = \"...\"`")]
    DuplicateRoute {
        /// The route.
        route: String,
        /// One handler.
        first: String,
        /// The other.
        second: String,
    },
    /// Two handlers take the same event type on the same topic.
    #[error("handlers `{first}` and `{second}` both handle `{event_type}` on {pubsub}/{topic}: Dapr delivers each event to one route, so merge them into one handler or move one to another topic")]
    DuplicateType {
        /// Pubsub.
        pubsub: String,
        /// Topic.
        topic: String,
        /// The CloudEvent type.
        event_type: String,
        /// One handler.
        first: String,
        /// The other.
        second: String,
    },
    /// Two Rust types claim one CloudEvent type at one version.
    #[error("`{first}` and `{second}` both declare `{event_type}` version {version}: give one of them another version (and `upcast_from` the other), or use one type")]
    DuplicateEventVersion {
        /// The CloudEvent type.
        event_type: String,
        /// The version.
        version: String,
        /// One Rust type.
        first: String,
        /// The other.
        second: String,
    },
    /// Two handlers of one topic set one metadata key differently.
    #[error("handlers `{first}` and `{second}` of {pubsub}/{topic} set subscription metadata `{key}` differently (one Dapr subscription per topic): make them agree")]
    MetadataConflict {
        /// Pubsub.
        pubsub: String,
        /// Topic.
        topic: String,
        /// The key.
        key: String,
        /// One handler.
        first: String,
        /// The other.
        second: String,
    },
    /// A start-up check failed: a malformed environment variable, a name that breaks its rule,
    /// or an idempotent handler's timeout not shorter than its claim lease.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// The resolved handler table.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    /// The app these handlers belong to (`APP_ID`): it names the retry topics.
    pub app_id: String,
    /// Handlers.
    pub handlers: Vec<ResolvedHandler>,
    /// Subscriptions, main topics first, then retry topics.
    pub topics: Vec<TopicSubscription>,
    /// Route → target.
    pub routes: HashMap<String, Target>,
}

/// The route a handler gets when it names none.
fn derived_route(def: &HandlerDef) -> String {
    format!("/events/{}/{}", def.topic, def.name)
}

impl Registry {
    /// Resolves registrations with the app-wide defaults and checks them against each other, for
    /// the app `app_id`. Retry topics live on `default_pubsub`, whose
    /// consumer group the app's replicas share: a retry runs once, even for a handler of a
    /// per-pod (fan-out) component.
    pub(crate) fn resolve_app(
        defs: &[&'static HandlerDef],
        app_id: &str,
        default_pubsub: &str,
        default_dlq: &str,
    ) -> Result<Self, AppError> {
        let handlers = resolve_handlers(defs, default_pubsub, default_dlq);
        let mut routes = handler_routes(&handlers)?;
        let mut topics = TopicTable::default();
        for i in 0..handlers.len() {
            topics.add_handler(&handlers, i)?;
        }
        if handlers.iter().any(has_delayed_retries) {
            topics.add_retry_ladder(app_id, default_pubsub);
        }
        let topics = topics.subscriptions;
        add_dispatch_routes(&mut routes, &topics, &handlers)?;
        Ok(Registry {
            app_id: app_id.to_owned(),
            handlers,
            topics,
            routes,
        })
    }

    /// The subscription list Dapr reads from `GET /dapr/subscribe`.
    pub(crate) fn dapr_subscriptions(
        &self,
        dead_letter_topic: Option<&str>,
    ) -> Vec<DaprSubscription> {
        self.topics
            .iter()
            .map(|sub| {
                DaprSubscription {
                    pubsubname: sub.pubsub.clone(),
                    topic: sub.topic.clone(),
                    // No routing rules: daprd matches them against its rawPayload wrapper (where
                    // none would match), and in bulk deliveries fails on them. Every record takes
                    // the topic's route, which dispatches on the record's own type.
                    routes: Routes {
                        rules: Vec::new(),
                        default: sub.default_route.clone(),
                    },
                    dead_letter_topic: dead_letter_topic.map(str::to_owned),
                    metadata: with_raw_payload(&sub.metadata),
                    bulk_subscribe: sub.bulk.map(|b| BulkSubscribe {
                        enabled: true,
                        max_messages_count: b.max_messages,
                        max_await_duration_ms: b.max_await_ms,
                    }),
                }
            })
            .collect()
    }
}

/// Every subscription takes records raw: daprd then parses nothing, so a record that is not a
/// CloudEvent (not even JSON) reaches the app, which dead-letters it, instead of stalling its
/// partition in daprd's endless retry (see the `cloudevent` module, "Records from outside").
fn with_raw_payload(metadata: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut metadata = metadata.clone();
    metadata.insert("rawPayload".to_owned(), "true".to_owned());
    metadata
}

/// Applies the app-wide defaults to each registration: its pubsub, route and dead-letter topic.
fn resolve_handlers(
    defs: &[&'static HandlerDef],
    default_pubsub: &str,
    default_dlq: &str,
) -> Vec<ResolvedHandler> {
    defs.iter()
        .map(|def| ResolvedHandler {
            def,
            pubsub: def.pubsub.unwrap_or(default_pubsub).to_owned(),
            route: def
                .route
                .map(str::to_owned)
                .unwrap_or_else(|| derived_route(def)),
            dlq: match def.dlq {
                Some(dlq) => dlq.to_owned(),
                // A consumer of the DLQ itself must not dead-letter into the topic it reads.
                None if def.topic == default_dlq => format!("{default_dlq}.dlq"),
                None => default_dlq.to_owned(),
            },
        })
        .collect()
}

/// Each handler's own route leads to it; two handlers may not claim one route.
fn handler_routes(handlers: &[ResolvedHandler]) -> Result<HashMap<String, Target>, AppError> {
    let mut routes: HashMap<String, Target> = HashMap::new();
    for (i, h) in handlers.iter().enumerate() {
        if let Some(Target::Handler(j)) = routes.insert(h.route.clone(), Target::Handler(i)) {
            return Err(AppError::DuplicateRoute {
                route: h.route.clone(),
                first: handlers[j].def.qualified_name(),
                second: h.def.qualified_name(),
            });
        }
    }
    Ok(routes)
}

/// Whether a handler retries on the ladder, so that the app subscribes to it.
fn has_delayed_retries(h: &ResolvedHandler) -> bool {
    h.def.retry_mode == RetryMode::Delayed && !h.def.retry.is_empty()
}

/// Each topic's dispatch route leads to it; it may not be a route a handler claims.
fn add_dispatch_routes(
    routes: &mut HashMap<String, Target>,
    topics: &[TopicSubscription],
    handlers: &[ResolvedHandler],
) -> Result<(), AppError> {
    for (t, sub) in topics.iter().enumerate() {
        if let Some(Target::Handler(j)) = routes.insert(sub.default_route.clone(), Target::Topic(t))
        {
            return Err(AppError::DuplicateRoute {
                route: sub.default_route.clone(),
                first: handlers[j].def.qualified_name(),
                second: format!("the dispatch route of {}/{}", sub.pubsub, sub.topic),
            });
        }
    }
    Ok(())
}

/// The subscriptions while they are built: one per pubsub + topic, and who set which metadata.
#[derive(Default)]
struct TopicTable {
    /// The subscriptions, in the order they were first named.
    subscriptions: Vec<TopicSubscription>,
    /// (pubsub, topic) → index into `subscriptions`.
    index: HashMap<(String, String), usize>,
    /// (subscription, metadata key) → the handler that set it.
    metadata_owner: HashMap<(usize, String), usize>,
}

impl TopicTable {
    /// The subscription of `pubsub` + `topic`, added when new (a retry topic when `tier` is set).
    fn subscription(&mut self, pubsub: &str, topic: &str, tier: Option<u64>) -> usize {
        let subscriptions = &mut self.subscriptions;
        *self
            .index
            .entry((pubsub.to_owned(), topic.to_owned()))
            .or_insert_with(|| {
                let prefix = if tier.is_some() {
                    "/_retry"
                } else {
                    "/_dispatch"
                };
                subscriptions.push(TopicSubscription {
                    pubsub: pubsub.to_owned(),
                    topic: topic.to_owned(),
                    default_route: format!("{prefix}/{pubsub}/{topic}"),
                    handlers: Vec::new(),
                    is_retry: tier.is_some(),
                    tier_secs: tier.unwrap_or(0),
                    raw_payload: false,
                    metadata: BTreeMap::new(),
                    bulk: None,
                });
                subscriptions.len() - 1
            })
    }

    /// Adds handler `i` to its topic's subscription, merging its metadata and bulk settings.
    fn add_handler(&mut self, handlers: &[ResolvedHandler], i: usize) -> Result<(), AppError> {
        let h = &handlers[i];
        let t = self.subscription(&h.pubsub, h.def.topic, None);
        self.check_distinct_types(handlers, t, h)?;
        self.subscriptions[t].handlers.push(i);
        self.subscriptions[t].raw_payload |= h.def.raw_payload;
        self.merge_metadata(handlers, t, i)?;
        if let Some(bulk) = h.def.bulk {
            self.merge_bulk(t, bulk);
        }
        Ok(())
    }

    /// No two handlers of one topic take the same event type.
    fn check_distinct_types(
        &self,
        handlers: &[ResolvedHandler],
        t: usize,
        h: &ResolvedHandler,
    ) -> Result<(), AppError> {
        for &other in &self.subscriptions[t].handlers {
            let o = &handlers[other];
            if let Some(ty) = h.def.event_types.iter().find(|ty| o.def.accepts(ty)) {
                return Err(AppError::DuplicateType {
                    pubsub: h.pubsub.clone(),
                    topic: h.def.topic.to_owned(),
                    event_type: (*ty).to_owned(),
                    first: o.def.qualified_name(),
                    second: h.def.qualified_name(),
                });
            }
        }
        Ok(())
    }

    /// Handler `i`'s metadata joins its subscription's; two handlers may not set one key apart.
    fn merge_metadata(
        &mut self,
        handlers: &[ResolvedHandler],
        t: usize,
        i: usize,
    ) -> Result<(), AppError> {
        let h = &handlers[i];
        let mut metadata: Vec<(&str, &str)> = h.def.metadata.to_vec();
        if h.def.raw_payload {
            metadata.push(("rawPayload", "true"));
        }
        for (k, v) in metadata {
            let sub = &mut self.subscriptions[t];
            match sub.metadata.get(k) {
                Some(existing) if existing != v => {
                    let first = self.metadata_owner[&(t, k.to_owned())];
                    return Err(AppError::MetadataConflict {
                        pubsub: sub.pubsub.clone(),
                        topic: sub.topic.clone(),
                        key: k.to_owned(),
                        first: handlers[first].def.qualified_name(),
                        second: h.def.qualified_name(),
                    });
                }
                Some(_) => {}
                None => {
                    sub.metadata.insert(k.to_owned(), v.to_owned());
                    self.metadata_owner.insert((t, k.to_owned()), i);
                }
            }
        }
        Ok(())
    }

    /// A bulk handler makes its subscription bulk: the largest batch, the shortest wait.
    fn merge_bulk(&mut self, t: usize, bulk: BulkConfig) {
        let sub = &mut self.subscriptions[t];
        sub.bulk = Some(match sub.bulk {
            Some(b) => BulkConfig {
                max_messages: b.max_messages.max(bulk.max_messages),
                max_await_ms: b.max_await_ms.min(bulk.max_await_ms),
            },
            None => bulk,
        });
    }

    /// The retry ladder: the same topics for any schedules, on the pubsub the app's replicas
    /// share (see `retry_topic`). A retry names its handler, so the topics have none.
    fn add_retry_ladder(&mut self, app_id: &str, default_pubsub: &str) {
        for tier in RETRY_TIERS {
            self.subscription(default_pubsub, &retry_topic(app_id, tier), Some(tier));
        }
    }
}
