//! The CloudEvents Kafka protocol binding, as daprd hands its records over on a rawPayload
//! subscription: in binary mode the attributes are `ce_*` record headers (HTTP headers of the
//! delivery) and the record value is the data; in structured mode the record is the whole event.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use event_runtime::testing::TestApp;
use event_runtime::{event_handler, Event, EventId, Source, State};
use serde_json::{json, Value};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "com.example.task.done", version = "1.0")]
pub struct TaskDone {
    pub task_id: i64,
    pub user_id: String,
}

/// `(source, id, task)` of each run.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String, i64)>>>);

#[event_handler(topic = "ce-binding", dlq = "ce-binding-dlq", idempotent)]
async fn on_task_done(
    e: TaskDone,
    EventId(id): EventId,
    Source(source): Source,
    State(seen): State<Seen>,
) {
    seen.0.lock().unwrap().push((source, id, e.task_id));
}

/// What daprd posts for `record` with these record `headers`.
fn delivery(record: &[u8], headers: &[(&str, &str)]) -> Request<Body> {
    let wrapper = json!({
        "id": "dapr-wrapper-id", "specversion": "1.0", "datacontenttype": "application/octet-stream",
        "source": "Dapr", "type": "com.dapr.event.sent", "topic": "ce-binding",
        "pubsubname": "kafka-pubsub",
        "data_base64": base64::engine::general_purpose::STANDARD.encode(record),
    });
    let mut req = Request::post("/_dispatch/kafka-pubsub/ce-binding")
        .header("content-type", "application/cloudevents+json")
        .header("pubsubname", "kafka-pubsub")
        .header("__topic", "ce-binding")
        .header("__key", "u1");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Body::from(wrapper.to_string())).unwrap()
}

fn binary(id: &str, source: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ce_specversion", "1.0".into()),
        ("ce_id", id.into()),
        ("ce_source", source.into()),
        ("ce_type", "com.example.task.done".into()),
        ("ce_time", "2026-12-05T10:00:00Z".into()),
        ("ce_eventversion", "1.0".into()),
    ]
}

async fn deliver(app: &TestApp, record: &[u8], headers: &[(&str, String)]) -> Value {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = app.request(delivery(record, &headers)).await;
    assert!(status.is_success(), "{status} {body}");
    body
}

#[tokio::test]
async fn binary_mode_records_are_the_events_their_headers_describe_applied_once_by_source_and_id() {
    let seen = Seen::default();
    let app = TestApp::start(app!().with_state(seen.clone())).await;
    let data = br#"{"task_id": 7, "user_id": "u1"}"#;

    let answer = deliver(&app, data, &binary("b-1", "//java-sdk")).await;
    assert_eq!(answer["status"], "SUCCESS");
    // The same event again (same source and id): skipped. Another source's `b-1`: its own.
    let again = deliver(&app, data, &binary("b-1", "//java-sdk")).await;
    assert_eq!(again["status"], "SUCCESS");
    deliver(
        &app,
        br#"{"task_id": 8, "user_id": "u1"}"#,
        &binary("b-1", "//python-sdk"),
    )
    .await;
    let runs = seen.0.lock().unwrap().clone();
    assert_eq!(
        runs,
        [
            ("//java-sdk".to_owned(), "b-1".to_owned(), 7),
            ("//python-sdk".to_owned(), "b-1".to_owned(), 8)
        ]
    );
    let outcomes: Vec<_> = app
        .runs_of("on_task_done")
        .iter()
        .map(|r| r.outcome.to_string())
        .collect();
    assert_eq!(outcomes, ["success", "skipped", "success"]);
}

#[tokio::test]
async fn structured_mode_records_are_read_as_cloudevents() {
    let seen = Seen::default();
    let app = TestApp::start(app!().with_state(seen.clone())).await;
    let event = json!({"specversion": "1.0", "id": "s-1", "source": "//python-sdk",
        "type": "com.example.task.done", "datacontenttype": "application/json",
        "data": {"task_id": 9, "user_id": "u1"}});
    let answer = deliver(&app, event.to_string().as_bytes(), &[]).await;
    assert_eq!(answer["status"], "SUCCESS");
    let runs = seen.0.lock().unwrap().clone();
    assert_eq!(runs, [("//python-sdk".to_owned(), "s-1".to_owned(), 9)]);
}

#[tokio::test]
async fn a_record_whose_headers_are_no_whole_cloudevent_is_not_taken_for_one() {
    let seen = Seen::default();
    let app = TestApp::start(app!().with_state(seen.clone())).await;
    // No `ce_type`: not the binding's binary mode, but a plain record, read as Dapr wraps one
    // (its id a digest of its bytes), which the topic's one handler takes.
    let mut headers = binary("b-2", "//java-sdk");
    headers.retain(|(k, _)| *k != "ce_type");
    let answer = deliver(&app, br#"{"task_id": 7, "user_id": "u1"}"#, &headers).await;
    assert_eq!(answer["status"], "SUCCESS", "{answer}");
    let runs = seen.0.lock().unwrap().clone();
    assert_eq!(runs.len(), 1);
    assert_ne!(
        runs[0].1, "b-2",
        "the headers' id is not taken without the rest"
    );
    assert_eq!(runs[0].0, "", "nor their source");
}
