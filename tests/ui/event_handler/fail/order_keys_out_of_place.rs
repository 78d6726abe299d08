use event_runtime::{event_handler, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

// Inline retries hold nothing back: there is no order to give up.
#[event_handler(topic = "a", retry = [1], retry_mode = "inline", unordered)]
async fn inline_unordered(_event: TaskCompleted) {}

// No retries at all.
#[event_handler(topic = "b", on_dead_letter = "hold")]
async fn no_retries_hold(_event: TaskCompleted) {}

// Both: an unordered handler holds nothing.
#[event_handler(topic = "c", retry = [30], unordered, on_dead_letter = "release")]
async fn both(_event: TaskCompleted) {}

// A misspelt choice.
#[event_handler(topic = "d", retry = [30], on_dead_letter = "hodl")]
async fn misspelt(_event: TaskCompleted) {}

// A flag takes no value.
#[event_handler(topic = "e", retry = [30], unordered = true)]
async fn valued(_event: TaskCompleted) {}

fn main() {}
