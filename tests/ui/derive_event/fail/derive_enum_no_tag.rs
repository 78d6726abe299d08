use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(version = "1.0")]
pub enum TaskEvent {
    #[serde(rename = "task.created")]
    Created { task_id: i64, user_id: String },
    #[serde(rename = "task.deleted")]
    Deleted { task_id: i64, user_id: String },
}

fn main() {}
