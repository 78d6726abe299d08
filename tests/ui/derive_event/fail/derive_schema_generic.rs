// A generic event type has no one JSON Schema; `schema = ...` is a flag.
use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "wrapped", version = "1.0", schema)]
#[serde(bound(serialize = "", deserialize = ""))]
pub struct Wrapped<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    pub user_id: u64,
    pub inner: T,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0", schema = false)]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

fn main() {}
