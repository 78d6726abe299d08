//! Nothing a producer or a fault sends can forge, stall or erase: the signing key is a secret,
//! claim keys are bounded and cannot collide, dead letters and retries fit the broker, forged
//! letters are never replayed, expiry holds on the retry ladder, an empty token opens nothing,
//! and bulk bodies are bounded. Each test fails without the behaviour it names.

#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use event_runtime::__private::retry::{RetryState, SigningKey};
use event_runtime::cloudevent::CloudEvent;
use event_runtime::dapr::StateError;
use event_runtime::dlq::{replay, verify, DeadLetter, ReplayFilter, Unreplayable};
use event_runtime::idempotency::{Claim, ClaimToken, IdempotencyStore, MemoryStore};
use event_runtime::retry::retry_topic;
use event_runtime::testing::TestApp;
use event_runtime::{event_handler, App, Attempt, Event, EventId, Mode, Permanent, State};
use futures::future::BoxFuture;
use serde_json::{json, Value};

const KEY: &str = "a test secret of sixteen bytes or more";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "parcel.sent", version = "1.0")]
pub struct Parcel {
    pub n: i64,
    pub user_id: String,
    #[serde(default)]
    pub pad: String,
}

/// Runs per event id.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, u32>>>);

impl Runs {
    fn add(&self, id: &str) {
        *self.0.lock().unwrap().entry(id.to_owned()).or_default() += 1;
    }
    fn of(&self, id: &str) -> u32 {
        self.0.lock().unwrap().get(id).copied().unwrap_or(0)
    }
    fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }
}

#[derive(Clone, Default)]
struct Fixed(Arc<Mutex<bool>>);

#[event_handler(topic = "big-events", dlq = "big-dlq")]
async fn fails_for_good(
    _p: Parcel,
    EventId(id): EventId,
    State(runs): State<Runs>,
) -> Result<(), Permanent> {
    runs.add(&id);
    Err(Permanent::new("refused"))
}

#[event_handler(topic = "big-retries", retry = [1], dlq = "big-dlq")]
async fn retried_later(
    _p: Parcel,
    EventId(id): EventId,
    State(runs): State<Runs>,
) -> anyhow::Result<()> {
    runs.add(&id);
    anyhow::bail!("not yet")
}

#[event_handler(topic = "claims", idempotent)]
async fn claimed(_p: Parcel, EventId(id): EventId, State(runs): State<Runs>) {
    runs.add(&id);
}

#[event_handler(topic = "expiring", retry = [5], dlq = "expiring-dlq")]
async fn expiring(
    _p: Parcel,
    Attempt(a): Attempt,
    EventId(id): EventId,
    State(runs): State<Runs>,
) -> anyhow::Result<()> {
    runs.add(&id);
    anyhow::ensure!(a > 1, "first attempt fails");
    Ok(())
}

#[event_handler(topic = "replays", dlq = "replays-dlq")]
async fn replayable(
    p: Parcel,
    State(fixed): State<Fixed>,
    State(runs): State<Runs>,
) -> anyhow::Result<()> {
    runs.add(&p.n.to_string());
    anyhow::ensure!(*fixed.0.lock().unwrap(), "not fixed yet");
    Ok(())
}

#[event_handler(topic = "hops", retry = [1])]
async fn on_hop(p: Parcel, State(runs): State<Runs>) {
    runs.add(&p.n.to_string());
}

#[event_handler(topic = "bulky", bulk(max_messages = 10))]
async fn bulky(p: Parcel, State(runs): State<Runs>) {
    runs.add(&p.n.to_string());
}

fn app(runs: &Runs) -> App {
    app!()
        .with_state(runs.clone())
        .with_state(Fixed::default())
        .with_signing_key(KEY)
}

fn parcel(n: i64, pad: usize) -> Parcel {
    Parcel {
        n,
        user_id: format!("u-{n}"),
        pad: "x".repeat(pad),
    }
}

/// A record of `parcel` with our own id and source, as any producer could write it.
fn record(id: &str, source: &str, parcel: &Parcel) -> Vec<u8> {
    json!({"specversion": "1.0", "id": id, "type": "parcel.sent", "source": source,
        "datacontenttype": "application/json", "data": parcel})
    .to_string()
    .into_bytes()
}

fn letter_size(app: &TestApp, topic: &str) -> Vec<usize> {
    app.published_to(topic)
        .iter()
        .map(|e| e.data.to_string().len())
        .collect()
}

