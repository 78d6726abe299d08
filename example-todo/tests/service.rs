//! The todo service end to end in-process: REST calls publish the reference's task events, the
//! embedded broker delivers them through the Dapr routes, the handlers run.

use axum::body::Body;
use axum::http::Request;
use event_runtime::testing::TestApp;
use serde_json::{json, Value};
use tower::ServiceExt as _;

struct Service {
    events: TestApp,
    api: axum::Router,
    store: example_todo::store::Store,
}

async fn start() -> Service {
    let (app, api, store) = example_todo::service_parts();
    Service {
        events: TestApp::start(app).await,
        api,
        store,
    }
}

impl Service {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
        let req = Request::builder().method(method).uri(uri);
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let resp = self.api.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

#[tokio::test]
async fn creating_and_completing_a_recurring_task_runs_the_handlers() {
    let s = start().await;
    let (code, task) = s
        .call(
            "POST",
            "/tasks",
            Some(json!({"user_id": "u-1", "title": "water plants", "recurrence": "weekly"})),
        )
        .await;
    assert_eq!(code, 201, "{task}");
    let id = task["id"].as_i64().unwrap();
    let (code, done) = s.call("POST", &format!("/tasks/{id}/complete"), None).await;
    assert_eq!((code, &done["completed"]), (200, &json!(true)));
    s.events.wait_idle().await;

    let published = s.events.published_to("task-events");
    let types: Vec<&str> = published.iter().map(|e| e.ty.as_str()).collect();
    assert_eq!(
        types,
        ["task.created", "task.completed", "task.created"],
        "the next occurrence is announced too"
    );
    for e in &published {
        assert_eq!(e.partition_key.as_deref(), Some("u-1"));
        for field in [
            "event_id",
            "event_type",
            "event_version",
            "task_id",
            "user_id",
            "timestamp",
            "payload",
        ] {
            assert!(e.data.get(field).is_some(), "{field} missing in {}", e.data);
        }
        assert_eq!(e.id, e.data["event_id"], "CloudEvent id is the event_id");
    }
    let next = s
        .store
        .next_occurrence_of(id)
        .expect("next occurrence created");
    assert!(!next.completed);
    let audit: Vec<String> = s
        .store
        .audit_log()
        .iter()
        .map(|a| format!("{} {}", a.event_type, a.task_id))
        .collect();
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert!(audit.contains(&format!("task.completed {id}")));
    assert_eq!(s.events.runs_of("on_task_completed").len(), 1);
    assert_eq!(s.events.runs_of("audit_log").len(), 2);
    let (_, list) = s.call("GET", "/tasks?user_id=u-1", None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_redelivered_completion_creates_no_second_occurrence() {
    let s = start().await;
    let (_, task) = s
        .call(
            "POST",
            "/tasks",
            Some(json!({"user_id": "u-2", "title": "t", "recurrence": "daily"})),
        )
        .await;
    s.call("POST", &format!("/tasks/{}/complete", task["id"]), None)
        .await;
    s.events.wait_idle().await;
    let completed = s
        .events
        .published_to("task-events")
        .into_iter()
        .find(|e| e.ty == "task.completed")
        .unwrap();
    s.events.send(completed).await.unwrap();
    s.events.wait_idle().await;
    let occurrences = s.store.list("u-2").len();
    assert_eq!(occurrences, 2, "original + one occurrence");
    assert_eq!(
        s.events
            .runs_of("on_task_completed")
            .iter()
            .map(|r| r.outcome)
            .collect::<Vec<_>>(),
        ["success", "skipped"]
    );
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let s = start().await;
    let cases = [
        ("POST", "/tasks", Some(json!({"title": "no user"})), 422),
        (
            "POST",
            "/tasks",
            Some(json!({"user_id": 5, "title": "x"})),
            422,
        ),
        (
            "POST",
            "/tasks",
            Some(json!({"user_id": "u", "title": ""})),
            422,
        ),
        ("POST", "/tasks/999/complete", None, 404),
        ("GET", "/tasks/999", None, 404),
        ("DELETE", "/tasks/999", None, 404),
        ("GET", "/tasks", None, 400),
    ];
    for (method, uri, body, want) in cases {
        let (code, answer) = s.call(method, uri, body.clone()).await;
        assert_eq!(code, want, "{method} {uri} {body:?}: {answer}");
        assert!(answer["error"].is_string(), "{method} {uri}: {answer}");
    }
}

#[tokio::test]
async fn an_event_from_a_python_service_is_consumed() {
    // Exactly what the reference's Python example publishes (a bare JSON body, no content type):
    // Dapr delivers it as type com.dapr.event.sent with `data` a JSON string.
    let s = start().await;
    let (_, task) = s
        .call(
            "POST",
            "/tasks",
            Some(json!({"user_id": "user-456", "title": "t"})),
        )
        .await;
    s.events.wait_idle().await;
    let fixture =
        include_str!("fixtures/python-task-completed.json").replace("123", &task["id"].to_string());
    let (_, answer) = s
        .events
        .post("/_dispatch/kafka-pubsub/task-events", fixture)
        .await;
    assert_eq!(answer["status"], "SUCCESS");
    assert!(s
        .store
        .audit_log()
        .iter()
        .any(|a| a.event_type == "task.completed" && a.user_id == "user-456"));
}
