//! The events of the Phase V contract (`kafka-event-driven-reference.md` §2), as Rust types.

use event_runtime::Event;
use serde::{Deserialize, Serialize};

/// Topic of every task CRUD event.
pub const TASK_EVENTS: &str = "task-events";
/// Topic of reminder events.
pub const REMINDERS: &str = "reminders";
/// Topic of real-time client sync.
pub const TASK_UPDATES: &str = "task-updates";

/// The fields every task event carries (the reference's `TaskEvent` model, minus its type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEventFields {
    /// Unique id of this event.
    pub event_id: String,
    /// Schema version, `1.0`.
    pub event_version: String,
    /// The task.
    pub task_id: i64,
    /// The task's owner (the partition key).
    pub user_id: String,
    /// When it happened (RFC 3339).
    pub timestamp: String,
    /// The task as it is after the change.
    pub payload: serde_json::Value,
}

/// The reference's versioned `TaskEvent`: `event_type` is the tag, so one Rust type covers the
/// four types of `task-events`. This is what the service publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0")]
pub enum TaskEvent {
    /// A task was created.
    #[serde(rename = "task.created")]
    Created {
        /// Unique id of this event.
        event_id: String,
        /// Schema version.
        event_version: String,
        /// The task.
        task_id: i64,
        /// The owner.
        user_id: String,
        /// When.
        timestamp: String,
        /// The task.
        payload: serde_json::Value,
    },
    /// A task was changed.
    #[serde(rename = "task.updated")]
    Updated {
        /// Unique id of this event.
        event_id: String,
        /// Schema version.
        event_version: String,
        /// The task.
        task_id: i64,
        /// The owner.
        user_id: String,
        /// When.
        timestamp: String,
        /// The task.
        payload: serde_json::Value,
    },
    /// A task was completed.
    #[serde(rename = "task.completed")]
    Completed {
        /// Unique id of this event.
        event_id: String,
        /// Schema version.
        event_version: String,
        /// The task.
        task_id: i64,
        /// The owner.
        user_id: String,
        /// When.
        timestamp: String,
        /// The task.
        payload: serde_json::Value,
    },
    /// A task was deleted.
    #[serde(rename = "task.deleted")]
    Deleted {
        /// Unique id of this event.
        event_id: String,
        /// Schema version.
        event_version: String,
        /// The task.
        task_id: i64,
        /// The owner.
        user_id: String,
        /// When.
        timestamp: String,
        /// The task.
        payload: serde_json::Value,
    },
}

impl TaskEvent {
    /// Builds an event of `kind` (`created`, `updated`, `completed`, `deleted`).
    pub fn new(kind: &str, task_id: i64, user_id: &str, payload: serde_json::Value) -> Self {
        let f = TaskEventFields {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_version: "1.0".into(),
            task_id,
            user_id: user_id.to_owned(),
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            payload,
        };
        let TaskEventFields {
            event_id,
            event_version,
            task_id,
            user_id,
            timestamp,
            payload,
        } = f;
        match kind {
            "created" => TaskEvent::Created {
                event_id,
                event_version,
                task_id,
                user_id,
                timestamp,
                payload,
            },
            "updated" => TaskEvent::Updated {
                event_id,
                event_version,
                task_id,
                user_id,
                timestamp,
                payload,
            },
            "completed" => TaskEvent::Completed {
                event_id,
                event_version,
                task_id,
                user_id,
                timestamp,
                payload,
            },
            _ => TaskEvent::Deleted {
                event_id,
                event_version,
                task_id,
                user_id,
                timestamp,
                payload,
            },
        }
    }
}

/// `task.completed`, as the recurring-task handler reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    /// Unique id of this event.
    pub event_id: String,
    /// The task.
    pub task_id: i64,
    /// The owner.
    pub user_id: String,
    /// When (RFC 3339).
    pub timestamp: String,
    /// The task as completed.
    #[serde(default)]
    pub payload: serde_json::Value,
}

/// Every other task event, as the audit log reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0")]
pub enum TaskChanged {
    /// A task was created.
    #[serde(rename = "task.created")]
    Created {
        /// Unique id of this event.
        event_id: String,
        /// The task.
        task_id: i64,
        /// The owner.
        user_id: String,
        /// When.
        timestamp: String,
    },
    /// A task was changed.
    #[serde(rename = "task.updated")]
    Updated {
        /// Unique id of this event.
        event_id: String,
        /// The task.
        task_id: i64,
        /// The owner.
        user_id: String,
        /// When.
        timestamp: String,
    },
    /// A task was deleted.
    #[serde(rename = "task.deleted")]
    Deleted {
        /// Unique id of this event.
        event_id: String,
        /// The task.
        task_id: i64,
        /// The owner.
        user_id: String,
        /// When.
        timestamp: String,
    },
}
