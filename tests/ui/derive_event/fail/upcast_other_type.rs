use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.created", version = "1.0")]
pub struct TaskCreated {
    pub task_id: i64,
    pub user_id: String,
}

// An upcaster converts older versions of the same event type, not another type.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "2.0", upcast_from = TaskCreated)]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

impl From<TaskCreated> for TaskCompleted {
    fn from(v: TaskCreated) -> Self {
        TaskCompleted { task_id: v.task_id, user_id: v.user_id }
    }
}

fn main() {}
