//! Kubernetes manifests for an app: Dapr declarative `Subscription`s equivalent to its
//! `GET /dapr/subscribe`, and Strimzi `KafkaTopic`s for its declared topics, retry topics and
//! dead-letter topics.
//!
//! ```
//! use event_runtime::dapr::{DaprSubscription, Routes};
//! use event_runtime::tooling::manifests::manifests;
//! use event_runtime::TopicSpec;
//!
//! let subs = vec![DaprSubscription {
//!     pubsubname: "kafka-pubsub".into(),
//!     topic: "task-events".into(),
//!     routes: Routes { rules: vec![], default: "/_dispatch/kafka-pubsub/task-events".into() },
//!     dead_letter_topic: None,
//!     metadata: [("rawPayload".to_owned(), "true".to_owned())].into(),
//!     bulk_subscribe: None,
//! }];
//! let yaml = manifests(&subs, &[TopicSpec::new("task-events")], "todo", "my-cluster");
//! assert!(yaml.contains("kind: Subscription"));
//! assert!(yaml.contains("rawPayload: \"true\""));
//! assert!(yaml.contains("kind: KafkaTopic"));
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::config::Config;
use crate::handler::registry::ResolvedHandler;
use crate::tooling::topics::{Deployment, TopicSpec};
use crate::wire::subscription::DaprSubscription;
use crate::wire::yaml::{self, Yaml};

/// Dapr's declarative subscription API version.
pub const SUBSCRIPTION_API_VERSION: &str = "dapr.io/v2alpha1";
/// Strimzi's topic API version.
pub const KAFKA_TOPIC_API_VERSION: &str = "kafka.strimzi.io/v1beta2";

/// Settings of [`manifests_with`] beyond the subscriptions and topics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestOptions {
    /// Decides retention and replicas of the `KafkaTopic`s (default: local).
    pub deployment: Deployment,
    /// `metadata.namespace` of every resource (default: none, so `kubectl -n` decides).
    pub namespace: Option<String>,
    /// Dead-letter topics the app publishes to, each with a topic whose events it receives
    /// (`(dlq, base)`), so they get a `KafkaTopic` too; see [`dead_letter_topics`].
    pub dead_letter_topics: Vec<(String, String)>,
    /// daprd's `dapr.io/app-max-concurrency` for the app's Deployment, written at the top of
    /// the stream; see [`app_max_concurrency`].
    pub app_max_concurrency: Option<u32>,
    /// The app's pub/sub scopes on each component ([`App::scopes`](crate::App::scopes)),
    /// written at the top of the stream as comments: a component is shared by the apps of a
    /// namespace, so its metadata is merged, not replaced (see
    /// [`PubsubScopes::merge_into`](crate::tooling::scopes::PubsubScopes::merge_into)).
    pub scopes: Vec<crate::tooling::scopes::PubsubScopes>,
}

/// The annotation that caps how many deliveries daprd has in flight to the app.
pub const APP_MAX_CONCURRENCY: &str = "dapr.io/app-max-concurrency";

/// daprd's `app-max-concurrency` for an app whose every handler declares `concurrency = N`:
/// the sum of their N, since daprd's cap is app-wide and each handler runs its N lanes on its
/// own. `None` when some handler declares none: it runs unbounded, and a cap worked out from
/// the others would bound it too.
pub fn app_max_concurrency(handlers: &[ResolvedHandler]) -> Option<u32> {
    if handlers.is_empty() {
        return None;
    }
    handlers
        .iter()
        .map(|h| h.def.concurrency)
        .try_fold(0u32, |sum, n| Some(sum.saturating_add(n?)))
}

/// The dead-letter topics of `handlers`, each with the topic it takes failures from, plus
/// `default_dlq` (where events no handler takes go) for every subscribed topic. The input of
/// [`ManifestOptions::dead_letter_topics`].
pub fn dead_letter_topics(
    handlers: &[ResolvedHandler],
    default_dlq: &str,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut push = |dlq: &str, base: &str| {
        let pair = (dlq.to_owned(), base.to_owned());
        if !out.contains(&pair) {
            out.push(pair);
        }
    };
    for h in handlers {
        push(&h.dlq, h.def.topic);
    }
    for h in handlers {
        push(default_dlq, h.def.topic);
    }
    out
}

