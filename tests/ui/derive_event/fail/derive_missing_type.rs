use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(version = "1.0")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

fn main() {}
