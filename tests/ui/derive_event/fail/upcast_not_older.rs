use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "2.0")]
pub struct TaskCompletedV2 {
    pub task_id: i64,
    pub user_id: String,
}

// The chain must go up: 2.x cannot upcast into 2.x (or 1.x).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "2.1", upcast_from = TaskCompletedV2)]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

impl From<TaskCompletedV2> for TaskCompleted {
    fn from(v: TaskCompletedV2) -> Self {
        TaskCompleted { task_id: v.task_id, user_id: v.user_id }
    }
}

fn main() {}
