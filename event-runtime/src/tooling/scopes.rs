//! Least privilege on a Dapr pub/sub component: which topics an app may publish to and
//! subscribe to, and which topics only the apps granted them may use. Dapr calls these the
//! component's `publishingScopes`, `subscriptionScopes` and `protectedTopics`; they are derived
//! here from the same inventory as the app's subscriptions.
//!
//! A component is shared by every app of a namespace, so an app cannot write the whole of it:
//! [`PubsubScopes::merge_into`] replaces this app's entries in a component's metadata and keeps
//! the other apps'.
//!
//! ```
//! use event_runtime::tooling::scopes::PubsubScopes;
//!
//! let ours = PubsubScopes {
//!     pubsub: "kafka-pubsub".into(),
//!     app_id: "todo".into(),
//!     publishes: vec!["dlq".into(), "todo.retry.30s".into()],
//!     subscribes: vec!["task-events".into(), "todo.retry.30s".into()],
//!     protected: vec!["dlq".into(), "todo.retry.30s".into()],
//! };
//! let mut metadata = vec![("publishingScopes".to_owned(), "billing=invoices".to_owned())];
//! ours.merge_into(&mut metadata);
//! assert_eq!(metadata[0].1, "billing=invoices;todo=dlq,todo.retry.30s");
//! ```

use std::collections::BTreeSet;

use crate::handler::registry::Registry;
use crate::wire::yaml::Yaml;

/// Dapr's metadata key: `app=topic,topic;app=...`, the topics each listed app may publish to.
pub const PUBLISHING_SCOPES: &str = "publishingScopes";
/// Dapr's metadata key: `app=topic,topic;app=...`, the topics each listed app may subscribe to.
pub const SUBSCRIPTION_SCOPES: &str = "subscriptionScopes";
/// Dapr's metadata key: `topic,topic`, the topics only apps granted them in the scopes may use.
pub const PROTECTED_TOPICS: &str = "protectedTopics";

/// One app's scopes on one pub/sub component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubsubScopes {
    /// The component.
    pub pubsub: String,
    /// The app.
    pub app_id: String,
    /// Every topic the app publishes to on the component: its retry and dead-letter topics, the
    /// topics it consumes (a replayed dead letter goes back there), and what it declares with
    /// [`App::publishes`](crate::App::publishes). Anything else the sidecar refuses it (403).
    pub publishes: Vec<String>,
    /// Every topic it subscribes to: its handlers' topics and its retry topics.
    pub subscribes: Vec<String>,
    /// The topics no app may use unless granted: this app's retry and dead-letter topics.
    pub protected: Vec<String>,
}

impl PubsubScopes {
    /// `app=topic,topic`: this app's entry of `publishingScopes`.
    pub fn publishing_scope(&self) -> String {
        format!("{}={}", self.app_id, self.publishes.join(","))
    }

    /// `app=topic,topic`: this app's entry of `subscriptionScopes`.
    pub fn subscription_scope(&self) -> String {
        format!("{}={}", self.app_id, self.subscribes.join(","))
    }

    /// Writes this app's scopes into a component's `metadata` (name, value): its entries of
    /// `publishingScopes` and `subscriptionScopes` replace the app's old ones, other apps'
    /// entries stay, and `protectedTopics` gains this app's topics (its retry topics that no
    /// longer exist are dropped). Missing keys are added.
    pub fn merge_into(&self, metadata: &mut Vec<(String, String)>) {
        let prefix = format!("{}=", self.app_id);
        for (key, ours) in [
            (PUBLISHING_SCOPES, self.publishing_scope()),
            (SUBSCRIPTION_SCOPES, self.subscription_scope()),
        ] {
            merge_list(metadata, key, ';', |app| app.starts_with(&prefix), [ours]);
        }
        let own_ladder = format!("{}.retry.", self.app_id);
        let ours = self.protected.iter().cloned();
        merge_list(
            metadata,
            PROTECTED_TOPICS,
            ',',
            |t| t.starts_with(&own_ladder),
            ours,
        );
    }

    /// The three metadata entries of this app alone, as a YAML list to paste into (or merge
    /// into) the component's `spec.metadata`, under a comment naming the component.
    pub fn to_yaml(&self) -> String {
        let mut metadata = Vec::new();
        self.merge_into(&mut metadata);
        let items = metadata
            .into_iter()
            .map(|(name, value)| {
                Yaml::map([("name", Yaml::str(&name)), ("value", Yaml::str(&value))])
            })
            .collect::<Vec<_>>();
        format!(
            "# {}: this app's entries of the Component's spec.metadata. With several apps, join\n\
             # the scopes' values with \";\" and protectedTopics' with \",\" (PubsubScopes::merge_into).\n{}",
            self.pubsub.replace(['\n', '\r'], " "),
            Yaml::seq(items)
        )
    }
}

/// The list under `key` in `metadata` (added when missing), items split by `sep`: those that are
/// `stale` are dropped, then each of `ours` is added unless it is there.
fn merge_list(
    metadata: &mut Vec<(String, String)>,
    key: &str,
    sep: char,
    stale: impl Fn(&str) -> bool,
    ours: impl IntoIterator<Item = String>,
) {
    let i = match metadata.iter().position(|(k, _)| k == key) {
        Some(i) => i,
        None => {
            metadata.push((key.to_owned(), String::new()));
            metadata.len() - 1
        }
    };
    let mut items: Vec<String> = metadata[i]
        .1
        .split(sep)
        .map(str::trim)
        .filter(|item| !item.is_empty() && !stale(item))
        .map(str::to_owned)
        .collect();
    for item in ours {
        if !items.contains(&item) {
            items.push(item);
        }
    }
    metadata[i].1 = items.join(&sep.to_string());
}