// 1. The signing key is a secret.

#[test]
fn a_dapr_app_with_delayed_retries_and_no_signing_key_refuses_to_start() {
    let app = app!().with_mode(Mode::Dapr);
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.router()))
        .expect_err("no router without a key");
    let message = refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("EVENTS_SIGNING_KEY"), "{message}");
    // With a key it starts; embedded, it starts without one (a random key of its process).
    let _ = app!().with_mode(Mode::Dapr).with_signing_key(KEY).router();
    let _ = app!().with_mode(Mode::Embedded).router();
}

/// A retry message for `on_hop`, signed with `key`, whose hop ends at `hop_due_ms`.
fn retry_for_hop(key: &SigningKey, n: i64, hop_due_ms: u64) -> Vec<u8> {
    let bytes = record(&format!("hop-{n}"), "s", &parcel(n, 0));
    let ce = CloudEvent::from_record(bytes.clone().into(), false).unwrap();
    let state = RetryState {
        attempt: 2,
        due_ms: Some(hop_due_ms),
        hop_due_ms: Some(hop_due_ms),
        handler: Some("it::trust::on_hop".into()),
        origin_topic: Some("hops".into()),
        ..RetryState::default()
    };
    state.seal("event-runtime-app", key, &ce, &bytes, None)
}

#[tokio::test(start_paused = true)]
async fn a_hop_due_past_its_tier_is_forged_and_holds_no_partition() {
    let runs = Runs::default();
    let app = TestApp::start(app(&runs)).await;
    let now = chrono::Utc::now().timestamp_millis() as u64;
    let tier = retry_topic("event-runtime-app", 1);
    let key = SigningKey::new(KEY);
    // Parked a year ahead at the head of the 1 s tier's partition, then a genuine retry.
    let parked = retry_for_hop(&key, 1, now + 365 * 24 * 3600 * 1000);
    let genuine = retry_for_hop(&key, 2, now + 500);
    app.produce(&tier, Some("u"), parked).await.unwrap();
    app.produce(&tier, Some("u"), genuine).await.unwrap();
    app.wait_idle_for(Duration::from_secs(120)).await;
    assert_eq!(
        (runs.of("1"), runs.of("2")),
        (0, 1),
        "the genuine retry behind it ran"
    );
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.contains("forged"),
        "{}",
        letters[0].reason
    );
}

// 3. Claim keys are bounded, and a store's refusal is no outage.

#[tokio::test]
async fn a_10_kb_event_id_is_claimed_under_a_bounded_key() {
    let runs = Runs::default();
    let store = Recording::default();
    let app = app(&runs).with_idempotency_store(store.clone());
    let long_id = "i".repeat(10 * 1024);
    let (code, answer) = post(
        &app,
        "/_dispatch/kafka-pubsub/claims",
        record(&long_id, "s", &parcel(1, 0)),
    )
    .await;
    assert_eq!(
        (code, answer["status"].as_str()),
        (StatusCode::OK, Some("SUCCESS"))
    );
    assert_eq!(runs.of(&long_id), 1);
    let keys = store.keys();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].len() < 300, "a {} byte claim key", keys[0].len());
    // The same long id again is the same claim: skipped.
    post(
        &app,
        "/_dispatch/kafka-pubsub/claims",
        record(&long_id, "s", &parcel(1, 0)),
    )
    .await;
    assert_eq!(runs.of(&long_id), 1);
}

#[tokio::test]
async fn a_claim_the_store_refuses_for_good_is_dead_lettered_and_an_outage_is_retried() {
    let runs = Runs::default();
    let store = Recording::refusing(400);
    let app = app(&runs).with_idempotency_store(store.clone());
    let (_, answer) = post(
        &app,
        "/_dispatch/kafka-pubsub/claims",
        record("c-1", "s", &parcel(1, 0)),
    )
    .await;
    assert_eq!(
        answer["status"], "DROP",
        "a clear outcome, not RETRY forever"
    );
    assert_eq!(runs.total(), 0, "the handler did not run unclaimed");
    let letters: Vec<DeadLetter> = app
        .broker()
        .published()
        .iter()
        .filter(|e| e.topic == "dlq")
        .map(|e| serde_json::from_value(e.data.clone()).unwrap())
        .collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].handler.as_deref(), Some("it::trust::claimed"));
    assert!(
        letters[0].reason.contains("refuses the claim"),
        "{}",
        letters[0].reason
    );

    let app = self::app(&runs).with_idempotency_store(Recording::refusing(503));
    let (_, answer) = post(
        &app,
        "/_dispatch/kafka-pubsub/claims",
        record("c-2", "s", &parcel(2, 0)),
    )
    .await;
    assert_eq!(
        answer["status"], "RETRY",
        "an outage of the store is retried"
    );
}

