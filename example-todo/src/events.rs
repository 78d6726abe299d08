//! The events of the todo platform's shared event contract ("the reference",
//! `kafka-event-driven-reference.md` §2–3, which the platform's services in other languages
//! follow too), as Rust types.
//!
//! Each CloudEvent type is declared by exactly one Rust type, which both publishes and consumes
//! it. `task-events` carries four types and has two handlers, so its types are split in two:
//! [`TaskChanged`] (created, updated, deleted: the audit log) and [`TaskCompleted`] (the
//! recurring-task handler). Both serialize to the reference's `TaskEvent` body: `event_id`,
//! `event_type`, `event_version`, `task_id`, `user_id`, `timestamp`, `payload`.
//!
//! Consumers are lenient about what other services leave out (the reference's own Python
//! example publishes only `event_type`, `user_id` and `task_id`): the other fields default.
//!
//! The contract is the producer's: the Pydantic models in `contracts/models.py` (the
//! reference's `TaskEvent`, and its `ReminderEvent`), exported by `contracts/regenerate.sh` to
//! `contracts/*.schema.json`. Each type here names its file with `#[event(contract = "...")]`, so
//! it does not compile once it reads something the producer does not promise: a field the
//! schema does not require, a type that cannot hold the schema's values, a tag value the
//! schema's `Literal` does not list. Reading less strictly than the producer writes is allowed,
//! which is why the lenient defaults above stay: `event_id`, `timestamp` and `payload` are
//! required by `TaskEvent`, and a consumer that required them too would gain nothing from a
//! conforming producer and send the reference's own (non-conforming) example to the DLQ.

use chrono::{SecondsFormat, Utc};
use event_runtime::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::db::Task;

/// Topic of every task CRUD event.
pub const TASK_EVENTS: &str = "task-events";
/// Topic of reminder events.
pub const REMINDERS: &str = "reminders";
/// Topic of real-time client sync.
pub const TASK_UPDATES: &str = "task-updates";
/// The dead-letter topic.
pub const DLQ: &str = "dlq";
/// The pubsub component of `task-updates`. Every replica must see every update (each pushes
/// them to its own connected clients), so this component gives each pod its own consumer
/// group (`consumerID: "{podName}"`, see `deploy/components/kafka-fanout.yaml`), unlike
/// `kafka-pubsub` where the replicas share the work.
pub const FANOUT_PUBSUB: &str = "kafka-fanout";
/// The schema version of every event here.
pub const EVENT_VERSION: &str = "1.0";

fn version() -> String {
    EVENT_VERSION.to_owned()
}

/// Now, as the events write it (RFC 3339, milliseconds, UTC).
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn payload_of(task: &Task) -> serde_json::Value {
    serde_json::to_value(task).unwrap_or_default()
}

/// The fields of every [`TaskChanged`]: the reference's `TaskEvent` body, less its tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event, JsonSchema)]
#[event(body, contract = "contracts/task-event.schema.json")]
pub struct TaskChange {
    /// Unique id of this event (also its CloudEvent id).
    #[serde(default)]
    pub event_id: String,
    /// Schema version, `1.0`.
    #[serde(default = "version")]
    pub event_version: String,
    /// The task.
    pub task_id: i64,
    /// The owner (the partition key).
    pub user_id: String,
    /// When (RFC 3339).
    #[serde(default)]
    pub timestamp: String,
    /// The task: as created, as it is now, as completed, or as it was when deleted.
    #[serde(default)]
    pub payload: serde_json::Value,
}

impl TaskChange {
    /// A change of `task`, with a fresh id and the current time.
    pub fn of(task: &Task) -> Self {
        TaskChange {
            event_id: new_id(),
            event_version: version(),
            task_id: task.id,
            user_id: task.user_id.clone(),
            timestamp: now(),
            payload: payload_of(task),
        }
    }
}