/// A topic an app declares it publishes to, on its default component unless `pubsub` names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    /// The CloudEvent type.
    pub event_type: &'static str,
    /// The topic.
    pub topic: String,
    /// The component, when not the app's default.
    pub pubsub: Option<String>,
}

/// The scopes of the app of `registry` on each component it uses, in the order of its
/// subscriptions, then of what it declares it publishes. `default_dlq` takes events no handler takes; `published` is what the app
/// declares; `dapr_dead_letter_topic` is daprd's own dead-letter topic, when set.
pub(crate) fn scopes(
    registry: &Registry,
    default_pubsub: &str,
    default_dlq: &str,
    published: &[Published],
    dapr_dead_letter_topic: Option<&str>,
) -> Vec<PubsubScopes> {
    let declared = published
        .iter()
        .map(|p| p.pubsub.as_deref().unwrap_or(default_pubsub));
    let mut components: Vec<&str> = Vec::new();
    for pubsub in registry
        .topics
        .iter()
        .map(|t| t.pubsub.as_str())
        .chain(declared)
    {
        if !components.contains(&pubsub) {
            components.push(pubsub);
        }
    }
    components
        .into_iter()
        .map(|pubsub| {
            let (mut publishes, mut subscribes, mut protected) =
                (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
            for t in registry.topics.iter().filter(|t| t.pubsub == pubsub) {
                subscribes.insert(t.topic.clone());
                publishes.insert(t.topic.clone());
                if t.is_retry {
                    protected.insert(t.topic.clone());
                }
            }
            // Events no handler takes go to the default DLQ of the component they came on.
            let app_wide = (!subscribes.is_empty())
                .then_some(default_dlq)
                .into_iter()
                .chain(dapr_dead_letter_topic.filter(|_| !subscribes.is_empty()));
            let dlqs = registry
                .handlers
                .iter()
                .filter(|h| h.pubsub == pubsub)
                .map(|h| h.dlq.as_str())
                .chain(app_wide);
            for dlq in dlqs {
                publishes.insert(dlq.to_owned());
                protected.insert(dlq.to_owned());
            }
            for p in published {
                if p.pubsub.as_deref().unwrap_or(default_pubsub) == pubsub {
                    publishes.insert(p.topic.clone());
                }
            }
            PubsubScopes {
                pubsub: pubsub.to_owned(),
                app_id: registry.app_id.clone(),
                publishes: publishes.into_iter().collect(),
                subscribes: subscribes.into_iter().collect(),
                protected: protected.into_iter().collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> PubsubScopes {
        PubsubScopes {
            pubsub: "kafka-pubsub".into(),
            app_id: "todo".into(),
            publishes: vec!["dlq".into(), "todo.retry.30s".into()],
            subscribes: vec!["t".into(), "todo.retry.30s".into()],
            protected: vec!["dlq".into(), "todo.retry.30s".into()],
        }
    }

    #[test]
    fn merging_replaces_this_apps_entries_and_keeps_the_others() {
        let mut metadata = vec![
            ("brokers".to_owned(), "kafka:9092".to_owned()),
            (
                PUBLISHING_SCOPES.to_owned(),
                "billing=invoices;todo=old-topic".to_owned(),
            ),
            (
                PROTECTED_TOPICS.to_owned(),
                "billing.retry.5s,todo.retry.3600s".to_owned(),
            ),
        ];
        ours().merge_into(&mut metadata);
        ours().merge_into(&mut metadata); // twice: the same
        assert_eq!(
            metadata,
            [
                ("brokers".to_owned(), "kafka:9092".to_owned()),
                (
                    PUBLISHING_SCOPES.to_owned(),
                    "billing=invoices;todo=dlq,todo.retry.30s".to_owned()
                ),
                (
                    PROTECTED_TOPICS.to_owned(),
                    "billing.retry.5s,dlq,todo.retry.30s".to_owned()
                ),
                (
                    SUBSCRIPTION_SCOPES.to_owned(),
                    "todo=t,todo.retry.30s".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn an_app_whose_id_begins_another_keeps_it() {
        let mut metadata = vec![(PUBLISHING_SCOPES.to_owned(), "todo2=x".to_owned())];
        ours().merge_into(&mut metadata);
        assert_eq!(metadata[0].1, "todo2=x;todo=dlq,todo.retry.30s");
    }

    #[test]
    fn the_yaml_lists_the_three_entries() {
        let yaml = ours().to_yaml();
        assert!(yaml.starts_with("# kafka-pubsub: "), "{yaml}");
        assert!(yaml.contains("name: publishingScopes"), "{yaml}");
        assert!(
            yaml.contains("\n- name: publishingScopes\n  value: \"todo=dlq,todo.retry.30s\"\n"),
            "{yaml}"
        );
        assert!(yaml.contains("name: protectedTopics"), "{yaml}");
    }
}