// 4. Dead letters and retries fit the broker.

#[tokio::test]
async fn a_dead_letter_carries_the_record_once() {
    let runs = Runs::default();
    let app = TestApp::start(app(&runs)).await;
    let big = record("big-1", "s", &parcel(1, 500 * 1024));
    app.produce("big-events", Some("u"), big.clone())
        .await
        .unwrap();
    app.wait_idle().await;
    let sizes = letter_size(&app, "big-dlq");
    assert_eq!(sizes.len(), 1);
    assert!(
        sizes[0] < big.len() * 14 / 10,
        "a {} byte letter of a {} byte event",
        sizes[0],
        big.len()
    );
    let letters = app.dead_letters("big-dlq");
    assert_eq!(
        letters[0].event.record_bytes().unwrap(),
        big,
        "the exact bytes"
    );
    assert_eq!(
        letters[0].event.data["n"], 1,
        "the data is read back from the record"
    );
}

#[tokio::test]
async fn a_dead_letter_past_the_broker_limit_keeps_its_record_in_the_state_store_and_replays() {
    let runs = Runs::default();
    let app = TestApp::start(app(&runs)).await;
    let big = record("big-2", "s", &parcel(2, 900 * 1024));
    app.produce("big-events", Some("u"), big.clone())
        .await
        .unwrap();
    app.wait_idle().await;
    assert_eq!(
        runs.of("big-2"),
        1,
        "run once, not again on every redelivery"
    );
    let letters = app.dead_letters("big-dlq");
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert!(
        letter.event.record.is_none() && letter.event.record_ref.is_some(),
        "{:?}",
        letter.event.record_ref
    );
    assert!(letter_size(&app, "big-dlq")[0] < 64 * 1024);
    // Replay publishes the original bytes from where they were kept.
    let report = replay(&app.publisher(), &letters, &ReplayFilter::default()).await;
    assert_eq!(
        (report.replayed, report.refused.len()),
        (1, 0),
        "{report:?}"
    );
    let replayed = app.published_to("big-events");
    assert_eq!(replayed.last().unwrap().record.as_deref(), Some(&big[..]));
}

#[tokio::test(start_paused = true)]
async fn a_retry_past_the_broker_limit_is_dead_lettered_not_redelivered() {
    let runs = Runs::default();
    let app = TestApp::start(app(&runs)).await;
    // Fits the broker as it is, but not as a retry message (its record in base64).
    let big = record("big-3", "s", &parcel(3, 850 * 1024));
    app.produce("big-retries", Some("u"), big.clone())
        .await
        .unwrap();
    app.wait_idle().await;
    assert_eq!(runs.of("big-3"), 1);
    let letters = app.dead_letters("big-dlq");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].reason.contains("cannot be scheduled"),
        "{}",
        letters[0].reason
    );
    assert!(app
        .published_to(&retry_topic("event-runtime-app", 1))
        .is_empty());
}

#[tokio::test]
async fn a_publish_past_the_broker_limit_is_refused_before_it_is_sent() {
    let runs = Runs::default();
    let app = TestApp::start(app(&runs)).await;
    let err = app
        .publish("claims", &parcel(1, 2 * 1024 * 1024))
        .await
        .unwrap_err();
    assert!(
        matches!(err, event_runtime::PublishError::TooLarge { .. }),
        "{err}"
    );
    assert!(!err.is_transient());
}

// 5. Claims that cannot collide.

#[tokio::test]
async fn the_default_claim_is_the_source_and_the_id_escaped() {
    let runs = Runs::default();
    let app = TestApp::start(app(&runs)).await;
    // Two producers numbering their own events, and ids that escape alike unescaped.
    for (id, source) in [
        ("7", "billing"),
        ("7", "shipping"),
        ("k|1", "s"),
        ("k%7C1", "s"),
    ] {
        app.produce("claims", Some("u"), record(id, source, &parcel(1, 0)))
            .await
            .unwrap();
    }
    // And a true duplicate: the same source and id.
    app.produce("claims", Some("u"), record("7", "billing", &parcel(1, 0)))
        .await
        .unwrap();
    app.wait_idle().await;
    assert_eq!((runs.of("7"), runs.of("k|1"), runs.of("k%7C1")), (2, 1, 1));
}

