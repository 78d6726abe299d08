//! `example-todo subscriptions`, `manifests`, `asyncapi`, `schemas`, `schemas check` and
//! `schemas export`, run as the built binary: each prints what the README says it does.

use crate::common;

use std::path::Path;

use common::binary;
use event_runtime::{App, Mode};
use serde_json::Value;

/// The workspace root: `schemas check` reads `example-todo/event-schemas.json` from there.
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Runs `example-todo args` in `dir`; answers the exit status's success, stdout and stderr.
async fn run(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = binary(dir, args, &[])
        .output()
        .await
        .expect("the example-todo binary runs");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

async fn run_ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = run(workspace(), args).await;
    assert!(ok, "example-todo {args:?} failed: {stderr}");
    stdout
}

#[tokio::test]
async fn subscriptions_prints_what_get_dapr_subscribe_answers() {
    let printed: Value = serde_json::from_str(&run_ok(&["subscriptions"]).await).unwrap();
    // What the service's own router answers (the binary runs with none of the variables set).
    let service = example_todo::Service::with_ops_token(
        App::new().with_mode(Mode::Embedded),
        common::memory_db().await,
        None,
    );
    let (code, served) =
        common::call_router(&service.app.router(), "GET", "/dapr/subscribe", None).await;
    assert_eq!(code, 200);
    assert_eq!(printed, served);
    let topics: Vec<&str> = printed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["topic"].as_str().unwrap())
        .collect();
    for topic in ["task-events", "reminders", "task-updates", "dlq"] {
        assert!(topics.contains(&topic), "{topic} missing: {topics:?}");
    }
}

#[tokio::test]
async fn manifests_prints_the_subscriptions_and_kafka_topics() {
    let printed = run_ok(&["manifests"]).await;
    let app = example_todo::declare(App::new());
    assert_eq!(printed, app.manifests());
    let docs: Vec<yaml_serde::Value> = yaml_serde::Deserializer::from_str(&printed)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    let subs = docs.iter().filter(|d| d["kind"] == "Subscription").count();
    assert_eq!(subs, app.subscriptions().len(), "one Subscription each");
    for d in docs.iter().filter(|d| d["kind"] == "Subscription") {
        assert_eq!(d["apiVersion"], "dapr.io/v2alpha1");
    }
    let topics: Vec<&yaml_serde::Value> =
        docs.iter().filter(|d| d["kind"] == "KafkaTopic").collect();
    for name in ["task-events", "reminders", "task-updates", "dlq"] {
        assert!(
            topics.iter().any(|t| t["spec"]["topicName"] == name
                || (t["spec"]["topicName"].is_null() && t["metadata"]["name"] == name)),
            "no KafkaTopic for {name}"
        );
    }
}

#[tokio::test]
async fn asyncapi_prints_the_asyncapi_document() {
    let printed: Value = serde_json::from_str(&run_ok(&["asyncapi"]).await).unwrap();
    assert_eq!(printed, example_todo::declare(App::new()).asyncapi());
    assert_eq!(printed["asyncapi"], "3.0.0");
    let ops = printed["operations"].as_object().unwrap();
    assert!(ops.values().any(|o| o["action"] == "send"));
    assert!(ops.values().any(|o| o["action"] == "receive"));
}

#[tokio::test]
async fn schemas_prints_the_registry() {
    let printed: Value = serde_json::from_str(&run_ok(&["schemas"]).await).unwrap();
    assert_eq!(
        printed,
        serde_json::to_value(event_runtime::schema::schemas()).unwrap()
    );
    let snapshot: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("example-todo/event-schemas.json")).unwrap(),
    )
    .unwrap();
    for key in snapshot.as_object().unwrap().keys() {
        assert!(
            printed.to_string().contains(key.split('@').next().unwrap()),
            "{key}"
        );
    }
}

#[tokio::test]
async fn schemas_check_passes_on_the_snapshot_and_fails_on_a_breaking_change() {
    let stdout = run_ok(&["schemas", "check"]).await;
    assert!(
        stdout.contains("event schemas compatible with example-todo/event-schemas.json"),
        "{stdout}"
    );

    // A snapshot with a field the code no longer has: the code removed it, a breaking change.
    let dir = common::TempDir::new("todo-schemas");
    let mut snapshot: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("example-todo/event-schemas.json")).unwrap(),
    )
    .unwrap();
    let reminder = &mut snapshot["reminder.due@1.0"];
    reminder["properties"]["snooze_minutes"] = serde_json::json!({"type": "integer"});
    reminder["required"]
        .as_array_mut()
        .unwrap()
        .push("snooze_minutes".into());
    let path = dir.path().join("event-schemas.json");
    std::fs::write(&path, serde_json::to_string_pretty(&snapshot).unwrap()).unwrap();
    let (ok, stdout, stderr) = run(
        workspace(),
        &["schemas", "check", "--snapshot", path.to_str().unwrap()],
    )
    .await;
    assert!(!ok, "a breaking change passed: {stdout}");
    assert!(
        stderr.contains("reminder.due") && stderr.contains("snooze_minutes"),
        "{stderr}"
    );
}

#[tokio::test]
async fn schemas_export_writes_one_contract_per_event_type() {
    let dir = common::TempDir::new("todo-schemas-export");
    let out = dir.path().join("contracts");
    let stdout = run_ok(&["schemas", "export", out.to_str().unwrap()]).await;
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "reminder-due.schema.json",
            "task-changed.schema.json",
            "task-completed.schema.json",
            "task-sync.schema.json"
        ]
    );
    for name in &names {
        assert!(stdout.contains(name.as_str()), "{stdout}");
    }
    let reminder: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("reminder-due.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(reminder["properties"]["task_id"]["type"], "integer");
}

#[tokio::test]
async fn every_command_has_its_own_help_and_an_unknown_one_is_refused() {
    let listed = run_ok(&["--help"]).await;
    for command in [
        "serve",
        "subscriptions",
        "manifests",
        "asyncapi",
        "schemas",
        "dlq",
    ] {
        assert!(listed.contains(command), "{command} missing: {listed}");
    }
    for (args, says) in [
        (&["schemas", "check", "--help"][..], "--snapshot <PATH>"),
        (&["schemas", "export", "--help"], "[DIR]"),
        (&["dlq", "replay", "--help"], "--handler <HANDLER>"),
    ] {
        let help = run_ok(args).await;
        assert!(help.contains(says), "{args:?}: {help}");
    }
    let (ok, _, stderr) = run(workspace(), &["publish-everything"]).await;
    assert!(!ok);
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
}