/// `task.created`, `task.updated` and `task.deleted`: the audit log's events. Each holds a
/// [`TaskChange`], whose fields serde writes beside `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event, JsonSchema)]
#[serde(tag = "event_type")]
#[event(version = "1.0", schema, contract = "contracts/task-event.schema.json")]
pub enum TaskChanged {
    /// A task was created.
    #[serde(rename = "task.created")]
    Created(TaskChange),
    /// A task was changed.
    #[serde(rename = "task.updated")]
    Updated(TaskChange),
    /// A task was deleted.
    #[serde(rename = "task.deleted")]
    Deleted(TaskChange),
}

impl TaskChanged {
    /// `task.created` for `task`, with a fresh id and the current time.
    pub fn created(task: &Task) -> Self {
        TaskChanged::Created(TaskChange::of(task))
    }

    /// `task.updated` for `task`.
    pub fn updated(task: &Task) -> Self {
        TaskChanged::Updated(TaskChange::of(task))
    }

    /// `task.deleted` for `task`.
    pub fn deleted(task: &Task) -> Self {
        TaskChanged::Deleted(TaskChange::of(task))
    }

    /// The fields every variant has.
    pub fn change(&self) -> &TaskChange {
        match self {
            TaskChanged::Created(c) | TaskChanged::Updated(c) | TaskChanged::Deleted(c) => c,
        }
    }

    /// The fields every variant has, to change.
    pub fn change_mut(&mut self) -> &mut TaskChange {
        match self {
            TaskChanged::Created(c) | TaskChanged::Updated(c) | TaskChanged::Deleted(c) => c,
        }
    }
}

/// `task.completed`: the recurring-task handler's event. It holds a [`TaskChange`] (the task as
/// completed), whose fields serde writes beside `"event_type": "task.completed"` like the other
/// task events (serde's tag on a struct, which producers that leave it out still read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event, JsonSchema)]
#[serde(tag = "event_type", rename = "task.completed")]
#[event(
    type = "task.completed",
    version = "1.0",
    schema,
    contract = "contracts/task-event.schema.json"
)]
pub struct TaskCompleted {
    /// The task as completed.
    #[serde(flatten)]
    #[event(body)]
    pub change: TaskChange,
}

impl TaskCompleted {
    /// `task.completed` for `task`, with a fresh id and the current time.
    pub fn of(task: &Task) -> Self {
        TaskCompleted {
            change: TaskChange::of(task),
        }
    }
}

/// `reminder.due` on `reminders`: a task's reminder time has come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event, JsonSchema)]
#[serde(tag = "event_type", rename = "reminder.due")]
#[event(
    type = "reminder.due",
    version = "1.0",
    schema,
    contract = "contracts/reminder-event.schema.json"
)]
pub struct ReminderDue {
    /// `reminder-<task id>-<remind_at>`: the same reminder always has the same id, so a
    /// duplicate publish is recognised by the idempotent handler.
    pub event_id: String,
    /// Schema version, `1.0`.
    #[serde(default = "version")]
    pub event_version: String,
    /// The task.
    pub task_id: i64,
    /// The owner (the partition key).
    pub user_id: String,
    /// The task's title.
    pub title: String,
    /// When the task is due, if it has a due time (RFC 3339).
    #[serde(default)]
    pub due_at: Option<String>,
    /// The reminder time (RFC 3339).
    pub remind_at: String,
    /// When it was published (RFC 3339).
    pub timestamp: String,
}

impl ReminderDue {
    /// The reminder of `task` (which has a `remind_at`).
    pub fn of(task: &Task) -> Self {
        let at = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
        let remind_at = task.remind_at.map(at).unwrap_or_default();
        ReminderDue {
            event_id: format!("reminder-{}-{remind_at}", task.id),
            event_version: version(),
            task_id: task.id,
            user_id: task.user_id.clone(),
            title: task.title.clone(),
            due_at: task.due_at.map(at),
            remind_at,
            timestamp: now(),
        }
    }
}