// 6. Forged dead letters are never replayed.

#[tokio::test]
async fn only_letters_this_app_signed_for_its_own_topics_are_replayed() {
    let runs = Runs::default();
    let fixed = Fixed::default();
    let app = TestApp::start(app(&runs).with_state(fixed.clone())).await;
    app.publish("replays", &parcel(1, 0)).await.unwrap();
    app.wait_idle().await;
    let genuine = app.dead_letters("replays-dlq");
    assert_eq!(genuine.len(), 1);
    assert!(verify(&app.publisher(), &genuine[0]).is_ok());

    // Planted letters: to a topic the app does not consume, a genuine one steered, and one
    // with no signature at all.
    let mut steered = genuine[0].clone();
    steered.event.topic = "payments".into();
    let mut tampered = genuine[0].clone();
    tampered.event.data = json!({"n": 99, "user_id": "evil"});
    tampered.event.record = None;
    let mut unsigned = genuine[0].clone();
    unsigned.signature = None;
    let planted: Value = json!({
        "event": {"id": "p", "type": "parcel.sent", "source": "s", "data": {"n": 5, "user_id": "x"},
                  "topic": "replays", "pubsub": "kafka-pubsub"},
        "attempts": 1, "permanent": true, "reason": "planted", "app": "event-runtime-app", "signature": "00"
    });
    let planted: DeadLetter = serde_json::from_value(planted).unwrap();
    assert_eq!(
        verify(&app.publisher(), &steered),
        Err(Unreplayable::Forged)
    );
    assert_eq!(
        verify(&app.publisher(), &tampered),
        Err(Unreplayable::Forged)
    );
    assert_eq!(
        verify(&app.publisher(), &unsigned),
        Err(Unreplayable::Unsigned)
    );
    // The account of the failure is signed too: an operator decides on it.
    let mut reworded = genuine[0].clone();
    reworded.reason = "transient: safe to replay".into();
    let mut recounted = genuine[0].clone();
    recounted.attempts += 1;
    recounted.permanent = !recounted.permanent;
    let mut refailed = genuine[0].clone();
    refailed.failures.clear();
    for changed in [&reworded, &recounted, &refailed] {
        assert_eq!(verify(&app.publisher(), changed), Err(Unreplayable::Forged));
    }
    assert_eq!(
        verify(&app.publisher(), &planted),
        Err(Unreplayable::Forged)
    );

    *fixed.0.lock().unwrap() = true;
    let all = vec![genuine[0].clone(), steered, tampered, unsigned, planted];
    let report = replay(&app.publisher(), &all, &ReplayFilter::default()).await;
    app.wait_idle().await;
    assert_eq!(
        (report.matched, report.replayed, report.refused.len()),
        (5, 1, 4),
        "{report:?}"
    );
    assert!(app.published_to("payments").is_empty());
    assert_eq!(runs.of("99") + runs.of("5"), 0);
    // A publisher that is no app's checks nothing, so replays nothing.
    let other = event_runtime::Publisher::from_config(&event_runtime::config::Config::default());
    assert_eq!(verify(&other, &all[0]), Err(Unreplayable::NoApp));
    // The operator's explicit override replays what they checked themselves.
    let unsigned = vec![all[3].clone()];
    let forced = ReplayFilter {
        allow_unverified: true,
        ..ReplayFilter::default()
    };
    let report = replay(&app.publisher(), &unsigned, &forced).await;
    assert_eq!(report.replayed, 1);
}

#[tokio::test]
async fn a_letter_of_another_app_is_foreign() {
    let runs = Runs::default();
    let app = TestApp::start(app(&runs)).await;
    app.publish("replays", &parcel(1, 0)).await.unwrap();
    app.wait_idle().await;
    let letter = app.dead_letters("replays-dlq").remove(0);
    let other = TestApp::start(self::app(&runs).with_app_id("other-app")).await;
    assert_eq!(
        verify(&other.publisher(), &letter),
        Err(Unreplayable::Foreign("event-runtime-app".into()))
    );
}

