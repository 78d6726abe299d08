//! What the app answers Dapr: a panic or a timeout is a failure, an explicit drop is no dead
//! letter; a retry that cannot be scheduled answers RETRY; a request without the app's token,
//! or over the body limit, is refused and the record stays in the broker.

#![allow(missing_docs)]

use std::time::Duration;

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, Outcome};
use serde_json::json;

use crate::ledger::*;

#[event_handler(topic = "panics", retry = [1])]
async fn panicking(_e: Doomed) {
    panic!("boom");
}

#[event_handler(topic = "slow", retry = [1], timeout = 5)]
async fn too_slow(_e: Doomed) {
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[event_handler(topic = "dropper")]
async fn dropper(_e: Doomed) -> Outcome {
    Outcome::drop("not interested")
}

#[tokio::test(start_paused = true)]
async fn panics_and_timeouts_are_failures_and_explicit_drops_are_not_dead_lettered() {
    let app = TestApp::start(app!().with_state(Ledger::default())).await;
    app.publish("panics", &Doomed { n: 1 }).await.unwrap();
    app.publish("slow", &Doomed { n: 2 }).await.unwrap();
    app.publish("dropper", &Doomed { n: 3 }).await.unwrap();
    app.wait_idle().await;
    let letters = app.dead_letters("dlq");
    let reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    assert_eq!(letters.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("handler panicked: boom")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("timed out after 5 s")),
        "{reasons:?}"
    );
    // Both were retried (`retry = [1]`): two attempts, each failure with its time, not permanent.
    for l in &letters {
        assert_eq!(
            (l.attempts, l.failures.len(), l.permanent),
            (2, 2, false),
            "{l:?}"
        );
        assert!(l.failures.iter().all(|f| !f.at.is_empty()), "{l:?}");
        assert!(l.first_failure_at.is_some() && l.last_failure_at.is_some());
        // The original event as it was published: its source and pubsub kept.
        assert_eq!(
            l.event.source,
            event_runtime::config::Config::from_env().unwrap().app_id
        );
        assert_eq!(l.event.pubsub, "kafka-pubsub");
    }
    assert_eq!(app.runs_of("dropper")[0].outcome, "drop");
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_cannot_be_scheduled_answers_retry() {
    // First attempt panics -> a delayed retry must be scheduled -> publishing fails -> RETRY.
    let body =
        json!({"specversion":"1.0","id":"x","type":"always.fails","source":"s","data":{"n":1}});
    let answer = answer_without_a_sidecar(app!(), "/events/panics/panicking", body).await;
    assert_eq!(answer["status"], "RETRY");
}

#[tokio::test]
async fn app_api_token_is_required_when_set() {
    let app = TestApp::start(
        app!()
            .with_state(Ledger::default())
            .with_app_api_token(Some("s3cret".into())),
    )
    .await;
    let body =
        json!({"specversion":"1.0","id":"t","type":"always.fails","source":"s","data":{"n":1}})
            .to_string();
    let post = |token: Option<&'static str>| {
        let mut req = axum::http::Request::post("/events/dropper/dropper");
        if let Some(t) = token {
            req = req.header("dapr-api-token", t);
        }
        req.body(axum::body::Body::from(body.clone())).unwrap()
    };
    assert_eq!(app.request(post(None)).await.0, 401);
    assert_eq!(app.request(post(Some("wrong"))).await.0, 401);
    assert_eq!(app.request(post(Some("s3cret"))).await.0, 200);
    let sub = axum::http::Request::get("/dapr/subscribe")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.request(sub).await.0, 401);
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_and_kept_by_the_broker() {
    let app = TestApp::start(app!().with_state(Ledger::default()).with_body_limit(1024)).await;
    let big = json!({"specversion":"1.0","id":"big","type":"always.fails","source":"s","data":{"pad":"x".repeat(4096)}});
    let (code, _) = app.post("/events/dropper/dropper", big.to_string()).await;
    assert_eq!(code, 413, "not acknowledged: the broker keeps the event");
}

/// A CloudEvent body of exactly `len` bytes.
fn body_of_len(len: usize) -> String {
    let head =
        r#"{"specversion":"1.0","id":"big","type":"always.fails","source":"s","data":{"pad":""#;
    let tail = r#""}}"#;
    format!("{head}{}{tail}", "x".repeat(len - head.len() - tail.len()))
}

#[tokio::test]
async fn the_default_body_limit_is_4_mib_and_a_refused_record_stays_in_the_broker() {
    // A broker that takes records past the app's body limit (Kafka's limit raised).
    let app = app!()
        .with_state(Ledger::default())
        .with_max_message_bytes(8 * 1024 * 1024);
    let app = TestApp::start(app).await;
    let limit = 4 * 1024 * 1024;
    let at = body_of_len(limit);
    assert_eq!(at.len(), limit);
    let (code, answer) = app.post("/events/dropper/dropper", at).await;
    assert_eq!(
        (code.as_u16(), answer["status"].as_str()),
        (200, Some("DROP"))
    );
    let (code, _) = app
        .post("/events/dropper/dropper", body_of_len(limit + 1))
        .await;
    assert_eq!(code, 413);
    // Through the broker: an event past the limit is not acknowledged, and stays.
    app.send(big_event(limit)).await.unwrap();
    let stays = tokio::time::timeout(Duration::from_secs(2), app.wait_idle()).await;
    assert!(stays.is_err(), "the refused record left the broker");
    assert_eq!(app.broker().pending(), 1);
    assert!(app.runs_of("dropper").len() == 1, "only the first post ran");
}

/// An event for `dropper` whose delivered body is past `limit`.
fn big_event(limit: usize) -> event_runtime::OutgoingEvent {
    let doomed = Doomed { n: 9 };
    let mut out =
        event_runtime::OutgoingEvent::from_event("kafka-pubsub", "dropper", "test", &doomed)
            .unwrap();
    out.data = json!({"n": 9, "pad": "x".repeat(limit)});
    out
}
