//! What the app tells the outside world: metrics, AsyncAPI, schemas, manifests, trace context;
//! and the CLI that mounts those commands ([`cli`]).
//!
//! A binary of its own, apart from `tests/it/`: `schema::export` writes every event type linked
//! into the binary, and `tests/it/` holds several of one name.

#![allow(missing_docs)]

mod cli;
mod scopes;

use axum::body::Body;
use axum::http::Request;
use event_runtime::testing::TestApp;
use event_runtime::{event_handler, App, Event, Publisher, TopicSpec, TraceContext};
use serde_json::{json, Value};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event, schemars::JsonSchema)]
#[event(type = "task.completed", version = "1.0", schema)]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event, schemars::JsonSchema)]
#[event(type = "task.update", version = "1.0", schema)]
pub struct TaskUpdate {
    pub task_id: i64,
    pub user_id: String,
}

#[event_handler(topic = "task-events", retry = [1], idempotent)]
async fn on_completed(
    e: TaskCompleted,
    publisher: Publisher,
    trace: TraceContext,
) -> anyhow::Result<()> {
    anyhow::ensure!(e.task_id != 13, "unlucky");
    assert!(trace.traceparent.is_some());
    publisher
        .publish(
            "task-updates",
            &TaskUpdate {
                task_id: e.task_id,
                user_id: e.user_id,
            },
        )
        .await?;
    Ok(())
}

/// This module's handlers: not the CLI's.
fn app() -> App {
    App::with_handlers(
        event_runtime::__private::registered()
            .into_iter()
            .filter(|h| h.module() == module_path!()),
    )
    .unwrap()
    .with_topics([TopicSpec::new("task-events")
        .partitions(12)
        .retention_days(7)
        .retention_cloud_days(30)])
    .publishes::<TaskUpdate>("task-updates")
}

async fn get(app: &TestApp, path: &str) -> (u16, String) {
    let resp = tower::ServiceExt::oneshot(
        app.router(),
        Request::get(path).body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn metrics_count_deliveries_retries_skips_and_dead_letters() {
    let app = TestApp::start(app()).await;
    app.publish(
        "task-events",
        &TaskCompleted {
            task_id: 1,
            user_id: "u".into(),
        },
    )
    .await
    .unwrap();
    app.publish(
        "task-events",
        &TaskCompleted {
            task_id: 1,
            user_id: "u".into(),
        },
    )
    .await
    .unwrap();
    app.publish(
        "task-events",
        &TaskCompleted {
            task_id: 13,
            user_id: "u".into(),
        },
    )
    .await
    .unwrap();
    app.wait_idle().await;
    let (status, text) = get(&app, "/metrics").await;
    assert_eq!(status, 200);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in\n{text}"))
            .to_owned()
    };
    assert!(
        line(r#"event_deliveries_total{handler="tooling::on_completed",outcome="success"}"#)
            .ends_with(" 1")
    );
    assert!(
        line(r#"event_deliveries_total{handler="tooling::on_completed",outcome="skipped"}"#)
            .ends_with(" 1")
    );
    assert!(
        line(r#"event_deliveries_total{handler="tooling::on_completed",outcome="retry"}"#)
            .ends_with(" 2")
    );
    assert!(
        line(r#"event_retries_total{handler="tooling::on_completed",mode="delayed"}"#)
            .ends_with(" 1")
    );
    assert!(line(r#"event_dead_letters_total{handler="tooling::on_completed"}"#).ends_with(" 1"));
    assert!(
        line(r#"event_idempotent_skips_total{handler="tooling::on_completed"}"#).ends_with(" 1")
    );
    assert!(text.contains("event_handler_duration_seconds_bucket"));
    assert!(line("event_deliveries_in_flight").ends_with(" 0"));
}

#[tokio::test]
async fn asyncapi_and_schemas_are_served() {
    let app = TestApp::start(app()).await;
    let (status, body) = get(&app, "/asyncapi.json").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let channels = doc["channels"].as_object().unwrap();
    assert!(channels.values().any(|c| c["address"] == "task-events"));
    assert!(
        channels.values().any(|c| c["address"] == "task-updates"),
        "the declared publish target"
    );
    let ops: Vec<&str> = doc["operations"]
        .as_object()
        .unwrap()
        .values()
        .map(|o| o["action"].as_str().unwrap())
        .collect();
    assert!(ops.contains(&"receive") && ops.contains(&"send"), "{ops:?}");
    let payloads = serde_json::to_string(&doc["components"]).unwrap();
    assert!(
        payloads.contains("task_id"),
        "payload schemas come from schemars"
    );

    let (_, body) = get(&app, "/events/schemas").await;
    let schemas: Value = serde_json::from_str(&body).unwrap();
    let completed = schemas
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["event_types"] == json!(["task.completed"]))
        .unwrap();
    assert_eq!(completed["consumed_from"], json!(["task-events"]));
}

#[test]
fn manifests_declare_subscriptions_and_topics() {
    let yaml = app().manifests();
    assert!(yaml.contains("apiVersion: dapr.io/v2alpha1"));
    assert!(yaml.contains("kind: Subscription"));
    assert!(yaml.contains("kind: KafkaTopic"));
    // The component's least-privilege scopes, as comments to merge into the shared component.
    let scope = app().scopes()[0].publishing_scope();
    assert!(
        yaml.contains(&format!("#   publishingScopes: {scope}")),
        "{yaml}"
    );
    let docs: Vec<yaml_serde::Value> = yaml_serde::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let topic = docs
        .iter()
        .find(|d| {
            d["kind"] == "KafkaTopic"
                && d["spec"]["topicName"]
                    .as_str()
                    .unwrap_or(d["metadata"]["name"].as_str().unwrap())
                    == "task-events"
        })
        .expect("a KafkaTopic for task-events");
    assert_eq!(topic["spec"]["partitions"], 12);
    assert_eq!(topic["spec"]["config"]["retention.ms"], "604800000");
    let subs: Vec<&yaml_serde::Value> = docs
        .iter()
        .filter(|d| d["kind"] == "Subscription")
        .collect();
    assert_eq!(
        subs.len(),
        app().subscriptions().len(),
        "one per /dapr/subscribe entry, retry topics included"
    );
    let retry = event_runtime::retry::retry_topic(
        &event_runtime::config::Config::from_env().unwrap().app_id,
        1,
    );
    assert!(subs.iter().any(|s| s["spec"]["topic"] == retry.as_str()));
}

#[tokio::test]
async fn the_trace_continues_into_published_events() {
    let app = TestApp::start(app()).await;
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = json!({"specversion":"1.0","id":"t-1","type":"task.completed","source":"s","traceparent": parent,
        "data":{"task_id": 2, "user_id": "u"}});
    let (_, answer) = app
        .post("/events/task-events/on_completed", body.to_string())
        .await;
    assert_eq!(answer["status"], "SUCCESS");
    let update = &app.published_to("task-updates")[0];
    let tp = update.traceparent.as_deref().expect("carried on");
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "same trace: {tp}"
    );
    assert_ne!(tp, parent, "a child span, not the parent");
}

#[test]
fn schemas_export_one_contract_file_per_event_type() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("schema-export");
    let _ = std::fs::remove_dir_all(&dir);
    let written = event_runtime::schema::export(&dir).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"task-completed.schema.json".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"task-update.schema.json".to_owned()),
        "{names:?}"
    );
    let text = std::fs::read_to_string(dir.join("task-completed.schema.json")).unwrap();
    assert!(text.ends_with("}\n"));
    let schema: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(schema["properties"]["task_id"]["type"], "integer");
    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["task_id", "user_id"]);
}
