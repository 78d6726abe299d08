//! The framework's commands, as a clap subcommand an app mounts in its own CLI (feature `cli`).
//!
//! The types only say what was asked; [`EventsCommand::run`] (in the `app` layer, since it needs
//! the [`App`](crate::App)) does it.

use std::path::PathBuf;

use crate::pipeline::dead_letter::replay::ReplayFilter;

/// The framework's commands: what the app subscribes to, its manifests, its AsyncAPI document,
/// its event schemas, and replaying its dead letters.
///
/// Mount it with `#[command(flatten)]` next to the app's own commands:
///
/// ```
/// use clap::{Parser, Subcommand};
/// use event_runtime::{App, EventsCommand};
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(subcommand)]
///     command: Option<Command>,
/// }
///
/// #[derive(Subcommand)]
/// enum Command {
///     /// Serve the handlers (the default).
///     Serve,
///     #[command(flatten)]
///     Events(EventsCommand),
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cli = Cli::parse_from(["my-app", "subscriptions"]);
/// match cli.command {
///     None | Some(Command::Serve) => { /* App::try_new()?.serve().await? */ }
///     Some(Command::Events(command)) => command.run(&App::try_new()?).await?,
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
#[non_exhaustive]
pub enum EventsCommand {
    /// Print what `GET /dapr/subscribe` answers.
    Subscriptions,
    /// Print the Dapr `Subscription` and Strimzi `KafkaTopic` manifests, as one YAML stream.
    Manifests,
    /// Print the AsyncAPI 3.0 document of the app's topics and events.
    Asyncapi,
    /// Print the event schema registry, or check or export it.
    Schemas {
        /// What to do with the registry; without one, print it.
        #[command(subcommand)]
        action: Option<SchemasCommand>,
    },
    /// Dead letters.
    Dlq {
        /// What to do with them.
        #[command(subcommand)]
        action: DlqCommand,
    },
}

/// `schemas check` and `schemas export`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
#[non_exhaustive]
pub enum SchemasCommand {
    /// Fail on a breaking change against the committed schema snapshot.
    Check {
        /// The snapshot to compare with [default: event-schemas.json].
        #[arg(long, value_name = "PATH")]
        snapshot: Option<PathBuf>,
    },
    /// Write each event type's JSON Schema to `DIR/<type-name>.schema.json`, as contracts for other
    /// services.
    Export {
        /// Where to write them.
        #[arg(value_name = "DIR", default_value = "target/schemas")]
        dir: PathBuf,
    },
}

/// `dlq replay`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
#[non_exhaustive]
pub enum DlqCommand {
    /// Replay dead letters through a running app's `POST /dlq/replay`; fails when some could
    /// not be re-published.
    Replay(ReplayArgs),
}

/// Which dead letters to replay, and where the app runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
#[non_exhaustive]
pub struct ReplayArgs {
    /// Which dead letters.
    #[command(flatten)]
    pub filter: ReplayFilter,
    /// The running app's base URL [default: http://127.0.0.1:$APP_PORT, or port 8080].
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The ops token the app's `/dlq` routes require, if they require one.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

// What the command line did not give, an app fills with its own defaults (its own variables
// for its URL and ops token, the snapshot's place in its repository).
impl EventsCommand {
    /// The snapshot `schemas check` compares with, unless `--snapshot` names one.
    pub fn default_snapshot(mut self, path: impl Into<PathBuf>) -> Self {
        if let EventsCommand::Schemas {
            action: Some(SchemasCommand::Check { snapshot }),
        } = &mut self
        {
            snapshot.get_or_insert_with(|| path.into());
        }
        self
    }

    /// The URL `dlq replay` calls, unless `--url` names one.
    pub fn default_url(mut self, url: Option<String>) -> Self {
        if let Some(args) = self.replay_args() {
            args.url = args.url.take().or(url);
        }
        self
    }

    /// The ops token `dlq replay` sends, unless `--token` gives one.
    pub fn default_token(mut self, token: Option<String>) -> Self {
        if let Some(args) = self.replay_args() {
            args.token = args.token.take().or(token);
        }
        self
    }

    fn replay_args(&mut self) -> Option<&mut ReplayArgs> {
        match self {
            EventsCommand::Dlq {
                action: DlqCommand::Replay(args),
            } => Some(args),
            _ => None,
        }
    }
}

/// What a command could not do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The output could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The event schemas are incompatible with the snapshot, or could not be exported.
    #[error("{0}")]
    Schemas(String),
    /// The app could not be reached, or answered an error.
    #[error("{0}")]
    Replay(String),
    /// The app replayed some letters but not all.
    #[error("{failed} dead letters could not be replayed (still pending)")]
    ReplayIncomplete {
        /// How many could not be re-published.
        failed: usize,
    },
}
