//! Dapr's answers, and its bulk deliveries: one set of types for the app that reads a batch and
//! answers it, and for the embedded broker that writes and reads them.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Dapr's answer to one delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Acknowledge.
    Success,
    /// Redeliver.
    Retry,
    /// Acknowledge as failed (already dead-lettered, or dropped on purpose).
    Drop,
}

impl Status {
    /// The string Dapr expects.
    ///
    /// ```
    /// assert_eq!(event_runtime::Status::Retry.as_str(), "RETRY");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "SUCCESS",
            Status::Retry => "RETRY",
            Status::Drop => "DROP",
        }
    }

    /// `{"status": ...}`, as a constant: the common answer costs no serialization.
    pub(crate) fn body(self) -> &'static str {
        match self {
            Status::Success => r#"{"status":"SUCCESS"}"#,
            Status::Retry => r#"{"status":"RETRY"}"#,
            Status::Drop => r#"{"status":"DROP"}"#,
        }
    }

    /// Whether Dapr takes the answer as an acknowledgement (the broker moves on).
    pub(crate) fn acknowledges(self) -> bool {
        matches!(self, Status::Success | Status::Drop)
    }
}

/// The CloudEvent type of a bulk delivery.
pub(crate) const BULK_TYPE: &str = "com.dapr.event.sent.bulk";

/// A Dapr bulk delivery (`com.dapr.event.sent.bulk`).
#[derive(Serialize, Deserialize)]
pub(crate) struct BulkRequest {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub topic: String,
    #[serde(default)]
    pub pubsubname: String,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub entries: Vec<BulkEntry>,
}

/// One record of a bulk delivery: its bytes (base64, for rawPayload) or its event, and the
/// broker's metadata about it.
#[derive(Serialize, Deserialize)]
pub(crate) struct BulkEntry {
    #[serde(rename = "entryId")]
    pub entry_id: Option<String>,
    pub event: Option<Box<RawValue>>,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(
        rename = "contentType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub content_type: Option<String>,
}

/// The answer to a bulk delivery: one status per entry.
#[derive(Serialize, Deserialize)]
pub(crate) struct BulkResponse {
    pub statuses: Vec<EntryStatus>,
}

/// One entry's answer.
#[derive(Serialize, Deserialize)]
pub(crate) struct EntryStatus {
    #[serde(rename = "entryId")]
    pub entry_id: String,
    pub status: Status,
}