// 7. Expiry on the retry ladder.

#[tokio::test(start_paused = true)]
async fn an_event_that_expires_while_its_retry_waits_goes_to_its_handlers_dlq() {
    let runs = Runs::default();
    let app = TestApp::start(app(&runs)).await;
    // Alive at its first run and when its retry arrives, expired before the retry is due (5 s).
    let expires = chrono::Utc::now() + chrono::Duration::seconds(3);
    let mut bytes: Value = serde_json::from_slice(&record("exp-1", "s", &parcel(1, 0))).unwrap();
    bytes["expiration"] = json!(expires.to_rfc3339());
    app.produce("expiring", Some("u"), bytes.to_string())
        .await
        .unwrap();
    app.wait_idle_for(Duration::from_secs(60)).await;
    assert_eq!(runs.of("exp-1"), 1, "the retry did not run once expired");
    assert!(app.dead_letters("dlq").is_empty(), "not the app-wide DLQ");
    let letters = app.dead_letters("expiring-dlq");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].handler.as_deref(), Some("it::trust::expiring"));
    assert!(
        letters[0].reason.contains("expired"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].failures.len(), 1, "with the failure before it");
}

// 8. An empty token opens nothing.

#[tokio::test]
async fn an_empty_app_api_token_opens_nothing_and_refuses_to_start() {
    let app = App::with_handlers([])
        .unwrap()
        .with_app_api_token(Some(String::new()));
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| app.router()));
    assert!(refused.is_err(), "no router with an empty token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = App::with_handlers([])
        .unwrap()
        .with_app_api_token(Some(String::new()))
        .serve_on(listener, axum::Router::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("APP_API_TOKEN"), "{err}");
}

// 9. Bulk bodies are bounded.

#[tokio::test]
async fn a_bulk_body_is_capped_at_the_configured_total() {
    let runs = Runs::default();
    // Ten records of 1 MiB cannot fit 4 MiB: refused at start-up, not as a batch redelivered forever.
    let small = app(&runs).with_max_bulk_body_bytes(4 * 1024 * 1024);
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| small.router()));
    let message = refused
        .err()
        .and_then(|p| p.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(message.contains("EVENTS_MAX_BULK_BODY_BYTES"), "{message}");
    // With room for its batches, a body past the total is refused (413), never read whole.
    let app = app(&runs)
        .with_max_message_bytes(64 * 1024)
        .with_max_bulk_body_bytes(1024 * 1024);
    let body = vec![b' '; 1024 * 1024 + 1];
    let (code, _) = post(&app, "/_dispatch/kafka-pubsub/bulky", body).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
}

// Helpers.

async fn post(app: &App, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let req = Request::post(path)
        .header("content-type", "application/octet-stream")
        .body(body.into())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.router(), req).await.unwrap();
    let code = resp.status();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// An idempotency store that records the keys it is asked for, and refuses every claim with
/// `refuse` when set (as daprd answers a request it will never take).
#[derive(Clone, Default)]
struct Recording {
    keys: Arc<Mutex<Vec<String>>>,
    refuse: Option<u16>,
    inner: MemoryStore,
}

impl Recording {
    fn refusing(status: u16) -> Self {
        Recording {
            refuse: Some(status),
            ..Recording::default()
        }
    }
    fn keys(&self) -> Vec<String> {
        let mut keys = self.keys.lock().unwrap().clone();
        keys.dedup();
        keys
    }
}

impl IdempotencyStore for Recording {
    fn claim<'a>(
        &'a self,
        key: &'a str,
        lease: Duration,
    ) -> BoxFuture<'a, Result<Claim, StateError>> {
        self.keys.lock().unwrap().push(key.to_owned());
        match self.refuse {
            Some(status) => Box::pin(async move {
                Err(StateError {
                    store: "statestore".into(),
                    operation: "get",
                    key: key.to_owned(),
                    status: Some(status),
                    message: "refused".into(),
                    invalid_name: None,
                })
            }),
            None => self.inner.claim(key, lease),
        }
    }
    fn complete<'a>(
        &'a self,
        token: &'a ClaimToken,
        retention: Duration,
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.inner.complete(token, retention)
    }
    fn release<'a>(&'a self, token: &'a ClaimToken) -> BoxFuture<'a, Result<(), StateError>> {
        self.inner.release(token)
    }
}
