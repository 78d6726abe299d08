//! The Dapr publisher against a stand-in sidecar that records what it receives: the request
//! is exactly what Dapr's publish API expects, and its errors say what failed.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use event_runtime::dapr::DaprClient;
use event_runtime::{Event, PublishError};
use serde_json::{json, Value};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "task.completed", version = "1.0")]
pub struct TaskCompleted {
    pub event_id: String,
    pub task_id: i64,
    pub user_id: String,
}

/// One request the sidecar saw: path, query, headers, body.
type Request = (String, String, HeaderMap, String);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

async fn sidecar(answer: (StatusCode, Value)) -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/v1.0/publish/{pubsub}/{topic}",
            post(
                move |State(seen): State<Seen>,
                      Path((pubsub, topic)): Path<(String, String)>,
                      RawQuery(q): RawQuery,
                      headers: HeaderMap,
                      body: String| {
                    let answer = answer.clone();
                    async move {
                        seen.0.lock().unwrap().push((
                            format!("{pubsub}/{topic}"),
                            q.unwrap_or_default(),
                            headers,
                            body,
                        ));
                        (answer.0, axum::Json(answer.1))
                    }
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

fn event() -> TaskCompleted {
    TaskCompleted {
        event_id: "evt-1".into(),
        task_id: 7,
        user_id: "user 1".into(),
    }
}

fn publisher(base: &str, token: Option<&str>) -> event_runtime::Publisher {
    event_runtime::App::with_handlers([])
        .unwrap()
        .with_dapr_client(DaprClient::new(base, token.map(str::to_owned)))
        .publisher()
}

#[tokio::test]
async fn publishes_json_with_cloudevent_metadata_partition_key_and_token() {
    let (base, seen) = sidecar((StatusCode::NO_CONTENT, Value::Null)).await;
    publisher(&base, Some("t0ken"))
        .publish_to("kafka-pubsub", "task-events", &event())
        .await
        .unwrap();
    let seen = seen.0.lock().unwrap();
    let (path, query, headers, body) = &seen[0];
    assert_eq!(path, "kafka-pubsub/task-events");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["dapr-api-token"], "t0ken");
    for part in [
        "metadata.partitionKey=user+1",
        "metadata.cloudevent.id=evt-1",
        "metadata.cloudevent.type=task.completed",
        "metadata.cloudevent.source=",
        "metadata.eventversion=1.0",
    ] {
        assert!(query.contains(part), "{part} not in {query}");
    }
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"event_id": "evt-1", "task_id": 7, "user_id": "user 1"})
    );
}

#[tokio::test]
async fn a_binary_mode_topic_gets_the_data_as_the_record_and_ce_headers_as_metadata() {
    let (base, seen) = sidecar((StatusCode::NO_CONTENT, Value::Null)).await;
    let publisher = event_runtime::App::with_handlers([])
        .unwrap()
        .with_app_id("binary-app")
        .with_binary_mode("task-audit")
        .with_dapr_client(DaprClient::new(&base, None))
        .publisher();
    publisher.publish("task-audit", &event()).await.unwrap();
    publisher.publish("task-events", &event()).await.unwrap();
    let seen = seen.0.lock().unwrap();
    let (path, query, headers, body) = &seen[0];
    assert_eq!(path, "kafka-pubsub/task-audit");
    assert_eq!(headers["content-type"], "application/json");
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for (k, v) in [
        ("metadata.rawPayload", "true"),
        ("metadata.partitionKey", "user 1"),
        ("metadata.ce_specversion", "1.0"),
        ("metadata.ce_id", "evt-1"),
        ("metadata.ce_source", "binary-app"),
        ("metadata.ce_type", "task.completed"),
        ("metadata.ce_eventversion", "1.0"),
        ("metadata.content-type", "application/json"),
    ] {
        assert!(
            pairs.contains(&(k.to_owned(), v.to_owned())),
            "{k}={v} not in {pairs:?}"
        );
    }
    assert!(
        !pairs
            .iter()
            .any(|(k, _)| k.starts_with("metadata.cloudevent.")),
        "no Dapr envelope: {pairs:?}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap(),
        json!({"event_id": "evt-1", "task_id": 7, "user_id": "user 1"}),
        "the record is the data alone"
    );
    // Another topic is published as before.
    assert!(
        seen[1].1.contains("metadata.cloudevent.id=evt-1"),
        "{}",
        seen[1].1
    );
    assert!(!seen[1].1.contains("rawPayload"));
}

#[tokio::test]
async fn no_token_header_without_a_token() {
    let (base, seen) = sidecar((StatusCode::NO_CONTENT, Value::Null)).await;
    publisher(&base, None)
        .publish("task-events", &event())
        .await
        .unwrap();
    assert!(seen.0.lock().unwrap()[0].2.get("dapr-api-token").is_none());
}

#[tokio::test]
async fn dapr_errors_carry_error_code_and_message() {
    let (base, _) = sidecar((
        StatusCode::NOT_FOUND,
        json!({"errorCode": "ERR_PUBSUB_NOT_FOUND", "message": "pubsub nope not found"}),
    ))
    .await;
    let err = publisher(&base, None)
        .publish_to("nope", "task-events", &event())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        PublishError::Rejected {
            pubsub: "nope".into(),
            topic: "task-events".into(),
            status: 404,
            error_code: "ERR_PUBSUB_NOT_FOUND".into(),
            message: "pubsub nope not found".into(),
        }
    );
    assert!(err.to_string().contains("ERR_PUBSUB_NOT_FOUND"));
}

#[tokio::test]
async fn an_unreachable_sidecar_is_an_error_not_a_hang() {
    let err = publisher("http://127.0.0.1:9", None)
        .publish("task-events", &event())
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Unreachable { .. }), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_5xx_is_tried_again_and_a_4xx_is_not() {
    let (base, seen) = sidecar((
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE", "message": "not the leader"}),
    ))
    .await;
    let err = publisher(&base, None)
        .publish("task-events", &event())
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(seen.0.lock().unwrap().len(), 3, "tried three times");

    let (base, seen) = sidecar((
        StatusCode::BAD_REQUEST,
        json!({"errorCode": "ERR_PUBSUB_REQUEST_METADATA", "message": "bad"}),
    ))
    .await;
    let err = publisher(&base, None)
        .publish("task-events", &event())
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    assert_eq!(seen.0.lock().unwrap().len(), 1, "a 4xx is final");
}