/// [`manifests_with`] for the deployment `EVENTS_ENV` names (read by [`Config::from_env`]),
/// no namespace, and only the dead-letter topics the subscriptions themselves name.
///
/// # Panics
///
/// When the environment's configuration is malformed (an unknown `EVENTS_ENV`, say); build a
/// [`Config`] and call [`manifests_with`] to handle the error.
pub fn manifests(
    subscriptions: &[DaprSubscription],
    topics: &[TopicSpec],
    app_id: &str,
    kafka_cluster: &str,
) -> String {
    let options = ManifestOptions {
        deployment: Config::from_env()
            .unwrap_or_else(|e| panic!("{e}"))
            .manifests
            .deployment,
        ..ManifestOptions::default()
    };
    manifests_with(subscriptions, topics, app_id, kafka_cluster, &options)
}

/// A multi-document YAML stream:
/// - one Dapr `Subscription` (`dapr.io/v2alpha1`) per entry of `subscriptions`, scoped to
///   `app_id`, with the same pubsub, topic, routes, dead-letter topic, bulk settings and
///   (string) metadata as `GET /dapr/subscribe` answers;
/// - one Strimzi `KafkaTopic` (labelled `strimzi.io/cluster: kafka_cluster`) per [`TopicSpec`];
/// - one `KafkaTopic` per retry topic (`<base>.retry.<app>.<N>s`) and dead-letter topic that has no
///   spec of its own: partitions and retention are the largest of its base topics' specs (the
///   defaults when none is declared).
///
/// Subscribed topics that are neither declared nor derived get no `KafkaTopic` (another
/// service owns them); a comment at the top lists them.
pub fn manifests_with(
    subscriptions: &[DaprSubscription],
    topics: &[TopicSpec],
    app_id: &str,
    kafka_cluster: &str,
    options: &ManifestOptions,
) -> String {
    let mut docs = Vec::new();
    let mut names = Names::default();
    for sub in subscriptions {
        let name = names.claim(
            "Subscription",
            &format!("{app_id}-{}-{}", sub.pubsubname, sub.topic),
        );
        docs.push(subscription_doc(sub, &name, app_id, options));
    }

    let declared: HashMap<&str, &TopicSpec> = topics.iter().rev().map(|t| (t.name, t)).collect();
    let subscribed: HashSet<&str> = subscriptions.iter().map(|s| s.topic.as_str()).collect();
    let plan = kafka_topics(subscriptions, topics, options);
    for t in &plan {
        let name = names.claim("KafkaTopic", &t.name);
        docs.push(kafka_topic_doc(
            &name,
            &t.name,
            t.partitions,
            t.replicas,
            t.retention,
            &t.config,
            kafka_cluster,
            options,
        ));
    }
    let planned: HashSet<&str> = plan.iter().map(|t| t.name.as_str()).collect();

    let mut undeclared: Vec<&str> = subscribed
        .iter()
        .copied()
        .filter(|t| !declared.contains_key(t) && !planned.contains(*t))
        .collect();
    undeclared.sort_unstable();
    let mut out = String::new();
    if let Some(n) = options.app_max_concurrency {
        // The Deployment is the user's; what daprd must be told goes on its pod template.
        out.push_str(&format!(
            "# Annotate the app's Deployment (pod template): {APP_MAX_CONCURRENCY}: \"{n}\"\n"
        ));
    }
    for scopes in &options.scopes {
        // Comments: the Component is shared and holds the broker's settings, so it is merged.
        let line = |s: String| s.replace(['\n', '\r'], " ");
        out.push_str(&line(format!(
            "# Pub/sub scopes of {} on component {}, to merge into its spec.metadata (the `scopes` command prints them as YAML):",
            scopes.app_id, scopes.pubsub
        )));
        out.push('\n');
        let mut metadata = Vec::new();
        scopes.merge_into(&mut metadata);
        for (name, value) in metadata {
            out.push_str(&line(format!("#   {name}: {value}")));
            out.push('\n');
        }
    }
    if !undeclared.is_empty() {
        out.push_str("# Subscribed topics without a TopicSpec (no KafkaTopic generated): ");
        out.push_str(&undeclared.join(", ").replace(['\n', '\r'], " "));
        out.push('\n');
    }
    out.push_str(&yaml::stream(&docs));
    out
}

