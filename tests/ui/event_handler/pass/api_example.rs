// The public API example: a derived event and a handler of it.
#[allow(unused_imports)]
use event_runtime::{event_handler, App, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

#[event_handler(pubsub = "kafka-pubsub", topic = "task-events", route = "/api/events/task-completed")]
async fn on_task_completed(event: TaskCompleted) -> anyhow::Result<()> {
    let _ = event;
    Ok(())
}

fn main() {
    let e = TaskCompleted { task_id: 7, user_id: "u-1".into() };
    assert_eq!(e.event_type(), "task.completed");
    assert_eq!(e.partition_key().as_deref(), Some("u-1"));
    assert_eq!(e.event_id(), None);
    assert_eq!(TaskCompleted::TYPES, ["task.completed"]);
    assert_eq!(TaskCompleted::VERSION, "1.0");
    assert_eq!(TaskCompleted::TAG, None);
    assert_eq!(TaskCompleted::FIELDS, ["task_id", "user_id"]);

    let handlers = event_runtime::__private::registered();
    assert_eq!(handlers.len(), 1);
    let def = handlers[0];
    assert_eq!(def.registration()["name"], serde_json::json!("on_task_completed"));
    assert_eq!(def.registration()["topic"], serde_json::json!("task-events"));
    assert_eq!(def.registration()["pubsub"], serde_json::json!("kafka-pubsub"));
    assert_eq!(def.registration()["route"], serde_json::json!("/api/events/task-completed"));
    assert_eq!(def.registration()["event_types"], serde_json::json!(["task.completed"]));
    assert_eq!(def.registration()["event_type_name"], serde_json::json!("TaskCompleted"));
    let r = def.registration();
    assert!(r["retry"] == serde_json::json!([]) && r["idempotent"] == false && r["bulk"].is_null());

    // The function stays an ordinary async fn.
    let _future = on_task_completed(e);
}
