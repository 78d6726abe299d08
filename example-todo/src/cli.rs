//! `example-todo dlq replay`: asks the running service to replay its stored dead letters
//! (`POST /dlq/replay`, an ops route of this service, see [`crate::api`]) and prints the report.
//!
//! The framework's own commands (`subscriptions`, `manifests`, `asyncapi`, `schemas`) are its
//! `EventsCommand`; this one is the service's, since the dead-letter store and its routes are.

use std::io::Write;

use event_runtime::dlq::{ReplayFilter, ReplayReport};

/// The service's dead-letter commands.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum DlqCommand {
    /// Replay the stored dead letters that match the filter (every pending one without a
    /// filter) through the running service.
    Replay(ReplayArgs),
}

/// `dlq replay`'s arguments: the filter, and where the service is.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct ReplayArgs {
    /// Which letters.
    #[command(flatten)]
    pub filter: ReplayFilter,
    /// The running service (default: `TODO_URL`, else `http://127.0.0.1:$APP_PORT`).
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The ops token (default: `ADMIN_API_TOKEN`, else `APP_API_TOKEN`).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// Why a replay did not complete.
#[derive(Debug)]
pub enum ReplayError {
    /// The service could not be reached, refused the call, or answered no report.
    Failed(String),
    /// The service replayed some letters but not all: `failed` stay pending.
    Incomplete {
        /// How many could not be re-published.
        failed: usize,
    },
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Failed(why) => f.write_str(why),
            ReplayError::Incomplete { failed } => write!(
                f,
                "{failed} dead letters could not be replayed (still pending)"
            ),
        }
    }
}

impl std::error::Error for ReplayError {}

impl DlqCommand {
    /// Runs the command against `url` (unless `--url` gave one) with `token` (unless `--token`
    /// gave one), printing to `out`.
    pub async fn run(
        self,
        url: String,
        token: Option<String>,
        out: &mut (dyn Write + Send),
    ) -> Result<ReplayReport, ReplayError> {
        let DlqCommand::Replay(args) = self;
        let url = args.url.unwrap_or(url);
        replay(
            url.trim_end_matches('/'),
            args.token.or(token),
            &args.filter,
            out,
        )
        .await
    }
}

async fn replay(
    url: &str,
    token: Option<String>,
    filter: &ReplayFilter,
    out: &mut (dyn Write + Send),
) -> Result<ReplayReport, ReplayError> {
    let failed = |why: String| ReplayError::Failed(why);
    let print = |e: std::io::Error| failed(format!("cannot write the output: {e}"));
    let body = serde_json::to_value(filter).map_err(|e| failed(e.to_string()))?;
    let shown = match body.as_object() {
        Some(fields) if !fields.is_empty() => body.to_string(),
        _ => "every pending dead letter".to_owned(),
    };
    writeln!(out, "replaying {shown} through {url}/dlq/replay ...").map_err(print)?;
    let mut request = reqwest::Client::new()
        .post(format!("{url}/dlq/replay"))
        .json(&body);
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| failed(format!("cannot reach the service at {url}: {e}")))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::UNAUTHORIZED {
        let why = match token {
            Some(_) => "the service refused the token (401 Unauthorized)",
            None => "the service requires a token (401 Unauthorized)",
        };
        return Err(failed(format!(
            "{why}: pass --token, or set ADMIN_API_TOKEN"
        )));
    }
    if !status.is_success() {
        let error = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        return Err(failed(format!("the service answered {status}: {error}")));
    }
    let report: ReplayReport = serde_json::from_str(&text)
        .map_err(|e| failed(format!("the answer is no replay report ({e}): {text}")))?;
    writeln!(
        out,
        "matched {}, replayed {}, failed {}",
        report.matched,
        report.replayed,
        report.failed.len()
    )
    .map_err(print)?;
    for (id, error) in &report.failed {
        writeln!(out, "  failed: {id} — {error}").map_err(print)?;
    }
    match report.failed.len() {
        0 => Ok(report),
        failed => Err(ReplayError::Incomplete { failed }),
    }
}
