//! What the environment variables change, end to end: `EVENTS_SIGNING_KEY` signs the retry
//! bookkeeping (without it, a random key of the process; nothing derived from `APP_ID`),
//! `EVENTS_PUBSUB` and `EVENTS_DLQ` are the handlers' defaults, and `serve` listens on
//! `APP_PORT`.
//!
//! The environment is one per process, so this module has one test, which holds the binary's
//! lock while it sets and clears the variables in turn.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_runtime::__private::retry::{RetryState, SigningKey};
use event_runtime::cloudevent::CloudEvent;
use event_runtime::retry::retry_topic;
use event_runtime::testing::TestApp;
use event_runtime::{event_handler, Attempt, Event, State};
use serde_json::{json, Value};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "bill.sent", version = "1.0")]
pub struct BillSent {
    pub n: i64,
    pub user_id: String,
}

#[derive(Clone, Default)]
struct Attempts(Arc<Mutex<Vec<u32>>>);

#[event_handler(topic = "bills", retry = [1])]
async fn on_bill(_b: BillSent, Attempt(a): Attempt, State(s): State<Attempts>) {
    s.0.lock().unwrap().push(a);
}

/// The key the app id alone gave before: public, and so refused now.
fn public_key(app_id: &str) -> SigningKey {
    SigningKey::new(format!("event-runtime retry key of {app_id}"))
}

/// A retry message for `on_bill`, attempt 2, signed with `key` by app `app_id`.
fn retry_signed(key: &SigningKey, app_id: &str, id: &str) -> Vec<u8> {
    let record = json!({"specversion": "1.0", "id": id, "type": "bill.sent", "source": "s",
        "datacontenttype": "application/json", "data": {"n": 1, "user_id": "u"}})
    .to_string();
    let ce = CloudEvent::from_record(record.clone().into(), false).unwrap();
    let state = RetryState {
        attempt: 2,
        due_ms: Some(0),
        hop_due_ms: Some(0),
        handler: Some("process::settings::on_bill".into()),
        origin_topic: Some("bills".into()),
        ..RetryState::default()
    };
    state.seal(app_id, key, &ce, record.as_bytes(), None)
}

#[tokio::test]
// The guard is held across awaits on purpose: the whole test runs with its variables.
#[allow(clippy::await_holding_lock)]
async fn the_environment_sets_the_key_the_defaults_and_the_port() {
    let _alone = crate::env_lock();
    for name in [
        "APP_ID",
        "EVENTS_SIGNING_KEY",
        "EVENTS_PUBSUB",
        "EVENTS_DLQ",
        "APP_PORT",
    ] {
        std::env::remove_var(name);
    }
    std::env::set_var("APP_ID", "billing");

    // EVENTS_SIGNING_KEY signs: a retry signed with it runs; one signed with what the app id
    // alone could give (the old default) is refused into the DLQ.
    std::env::set_var("EVENTS_SIGNING_KEY", "from-a-secret-store");
    let attempts = Attempts::default();
    let app = TestApp::start(app!().with_state(attempts.clone())).await;
    let ladder = retry_topic("billing", 1);
    let good = retry_signed(&SigningKey::new("from-a-secret-store"), "billing", "b-1");
    let derived = retry_signed(&public_key("billing"), "billing", "b-2");
    app.produce(&ladder, Some("u"), good).await.unwrap();
    app.produce(&ladder, Some("u"), derived).await.unwrap();
    app.wait_idle_for(Duration::from_secs(30)).await;
    assert_eq!(
        *attempts.0.lock().unwrap(),
        [2],
        "only the retry signed with the key ran"
    );
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.contains("not signed"),
        "{}",
        letters[0].reason
    );
    app.stop();

    // Without the variable, nothing derived from APP_ID signs: such a retry is refused too.
    std::env::remove_var("EVENTS_SIGNING_KEY");
    let attempts = Attempts::default();
    let app = TestApp::start(app!().with_state(attempts.clone())).await;
    let derived = retry_signed(&public_key("billing"), "billing", "b-3");
    app.produce(&ladder, Some("u"), derived).await.unwrap();
    app.wait_idle_for(Duration::from_secs(30)).await;
    assert_eq!(*attempts.0.lock().unwrap(), Vec::<u32>::new());
    assert_eq!(app.dead_letters("dlq").len(), 1);
    app.stop();

    // EVENTS_PUBSUB and EVENTS_DLQ are the handlers' defaults.
    std::env::set_var("EVENTS_PUBSUB", "billing-pubsub");
    std::env::set_var("EVENTS_DLQ", "billing-dlq");
    let app = app!();
    let bills = app
        .handlers()
        .iter()
        .find(|h| h.name() == "on_bill")
        .unwrap();
    assert_eq!(
        (bills.pubsub(), bills.dlq()),
        ("billing-pubsub", "billing-dlq")
    );
    assert!(app
        .subscriptions()
        .iter()
        .all(|s| s.pubsubname == "billing-pubsub"));
    std::env::remove_var("EVENTS_PUBSUB");
    std::env::remove_var("EVENTS_DLQ");

    // `serve` listens on APP_PORT.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::env::set_var("APP_PORT", port.to_string());
    let app = app!().with_mode(event_runtime::Mode::Embedded);
    let stop = app.shutdown_handle();
    let server = tokio::spawn(app.serve());
    let health = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
                Ok(r) => break r.json::<Value>().await.unwrap(),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("serve listens on APP_PORT");
    assert_eq!(health["status"], "ok");
    stop.shutdown();
    server.await.unwrap().unwrap();
    std::env::remove_var("APP_PORT");
    std::env::remove_var("APP_ID");
}