/// One Kafka topic the app needs, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KafkaTopicPlan {
    /// The topic's name.
    pub name: String,
    /// Partitions.
    pub partitions: u32,
    /// Replicas.
    pub replicas: u16,
    /// Retention.
    pub retention: std::time::Duration,
    /// Extra topic configuration.
    pub config: Vec<(String, String)>,
}

/// The Kafka topics of an app: every declared [`TopicSpec`], then the retry and dead-letter topics
/// derived from them (which inherit their base topic's partitions and retention). The one list
/// behind both `KafkaTopic` manifests and the real-stack suite's topic creation.
pub fn kafka_topics(
    subscriptions: &[DaprSubscription],
    topics: &[TopicSpec],
    options: &ManifestOptions,
) -> Vec<KafkaTopicPlan> {
    let declared: HashMap<&str, &TopicSpec> = topics.iter().rev().map(|t| (t.name, t)).collect();
    let derived = derived_topics(subscriptions, &declared, options);
    let mut out = declared_plans(topics, options);
    for (topic, bases) in &derived {
        out.push(derived_plan(topic, bases, &declared, options));
    }
    out
}

/// Each declared topic once (the first spec of a name wins), with its settings.
fn declared_plans(topics: &[TopicSpec], options: &ManifestOptions) -> Vec<KafkaTopicPlan> {
    let mut seen = HashSet::new();
    topics
        .iter()
        .filter(|spec| seen.insert(spec.name))
        .map(|spec| KafkaTopicPlan {
            name: spec.name.to_owned(),
            partitions: spec.partitions,
            replicas: spec.replicas_for(options.deployment),
            retention: spec.retention_for(options.deployment),
            config: spec
                .config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
        .collect()
}

/// The undeclared retry and dead-letter topics, each with the topics it derives from.
fn derived_topics(
    subscriptions: &[DaprSubscription],
    declared: &HashMap<&str, &TopicSpec>,
    options: &ManifestOptions,
) -> BTreeMap<String, Vec<String>> {
    let mut derived = Derived {
        declared,
        subscribed: subscriptions.iter().map(|s| s.topic.as_str()).collect(),
        bases: BTreeMap::new(),
    };
    // The topics the app's retry ladder serves (`<app>.retry.<N>s`): every other one it subscribes.
    let mains: Vec<&str> = subscriptions
        .iter()
        .map(|s| s.topic.as_str())
        .filter(|t| retry_base(t).is_none())
        .collect();
    for sub in subscriptions {
        let base = derived.base_of(&sub.topic);
        if base != sub.topic {
            derived.add(&sub.topic, &base);
        } else if retry_base(&sub.topic).is_some() {
            for main in &mains {
                derived.add(&sub.topic, main);
            }
        }
        if let Some(dlq) = &sub.dead_letter_topic {
            derived.add(dlq, &base);
        }
    }
    for (dlq, base) in &options.dead_letter_topics {
        let base = derived.base_of(base);
        derived.add(dlq, &base);
    }
    derived.bases
}

/// Topics derived from others while they are collected: name → bases.
struct Derived<'a> {
    declared: &'a HashMap<&'a str, &'a TopicSpec>,
    subscribed: HashSet<&'a str>,
    bases: BTreeMap<String, Vec<String>>,
}

impl Derived<'_> {
    /// Records that `topic` derives from `base`, unless `topic` is declared itself.
    fn add(&mut self, topic: &str, base: &str) {
        if !self.declared.contains_key(topic) {
            let bases = self.bases.entry(topic.to_owned()).or_default();
            if !bases.iter().any(|b| b == base) {
                bases.push(base.to_owned());
            }
        }
    }

    /// The topic a retry topic `<base>.retry.<N>s` serves, when the app knows it; else `topic`.
    fn base_of(&self, topic: &str) -> String {
        retry_base(topic)
            .filter(|b| self.subscribed.contains(b) || self.declared.contains_key(b))
            .unwrap_or(topic)
            .to_owned()
    }
}

