//! Deliveries in every form the sidecar produces reach the right handler; bad bodies never
//! panic and never answer SUCCESS.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use event_runtime::testing::TestApp;
use event_runtime::{event_handler, Envelope, Event, EventId, EventType, PubsubName, State, Topic};
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub task_id: i64,
    pub user_id: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0")]
pub enum TaskEvent {
    #[serde(rename = "task.created")]
    Created {
        event_id: String,
        task_id: i64,
        user_id: String,
        timestamp: String,
        payload: Value,
    },
    #[serde(rename = "task.deleted")]
    Deleted {
        event_id: String,
        task_id: i64,
        user_id: String,
        timestamp: String,
        payload: Value,
    },
}

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[event_handler(topic = "task-events", route = "/api/events/task-completed")]
async fn on_completed(
    event: TaskCompleted,
    EventId(id): EventId,
    Topic(topic): Topic,
    State(seen): State<Seen>,
) {
    seen.push(format!(
        "completed {} {} {id} {topic}",
        event.task_id, event.user_id
    ));
}

#[event_handler(topic = "task-events")]
async fn on_task_event(
    event: Envelope<TaskEvent>,
    EventType(ty): EventType,
    PubsubName(p): PubsubName,
    State(seen): State<Seen>,
) {
    let what = match &event.data {
        TaskEvent::Created { task_id, .. } => format!("created {task_id}"),
        TaskEvent::Deleted { task_id, .. } => format!("deleted {task_id}"),
    };
    seen.push(format!("{what} {ty} {p}"));
}

async fn app() -> (TestApp, Seen) {
    let seen = Seen::default();
    let app = TestApp::start(app!().with_state(seen.clone())).await;
    (app, seen)
}

fn envelope(ty: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": "ev-1", "type": ty, "source": "test", "topic": "task-events",
        "pubsubname": "kafka-pubsub", "datacontenttype": "application/json", "data": data})
}

