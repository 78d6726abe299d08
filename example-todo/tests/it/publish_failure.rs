//! A change while the sidecar is down: the API answers success (the change and its event are
//! one transaction, the event waits in the outbox), and the event goes out once the sidecar is
//! back, in order.

use crate::common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{call_router, memory_db, user, wait_until};
use event_runtime::dapr::DaprClient;
use event_runtime::{App, Mode};
use serde_json::{json, Value};

/// A Dapr sidecar that answers every publish 500 while `down`, and records the `task-events`
/// ones it accepts (type, data).
struct Sidecar {
    base: String,
    down: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn sidecar() -> Sidecar {
    let down = Arc::new(AtomicBool::new(true));
    let refused = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let (d, r, a) = (down.clone(), refused.clone(), accepted.clone());
    let app = axum::Router::new().route(
        "/v1.0/publish/{pubsub}/{topic}",
        axum::routing::post(
            move |axum::extract::Path((_, topic)): axum::extract::Path<(String, String)>,
                  axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
                  body: axum::body::Bytes| {
                let (d, r, a) = (d.clone(), r.clone(), a.clone());
                async move {
                    if d.load(Ordering::SeqCst) {
                        r.fetch_add(1, Ordering::SeqCst);
                        return (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            axum::Json(json!({"errorCode": "ERR_PUBSUB_PUBLISH_MESSAGE", "message": "kafka is down"})),
                        );
                    }
                    if topic == "task-events" {
                        let ty = q.get("metadata.cloudevent.type").cloned().unwrap_or_default();
                        let data = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        a.lock().unwrap().push((ty, data));
                    }
                    (axum::http::StatusCode::NO_CONTENT, axum::Json(Value::Null))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Sidecar {
        base,
        down,
        refused,
        accepted,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_while_the_sidecar_is_down_succeed_and_their_events_follow_once_it_is_back() {
    let sidecar = sidecar().await;
    let app = App::new()
        .with_mode(Mode::Dapr)
        .with_dapr_client(DaprClient::new(&sidecar.base, None))
        // On Dapr, delayed retries and dead letters are signed with a key every replica shares.
        .with_signing_key("publish-failure test key");
    let db = memory_db().await;
    let s = example_todo::Service::with_ops_token(app, db.clone(), None);
    let api = s.routes.clone();
    let stop = s.app.shutdown_handle();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let serving = tokio::spawn(s.app.serve_on(listener, axum::Router::new()));
    let u = user("no-broker");

    // Create: 201, and the task is there.
    let (code, answer) = call_router(
        &api,
        "POST",
        "/tasks",
        Some(json!({"user_id": u, "title": "stored"})),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    let id = answer["id"].as_i64().unwrap();
    let tasks = db.tasks_of(&u).await.unwrap();
    assert_eq!(tasks.len(), 1, "the task is stored: {tasks:?}");
    assert_eq!(tasks[0].title, "stored");

    // Replace, complete: 200 each, and stored.
    let uri = format!("/tasks/{id}");
    let (code, answer) = call_router(&api, "PUT", &uri, Some(json!({"title": "renamed"}))).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(db.task(id).await.unwrap().unwrap().title, "renamed");
    let (code, answer) = call_router(&api, "POST", &format!("{uri}/complete"), None).await;
    assert_eq!(code, 200, "{answer}");
    assert!(db.task(id).await.unwrap().unwrap().completed);
    // Delete: 204, and it is gone.
    let (code, answer) = call_router(&api, "DELETE", &uri, None).await;
    assert_eq!(code, 204, "{answer}");
    assert_eq!(db.task(id).await.unwrap(), None);

    // Nothing went out, and the relay tried: the four events wait in the outbox.
    wait_until(Duration::from_secs(30), "a refused publish", || async {
        (sidecar.refused.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    assert!(sidecar.accepted.lock().unwrap().is_empty());
    assert_eq!(db.outbox().stats().await.unwrap().pending, 4);

    // The sidecar is back: the events go out, in the order of the changes.
    sidecar.down.store(false, Ordering::SeqCst);
    let accepted = wait_until(Duration::from_secs(30), "four task events", || async {
        let got = sidecar.accepted.lock().unwrap().clone();
        (got.len() >= 4).then_some(got)
    })
    .await;
    let types: Vec<&str> = accepted.iter().map(|(ty, _)| ty.as_str()).collect();
    assert_eq!(
        types,
        [
            "task.created",
            "task.updated",
            "task.completed",
            "task.deleted"
        ]
    );
    assert!(accepted.iter().all(|(_, data)| data["task_id"] == id));
    wait_until(Duration::from_secs(30), "no pending outbox row", || async {
        (db.outbox().stats().await.unwrap().pending == 0).then_some(())
    })
    .await;
    stop.shutdown();
    serving.await.unwrap().unwrap();
}
