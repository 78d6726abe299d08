use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub owner: String,
}

fn main() {}
