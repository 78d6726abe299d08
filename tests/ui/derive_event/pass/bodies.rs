// Variants that share their fields hold one `#[event(body)]` struct: its key, id, version and
// fields serve the enum, and a key template may name the fields every variant has.
use event_runtime::{event_handler, Event};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Event)]
#[event(body)]
pub struct TaskChange {
    pub event_id: String,
    pub event_version: String,
    pub task_id: i64,
    pub user_id: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Event)]
#[event(body)]
pub struct Removal {
    pub event_id: String,
    pub task_id: i64,
    #[event(partition_key)]
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0")]
pub enum TaskChanged {
    #[serde(rename = "task.created")]
    Created(TaskChange),
    #[serde(rename = "task.updated")]
    Updated(TaskChange),
    #[serde(rename = "task.deleted")]
    Deleted(Removal),
    #[serde(rename = "task.renamed")]
    Renamed { event_id: String, task_id: i64, user_id: String, name: String },
}

#[event_handler(topic = "task-events", idempotency_key = "{event_type}:{task_id}")]
async fn on_change(_event: TaskChanged) {}

fn main() {
    let change = TaskChange {
        event_id: "e-1".into(),
        event_version: "1.0".into(),
        task_id: 7,
        user_id: "u-1".into(),
    };
    let created = TaskChanged::Created(change.clone());
    assert_eq!(TaskChanged::TYPES, ["task.created", "task.updated", "task.deleted", "task.renamed"]);
    assert_eq!(TaskChanged::FIELDS, ["event_type", "event_id", "task_id"]);
    assert_eq!(created.event_type(), "task.created");
    assert_eq!(created.partition_key().as_deref(), Some("u-1"));
    assert_eq!(created.event_id().as_deref(), Some("e-1"));
    assert_eq!(created.data_version(), event_runtime::__private::DataVersion::Is("1.0"));

    let deleted = TaskChanged::Deleted(Removal { event_id: "e-2".into(), task_id: 7, owner: "u-2".into() });
    assert_eq!(deleted.partition_key().as_deref(), Some("u-2"));
    assert_eq!(deleted.data_version(), event_runtime::__private::DataVersion::NotRead);

    // Serde writes a body's fields beside the tag, as if the variant had them.
    let json = serde_json::to_value(&created).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"event_type": "task.created", "event_id": "e-1", "event_version": "1.0", "task_id": 7, "user_id": "u-1"})
    );
    assert_eq!(serde_json::from_value::<TaskChanged>(json).unwrap(), created);
}
