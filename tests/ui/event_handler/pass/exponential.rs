// `retry = exponential(..)` is expanded at compile time into the list of delays.
use event_runtime::{event_handler, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.created", version = "1.0")]
pub struct TaskCreated {
    pub task_id: i64,
    pub user_id: String,
}

#[event_handler(topic = "task-events", retry = exponential(initial = 1, factor = 2, attempts = 10, cap = 512))]
async fn capped(_event: TaskCreated) {}

#[event_handler(topic = "task-events", route = "/uncapped", retry = exponential(initial = 5, factor = 3, attempts = 3))]
async fn uncapped(_event: TaskCreated) {}

fn main() {
    let defs = event_runtime::__private::registered();
    assert_eq!(defs[0].registration()["name"], serde_json::json!("capped"));
    assert_eq!(defs[0].registration()["retry"], serde_json::json!([1, 2, 4, 8, 16, 32, 64, 128, 256, 512]));
    assert_eq!(defs[1].registration()["retry"], serde_json::json!([5, 15, 45]));
}
