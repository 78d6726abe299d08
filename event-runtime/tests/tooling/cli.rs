//! `EventsCommand` (feature `cli`): mounted in an app's clap CLI, each command parses, has its
//! own `--help`, and prints what the app's own methods give; `dlq replay` sends its filter and
//! token to the running app and fails when the app refuses or some letters stay pending.
#![cfg(feature = "cli")]

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use clap::{CommandFactory, Parser, Subcommand};
use event_runtime::tooling::cli::CliError;
use event_runtime::{event_handler, App, Event, EventsCommand, Mode};
use serde_json::{json, Value};

/// The event of the one handler this app has.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "cli.checked", version = "1.0")]
pub struct CliChecked {
    /// The partition key.
    pub user_id: String,
}

#[event_handler(topic = "cli-checks")]
async fn on_cli_checked(_event: CliChecked) {}

/// An app's own CLI, with the framework's commands mounted beside its `serve`.
#[derive(Parser)]
#[command(name = "my-app")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve.
    Serve,
    #[command(flatten)]
    Events(EventsCommand),
}

fn app() -> App {
    App::with_handlers(
        event_runtime::registered()
            .into_iter()
            .filter(|h| h.topic == "cli-checks"),
    )
    .unwrap()
    .with_mode(Mode::Embedded)
}

fn parse(args: &[&str]) -> EventsCommand {
    let args = std::iter::once("my-app").chain(args.iter().copied());
    match Cli::try_parse_from(args).unwrap().command {
        Some(Command::Events(command)) => command,
        _ => panic!("not one of the framework's commands"),
    }
}