/// What changed, for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncAction {
    /// The task is new.
    Created,
    /// The task changed.
    Updated,
    /// The task was completed.
    Completed,
    /// The task is gone.
    Deleted,
    /// The task's reminder fired.
    Reminder,
}

/// `task.sync` on `task-updates`: one change for a user's connected clients (the page's live
/// list, through `GET /tasks/stream`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event, JsonSchema)]
#[serde(tag = "event_type", rename = "task.sync")]
#[event(type = "task.sync", version = "1.0", schema)]
pub struct TaskSync {
    /// Unique id of this event.
    pub event_id: String,
    /// Schema version, `1.0`.
    #[serde(default = "version")]
    pub event_version: String,
    /// What happened.
    pub action: SyncAction,
    /// The task.
    pub task_id: i64,
    /// The owner (the partition key, and who sees it).
    pub user_id: String,
    /// The task as it is now (as it was, for `deleted`).
    pub task: Task,
    /// When (RFC 3339).
    pub timestamp: String,
}

impl TaskSync {
    /// `action` on `task`.
    pub fn new(action: SyncAction, task: &Task) -> Self {
        TaskSync {
            event_id: new_id(),
            event_version: version(),
            action,
            task_id: task.id,
            user_id: task.user_id.clone(),
            task: task.clone(),
            timestamp: now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task() -> Task {
        let t = "2026-11-26T10:00:00Z".parse().unwrap();
        Task {
            id: 7,
            user_id: "u-1".into(),
            title: "water plants".into(),
            completed: true,
            due_at: None,
            remind_at: Some(t),
            reminder_sent_at: None,
            recurrence: Some("weekly".into()),
            recurs_from: None,
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn task_events_carry_the_reference_fields() {
        let t = task();
        for value in [
            serde_json::to_value(TaskChanged::created(&t)).unwrap(),
            serde_json::to_value(TaskChanged::updated(&t)).unwrap(),
            serde_json::to_value(TaskChanged::deleted(&t)).unwrap(),
            serde_json::to_value(TaskCompleted::of(&t)).unwrap(),
        ] {
            let mut keys: Vec<&str> = value
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "event_id",
                    "event_type",
                    "event_version",
                    "payload",
                    "task_id",
                    "timestamp",
                    "user_id"
                ],
                "{value}"
            );
            assert_eq!(value["event_version"], "1.0");
            assert_eq!(value["payload"]["title"], "water plants");
        }
        let completed = serde_json::to_value(TaskCompleted::of(&t)).unwrap();
        assert_eq!(completed["event_type"], "task.completed");
    }

    #[test]
    fn one_rust_type_per_cloudevent_type() {
        assert_eq!(
            TaskChanged::TYPES,
            ["task.created", "task.updated", "task.deleted"]
        );
        assert_eq!(TaskCompleted::TYPES, ["task.completed"]);
        assert_eq!(ReminderDue::TYPES, ["reminder.due"]);
        assert_eq!(TaskSync::TYPES, ["task.sync"]);
    }

    #[test]
    fn lenient_about_what_other_producers_leave_out() {
        // The reference's Python example publishes exactly this.
        let e: TaskCompleted = serde_json::from_value(
            json!({"event_type": "task.completed", "user_id": "user-456", "task_id": 123}),
        )
        .unwrap();
        let e = e.change;
        assert_eq!(
            (e.task_id, e.event_version.as_str(), e.event_id.as_str()),
            (123, "1.0", "")
        );
        // The tag may be missing (the type was only in the CloudEvent `type`).
        let e: TaskCompleted =
            serde_json::from_value(json!({"user_id": "u", "task_id": 1})).unwrap();
        assert_eq!(e.change.task_id, 1);
    }

    #[test]
    fn a_reminder_keeps_its_id() {
        let t = task();
        assert_eq!(ReminderDue::of(&t).event_id, ReminderDue::of(&t).event_id);
        assert_eq!(
            ReminderDue::of(&t).event_id,
            "reminder-7-2026-11-26T10:00:00.000Z"
        );
    }
}
