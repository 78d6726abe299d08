//! What three environment variables change, end to end: `EVENTS_STATE_STORE` is the store the
//! idempotency claims go to, a retry due more than `EVENTS_MAX_HOLD_SECS` ahead is answered RETRY
//! after that hold, and `EVENTS_ENV=cloud` gives the manifests and the topic plan the cloud
//! retention.
//!
//! The environment is one per process: every test here sets its variables, builds what reads
//! them and clears them again while it holds `ENV`, so the tests may run side by side.

#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{recording, Recorded};
use axum::extract::{Path, Request, State as AxState};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use axum::routing::{get, post};
use axum::Router;
use event_runtime::dapr::DaprClient;
use event_runtime::retry::retry_topic;
use event_runtime::{event_handler, App, Attempt, Event, State, TopicSpec};
use serde::Deserialize as _;
use serde_json::{json, Value};

/// Runs `f` with `vars` set, and no other test touching the environment meanwhile.
fn with_env<T>(vars: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
    let _alone = crate::env_lock();
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let out = f();
    for (k, _) in vars {
        std::env::remove_var(k);
    }
    out
}

fn only(name: &'static str) -> App {
    App::with_handlers(
        event_runtime::__private::registered()
            .into_iter()
            .filter(move |h| h.name() == name),
    )
    .unwrap()
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "invoice.paid", version = "1.0")]
pub struct InvoicePaid {
    pub event_id: String,
    pub user_id: String,
}

#[event_handler(topic = "env-claims", idempotent)]
async fn paid_once(_e: InvoicePaid) {}

