//! A change whose event cannot be published: the API answers 503 and the change stays stored
//! (the example has no outbox; see its README, "What this example does not do").

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{call_router, memory_db, user};
use event_runtime::dapr::DaprClient;
use event_runtime::{App, Mode};
use serde_json::json;

/// A Dapr sidecar whose every publish fails with 500; answers its base URL and the count of
/// publish requests it got.
async fn failing_sidecar() -> (String, Arc<AtomicUsize>) {
    let publishes = Arc::new(AtomicUsize::new(0));
    let seen = publishes.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            if req.uri().path().starts_with("/v1.0/publish/") {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(
                    json!({"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE", "message": "kafka is down"}),
                ),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, publishes)
}

#[tokio::test]
async fn a_change_whose_publish_fails_is_answered_503_and_stays_stored() {
    let (sidecar, publishes) = failing_sidecar().await;
    let app = App::new()
        .with_mode(Mode::Dapr)
        .with_dapr_client(DaprClient::new(&sidecar, None));
    let db = memory_db().await;
    let s = example_todo::Service::with_ops_token(app, db.clone(), None);
    let api = &s.routes;
    let u = user("no-broker");

    // Create: 503, and the task is there.
    let (code, answer) = call_router(
        api,
        "POST",
        "/tasks",
        Some(json!({"user_id": u, "title": "stored anyway"})),
    )
    .await;
    assert_eq!(code, 503, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("kafka is down"),
        "{answer}"
    );
    assert!(publishes.load(Ordering::SeqCst) > 0, "it tried to publish");
    let tasks = db.tasks_of(&u).await.unwrap();
    assert_eq!(tasks.len(), 1, "the task is stored: {tasks:?}");
    let id = tasks[0].id;
    assert_eq!(tasks[0].title, "stored anyway");

    // Replace: 503, and the new title is stored.
    let uri = format!("/tasks/{id}");
    let (code, answer) = call_router(api, "PUT", &uri, Some(json!({"title": "renamed"}))).await;
    assert_eq!(code, 503, "{answer}");
    assert_eq!(db.task(id).await.unwrap().unwrap().title, "renamed");

    // Complete: 503, and it is done.
    let (code, answer) = call_router(api, "POST", &format!("{uri}/complete"), None).await;
    assert_eq!(code, 503, "{answer}");
    assert!(db.task(id).await.unwrap().unwrap().completed);

    // Delete: 503, and it is gone.
    let (code, answer) = call_router(api, "DELETE", &uri, None).await;
    assert_eq!(code, 503, "{answer}");
    assert_eq!(db.task(id).await.unwrap(), None);
    // Nothing reached the audit log: no event went out.
    assert!(db.audit_log().await.unwrap().is_empty());
}
