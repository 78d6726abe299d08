// `#[event(schema)]` asks for the schemars schema: the type must implement `JsonSchema`.
use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0", schema)]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

fn main() {}
