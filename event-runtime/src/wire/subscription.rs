//! Dapr's subscription shape: what `GET /dapr/subscribe` answers, and what the declarative
//! `Subscription` resources hold. One set of types serves the app, the embedded broker and the
//! manifests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One entry of Dapr's programmatic subscription list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DaprSubscription {
    /// Pubsub component.
    pub pubsubname: String,
    /// Topic.
    pub topic: String,
    /// Routing rules and default route.
    pub routes: Routes,
    /// Dapr-level dead-letter topic (only for what Dapr cannot deliver; see the `dlq` module).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dead_letter_topic: Option<String>,
    /// Metadata; values are strings, as Dapr requires.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub metadata: BTreeMap<String, String>,
    /// Bulk settings.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bulk_subscribe: Option<BulkSubscribe>,
}

/// `routes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Routes {
    /// Rules in priority order.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Default route.
    #[serde(default)]
    pub default: String,
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// CEL expression.
    pub r#match: String,
    /// Route.
    pub path: String,
}

/// `bulkSubscribe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkSubscribe {
    /// Enabled.
    pub enabled: bool,
    /// `maxMessagesCount`.
    pub max_messages_count: u32,
    /// `maxAwaitDurationMs`.
    pub max_await_duration_ms: u32,
}
