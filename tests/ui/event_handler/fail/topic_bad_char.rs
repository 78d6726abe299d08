use event_runtime::{event_handler, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

#[event_handler(topic = "task events")]
async fn on_task_completed(_event: TaskCompleted) {}

fn main() {}