fn status(v: &Value) -> &str {
    v["status"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn subscriptions_take_records_raw_to_one_route_per_topic() {
    let (app, _) = app().await;
    let (code, subs) = app
        .request(
            axum::http::Request::get("/dapr/subscribe")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(code, 200);
    let subs = subs.as_array().unwrap();
    assert_eq!(subs.len(), 1, "{subs:?}");
    let s = &subs[0];
    assert_eq!(s["pubsubname"], "kafka-pubsub");
    assert_eq!(s["topic"], "task-events");
    // Records reach the app raw, whatever their bytes; daprd would match rules against its own
    // wrapper (and fail on them in bulk), so there are none: the topic's route dispatches.
    assert_eq!(s["metadata"]["rawPayload"], "true");
    assert_eq!(s["routes"]["rules"], json!([]));
    assert_eq!(
        s["routes"]["default"],
        "/_dispatch/kafka-pubsub/task-events"
    );
    assert!(
        s.get("deadLetterTopic").is_none(),
        "the framework owns the DLQ"
    );
}

#[tokio::test]
async fn structured_event_with_json_data() {
    let (app, seen) = app().await;
    let body = envelope("task.completed", json!({"task_id": 1, "user_id": "u-1"}));
    let (code, answer) = app
        .post("/api/events/task-completed", body.to_string())
        .await;
    assert_eq!((code.as_u16(), status(&answer)), (200, "SUCCESS"));
    assert_eq!(seen.all(), ["completed 1 u-1 ev-1 task-events"]);
}

#[tokio::test]
async fn data_as_a_json_string() {
    let (app, seen) = app().await;
    let mut body = envelope("task.completed", json!(null));
    body["data"] = json!(r#"{"task_id": 2, "user_id": "u-2"}"#);
    body["datacontenttype"] = json!("text/plain");
    let (_, answer) = app
        .post("/api/events/task-completed", body.to_string())
        .await;
    assert_eq!(status(&answer), "SUCCESS");
    assert_eq!(seen.all(), ["completed 2 u-2 ev-1 task-events"]);
}

#[tokio::test]
async fn data_base64() {
    let (app, seen) = app().await;
    let mut body = envelope("task.completed", json!(null));
    body.as_object_mut().unwrap().remove("data");
    body["data_base64"] =
        json!(base64::engine::general_purpose::STANDARD.encode(r#"{"task_id":3,"user_id":"u-3"}"#));
    let (_, answer) = app
        .post("/api/events/task-completed", body.to_string())
        .await;
    assert_eq!(status(&answer), "SUCCESS");
    assert_eq!(seen.all(), ["completed 3 u-3 ev-1 task-events"]);
}

#[tokio::test]
async fn raw_payload_envelope_holding_a_cloudevent() {
    let (app, seen) = app().await;
    let inner = envelope("task.completed", json!({"task_id": 4, "user_id": "u-4"}));
    let body = json!({"id": "outer", "specversion": "1.0", "datacontenttype": "application/octet-stream",
        "source": "Dapr", "type": "com.dapr.event.sent", "topic": "task-events", "pubsubname": "kafka-pubsub",
        "data_base64": base64::engine::general_purpose::STANDARD.encode(inner.to_string())});
    let (_, answer) = app
        .post("/_dispatch/kafka-pubsub/task-events", body.to_string())
        .await;
    assert_eq!(status(&answer), "SUCCESS");
    assert_eq!(seen.all(), ["completed 4 u-4 ev-1 task-events"]);
}

#[tokio::test]
async fn raw_payload_of_plain_json_is_dispatched_on_event_type() {
    let (app, seen) = app().await;
    let raw = json!({"event_type": "task.completed", "task_id": 5, "user_id": "u-5"});
    let body = json!({"id": "outer", "specversion": "1.0", "datacontenttype": "application/octet-stream",
        "source": "Dapr", "type": "com.dapr.event.sent", "topic": "task-events", "pubsubname": "kafka-pubsub",
        "data_base64": base64::engine::general_purpose::STANDARD.encode(raw.to_string())});
    let (_, answer) = app
        .post("/_dispatch/kafka-pubsub/task-events", body.to_string())
        .await;
    assert_eq!(status(&answer), "SUCCESS");
    // Not daprd's wrapper id, new on every delivery: a digest of the record, the same on each.
    let id = event_runtime::__private::record_digest(raw.to_string().as_bytes());
    assert_eq!(seen.all(), [format!("completed 5 u-5 {id} task-events")]);
}

#[tokio::test]
async fn seed_style_event_is_dispatched_on_event_type() {
    let (app, seen) = app().await;
    // What the reference's Python publisher produces: a bare JSON object, type com.dapr.event.sent.
    let data = json!({"event_type": "task.completed", "user_id": "user-456", "task_id": 123});
    let (_, answer) = app
        .post(
            "/_dispatch/kafka-pubsub/task-events",
            envelope("com.dapr.event.sent", data).to_string(),
        )
        .await;
    assert_eq!(status(&answer), "SUCCESS");
    // Without Content-Type: application/json Dapr makes `data` a string.
    let mut body = envelope("com.dapr.event.sent", json!(null));
    body["data"] = json!(
        r#"{"event_type":"task.created","event_id":"e","task_id":9,"user_id":"u","timestamp":"t","payload":{}}"#
    );
    let (_, answer) = app
        .post("/_dispatch/kafka-pubsub/task-events", body.to_string())
        .await;
    assert_eq!(status(&answer), "SUCCESS");
    assert_eq!(
        seen.all(),
        [
            "completed 123 user-456 ev-1 task-events",
            "created 9 com.dapr.event.sent kafka-pubsub"
        ]
    );
}

#[tokio::test]
async fn tagged_enum_takes_the_type_from_the_cloudevent_when_data_lacks_the_tag() {
    let (app, seen) = app().await;
    let data =
        json!({"event_id": "e", "task_id": 10, "user_id": "u", "timestamp": "t", "payload": {}});
    let (_, answer) = app
        .post(
            "/events/task-events/on_task_event",
            envelope("task.deleted", data).to_string(),
        )
        .await;
    assert_eq!(status(&answer), "SUCCESS");
    assert_eq!(seen.all(), ["deleted 10 task.deleted kafka-pubsub"]);
}

#[tokio::test]
async fn published_events_reach_the_right_handler_through_the_broker() {
    let (app, seen) = app().await;
    app.publish(
        "task-events",
        &TaskCompleted {
            task_id: 11,
            user_id: "u-11".into(),
        },
    )
    .await
    .unwrap();
    let created = TaskEvent::Created {
        event_id: "e-12".into(),
        task_id: 12,
        user_id: "u-12".into(),
        timestamp: "t".into(),
        payload: json!({}),
    };
    app.publish("task-events", &created).await.unwrap();
    app.wait_idle().await;
    let mut all = seen.all();
    all.sort();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[0].starts_with("completed 11 u-11 "), "{all:?}");
    assert_eq!(all[1], "created 12 task.created kafka-pubsub");
    let published = app.published_to("task-events");
    assert_eq!(
        published[1].id, "e-12",
        "the event's own event_id is the CloudEvent id"
    );
    assert_eq!(published[0].partition_key.as_deref(), Some("u-11"));
}

#[tokio::test]
async fn bad_bodies_never_panic_and_never_succeed() {
    let (app, seen) = app().await;
    let b64_bad = {
        let mut b = envelope("task.completed", json!(null));
        b.as_object_mut().unwrap().remove("data");
        b["data_base64"] = json!("***");
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("not json", b"hello".to_vec()),
        ("array", b"[1,2]".to_vec()),
        (
            "wrong specversion",
            json!({"specversion":"0.3","id":"1","type":"task.completed","source":"s"})
                .to_string()
                .into_bytes(),
        ),
        (
            "missing id",
            json!({"specversion":"1.0","type":"task.completed","source":"s"})
                .to_string()
                .into_bytes(),
        ),
        (
            "missing type",
            json!({"specversion":"1.0","id":"1","source":"s"})
                .to_string()
                .into_bytes(),
        ),
        (
            "data of the wrong shape",
            envelope("task.completed", json!({"task_id":"x"}))
                .to_string()
                .into_bytes(),
        ),
        ("invalid data_base64", b64_bad.to_string().into_bytes()),
        (
            "invalid utf-8",
            b"{\"specversion\":\"1.0\",\"id\":\"\xff\"}".to_vec(),
        ),
        (
            "unknown type",
            envelope("task.archived", json!({"task_id":1,"user_id":"u"}))
                .to_string()
                .into_bytes(),
        ),
    ];
    for (name, body) in cases {
        for path in [
            "/api/events/task-completed",
            "/_dispatch/kafka-pubsub/task-events",
        ] {
            if name == "unknown type" && path == "/api/events/task-completed" {
                continue;
            }
            let before = app.dead_letters("dlq").len();
            let (code, answer) = app.post(path, body.clone()).await;
            assert_eq!(code, 200, "{name} at {path}");
            assert_eq!(status(&answer), "DROP", "{name} at {path}: {answer}");
            // Every DROP has its own dead letter: the reason, and the bytes that arrived.
            let letters = app.dead_letters("dlq");
            assert_eq!(letters.len(), before + 1, "{name} at {path}");
            let letter = letters.last().unwrap();
            assert!(!letter.reason.is_empty(), "{name} at {path}");
            assert_eq!(
                letter.event.record_bytes().as_deref(),
                Some(&body[..]),
                "{name} at {path}: {}",
                letter.reason
            );
        }
    }
    assert!(seen.all().is_empty(), "no handler ran: {:?}", seen.all());
    let letters = app.dead_letters("dlq");
    assert!(
        letters.iter().any(|l| l.reason.contains(
            "no handler on kafka-pubsub/task-events takes events of type `task.archived`"
        )),
        "{letters:#?}"
    );
}
