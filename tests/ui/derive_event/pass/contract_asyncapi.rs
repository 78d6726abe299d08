// A message of an AsyncAPI document: 3.0 as event-runtime's `asyncapi` writes it (by its name
// or title), and 2.6 as FastStream writes it (by the Pydantic model its payload refers to).
// serde's `rename`, `rename_all` and a flattened field are read as serde reads them.
use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0", contract = "contracts/todo.asyncapi.json", message = "TaskCompleted")]
pub struct ByTitle {
    pub task_id: i64,
    pub user_id: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "2.0", contract = "contracts/todo.asyncapi.json", message = "task.completed")]
pub struct ByName {
    #[serde(rename = "task_id")]
    pub id: i64,
    pub user_id: String,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Rest {
    pub event_id: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[serde(rename_all = "snake_case")]
#[event(type = "task.created", version = "1.0", contract = "contracts/faststream.asyncapi.json", message = "TaskEvent")]
pub struct FromFastStream {
    pub task_id: i64,
    pub user_id: String,
    pub timestamp: chrono::DateTime<chrono::Utc>,
    pub payload: serde_json::Map<String, serde_json::Value>,
    #[serde(flatten)]
    pub rest: Rest,
}

fn main() {}