/// A sidecar with a state store that keeps what it is given (in one map, whatever the store's
/// name); records the method and path of every call.
async fn state_sidecar() -> (String, Arc<Mutex<Vec<String>>>) {
    type Kept = Arc<Mutex<HashMap<String, Value>>>;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let kept = Kept::default();
    let app = Router::new()
        .route(
            "/v1.0/state/{store}/{key}",
            get(
                |AxState(kept): AxState<Kept>, Path((_, key)): Path<(String, String)>| async move {
                    match kept.lock().unwrap().get(&key) {
                        Some(v) => ([("etag", "1")], axum::Json(v.clone())).into_response(),
                        None => StatusCode::NO_CONTENT.into_response(),
                    }
                },
            )
            .delete(
                |AxState(kept): AxState<Kept>, Path((_, key)): Path<(String, String)>| async move {
                    kept.lock().unwrap().remove(&key);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/v1.0/state/{store}",
            post(
                |AxState(kept): AxState<Kept>, axum::Json(items): axum::Json<Vec<Value>>| async move {
                    for item in items {
                        let key = item["key"].as_str().unwrap().to_owned();
                        kept.lock().unwrap().insert(key, item["value"].clone());
                    }
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(kept)
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                log.lock()
                    .unwrap()
                    .push(format!("{} {}", req.method(), req.uri().path()));
                next.run(req)
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// The state calls an idempotent delivery makes, with `vars` set when the app is built.
async fn state_calls(vars: &[(&str, &str)]) -> Vec<String> {
    let (base, seen) = state_sidecar().await;
    let app = with_env(vars, || only("paid_once")).with_dapr_client(DaprClient::new(&base, None));
    let body = json!({"specversion": "1.0", "id": "inv-1", "type": "invoice.paid", "source": "s",
        "data": {"event_id": "inv-1", "user_id": "u"}});
    let req = axum::http::Request::post("/events/env-claims/paid_once")
        .header("content-type", "application/cloudevents+json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.router(), req).await.unwrap();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(answer["status"], "SUCCESS");
    let calls = seen.lock().unwrap().clone();
    calls
}

#[tokio::test]
async fn events_state_store_is_where_the_claims_go() {
    for (vars, store) in [
        (
            &[("EVENTS_STATE_STORE", "claims-store")][..],
            "claims-store",
        ),
        (&[][..], "statestore"),
    ] {
        let calls = state_calls(vars).await;
        // The claim reads the key, then writes it; the success marks it done.
        assert!(
            calls.iter().any(|c| c.starts_with("GET "))
                && calls.iter().any(|c| c.starts_with("POST ")),
            "{calls:?}"
        );
        for call in &calls {
            let path = call.split_once(' ').unwrap().1;
            let prefix = format!("/v1.0/state/{store}");
            assert!(
                path == prefix || path.starts_with(&format!("{prefix}/")),
                "{vars:?}: {call} is not a call to {store}"
            );
        }
    }
}

#[derive(Clone, Default)]
struct RunTimes(Arc<Mutex<Vec<(u32, tokio::time::Instant)>>>);

#[event_handler(topic = "env-late", retry = [30])]
async fn late_retry(
    _e: InvoicePaid,
    Attempt(a): Attempt,
    State(times): State<RunTimes>,
) -> anyhow::Result<()> {
    times
        .0
        .lock()
        .unwrap()
        .push((a, tokio::time::Instant::now()));
    anyhow::ensure!(a > 1, "the first attempt fails");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_retry_due_after_events_max_hold_secs_is_answered_retry() {
    let times = RunTimes::default();
    let app =
        with_env(&[("EVENTS_MAX_HOLD_SECS", "7")], || only("late_retry")).with_state(times.clone());
    let ladder = retry_topic(app.app_id(), 30);
    let retry_route = app
        .subscriptions()
        .into_iter()
        .find(|s| s.topic == ladder)
        .expect("the 30 s tier is subscribed")
        .routes
        .default;
    let broker = app.broker();
    let app = app.with_broker(broker.clone());
    let recorded = Recorded::default();
    broker
        .start(recording(app.router(), recorded.clone()), None)
        .await
        .unwrap();
    let event = InvoicePaid {
        event_id: "inv-2".into(),
        user_id: "u".into(),
    };
    app.publisher().publish("env-late", &event).await.unwrap();
    assert!(broker.wait_idle(Duration::from_secs(3600)).await);

    let secs = |d: Duration| (d.as_millis() + 500) / 1000;
    let times = times.0.lock().unwrap().clone();
    assert_eq!(times.len(), 2, "{times:?}");
    assert_eq!(secs(times[1].1 - times[0].1), 30, "the retry runs when due");

    let answers: Vec<(String, u128)> = recorded
        .all()
        .into_iter()
        .filter(|x| x.path == retry_route)
        .map(|x| {
            let status = x.answer["status"].as_str().unwrap_or_default().to_owned();
            (status, secs(x.answered - x.started))
        })
        .collect();
    let (last, held) = answers.split_last().expect("the retry was delivered");
    assert_eq!(last.0, "SUCCESS", "{answers:?}");
    // Due 30 s ahead, held 7 s at a time: RETRY at about 7, 14, 21 and 28 s (the broker waits a
    // little before each redelivery), then held until due and run.
    assert_eq!(held.len(), 4, "{answers:?}");
    for (status, secs) in held {
        assert_eq!((status.as_str(), *secs), ("RETRY", 7), "{answers:?}");
    }
}

#[tokio::test]
async fn events_env_cloud_gives_the_cloud_retention() {
    const DAY: u64 = 24 * 3600;
    let spec = TopicSpec::new("env-orders")
        .partitions(3)
        .retention_days(7)
        .retention_cloud_days(30);
    for (vars, days) in [(&[("EVENTS_ENV", "cloud")][..], 30), (&[][..], 7)] {
        let (manifests, plan) = with_env(vars, || {
            let app = only("none").with_topics([spec]);
            (app.manifests(), app.kafka_topics())
        });
        let orders = plan.iter().find(|t| t.name == "env-orders").unwrap();
        assert_eq!(
            orders.retention,
            Duration::from_secs(days * DAY),
            "{vars:?}"
        );
        let retention_ms = yaml_serde::Deserializer::from_str(&manifests)
            .map(|doc| yaml_serde::Value::deserialize(doc).unwrap())
            .find(|doc| doc["kind"] == "KafkaTopic" && doc["metadata"]["name"] == "env-orders")
            .expect("a KafkaTopic for env-orders")["spec"]["config"]["retention.ms"]
            .clone();
        assert_eq!(
            retention_ms,
            yaml_serde::Value::from((days * DAY * 1000).to_string()),
            "{vars:?}"
        );
    }
}