/// A derived topic inherits the most partitions, replicas and retention of its declared bases,
/// or the defaults when none is declared.
fn derived_plan(
    topic: &str,
    bases: &[String],
    declared: &HashMap<&str, &TopicSpec>,
    options: &ManifestOptions,
) -> KafkaTopicPlan {
    let specs: Vec<&TopicSpec> = bases
        .iter()
        .filter_map(|b| declared.get(b.as_str()).copied())
        .collect();
    let default = TopicSpec::new("default");
    let (partitions, replicas, retention) = if specs.is_empty() {
        (
            default.partitions,
            default.replicas_for(options.deployment),
            default.retention_for(options.deployment),
        )
    } else {
        (
            specs
                .iter()
                .map(|s| s.partitions)
                .max()
                .unwrap_or(default.partitions),
            specs
                .iter()
                .map(|s| s.replicas_for(options.deployment))
                .max()
                .unwrap_or(1),
            specs
                .iter()
                .map(|s| s.retention_for(options.deployment))
                .max()
                .unwrap_or_default(),
        )
    };
    KafkaTopicPlan {
        name: topic.to_owned(),
        partitions,
        replicas,
        retention,
        config: Vec::new(),
    }
}

fn metadata_doc(name: &str, labels: Vec<(&str, Yaml)>, options: &ManifestOptions) -> Yaml {
    let mut m = vec![("name", Yaml::str(name))];
    if let Some(ns) = &options.namespace {
        m.push(("namespace", Yaml::str(ns)));
    }
    if !labels.is_empty() {
        m.push(("labels", Yaml::map(labels)));
    }
    Yaml::map(m)
}

fn subscription_doc(
    sub: &DaprSubscription,
    name: &str,
    app_id: &str,
    options: &ManifestOptions,
) -> Yaml {
    // The spec is the very shape `GET /dapr/subscribe` answers with, serialized the same way.
    let spec = serde_json::to_value(sub).map_or(Yaml::Map(Vec::new()), |v| Yaml::from_json(&v));
    Yaml::map([
        ("apiVersion", Yaml::str(SUBSCRIPTION_API_VERSION)),
        ("kind", Yaml::str("Subscription")),
        ("metadata", metadata_doc(name, Vec::new(), options)),
        ("spec", spec),
        ("scopes", Yaml::seq([Yaml::str(app_id)])),
    ])
}

#[allow(clippy::too_many_arguments)]
fn kafka_topic_doc(
    name: &str,
    topic: &str,
    partitions: u32,
    replicas: u16,
    retention: Duration,
    config: &[(String, String)],
    kafka_cluster: &str,
    options: &ManifestOptions,
) -> Yaml {
    let mut spec = Vec::new();
    if name != topic {
        spec.push(("topicName", Yaml::str(topic)));
    }
    spec.push(("partitions", Yaml::Int(partitions.into())));
    spec.push(("replicas", Yaml::Int(replicas.into())));
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut cfg = vec![(
        "retention.ms".to_owned(),
        Yaml::str(retention_ms.to_string()),
    )];
    for (k, v) in config {
        if k != "retention.ms" {
            cfg.push((k.clone(), Yaml::str(v)));
        }
    }
    spec.push(("config", Yaml::Map(cfg)));
    Yaml::map([
        ("apiVersion", Yaml::str(KAFKA_TOPIC_API_VERSION)),
        ("kind", Yaml::str("KafkaTopic")),
        (
            "metadata",
            metadata_doc(
                name,
                vec![("strimzi.io/cluster", Yaml::str(kafka_cluster))],
                options,
            ),
        ),
        ("spec", Yaml::map(spec)),
    ])
}

/// The base of a retry topic `<base>.retry.<N>s`: the app id for the app's retry ladder.
fn retry_base(topic: &str) -> Option<&str> {
    let (base, rest) = topic.rsplit_once(".retry.")?;
    let secs = rest.strip_suffix('s')?;
    (!base.is_empty() && !secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit()))
        .then_some(base)
}

/// Resource names already given, per kind.
#[derive(Default)]
struct Names(HashSet<(&'static str, String)>);

impl Names {
    /// A DNS-1123 name for `source`, unique within `kind` (a hash suffix settles collisions).
    fn claim(&mut self, kind: &'static str, source: &str) -> String {
        let mut name = dns_label(source);
        if self.0.contains(&(kind, name.clone())) {
            name = with_suffix(&name, &format!("{:08x}", fnv1a(source)));
        }
        let mut n = 2u32;
        let base = name.clone();
        while !self.0.insert((kind, name.clone())) {
            name = with_suffix(&base, &n.to_string());
            n += 1;
        }
        name
    }
}

/// A DNS-1123 label for `s`: lowercase alphanumerics and `-`, starting and ending with an
/// alphanumeric, at most 63 characters. Every other character becomes `-` (runs of them one);
/// a longer name is cut and ends in a hash of the whole of `s`, so it stays unique.
///
/// ```
/// use event_runtime::tooling::manifests::dns_label;
/// assert_eq!(dns_label("kafka-pubsub.Task_Events.retry.30s"), "kafka-pubsub-task-events-retry-30s");
/// let long = dns_label(&"x".repeat(100));
/// assert_eq!(long.len(), 63);
/// assert_ne!(long, dns_label(&"x".repeat(101)));
/// ```
pub fn dns_label(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(64));
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push('x');
    }
    if out.len() > 63 {
        out = with_suffix(&out, &format!("{:08x}", fnv1a(s)));
    }
    out
}

