//! `example-todo`: the todo service and its tools. `example-todo help` lists the commands and
//! `example-todo help <command>` explains one; every command but `serve` is the framework's own
//! [`EventsCommand`], mounted below.

use clap::{Parser, Subcommand};
use event_runtime::{App, EventsCommand};

/// The Phase V todo service: the task API, its live page and its event handlers.
#[derive(Parser)]
#[command(name = "example-todo", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API, the page and the handlers (the default).
    Serve,
    #[command(flatten)]
    Events(EventsCommand),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        None | Some(Command::Serve) => {
            init_tracing();
            // The configuration first: a malformed variable stops here, before any connection.
            let app = App::try_new()?;
            let db = example_todo::db::Db::from_env().await?;
            tracing::info!(backend = db.backend(), "database ready");
            example_todo::Service::with_app(app, db).serve().await?;
        }
        Some(Command::Events(command)) => {
            // The service's own defaults: its snapshot, `TODO_URL` and its ops token.
            let command = command
                .default_snapshot("example-todo/event-schemas.json")
                .default_url(std::env::var("TODO_URL").ok())
                .default_token(example_todo::api::ops_token_from_env());
            command.run(&example_todo::declare(App::try_new()?)).await?;
        }
    }
    Ok(())
}
