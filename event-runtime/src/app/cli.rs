//! Running the framework's commands ([`EventsCommand`]) against an [`App`].

use std::io::Write;

use crate::pipeline::dead_letter::replay::ReplayReport;
use crate::tooling::cli::{CliError, DlqCommand, EventsCommand, ReplayArgs, SchemasCommand};

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
                crate::tooling::schema::check_snapshot(&path).map_err(CliError::Schemas)?;
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
            EventsCommand::Dlq {
                action: DlqCommand::Replay(args),
            } => replay(app, args, out).await,
        }
    }
}

fn json(out: &mut (dyn Write + Send), value: &impl serde::Serialize) -> Result<(), CliError> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(std::io::Error::from)?;
    Ok(writeln!(out)?)
}

/// Asks the running app to replay, prints the summary; fails when some letters could not be
/// re-published.
async fn replay(app: &App, args: ReplayArgs, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let url = args
        .url
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", app.io.app_port));
    let url = url.trim_end_matches('/');
    let token = args.token;
    let body = serde_json::to_value(&args.filter).map_err(std::io::Error::from)?;
    let shown = match body.as_object() {
        Some(fields) if !fields.is_empty() => body.to_string(),
        _ => "every pending dead letter".to_owned(),
    };
    writeln!(out, "replaying {shown} through {url}/dlq/replay ...")?;
    let mut request = reqwest::Client::new()
        .post(format!("{url}/dlq/replay"))
        .json(&body);
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| CliError::Replay(format!("cannot reach the app at {url}: {e}")))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        let why = if token.is_some() {
            "the app refused the token (401 Unauthorized)"
        } else {
            "the app requires a token (401 Unauthorized)"
        };
        return Err(CliError::Replay(format!(
            "{why}: pass --token, or set the variable the app reads its ops token from"
        )));
    }
    if !status.is_success() {
        let error = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        return Err(CliError::Replay(format!(
            "the app answered {status}: {error}"
        )));
    }
    let report: ReplayReport = serde_json::from_str(&text).map_err(|e| {
        CliError::Replay(format!(
            "the app's answer is no replay report ({e}): {text}"
        ))
    })?;
    writeln!(
        out,
        "matched {}, replayed {}, failed {}",
        report.matched,
        report.replayed,
        report.failed.len()
    )?;
    for (id, error) in &report.failed {
        writeln!(out, "  failed: {id} — {error}")?;
    }
    match report.failed.len() {
        0 => Ok(()),
        failed => Err(CliError::ReplayIncomplete { failed }),
    }
}
