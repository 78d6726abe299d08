// The producer removed `task_id` from its Pydantic `TaskEvent` (this contract is the schema
// pydantic exports from example-todo/contracts/models.py without that line; regenerate.sh
// writes it): the Rust type that still requires it no longer compiles, and the error is at it.
use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type", rename = "task.completed")]
#[event(
    type = "task.completed",
    version = "1.0",
    contract = "contracts/drift/task-event.schema.json"
)]
pub struct TaskCompleted {
    pub event_id: String,
    pub task_id: i64,
    pub user_id: String,
    pub timestamp: String,
    pub payload: serde_json::Value,
}

fn main() {}
