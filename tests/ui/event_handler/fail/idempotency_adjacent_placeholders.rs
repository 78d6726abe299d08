use event_runtime::{event_handler, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub task_id: String,
    pub user_id: String,
}

// ("xy", "") and ("x", "y") would render one key: the second event would be skipped.
#[event_handler(topic = "task-events", idempotency_key = "{task_id}{user_id}")]
async fn on_task_completed(_event: TaskCompleted) {}

fn main() {}
