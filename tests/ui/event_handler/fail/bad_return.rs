use event_runtime::{event_handler, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

#[event_handler(topic = "task-events")]
async fn returns_a_number(_event: TaskCompleted) -> i32 {
    0
}

#[event_handler(topic = "task-events", route = "/string")]
async fn returns_a_string(_event: TaskCompleted) -> Result<String, std::io::Error> {
    Ok(String::new())
}

fn main() {}
