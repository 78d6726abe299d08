// An enum's variants, and a tagged struct, whose tag value the schema does not allow: an error
// at each. In a discriminated union each variant is checked against its own branch.
use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0", contract = "contracts/pydantic/task-event.schema.json")]
pub enum TaskEvent {
    #[serde(rename = "task.created")]
    Created { event_id: String, task_id: i64, user_id: String, timestamp: String, payload: serde_json::Value },
    #[serde(rename = "task.archived")]
    Archived { event_id: String, task_id: i64, user_id: String, timestamp: String, payload: serde_json::Value },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type", rename = "task.moved")]
#[event(type = "task.moved", version = "1.0", contract = "contracts/pydantic/task-event.schema.json")]
pub struct TaskMoved {
    pub task_id: i64,
    pub user_id: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0", contract = "contracts/union.schema.json")]
pub enum TaskChange {
    #[serde(rename = "task.created")]
    Created { task_id: i64, user_id: String },
    #[serde(rename = "task.renamed")]
    Renamed { task_id: String, user_id: String, title: String },
    #[serde(rename = "task.deleted")]
    Deleted { task_id: i64, user_id: String },
}

fn main() {}
