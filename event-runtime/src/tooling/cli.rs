//! The framework's commands, as a clap subcommand an app mounts in its own CLI (feature `cli`).
//!
//! The types only say what was asked; [`EventsCommand::run`] (in the `app` layer, since it needs
//! the [`App`](crate::App)) does it.

use std::path::PathBuf;

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
    /// Print the app's least-privilege pub/sub scopes (`publishingScopes`,
    /// `subscriptionScopes`, `protectedTopics`) for each component it uses, as YAML to merge into
    /// the Components' `spec.metadata`.
    Scopes,
    /// Print the event schema registry, or check or export it.
    Schemas {
        /// What to do with the registry; without one, print it.
        #[command(subcommand)]
        action: Option<SchemasCommand>,
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

// What the command line did not give, an app fills with its own defaults (the snapshot's
// place in its repository).
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
}
