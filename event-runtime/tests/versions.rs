//! Versioned events: the schema registry, upcasting chains, and unknown major versions going to
//! the DLQ without retries. Fixtures are plain JSON as another service would publish them.

#![allow(missing_docs)]

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, App, Event, State};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// Version 1: as the reference's Python model publishes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event, schemars::JsonSchema)]
#[event(type = "task.completed", version = "1.0", schema)]
pub struct TaskCompletedV1 {
    pub event_version: String,
    pub task_id: i64,
    pub user_id: String,
}

/// Version 2 split the owner from the user who completed it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event, schemars::JsonSchema)]
#[event(type = "task.completed", version = "2.0", upcast_from = TaskCompletedV1, schema)]
pub struct TaskCompletedV2 {
    pub event_version: String,
    pub task_id: i64,
    pub user_id: String,
    pub completed_by: String,
}

impl From<TaskCompletedV1> for TaskCompletedV2 {
    fn from(v1: TaskCompletedV1) -> Self {
        TaskCompletedV2 {
            event_version: "2.0".into(),
            task_id: v1.task_id,
            completed_by: v1.user_id.clone(),
            user_id: v1.user_id,
        }
    }
}

/// Version 3 added a note.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event, schemars::JsonSchema)]
#[event(type = "task.completed", version = "3.1", upcast_from = TaskCompletedV2, schema)]
pub struct TaskCompleted {
    pub event_version: String,
    pub task_id: i64,
    pub user_id: String,
    pub completed_by: String,
    #[serde(default)]
    pub note: Option<String>,
}

impl From<TaskCompletedV2> for TaskCompleted {
    fn from(v2: TaskCompletedV2) -> Self {
        TaskCompleted {
            event_version: "3.1".into(),
            task_id: v2.task_id,
            user_id: v2.user_id,
            completed_by: v2.completed_by,
            note: None,
        }
    }
}

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<TaskCompleted>>>);

#[event_handler(topic = "task-events", retry = [1, 2, 3])]
async fn on_completed(event: TaskCompleted, State(seen): State<Seen>) {
    seen.0.lock().unwrap().push(event);
}

async fn deliver(data: Value) -> (Seen, TestApp, Value) {
    let seen = Seen::default();
    let app = TestApp::start(App::new().with_state(seen.clone())).await;
    let body = json!({"specversion":"1.0","id":"e-1","type":"com.dapr.event.sent","source":"python-svc","data": data});
    let (_, answer) = app
        .post("/_dispatch/kafka-pubsub/task-events", body.to_string())
        .await;
    (seen, app, answer)
}

#[tokio::test(start_paused = true)]
async fn a_v1_event_reaches_a_v3_handler_through_the_chain() {
    let (seen, _, answer) =
        deliver(json!({"event_type": "task.completed", "event_version": "1.0", "task_id": 5, "user_id": "u-1"})).await;
    assert_eq!(answer["status"], "SUCCESS");
    let got = seen.0.lock().unwrap()[0].clone();
    assert_eq!(
        (got.task_id, got.completed_by.as_str(), got.note),
        (5, "u-1", None)
    );
}

#[tokio::test(start_paused = true)]
async fn a_newer_minor_version_is_read_as_is() {
    let (seen, _, answer) = deliver(
        json!({"event_type": "task.completed", "event_version": "3.7", "task_id": 6,
        "user_id": "u", "completed_by": "v", "note": "n", "added_in_3_7": true}),
    )
    .await;
    assert_eq!(answer["status"], "SUCCESS");
    assert_eq!(seen.0.lock().unwrap()[0].note.as_deref(), Some("n"));
}

#[tokio::test(start_paused = true)]
async fn an_unknown_major_version_is_dead_lettered_without_retries() {
    let (seen, app, answer) =
        deliver(json!({"event_type": "task.completed", "event_version": "4.0", "task_id": 7, "user_id": "u"})).await;
    assert_eq!(answer["status"], "DROP");
    assert!(seen.0.lock().unwrap().is_empty());
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].permanent && letters[0].attempts == 1,
        "{:?}",
        letters[0]
    );
    assert!(
        letters[0].reason.contains("version 4.0"),
        "{}",
        letters[0].reason
    );
    assert_eq!(app.runs_of("on_completed").len(), 1, "no retries");
}

