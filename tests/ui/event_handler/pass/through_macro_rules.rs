//! Attribute values passed through `macro_rules!` fragments arrive in invisible groups.
use event_runtime::{event_handler, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

macro_rules! handler {
    ($name:ident, $topic:literal, $delay:literal) => {
        #[event_handler(topic = $topic, retry = [$delay, 2], timeout = $delay)]
        async fn $name(_event: TaskCompleted) {}
    };
}

handler!(on_a, "topic-a", 1);
handler!(on_b, "topic-b", 5);

fn main() {
    let topics: Vec<&str> = event_runtime::__private::registered().iter().map(|h| h.topic()).collect();
    assert_eq!(topics, ["topic-a", "topic-b"]);
}
