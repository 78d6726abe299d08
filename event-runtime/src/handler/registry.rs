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
    pub def: &'static HandlerDef,
    /// Its pubsub component.
    pub pubsub: String,
    /// Its route.
    pub route: String,
    /// Its dead-letter topic.
    pub dlq: String,
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
        let handlers: Vec<ResolvedHandler> = defs
            .iter()
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
            .collect();

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

        let mut topics: Vec<TopicSubscription> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut metadata_owner: HashMap<(usize, String), usize> = HashMap::new();
        let mut add_topic =
            |topics: &mut Vec<TopicSubscription>, pubsub: &str, topic: &str, tier: Option<u64>| {
                let is_retry = tier.is_some();
                *index
                    .entry((pubsub.to_owned(), topic.to_owned()))
                    .or_insert_with(|| {
                        let prefix = if is_retry { "/_retry" } else { "/_dispatch" };
                        topics.push(TopicSubscription {
                            pubsub: pubsub.to_owned(),
                            topic: topic.to_owned(),
                            default_route: format!("{prefix}/{pubsub}/{topic}"),
                            handlers: Vec::new(),
                            is_retry,
                            tier_secs: tier.unwrap_or(0),
                            raw_payload: false,
                            metadata: BTreeMap::new(),
                            bulk: None,
                        });
                        topics.len() - 1
                    })
            };
        for (i, h) in handlers.iter().enumerate() {
            let t = add_topic(&mut topics, &h.pubsub, h.def.topic, None);
            for &other in &topics[t].handlers {
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
            topics[t].handlers.push(i);
            topics[t].raw_payload |= h.def.raw_payload;
            let mut metadata: Vec<(&str, &str)> = h.def.metadata.to_vec();
            if h.def.raw_payload {
                metadata.push(("rawPayload", "true"));
            }
            for (k, v) in metadata {
                let sub = &mut topics[t];
                match sub.metadata.get(k) {
                    Some(existing) if existing != v => {
                        let first = metadata_owner[&(t, k.to_owned())];
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
                        metadata_owner.insert((t, k.to_owned()), i);
                    }
                }
            }
            if let Some(bulk) = h.def.bulk {
                let sub = &mut topics[t];
                sub.bulk = Some(match sub.bulk {
                    Some(b) => BulkConfig {
                        max_messages: b.max_messages.max(bulk.max_messages),
                        max_await_ms: b.max_await_ms.min(bulk.max_await_ms),
                    },
                    None => bulk,
                });
            }
        }
        // The retry ladder: the same topics for any schedules, on the pubsub the app's replicas
        // share (see `retry_topic`), for an app with any delayed retries. A retry names its
        // handler, so the topics have none.
        let delayed =
            |h: &ResolvedHandler| h.def.retry_mode == RetryMode::Delayed && !h.def.retry.is_empty();
        if handlers.iter().any(delayed) {
            for tier in RETRY_TIERS {
                add_topic(
                    &mut topics,
                    default_pubsub,
                    &retry_topic(app_id, tier),
                    Some(tier),
                );
            }
        }
        for (t, sub) in topics.iter().enumerate() {
            if let Some(Target::Handler(j)) =
                routes.insert(sub.default_route.clone(), Target::Topic(t))
            {
                return Err(AppError::DuplicateRoute {
                    route: sub.default_route.clone(),
                    first: handlers[j].def.qualified_name(),
                    second: format!("the dispatch route of {}/{}", sub.pubsub, sub.topic),
                });
            }
        }
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
/// partition in daprd's endless retry (see the README's "What Dapr does, what we add").
fn with_raw_payload(metadata: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut metadata = metadata.clone();
    metadata.insert("rawPayload".to_owned(), "true".to_owned());
    metadata
}
