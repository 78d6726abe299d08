//! `EventsCommand` (feature `cli`): mounted in an app's clap CLI, each command parses, has its
//! own `--help`, and prints what the app's own methods give.
#![cfg(feature = "cli")]

use clap::{CommandFactory, Parser, Subcommand};
use event_runtime::tooling::cli::CliError;
use event_runtime::{event_handler, App, Event, EventsCommand, Mode};
use serde_json::Value;

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
        event_runtime::__private::registered()
            .into_iter()
            .filter(|h| h.topic() == "cli-checks"),
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
        (vec!["scopes"], "publishingScopes"),
        (vec!["schemas"], "schema registry"),
        (vec!["schemas", "check"], "--snapshot"),
        (vec!["schemas", "export"], "DIR"),
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

    let scopes = output(parse(&["scopes"]), &app).await.unwrap();
    assert_eq!(scopes, app.scopes()[0].to_yaml());
    assert!(scopes.contains("name: protectedTopics"), "{scopes}");

    let asyncapi: Value =
        serde_json::from_str(&output(parse(&["asyncapi"]), &app).await.unwrap()).unwrap();
    assert_eq!(asyncapi, app.asyncapi());

    let schemas: Value =
        serde_json::from_str(&output(parse(&["schemas"]), &app).await.unwrap()).unwrap();
    assert_eq!(
        schemas,
        serde_json::to_value(event_runtime::schema::schemas()).unwrap()
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
    assert_eq!(written, event_runtime::schema::schemas().len(), "{printed}");
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
