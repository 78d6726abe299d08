//! Running the framework's commands ([`EventsCommand`]) against an [`App`].

use std::io::Write;

use crate::tooling::cli::{CliError, EventsCommand, SchemasCommand};

use super::App;

impl EventsCommand {
    /// Runs the command against `app`, printing to standard output.
    pub async fn run(self, app: &App) -> Result<(), CliError> {
        self.run_to(app, &mut std::io::stdout()).await
    }

    /// Runs the command against `app`, printing to `out`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use clap::Parser;
    /// use event_runtime::{App, EventsCommand};
    ///
    /// #[derive(Parser)]
    /// struct Cli {
    ///     #[command(subcommand)]
    ///     events: EventsCommand,
    /// }
    ///
    /// let app = App::new();
    /// let mut out = Vec::new();
    /// let cli = Cli::parse_from(["my-app", "manifests"]);
    /// cli.events.run_to(&app, &mut out).await.unwrap();
    /// assert_eq!(String::from_utf8(out).unwrap(), app.manifests());
    /// # }
    /// ```
    pub async fn run_to(self, app: &App, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
        match self {
            EventsCommand::Subscriptions => json(out, &app.subscriptions()),
            EventsCommand::Manifests => Ok(write!(out, "{}", app.manifests())?),
            EventsCommand::Asyncapi => json(out, &app.asyncapi()),
            EventsCommand::Scopes => {
                for scopes in app.scopes() {
                    write!(out, "{}", scopes.to_yaml())?;
                }
                Ok(())
            }
            EventsCommand::Schemas { action: None } => {
                json(out, &crate::tooling::schema::schemas())
            }
            EventsCommand::Schemas {
                action: Some(SchemasCommand::Check { snapshot }),
            } => {
                let path = snapshot.map_or_else(
                    || "event-schemas.json".to_owned(),
                    |p| p.display().to_string(),
                );
                crate::tooling::schema::check_snapshot_updating(
                    path.as_ref(),
                    app.declared.schemas_update,
                )
                .map_err(CliError::Schemas)?;
                Ok(writeln!(out, "event schemas compatible with {path}")?)
            }
            EventsCommand::Schemas {
                action: Some(SchemasCommand::Export { dir }),
            } => {
                let written = crate::tooling::schema::export(&dir).map_err(|e| {
                    CliError::Schemas(format!(
                        "cannot export the event schemas to {}: {e}",
                        dir.display()
                    ))
                })?;
                for path in written {
                    writeln!(out, "{}", path.display())?;
                }
                Ok(())
            }
        }
    }
}

fn json(out: &mut (dyn Write + Send), value: &impl serde::Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    Ok(writeln!(out)?)
}
