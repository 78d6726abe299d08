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

    let handlers = event_runtime::registered();
    assert_eq!(handlers.len(), 1);
    let def = handlers[0];
    assert_eq!(def.name, "on_task_completed");
    assert_eq!(def.topic, "task-events");
    assert_eq!(def.pubsub, Some("kafka-pubsub"));
    assert_eq!(def.route, Some("/api/events/task-completed"));
    assert_eq!(def.event_types, ["task.completed"]);
    assert_eq!(def.event_type_name, "TaskCompleted");
    assert!(def.retry.is_empty() && !def.idempotent && def.bulk.is_none());

    // The function stays an ordinary async fn.
    let _future = on_task_completed(e);
}
