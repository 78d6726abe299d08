//! The README's Quick start, end to end: a typed handler, served on the embedded broker, receives
//! an event the app publishes, then the app shuts down.
//!
//! ```sh
//! cargo run -p event-runtime --example quickstart
//! ```
//!
//! Under a Dapr sidecar (`EVENTS_MODE=dapr`) the same code subscribes through daprd instead.

use std::sync::OnceLock;

use event_runtime::{event_handler, App, Event, EventId, Mode};
use tokio::sync::mpsc;

/// A task was completed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    /// The task.
    pub task_id: i64,
    /// Its owner: the partition key.
    pub user_id: String,
}

/// Where the handler reports what it handled, so that `main` knows when to stop.
static HANDLED: OnceLock<mpsc::UnboundedSender<String>> = OnceLock::new();

#[event_handler(topic = "task-events", retry = [30, 300, 1800], dlq = "dlq", idempotent)]
async fn on_task_completed(event: TaskCompleted, EventId(id): EventId) -> anyhow::Result<()> {
    println!(
        "task {} of {} completed (event {id})",
        event.task_id, event.user_id
    );
    if let Some(handled) = HANDLED.get() {
        let _ = handled.send(id);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (tx, mut handled) = mpsc::unbounded_channel();
    HANDLED.set(tx).expect("set once");

    let app = App::try_new()?.with_mode(Mode::Embedded);
    let publisher = app.publisher();
    let shutdown = app.shutdown_handle();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("serving on http://{}", listener.local_addr()?);
    let serving = tokio::spawn(app.serve_on(listener, axum::Router::new()));

    let event = TaskCompleted {
        task_id: 7,
        user_id: "u1".into(),
    };
    publisher.publish("task-events", &event).await?;
    let id = tokio::time::timeout(std::time::Duration::from_secs(10), handled.recv())
        .await?
        .expect("the handler ran");
    println!("handled {id}; shutting down");

    shutdown.shutdown();
    serving.await??;
    Ok(())
}
