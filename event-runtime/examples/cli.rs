//! An app's own CLI with the framework's commands mounted beside `serve`.
//!
//! ```sh
//! cargo run -p event-runtime --features cli --example cli -- --help
//! cargo run -p event-runtime --features cli --example cli -- subscriptions
//! cargo run -p event-runtime --features cli --example cli -- schemas check --help
//! ```

use clap::{Parser, Subcommand};
use event_runtime::{event_handler, App, Event, EventsCommand};

/// A reminder is due.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "reminder.due", version = "1.0")]
pub struct ReminderDue {
    /// The task.
    pub task_id: i64,
    /// Its owner: the partition key.
    pub user_id: String,
}

#[event_handler(topic = "reminders", retry = [30, 300], dlq = "dlq")]
async fn on_reminder_due(event: ReminderDue) {
    println!("remind {} of task {}", event.user_id, event.task_id);
}

/// A reminder service.
#[derive(Parser)]
#[command(name = "reminders", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the handlers (the default).
    Serve,
    #[command(flatten)]
    Events(EventsCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = App::try_new()?;
    match Cli::parse().command {
        None | Some(Command::Serve) => app.serve().await?,
        Some(Command::Events(command)) => command.run(&app).await?,
    }
    Ok(())
}
