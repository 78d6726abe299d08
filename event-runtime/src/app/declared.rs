//! What the app declares for its tooling: its topics, what it publishes, and the manifests and
//! AsyncAPI document made of them, with the manifest target of its [`Config`](crate::config::Config).

use super::App;
use crate::tooling::scopes::Published;
use crate::tooling::topics::TopicSpec;

impl App {
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
        self.declared.topics.extend(topics);
        self
    }

    /// Declares that this app publishes events of type `E` to `topic` on its default pub/sub
    /// component: a `send` operation in the AsyncAPI document, and a topic its
    /// [`scopes`](App::scopes) let it publish to.
    pub fn publishes<E: crate::Event>(self, topic: &str) -> Self {
        self.declare_published::<E>(None, topic)
    }

    /// [`publishes`](App::publishes) on the component `pubsub`.
    pub fn publishes_via<E: crate::Event>(self, pubsub: &str, topic: &str) -> Self {
        self.declare_published::<E>(Some(pubsub), topic)
    }

    fn declare_published<E: crate::Event>(mut self, pubsub: Option<&str>, topic: &str) -> Self {
        for ty in E::TYPES {
            self.declared.published.push(Published {
                event_type: ty,
                topic: topic.to_owned(),
                pubsub: pubsub.map(str::to_owned),
            });
        }
        self
    }

    /// Writes the events this app publishes to `topic` in the CloudEvents Kafka binding's binary
    /// mode, for consumers that expect it (CloudEvents' own SDKs, Knative's Kafka source): the
    /// data is the record value, and the attributes (`id`, `source`, `type`, the version, the
    /// trace context) are `ce_*` record headers. Retries and replays of records stay the bytes
    /// they are. The framework's own handlers read both modes.
    ///
    /// ```
    /// # use event_runtime::App;
    /// let app = App::with_handlers([]).unwrap().with_binary_mode("task-audit");
    /// # let _ = app;
    /// ```
    pub fn with_binary_mode(mut self, topic: &str) -> Self {
        self.declared.binary_topics.push(topic.to_owned());
        self
    }

    /// The least-privilege scopes of this app on each pub/sub component it uses: what Dapr's
    /// `publishingScopes`, `subscriptionScopes` and `protectedTopics` must say so that it can
    /// publish only to its retry, dead-letter, consumed and declared topics, subscribe only to
    /// its own, and no other app can publish to its retry and dead-letter topics. See
    /// [`PubsubScopes::merge_into`](crate::tooling::scopes::PubsubScopes::merge_into).
    ///
    /// ```
    /// # use event_runtime::App;
    /// let app = App::with_handlers([]).unwrap();
    /// assert!(app.scopes().is_empty()); // no handlers, no subscriptions
    /// ```
    pub fn scopes(&self) -> Vec<crate::tooling::scopes::PubsubScopes> {
        crate::tooling::scopes::scopes(
            &self.run.registry,
            &self.run.default_pubsub,
            &self.run.settings.default_dlq,
            &self.declared.published,
            self.declared.dapr_dead_letter_topic.as_deref(),
        )
    }

    /// The declared topics.
    pub fn topics(&self) -> &[TopicSpec] {
        &self.declared.topics
    }

    /// The Dapr declarative `Subscription` resources (`dapr.io/v2alpha1`) equivalent to
    /// `GET /dapr/subscribe`, retry topics included, and a Strimzi `KafkaTopic` per declared
    /// topic and its retry and dead-letter topics, as one multi-document YAML stream.
    /// `EVENTS_ENV=cloud` picks the cloud retention; `KAFKA_CLUSTER` names the Strimzi cluster
    /// ([`Config::manifests`](crate::config::Config::manifests)).
    pub fn manifests(&self) -> String {
        crate::tooling::manifests::manifests_with(
            &self.subscriptions(),
            &self.declared.topics,
            &self.run.app_id,
            &self.declared.manifests.kafka_cluster,
            &self.manifest_options(),
        )
    }

    /// The Kafka topics the app needs: the declared ones, then their retry and dead-letter
    /// topics. The same list as the `KafkaTopic` manifests; test scripts create topics from it.
    pub fn kafka_topics(&self) -> Vec<crate::tooling::manifests::KafkaTopicPlan> {
        crate::tooling::manifests::kafka_topics(
            &self.subscriptions(),
            &self.declared.topics,
            &self.manifest_options(),
        )
    }

    fn manifest_options(&self) -> crate::tooling::manifests::ManifestOptions {
        crate::tooling::manifests::ManifestOptions {
            deployment: self.declared.manifests.deployment,
            namespace: self.declared.manifests.namespace.clone(),
            dead_letter_topics: crate::tooling::manifests::dead_letter_topics(
                self.handlers(),
                &self.run.settings.default_dlq,
            ),
            app_max_concurrency: crate::tooling::manifests::app_max_concurrency(self.handlers()),
            scopes: self.scopes(),
        }
    }

    /// An AsyncAPI 3.0 document of every topic, message and operation, with the JSON Schemas of
    /// the registered event types (also served at `GET /asyncapi.json`).
    pub fn asyncapi(&self) -> serde_json::Value {
        crate::tooling::asyncapi::document(
            &self.run.app_id,
            self.handlers(),
            &self.declared.published,
        )
    }
}
