use event_runtime::{event_handler, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

#[event_handler(topik = "task-events", retry = [30, -5], retry_mode = "inlne", dlq = "dead letters", bulk(max_mesages = 10), timeout = "30s")]
async fn on_task_completed(_event: TaskCompleted) {}

fn main() {}