/// `name-suffix`, cutting `name` so that the whole stays within 63 characters.
fn with_suffix(name: &str, suffix: &str) -> String {
    let keep = 63 - 1 - suffix.len();
    let mut head: String = name.chars().take(keep).collect();
    while head.ends_with('-') {
        head.pop();
    }
    format!("{head}-{suffix}")
}

/// 32-bit FNV-1a: a hash that stays the same across Rust versions and platforms.
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::def::{BulkConfig, HandlerDef, RetryMode};
    use crate::handler::registry::Registry;
    use crate::wire::subscription::{BulkSubscribe, DaprSubscription, Routes, Rule};
    use yaml_serde::Value;

    fn noop(_: crate::Delivery) -> futures::future::BoxFuture<'static, crate::Outcome> {
        Box::pin(async { crate::Outcome::Success })
    }

    static ON_COMPLETED: HandlerDef = HandlerDef {
        event_types: &["task.completed"],
        retry: &[30, 300],
        dlq: Some("task-dlq"),
        metadata: &[
            ("priority", "true"),
            ("keep", "604800000"),
            ("note", "a: b #c"),
        ],
        bulk: Some(BulkConfig {
            max_messages: 100,
            max_await_ms: 1000,
        }),
        ..HandlerDef::new("on_completed", "app::handlers", "task-events", noop)
    };
    static ON_CREATED: HandlerDef = HandlerDef {
        event_types: &["task.created", "task.updated"],
        retry: &[5],
        retry_mode: RetryMode::Inline,
        ..HandlerDef::new("on_created", "app::handlers", "task-events", noop)
    };
    static ON_REMINDER: HandlerDef = HandlerDef {
        event_types: &["reminder.due"],
        retry: &[60],
        raw_payload: true,
        ..HandlerDef::new("on_reminder", "app::handlers", "reminders", noop)
    };

    fn registry() -> Registry {
        Registry::resolve_app(
            &[&ON_COMPLETED, &ON_CREATED, &ON_REMINDER],
            "todo",
            "kafka-pubsub",
            "dlq",
        )
        .unwrap()
    }

    fn docs(yaml: &str) -> Vec<Value> {
        yaml_serde::Deserializer::from_str(yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect()
    }

    fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
        docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn topic_named<'a>(docs: &'a [Value], topic: &str) -> &'a Value {
        of_kind(docs, "KafkaTopic")
            .into_iter()
            .find(|d| {
                d["spec"]["topicName"]
                    .as_str()
                    .or(d["metadata"]["name"].as_str())
                    == Some(topic)
            })
            .unwrap_or_else(|| panic!("no KafkaTopic for {topic}"))
    }

    fn is_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn subscriptions_round_trip_to_the_programmatic_list() {
        let reg = registry();
        let subs = reg.dapr_subscriptions(Some("dapr-dlq"));
        let options = ManifestOptions {
            dead_letter_topics: dead_letter_topics(&reg.handlers, "dlq"),
            namespace: Some("todo".into()),
            ..Default::default()
        };
        let text = manifests_with(&subs, &[], "todo-app", "kafka", &options);
        let docs = docs(&text);
        let sub_docs = of_kind(&docs, "Subscription");
        assert_eq!(sub_docs.len(), subs.len());
        for (doc, sub) in sub_docs.iter().zip(&subs) {
            assert_eq!(doc["apiVersion"], "dapr.io/v2alpha1");
            assert_eq!(doc["metadata"]["namespace"], "todo");
            assert!(is_dns_label(doc["metadata"]["name"].as_str().unwrap()));
            assert_eq!(doc["scopes"], Value::Sequence(vec!["todo-app".into()]));
            // The spec deserializes into exactly what `GET /dapr/subscribe` answers.
            let back: DaprSubscription = yaml_serde::from_value(doc["spec"].clone()).unwrap();
            assert_eq!(&back, sub);
            if let Some(Value::Mapping(m)) = doc["spec"].get("metadata") {
                assert!(m.values().all(Value::is_string), "{m:?}");
            }
        }
        let main = sub_docs
            .iter()
            .find(|d| d["spec"]["topic"] == "task-events")
            .unwrap();
        assert_eq!(
            main["spec"]["metadata"]["priority"],
            Value::String("true".into())
        );
        assert_eq!(
            main["spec"]["metadata"]["keep"],
            Value::String("604800000".into())
        );
        assert_eq!(
            main["spec"]["metadata"]["note"],
            Value::String("a: b #c".into())
        );
        assert_eq!(main["spec"]["bulkSubscribe"]["enabled"], Value::Bool(true));
        assert_eq!(
            main["spec"]["bulkSubscribe"]["maxMessagesCount"],
            Value::from(100)
        );
        assert_eq!(main["spec"]["deadLetterTopic"], "dapr-dlq");
        assert_eq!(main["spec"]["metadata"]["rawPayload"], "true");
        assert!(main["spec"]["routes"].get("rules").is_none());
        let names: HashSet<&str> = sub_docs
            .iter()
            .map(|d| d["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names.len(), sub_docs.len(), "names are unique");
        assert!(
            names.contains("todo-app-kafka-pubsub-todo-retry-30s"),
            "{names:?}"
        );
    }

    #[test]
    fn kafka_topics_for_specs_retries_and_dead_letters() {
        let reg = registry();
        let subs = reg.dapr_subscriptions(None);
        let specs = [
            TopicSpec::new("task-events").partitions(6),
            TopicSpec::new("reminders")
                .partitions(3)
                .retention(Duration::from_secs(3600))
                .config(&[("cleanup.policy", "delete")]),
            TopicSpec::new("audit"),
        ];
        let options = ManifestOptions {
            dead_letter_topics: dead_letter_topics(&reg.handlers, "dlq"),
            ..Default::default()
        };
        let text = manifests_with(&subs, &specs, "todo", "my-cluster", &options);
        let docs = docs(&text);
        for t in of_kind(&docs, "KafkaTopic") {
            assert_eq!(t["apiVersion"], "kafka.strimzi.io/v1beta2");
            assert_eq!(t["metadata"]["labels"]["strimzi.io/cluster"], "my-cluster");
            assert!(is_dns_label(t["metadata"]["name"].as_str().unwrap()));
            assert_eq!(t["spec"]["replicas"], Value::from(1));
            assert!(t["spec"]["config"]["retention.ms"].is_string(), "{t:?}");
        }
        let task = topic_named(&docs, "task-events");
        assert_eq!(task["spec"]["partitions"], Value::from(6));
        assert_eq!(task["spec"]["config"]["retention.ms"], "604800000");
        assert!(task["spec"].get("topicName").is_none());
        let reminders = topic_named(&docs, "reminders");
        assert_eq!(reminders["spec"]["config"]["retention.ms"], "3600000");
        assert_eq!(reminders["spec"]["config"]["cleanup.policy"], "delete");
        topic_named(&docs, "audit");

        // The app's retry ladder: one topic per tier, whatever the schedules, like the largest
        // topic it serves.
        for tier in crate::wire::ladder::RETRY_TIERS {
            let retry = topic_named(&docs, &format!("todo.retry.{tier}s"));
            assert_eq!(retry["metadata"]["name"], format!("todo-retry-{tier}s"));
            assert_eq!(retry["spec"]["partitions"], Value::from(6));
            assert_eq!(retry["spec"]["config"]["retention.ms"], "604800000");
        }

        // Dead-letter topics: the handler's own, and the default for every topic (largest base).
        let dlq = topic_named(&docs, "task-dlq");
        assert_eq!(dlq["spec"]["partitions"], Value::from(6));
        let default = topic_named(&docs, "dlq");
        assert_eq!(default["spec"]["partitions"], Value::from(6));
        assert_eq!(default["spec"]["config"]["retention.ms"], "604800000");

        // Exactly one KafkaTopic per topic.
        let mut seen = HashSet::new();
        for t in of_kind(&docs, "KafkaTopic") {
            let topic = t["spec"]["topicName"]
                .as_str()
                .or(t["metadata"]["name"].as_str())
                .unwrap();
            assert!(seen.insert(topic.to_owned()), "duplicate {topic}");
        }
        assert!(!text.starts_with('#'), "every subscribed topic is declared");
    }

    #[test]
    fn cloud_deployment_and_undeclared_topics() {
        let reg = registry();
        let subs = reg.dapr_subscriptions(None);
        let options = ManifestOptions {
            deployment: Deployment::Cloud,
            ..Default::default()
        };
        let text = manifests_with(&subs, &[], "todo", "prod", &options);
        assert!(text.starts_with(
            "# Subscribed topics without a TopicSpec (no KafkaTopic generated): reminders, task-events\n"
        ));
        let docs = docs(&text);
        // Retry topics of undeclared bases still get one, with the defaults.
        let retry = topic_named(&docs, "todo.retry.30s");
        assert_eq!(retry["spec"]["replicas"], Value::from(3));
        assert_eq!(retry["spec"]["partitions"], Value::from(12));
        assert_eq!(retry["spec"]["config"]["retention.ms"], "2592000000");
    }

    #[test]
    fn odd_values_stay_strings() {
        let metadata: BTreeMap<String, String> = [
            "yes",
            "No",
            "on",
            "OFF",
            "null",
            "~",
            "0x10",
            "1e3",
            "1:20",
            "",
            " x",
            "#x",
            "\"q\"",
            "-1",
            ".inf",
            "2024-01-01",
            "a\nb",
        ]
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("k{i}"), (*v).to_owned()))
        .collect();
        let sub = DaprSubscription {
            pubsubname: "Kafka_PubSub".into(),
            topic: "Weird.Topic_Name".into(),
            routes: Routes {
                rules: vec![Rule {
                    r#match: "event.type == \"a: b\" || event.type == \"#c\"".into(),
                    path: "/x".into(),
                }],
                default: "/y".into(),
            },
            dead_letter_topic: Some("Dead.Letters".into()),
            metadata: metadata.clone(),
            bulk_subscribe: Some(BulkSubscribe {
                enabled: false,
                max_messages_count: 1,
                max_await_duration_ms: 0,
            }),
        };
        let text = manifests_with(
            std::slice::from_ref(&sub),
            &[],
            "true",
            "null",
            &ManifestOptions::default(),
        );
        let docs = docs(&text);
        let back: DaprSubscription = yaml_serde::from_value(docs[0]["spec"].clone()).unwrap();
        assert_eq!(back, sub);
        for (k, v) in &metadata {
            assert_eq!(
                docs[0]["spec"]["metadata"][k.as_str()],
                Value::String(v.clone())
            );
        }
        assert_eq!(docs[0]["scopes"][0], Value::String("true".into()));
        assert_eq!(
            docs[0]["metadata"]["name"],
            "true-kafka-pubsub-weird-topic-name"
        );
        // The Dapr dead-letter topic gets a KafkaTopic whose name differs from the topic.
        let dlq = topic_named(&docs, "Dead.Letters");
        assert_eq!(dlq["metadata"]["name"], "dead-letters");
        assert_eq!(
            dlq["metadata"]["labels"]["strimzi.io/cluster"],
            Value::String("null".into())
        );
    }

    #[test]
    fn names_are_dns_labels_and_unique() {
        assert_eq!(dns_label("---"), "x");
        assert_eq!(dns_label("A..B__c"), "a-b-c");
        let long = format!("{}-{}", "p".repeat(40), "t".repeat(40));
        let n = dns_label(&long);
        assert_eq!(n.len(), 63);
        assert!(is_dns_label(&n));
        let mut names = Names::default();
        let a = names.claim("KafkaTopic", "a.b");
        let b = names.claim("KafkaTopic", "a_b");
        let c = names.claim("Subscription", "a.b");
        assert_eq!(a, "a-b");
        assert_ne!(a, b);
        assert!(is_dns_label(&b));
        assert_eq!(c, "a-b");
        assert_eq!(retry_base("t.retry.30s"), Some("t"));
        assert_eq!(retry_base("t.retry.s"), None);
        assert_eq!(retry_base("t.retry.30"), None);
    }
}
