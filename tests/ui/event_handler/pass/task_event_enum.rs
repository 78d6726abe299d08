// An internally tagged enum: one Rust type for every event type of a topic, consumed by one
// idempotent handler whose key names the tag and fields every variant has.
use event_runtime::{event_handler, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0")]
pub enum TaskEvent {
    #[serde(rename = "task.created")]
    Created {
        event_id: String,
        event_version: String,
        task_id: i64,
        user_id: String,
        timestamp: String,
        payload: serde_json::Value,
    },
    #[serde(rename = "task.updated")]
    Updated {
        event_id: String,
        event_version: String,
        task_id: i64,
        user_id: String,
        timestamp: String,
        payload: serde_json::Value,
    },
    #[serde(rename = "task.completed")]
    Completed {
        event_id: String,
        event_version: String,
        task_id: i64,
        user_id: String,
        timestamp: String,
        payload: serde_json::Value,
    },
    #[serde(rename = "task.deleted")]
    Deleted {
        event_id: String,
        event_version: String,
        task_id: i64,
        user_id: String,
        timestamp: String,
        payload: serde_json::Value,
    },
}

#[event_handler(topic = "task-events", idempotency_key = "{event_type}-{task_id}-{timestamp}")]
async fn on_task_event(event: TaskEvent) -> anyhow::Result<()> {
    let _ = event;
    Ok(())
}

fn main() {
    assert_eq!(TaskEvent::TYPES, ["task.created", "task.updated", "task.completed", "task.deleted"]);
    assert_eq!(TaskEvent::TAG, Some("event_type"));
    assert_eq!(
        TaskEvent::FIELDS,
        ["event_type", "event_id", "event_version", "task_id", "user_id", "timestamp", "payload"]
    );

    let json = serde_json::json!({
        "event_type": "task.deleted", "event_id": "e-1", "event_version": "1.0", "task_id": 3,
        "user_id": "u-9", "timestamp": "2024-01-01T00:00:00Z", "payload": {}
    });
    let event: TaskEvent = serde_json::from_value(json).unwrap();
    assert_eq!(event.event_type(), "task.deleted");
    assert_eq!(event.partition_key().as_deref(), Some("u-9"));
    assert_eq!(event.event_id().as_deref(), Some("e-1"));

    let def = event_runtime::__private::registered()[0];
    assert_eq!(def.registration()["event_types"], serde_json::json!(TaskEvent::TYPES));
    assert_eq!(def.registration()["event_tag"], serde_json::json!("event_type"));
    assert_eq!(def.registration()["idempotent"], true);
    assert_eq!(def.registration()["idempotency_key"], serde_json::json!("{event_type}-{task_id}-{timestamp}"));
}
