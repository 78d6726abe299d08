//! What the app declares for its tooling: its topics, what it publishes, and the manifests and
//! AsyncAPI document made of them, with the manifest target of its [`Config`](crate::config::Config).

use super::App;
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

    /// Declares that this app publishes events of type `E` to `topic` (a `send` operation in the
    /// AsyncAPI document).
    pub fn publishes<E: crate::Event>(mut self, topic: &str) -> Self {
        for ty in E::TYPES {
            self.declared.published.push((ty, topic.to_owned()));
        }
        self
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
