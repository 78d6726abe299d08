use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "2.0", upcast_from = "TaskCompletedV1")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

fn main() {}