/// The version is checked after decoding when the data also reads as the handler's type: such
/// an event of another major must still be upcast or refused, never handled as is.
#[tokio::test(start_paused = true)]
async fn an_older_major_that_also_decodes_as_the_new_type_is_still_upcast() {
    let (seen, _, answer) = deliver(
        json!({"event_type": "task.completed", "event_version": "2.0", "task_id": 8,
        "user_id": "u", "completed_by": "v"}),
    )
    .await;
    assert_eq!(answer["status"], "SUCCESS");
    let got = seen.0.lock().unwrap()[0].clone();
    assert_eq!(
        got.event_version, "3.1",
        "read through the v2 -> v3 upcaster"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unknown_major_that_also_decodes_as_the_type_is_dead_lettered() {
    let (seen, app, answer) = deliver(
        json!({"event_type": "task.completed", "event_version": "4.0", "task_id": 9,
        "user_id": "u", "completed_by": "v"}),
    )
    .await;
    assert_eq!(answer["status"], "DROP");
    assert!(seen.0.lock().unwrap().is_empty());
    assert!(app.dead_letters("dlq")[0].reason.contains("version 4.0"));
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "v.optional", version = "1.0", unkeyed)]
pub struct OptionalVersion {
    #[serde(default)]
    pub event_version: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "v.full_paths", version = "1.0", unkeyed)]
pub struct FullPaths {
    pub event_version: ::std::string::String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "v.optional_full_paths", version = "1.0", unkeyed)]
pub struct OptionalFullPaths {
    #[serde(default)]
    pub event_version: core::option::Option<std::string::String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "v.number", version = "1.0", unkeyed)]
pub struct NumberVersion {
    pub event_version: u32,
}

/// A name for `String` the derive does not see through: it leaves the version to the runtime.
pub type Text = String;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "v.alias", version = "1.0", unkeyed)]
pub struct TypeAlias {
    pub event_version: Text,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "v.camel", version = "1.0", unkeyed)]
#[serde(rename_all = "camelCase")]
pub struct CamelCase {
    pub event_version: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "v.aliased", version = "1.0", unkeyed)]
pub struct Aliased {
    #[serde(alias = "version")]
    pub event_version: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(version = "1.0", unkeyed)]
#[serde(tag = "event_type")]
pub enum Mixed {
    #[serde(rename = "m.with")]
    With { event_version: String },
    #[serde(rename = "m.optional")]
    Optional { event_version: Option<String> },
    #[serde(rename = "m.without")]
    Without { x: i64 },
}

/// What the derive tells the runtime about the version a decoded event carries: only a field
/// serde reads as written, and whose type is written `String` or `Option<String>`, can tell;
/// anything else leaves the runtime to look in the data first.
#[test]
fn the_derive_reports_the_data_version_only_when_it_can_tell() {
    // `data_version` is hidden API, its enum reachable through the macros' paths.
    use event_runtime::__private::DataVersion::{Absent, Is, NotRead};

    let v3: TaskCompleted = serde_json::from_value(
        json!({"event_version": "3.2", "task_id": 1, "user_id": "u", "completed_by": "u"}),
    )
    .unwrap();
    assert_eq!(v3.data_version(), Is("3.2"));
    let none = OptionalVersion {
        event_version: None,
    };
    assert_eq!(none.data_version(), Absent);
    let some = OptionalVersion {
        event_version: Some("1.4".into()),
    };
    assert_eq!(some.data_version(), Is("1.4"));
    let full = FullPaths {
        event_version: "1.2".into(),
    };
    assert_eq!(full.data_version(), Is("1.2"));
    let full = OptionalFullPaths {
        event_version: Some("1.3".into()),
    };
    assert_eq!(full.data_version(), Is("1.3"));
    assert_eq!(NumberVersion { event_version: 1 }.data_version(), NotRead);
    let alias = TypeAlias {
        event_version: "1.0".into(),
    };
    assert_eq!(alias.data_version(), NotRead);
    assert_eq!(
        CamelCase {
            event_version: "1.0".into()
        }
        .data_version(),
        NotRead
    );
    assert_eq!(
        Aliased {
            event_version: "1.0".into()
        }
        .data_version(),
        NotRead
    );
    let with = Mixed::With {
        event_version: "1.1".into(),
    };
    assert_eq!(with.data_version(), Is("1.1"));
    let optional = Mixed::Optional {
        event_version: None,
    };
    assert_eq!(optional.data_version(), Absent);
    assert_eq!(Mixed::Without { x: 1 }.data_version(), NotRead);
}

/// A type that does not ask for `#[event(schema)]` has the permissive schema, whether or not it
/// derives `JsonSchema`; one that asks gets `schemars`'.
#[test]
fn the_schema_comes_from_schemars_only_when_asked() {
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event, schemars::JsonSchema)]
    #[event(type = "s.unasked", version = "1.0", unkeyed)]
    struct Unasked {
        x: i64,
    }
    assert_eq!(Unasked::json_schema(), json!({}));
    assert_eq!(NumberVersion::json_schema(), json!({}));
    assert_eq!(
        TaskCompletedV1::json_schema()["properties"]["task_id"]["type"],
        "integer"
    );
}

