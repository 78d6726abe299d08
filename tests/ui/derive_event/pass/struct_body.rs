// A struct event can hold the fields it shares with other events as one flattened
// `#[event(body)]` field: the body's key, id, version and fields serve the event where its own
// fields give none, and serde writes them beside the event's own.
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
#[serde(tag = "event_type", rename = "task.completed")]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    #[serde(flatten)]
    #[event(body)]
    pub change: TaskChange,
    pub completed_by: String,
}

// Its own key wins over the body's.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.reassigned", version = "2.1")]
pub struct TaskReassigned {
    #[serde(flatten)]
    #[event(body)]
    pub change: TaskChange,
    #[event(partition_key)]
    pub new_owner: String,
}

#[event_handler(topic = "task-events", idempotency_key = "{task_id}-{completed_by}")]
async fn on_completed(_event: TaskCompleted) {}

fn main() {
    let change = TaskChange {
        event_id: "e-1".into(),
        event_version: "1.0".into(),
        task_id: 7,
        user_id: "u-1".into(),
    };
    let completed = TaskCompleted { change: change.clone(), completed_by: "u-9".into() };
    assert_eq!(TaskCompleted::FIELDS, ["completed_by", "event_id", "event_version", "task_id", "user_id"]);
    assert_eq!(completed.partition_key().as_deref(), Some("u-1"));
    assert_eq!(completed.event_id().as_deref(), Some("e-1"));
    assert_eq!(completed.data_version(), event_runtime::__private::DataVersion::Is("1.0"));

    let reassigned = TaskReassigned { change, new_owner: "u-2".into() };
    assert_eq!(reassigned.partition_key().as_deref(), Some("u-2"));

    // Serde writes the body's fields beside the event's, and reads them back, with the tag or
    // without it (as producers that put the type only in the CloudEvent write it).
    let json = serde_json::to_value(&completed).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"event_type": "task.completed", "event_id": "e-1", "event_version": "1.0", "task_id": 7, "user_id": "u-1", "completed_by": "u-9"})
    );
    assert_eq!(serde_json::from_value::<TaskCompleted>(json.clone()).unwrap(), completed);
    let mut untagged = json;
    untagged.as_object_mut().unwrap().remove("event_type");
    assert_eq!(serde_json::from_value::<TaskCompleted>(untagged).unwrap(), completed);
}
