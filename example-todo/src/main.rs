//! `example-todo`: the todo service and its tools.
//!
//! ```text
//! example-todo [serve]        serve the API, the page and the handlers (default)
//! example-todo subscriptions  print what GET /dapr/subscribe answers
//! example-todo manifests      print the Dapr Subscription + Strimzi KafkaTopic manifests
//! example-todo asyncapi       print the AsyncAPI document of the service's events
//! example-todo schemas        print the event schema registry
//! example-todo schemas check [--snapshot PATH]
//!                             fail on a breaking change against the committed schema snapshot
//! example-todo schemas export [DIR]
//!                             write each event type's JSON Schema to DIR/<type>.schema.json
//!                             (default target/schemas), as contracts for other services
//! example-todo dlq replay [--type T] [--handler H] [--since RFC3339] [--until RFC3339] [--url URL]
//!                             replay dead letters through a running service's POST /dlq/replay
//!                             (with ADMIN_API_TOKEN, else APP_API_TOKEN, as its bearer token)
//! ```

use anyhow::Context as _;
use event_runtime::App;
use serde_json::{json, Value};

const USAGE: &str = "usage: example-todo [serve | subscriptions | manifests | asyncapi | schemas | \
schemas check [--snapshot PATH] | schemas export [DIR] | \
dlq replay [--type T] [--handler H] [--since RFC3339] [--until RFC3339] [--url http://127.0.0.1:8080]]";

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["serve"] => {
            init_tracing();
            // The configuration first: a malformed variable stops here, before any connection.
            let app = App::try_new()?;
            let db = example_todo::db::Db::from_env().await?;
            tracing::info!(backend = db.backend(), "database ready");
            example_todo::Service::with_app(app, db).serve().await?;
        }
        ["subscriptions"] => {
            println!(
                "{}",
                serde_json::to_string_pretty(&App::try_new()?.subscriptions())?
            )
        }
        ["manifests"] => print!("{}", example_todo::declare(App::try_new()?).manifests()),
        ["asyncapi"] => println!(
            "{}",
            serde_json::to_string_pretty(&example_todo::declare(App::try_new()?).asyncapi())?
        ),
        ["schemas"] => println!(
            "{}",
            serde_json::to_string_pretty(&event_runtime::schemas())?
        ),
        ["schemas", "check", rest @ ..] => {
            let path = match rest {
                [] => "example-todo/event-schemas.json",
                ["--snapshot", path] => path,
                _ => anyhow::bail!("usage: example-todo schemas check [--snapshot PATH]"),
            };
            event_runtime::schema::check_snapshot(path).map_err(anyhow::Error::msg)?;
            println!("event schemas compatible with {path}");
        }
        ["schemas", "export", rest @ ..] => {
            let dir = match rest {
                [] => "target/schemas",
                [dir] => dir,
                _ => anyhow::bail!("usage: example-todo schemas export [DIR]"),
            };
            for path in event_runtime::schema::export(dir)
                .with_context(|| format!("cannot export the event schemas to {dir}"))?
            {
                println!("{}", path.display());
            }
        }
        ["dlq", "replay", rest @ ..] => dlq_replay(rest).await?,
        ["help" | "--help" | "-h"] => println!("{USAGE}"),
        other => anyhow::bail!("unknown command `{}`\n{USAGE}", other.join(" ")),
    }
    Ok(())
}

/// `dlq replay`: asks the running service to replay, prints the summary; fails when some
/// letters could not be re-published. Sends the ops token (`ADMIN_API_TOKEN`, else
/// `APP_API_TOKEN`) when one is set.
async fn dlq_replay(args: &[&str]) -> anyhow::Result<()> {
    let mut url = std::env::var("TODO_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let mut filter = serde_json::Map::new();
    let mut it = args.iter();
    while let Some(&flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("`{flag}` needs a value\n{USAGE}"))?;
        let key = match flag {
            "--type" => "event_type",
            "--handler" => "handler",
            "--since" => "since",
            "--until" => "until",
            "--url" => {
                url = value.trim_end_matches('/').to_owned();
                continue;
            }
            _ => anyhow::bail!("unknown option `{flag}`\n{USAGE}"),
        };
        if matches!(key, "since" | "until") {
            chrono::DateTime::parse_from_rfc3339(value)
                .with_context(|| format!("`{flag} {value}`: not an RFC 3339 time"))?;
        }
        filter.insert(key.into(), json!(value));
    }
    let shown = if filter.is_empty() {
        "every pending dead letter".to_owned()
    } else {
        Value::Object(filter.clone()).to_string()
    };
    println!("replaying {shown} through {url}/dlq/replay ...");
    let token = example_todo::api::ops_token_from_env();
    let mut request = reqwest::Client::new()
        .post(format!("{url}/dlq/replay"))
        .json(&Value::Object(filter));
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let resp = request
        .send()
        .await
        .with_context(|| format!("cannot reach the service at {url}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status == reqwest::StatusCode::UNAUTHORIZED {
        anyhow::bail!(if token.is_some() {
            "the service refused the token (401 Unauthorized): set ADMIN_API_TOKEN (or \
             APP_API_TOKEN) to the token the service was started with"
        } else {
            "the service requires a token (401 Unauthorized): set ADMIN_API_TOKEN (or \
             APP_API_TOKEN) to the token the service was started with"
        });
    }
    if !status.is_success() {
        anyhow::bail!(
            "the service answered {status}: {}",
            body["error"].as_str().unwrap_or(&body.to_string())
        );
    }
    let failed = body["failed"].as_array().cloned().unwrap_or_default();
    println!(
        "matched {}, replayed {}, failed {}",
        body["matched"],
        body["replayed"],
        failed.len()
    );
    for f in &failed {
        println!(
            "  failed: {} — {}",
            f[0].as_str().unwrap_or("?"),
            f[1].as_str().unwrap_or("?")
        );
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} dead letters could not be replayed (still pending)",
            failed.len()
        );
    }
    Ok(())
}