#[test]
fn the_registry_lists_every_version_with_its_schema() {
    let all = event_runtime::schema::schemas();
    let completed: Vec<_> = all
        .iter()
        .filter(|s| s.event_types == ["task.completed"])
        .collect();
    let versions: Vec<&str> = completed.iter().map(|s| s.version.as_str()).collect();
    assert_eq!(versions, ["1.0", "2.0", "3.1"]);
    let v3 = completed[2];
    assert_eq!(v3.consumed_from, ["task-events"]);
    assert!(v3.upcast_from.as_deref() == Some("TaskCompletedV2"));
    assert_eq!(
        v3.schema["properties"]["completed_by"]["type"], "string",
        "{}",
        v3.schema
    );
    assert!(v3.schema["required"]
        .as_array()
        .unwrap()
        .contains(&json!("task_id")));
}

#[test]
fn a_program_without_two_types_of_one_type_and_version_passes_the_check() {
    // This binary has no such pair (tests/conflicts.rs has one, and the app refuses to start).
    event_runtime::schema::check_unique().unwrap();
}

#[test]
fn the_schema_snapshot_catches_breaking_edits() {
    let dir = std::env::temp_dir().join(format!("schemas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("event-schemas.json");
    // First run writes the snapshot; the same program then passes against it.
    event_runtime::schema::check_snapshot(&path).unwrap();
    event_runtime::schema::check_snapshot(&path).unwrap();
    // A published 3.x that had a field this build lacks, and one it did not require: breaking.
    let mut old: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let v3 = old.get_mut("task.completed@3.1").unwrap();
    v3["properties"]["priority"] = json!({"type": "integer"});
    v3["properties"]["task_id"]["type"] = json!("string");
    std::fs::write(&path, old.to_string()).unwrap();
    let err = event_runtime::schema::check_snapshot(&path).unwrap_err();
    assert!(
        err.contains("`priority` of task.completed@3.1 was removed"),
        "{err}"
    );
    assert!(err.contains("`task_id` changed type"), "{err}");
    // Once the change is intended, EVENT_SCHEMAS_UPDATE=1 rewrites the snapshot, which then
    // passes as it is. (No other test of this binary reads the variable.)
    std::env::set_var("EVENT_SCHEMAS_UPDATE", "1");
    let rewritten = event_runtime::schema::check_snapshot(&path);
    std::env::remove_var("EVENT_SCHEMAS_UPDATE");
    rewritten.unwrap();
    event_runtime::schema::check_snapshot(&path).unwrap();
    assert!(!std::fs::read_to_string(&path).unwrap().contains("priority"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_3_0_event_without_a_field_3_1_added_reads_its_default() {
    let (seen, _, answer) = deliver(
        json!({"event_type": "task.completed", "event_version": "3.0", "task_id": 8,
        "user_id": "u", "completed_by": "v"}),
    )
    .await;
    assert_eq!(answer["status"], "SUCCESS");
    assert_eq!(seen.0.lock().unwrap()[0].note, None);
}

#[test]
fn new_required_fields_are_breaking_unless_the_major_is_raised() {
    use event_runtime::schema::breaking_changes;
    let old = json!({"a@1.0": {"properties": {"x": {"type": "string"}}, "required": ["x"]}});
    let new_required = json!({"a@1.1": {"properties": {"x": {"type": "string"}, "y": {"type": "string"}}, "required": ["x", "y"]}});
    assert_eq!(
        breaking_changes(&old, &new_required),
        ["a@1.1: property `y` is newly required"]
    );
    let raised = json!({"a@2.0": {"properties": {"y": {"type": "string"}}, "required": ["y"]}});
    assert!(breaking_changes(&old, &raised).is_empty());
    let optional = json!({"a@1.1": {"properties": {"x": {"type": "string"}, "z": {"type": "string"}}, "required": ["x"]}});
    assert!(breaking_changes(&old, &optional).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_version_header_of_our_publisher_selects_the_upcaster() {
    // Our publisher sends the version as publish metadata, which Dapr delivers as a header; the
    // header wins over the data. Valid 1.0 data under a 2.0 header is read as 2.0 (and fails
    // for lack of `completed_by`); without the header it is upcast from 1.0 (tested above).
    let seen = Seen::default();
    let app = TestApp::start(App::new().with_state(seen.clone())).await;
    let body = json!({"specversion":"1.0","id":"e-9","type":"task.completed","source":"rust-svc",
        "data": {"task_id": 9, "user_id": "u-9", "event_version": "1.0"}});
    let req = axum::http::Request::post("/events/task-events/on_completed")
        .header("eventversion", "2.0")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let (_, answer) = app.request(req).await;
    assert_eq!(answer["status"], "DROP");
    let letters = app.dead_letters("dlq");
    assert!(
        letters[0].reason.contains("completed_by"),
        "read as 2.0: {}",
        letters[0].reason
    );

    let published = TaskCompleted {
        event_version: "3.1".into(),
        task_id: 1,
        user_id: "u".into(),
        completed_by: "u".into(),
        note: None,
    };
    app.publish("task-events", &published).await.unwrap();
    app.wait_idle().await;
    assert_eq!(
        app.published_to("task-events")[0].extensions["eventversion"],
        "3.1"
    );
    assert_eq!(seen.0.lock().unwrap().len(), 1);
}
