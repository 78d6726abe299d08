//! `example-todo`: the todo service and its tools. `example-todo help` lists the commands and
//! `example-todo help <command>` explains one; `serve` and `dlq replay` are the service's own,
//! the others the framework's [`EventsCommand`], mounted below.

use clap::{Parser, Subcommand};
use event_runtime::{App, Config, EventsCommand};
use example_todo::settings::Settings;

/// The todo service: the task API, its live page and its event handlers.
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
    /// The service's dead letters.
    Dlq {
        #[command(subcommand)]
        action: example_todo::cli::DlqCommand,
    },
    #[command(flatten)]
    Events(EventsCommand),
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// The framework's configuration and the service's settings, each variable read once.
fn configure() -> anyhow::Result<(App, Settings)> {
    let config = Config::from_env()?;
    let settings = Settings::from_env(&config)?;
    Ok((App::try_from_config(config)?, settings))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        None | Some(Command::Serve) => {
            init_tracing();
            // The configuration first, read once: a malformed variable stops here, before any
            // connection.
            let (app, settings) = configure()?;
            let db = example_todo::db::Db::from_settings(&settings).await?;
            tracing::info!(backend = db.backend(), "database ready");
            example_todo::Service::with_settings(app, db, &settings)
                .serve()
                .await?;
        }
        Some(Command::Dlq { action }) => {
            // The running service: `TODO_URL`, else this machine on `APP_PORT`.
            let config = Config::from_env()?;
            let settings = Settings::from_env(&config)?;
            let url = settings
                .todo_url
                .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.app_port));
            action
                .run(url, settings.ops_token, &mut std::io::stdout())
                .await?;
        }
        Some(Command::Events(command)) => {
            // The service's own snapshot of its event schemas.
            let (app, _) = configure()?;
            let command = command.default_snapshot("example-todo/event-schemas.json");
            command.run(&example_todo::declare(app)).await?;
        }
    }
    Ok(())
}