async fn output(command: EventsCommand, app: &App) -> Result<String, CliError> {
    let mut out = Vec::new();
    command.run_to(app, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn every_command_mounts_and_has_its_own_help() {
    Cli::command().debug_assert();
    for (path, says) in [
        (vec!["subscriptions"], "GET /dapr/subscribe"),
        (vec!["manifests"], "KafkaTopic"),
        (vec!["asyncapi"], "AsyncAPI"),
        (vec!["schemas"], "schema registry"),
        (vec!["schemas", "check"], "--snapshot"),
        (vec!["schemas", "export"], "DIR"),
        (vec!["dlq", "replay"], "--since <RFC3339>"),
    ] {
        let mut args = vec!["my-app"];
        args.extend(&path);
        args.push("--help");
        let err = match Cli::try_parse_from(&args) {
            Err(err) => err,
            Ok(_) => panic!("{args:?} parsed"),
        };
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp, "{args:?}");
        assert!(err.to_string().contains(says), "{args:?}: {err}");
    }
    assert!(Cli::try_parse_from(["my-app"]).unwrap().command.is_none());
}

#[test]
fn a_replay_time_that_is_not_rfc3339_is_refused_while_parsing() {
    let err = Cli::try_parse_from(["my-app", "dlq", "replay", "--since", "yesterday"])
        .err()
        .expect("refused");
    assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    assert!(err.to_string().contains("not an RFC 3339 time"), "{err}");
}

#[tokio::test]
async fn the_printing_commands_print_what_the_app_gives() {
    let app = app();
    let subscriptions: Value =
        serde_json::from_str(&output(parse(&["subscriptions"]), &app).await.unwrap()).unwrap();
    assert_eq!(
        subscriptions,
        serde_json::to_value(app.subscriptions()).unwrap()
    );
    assert_eq!(subscriptions[0]["topic"], "cli-checks");

    assert_eq!(
        output(parse(&["manifests"]), &app).await.unwrap(),
        app.manifests()
    );

    let asyncapi: Value =
        serde_json::from_str(&output(parse(&["asyncapi"]), &app).await.unwrap()).unwrap();
    assert_eq!(asyncapi, app.asyncapi());

    let schemas: Value =
        serde_json::from_str(&output(parse(&["schemas"]), &app).await.unwrap()).unwrap();
    assert_eq!(
        schemas,
        serde_json::to_value(event_runtime::schemas()).unwrap()
    );
}

#[tokio::test]
async fn schemas_export_then_check_against_what_it_wrote() {
    let dir = std::env::temp_dir().join(format!("events-cli-{}", std::process::id()));
    let app = app();
    let printed = output(parse(&["schemas", "export", dir.to_str().unwrap()]), &app)
        .await
        .unwrap();
    let written = printed.lines().count();
    assert_eq!(written, event_runtime::schemas().len(), "{printed}");
    assert!(printed.contains("cli-checked.schema.json"), "{printed}");

    // A snapshot of the current registry is compatible; one that cannot be read is an error.
    let snapshot = dir.join("snapshot.json");
    std::fs::write(&snapshot, event_runtime::schema::snapshot().to_string()).unwrap();
    let said = output(
        parse(&["schemas", "check"]).default_snapshot(&snapshot),
        &app,
    )
    .await
    .unwrap();
    assert!(said.starts_with("event schemas compatible with"), "{said}");
    let garbled = dir.join("garbled.json");
    std::fs::write(&garbled, "not json").unwrap();
    let err = output(
        parse(&["schemas", "check", "--snapshot", garbled.to_str().unwrap()])
            .default_snapshot(&snapshot),
        &app,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, CliError::Schemas(e) if e.contains("garbled.json is not JSON")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the fake app's `POST /dlq/replay` received: the bearer token and the body.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// Serves `POST /dlq/replay`, answering `status` and `answer`; answers the base URL.
async fn fake_app(seen: Seen, status: StatusCode, answer: Value) -> String {
    let route = post(
        move |headers: HeaderMap, Json(body): Json<Value>| async move {
            let token = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_start_matches("Bearer ").to_owned());
            seen.lock().unwrap().push((token, body));
            (status, Json(answer))
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new().route("/dlq/replay", route);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

#[tokio::test]
async fn dlq_replay_sends_the_filter_and_token_and_prints_the_report() {
    let seen = Seen::default();
    let report = json!({"matched": 2, "replayed": 2, "failed": []});
    let base = fake_app(seen.clone(), StatusCode::OK, report).await;
    let command = parse(&[
        "dlq",
        "replay",
        "--type",
        "task.completed",
        "--since",
        "2026-01-01T00:00:00Z",
        "--token",
        "from-the-flag",
    ])
    .default_url(Some(base.clone()))
    .default_token(Some("from-the-app".into()));
    let printed = output(command, &app()).await.unwrap();
    assert!(
        printed.contains("matched 2, replayed 2, failed 0"),
        "{printed}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(
            Some("from-the-flag".to_owned()),
            json!({"event_type": "task.completed", "since": "2026-01-01T00:00:00Z"})
        )]
    );
}

#[tokio::test]
async fn dlq_replay_fails_when_letters_stay_pending_or_the_app_refuses() {
    let report = json!({"matched": 2, "replayed": 1, "failed": [["e-1", "sidecar down"]]});
    let base = fake_app(Seen::default(), StatusCode::OK, report).await;
    let command = parse(&["dlq", "replay", "--url", &base]);
    let err = output(command, &app()).await.unwrap_err();
    assert!(
        matches!(err, CliError::ReplayIncomplete { failed: 1 }),
        "{err}"
    );

    let seen = Seen::default();
    let base = fake_app(seen.clone(), StatusCode::UNAUTHORIZED, json!({})).await;
    let command = parse(&["dlq", "replay", "--url", &base]).default_token(None);
    let err = output(command, &app()).await.unwrap_err();
    assert!(err.to_string().contains("requires a token"), "{err}");
    assert_eq!(seen.lock().unwrap()[0], (None, json!({})));

    let base = fake_app(
        Seen::default(),
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"error": "bad filter"}),
    )
    .await;
    let err = output(parse(&["dlq", "replay", "--url", &base]), &app())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("bad filter"), "{err}");
}
