//! Promises about the calls to the Dapr sidecar, counted at stand-in sidecars: an unreachable
//! sidecar is tried twice more, and a dead letter that cannot be published is published again
//! before the delivery is answered RETRY.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use event_runtime::dapr::DaprClient;
use event_runtime::{event_handler, App, Event, Permanent, PublishError};
use serde_json::{json, Value};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "parcel.lost", version = "1.0")]
pub struct ParcelLost {
    pub event_id: String,
    pub user_id: String,
}

#[event_handler(topic = "lost-parcels")]
async fn never_found(_e: ParcelLost) -> Result<(), Permanent> {
    Err(Permanent::new("never found"))
}

fn app_on(base: &str) -> App {
    App::with_handlers(
        event_runtime::__private::registered()
            .into_iter()
            .filter(|h| h.name() == "never_found"),
    )
    .unwrap()
    .with_dapr_client(DaprClient::new(base, None))
}

/// A listener that accepts every connection and closes it at once, without a word: a sidecar
/// that cannot be reached. Counts the connections.
async fn dropping_listener() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (format!("http://{addr}"), accepted)
}

#[tokio::test]
async fn an_unreachable_sidecar_is_tried_twice_more() {
    let (base, accepted) = dropping_listener().await;
    let err = app_on(&base)
        .publisher()
        .publish(
            "lost-parcels",
            &ParcelLost {
                event_id: "p-1".into(),
                user_id: "u".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::Unreachable { .. }), "{err}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one connection, then two more"
    );
}

/// A sidecar whose publish API answers 500; records the `pubsub/topic` of every publish.
async fn failing_sidecar() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route(
            "/v1.0/publish/{pubsub}/{topic}",
            post(
                |State(seen): State<Arc<Mutex<Vec<String>>>>,
                 Path((pubsub, topic)): Path<(String, String)>| async move {
                    seen.lock().unwrap().push(format!("{pubsub}/{topic}"));
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        axum::Json(json!({"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE",
                            "message": "not the leader for that partition"})),
                    )
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn the_dead_letter_publish_is_retried_before_the_answer_is_retry() {
    let (base, seen) = failing_sidecar().await;
    let body = json!({"specversion": "1.0", "id": "p-2", "type": "parcel.lost", "source": "s",
        "data": {"event_id": "p-2", "user_id": "u"}});
    let req = axum::http::Request::post("/events/lost-parcels/never_found")
        .header("content-type", "application/cloudevents+json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app_on(&base).router(), req)
        .await
        .unwrap();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["status"], "RETRY");
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter().all(|p| p == "kafka-pubsub/dlq"),
        "only the dead letter is published: {seen:?}"
    );
    // One publish retry policy (`Publisher::send`): a 5xx sidecar is tried three times in all,
    // not three times within each of several rounds.
    assert_eq!(seen.len(), 3, "{seen:?}");
}
