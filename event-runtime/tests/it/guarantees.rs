//! The delivery guarantees, in-process on the embedded broker with tokio's paused clock (no real
//! sleeping): nothing lost, nothing applied twice, retries on schedule, DLQ with reasons.

#![allow(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, Attempt, Event, EventId, Outcome, Permanent, State};
use serde_json::json;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "acct.happened", version = "1.0")]
pub struct Happened {
    pub event_id: String,
    pub user_id: String,
    pub seq: u64,
}

/// What handlers applied, and when each run happened.
#[derive(Clone, Default)]
struct Ledger {
    applied: Arc<Mutex<BTreeMap<String, Vec<u64>>>>,
    times: Arc<Mutex<HashMap<String, Vec<tokio::time::Instant>>>>,
}

impl Ledger {
    fn apply(&self, e: &Happened) {
        self.applied
            .lock()
            .unwrap()
            .entry(e.user_id.clone())
            .or_default()
            .push(e.seq);
    }
    fn tick(&self, name: &str) {
        self.times
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .push(tokio::time::Instant::now());
    }
    /// When `name` ran, in milliseconds after its first run, on tokio's (paused) clock.
    fn times(&self, name: &str) -> Vec<u64> {
        let times = self.times.lock().unwrap();
        let runs = times.get(name).map(Vec::as_slice).unwrap_or_default();
        runs.iter()
            .map(|t| t.duration_since(runs[0]).as_millis() as u64)
            .collect()
    }
}

/// A deterministic pseudo-random number per (seq, attempt).
fn roll(seq: u64, attempt: u32) -> u64 {
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (attempt as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x % 100
}

fn decide(e: &Happened, attempt: u32, ledger: &Ledger) -> Result<(), event_runtime::BoxError> {
    if e.seq % 100 == 37 {
        return Err(Permanent::new(format!("seq {} can never be applied", e.seq)).into());
    }
    if roll(e.seq, attempt) < 5 {
        return Err(format!("transient failure of seq {} at attempt {attempt}", e.seq).into());
    }
    ledger.apply(e);
    Ok(())
}

#[event_handler(topic = "acct-inline", retry = [1, 1, 1, 1, 1, 1], retry_mode = "inline", idempotent)]
async fn acct_inline(
    e: Happened,
    Attempt(a): Attempt,
    State(l): State<Ledger>,
) -> Result<(), event_runtime::BoxError> {
    decide(&e, a, &l)
}

#[event_handler(topic = "acct-delayed", retry = [1, 2, 4, 8], idempotent)]
async fn acct_delayed(
    e: Happened,
    Attempt(a): Attempt,
    State(l): State<Ledger>,
) -> Result<(), event_runtime::BoxError> {
    decide(&e, a, &l)
}

async fn accounting(topic: &str, in_order: bool) {
    let ledger = Ledger::default();
    let app = TestApp::start(app!().with_state(ledger.clone())).await;
    let (users, per_user) = (100u64, 100u64);
    let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut permanent = Vec::new();
    for i in 0..per_user {
        for u in 0..users {
            let seq = i * users + u;
            let e = Happened {
                event_id: format!("ev-{seq}"),
                user_id: format!("user-{u}"),
                seq,
            };
            app.publish(topic, &e).await.unwrap();
            if seq % 20 == 3 {
                app.publish(topic, &e).await.unwrap(); // a duplicate delivery, same id
            }
            if seq % 100 == 37 {
                permanent.push(seq);
            } else {
                expected.entry(e.user_id.clone()).or_default().push(seq);
            }
        }
    }
    app.wait_idle().await;

    let applied = ledger.applied.lock().unwrap().clone();
    let letters = app.dead_letters("dlq");
    let dead: Vec<u64> = letters
        .iter()
        .map(|l| l.event.data["seq"].as_u64().unwrap())
        .collect();
    let mut applied_all: Vec<u64> = applied.values().flatten().copied().collect();
    applied_all.sort_unstable();
    let before = applied_all.len();
    applied_all.dedup();
    assert_eq!(before, applied_all.len(), "an event was applied twice");
    for seq in &dead {
        assert!(
            applied_all.binary_search(seq).is_err(),
            "seq {seq} both applied and dead-lettered"
        );
    }
    // Exact accounting: dead letters unique, disjoint from the applied events (above), and the
    // two together every event, each one once.
    let mut dead_unique = dead.clone();
    dead_unique.sort_unstable();
    dead_unique.dedup();
    assert_eq!(
        dead_unique.len(),
        dead.len(),
        "an event was dead-lettered twice"
    );
    let mut union: Vec<u64> = applied_all.iter().chain(&dead_unique).copied().collect();
    union.sort_unstable();
    assert_eq!(
        union,
        (0..users * per_user).collect::<Vec<_>>(),
        "every event applied once or in the DLQ"
    );
    for p in &permanent {
        let l = letters
            .iter()
            .find(|l| l.event.data["seq"] == *p)
            .expect("permanent failure dead-lettered");
        assert!(l.permanent && l.attempts == 1, "{l:?}");
        assert!(l.reason.contains("can never be applied"), "{}", l.reason);
        assert_eq!(
            l.handler
                .as_deref()
                .map(|h| h.ends_with(topic.replace('-', "_").as_str())),
            Some(true)
        );
    }
    if in_order {
        for (user, seqs) in &applied {
            let mut want = expected[user].clone();
            want.retain(|s| !dead.contains(s));
            assert_eq!(seqs, &want, "{user}'s events out of order");
        }
    }
    let skipped = app.runs().iter().filter(|r| r.outcome == "skipped").count();
    assert!(skipped > 0, "duplicates were delivered and skipped");
}

#[tokio::test(start_paused = true)]
async fn accounting_inline_exactly_once_in_order() {
    accounting("acct-inline", true).await;
}

#[tokio::test(start_paused = true)]
async fn accounting_delayed_exactly_once() {
    accounting("acct-delayed", false).await;
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "always.fails", version = "1.0", unkeyed)]
pub struct Doomed {
    pub n: u32,
}

#[event_handler(topic = "sched-a", retry = [30, 300, 1800])]
async fn sched_a(_e: Doomed, State(l): State<Ledger>) -> anyhow::Result<()> {
    l.tick("sched_a");
    anyhow::bail!("still broken")
}

#[event_handler(topic = "sched-b", retry = exponential(initial = 1, factor = 2, attempts = 10, cap = 512))]
async fn sched_b(_e: Doomed, State(l): State<Ledger>) -> anyhow::Result<()> {
    l.tick("sched_b");
    anyhow::bail!("still broken")
}

#[event_handler(topic = "sched-c", retry = [1, 2, 4, 8, 16], retry_mode = "inline")]
async fn sched_c(_e: Doomed, State(l): State<Ledger>) -> anyhow::Result<()> {
    l.tick("sched_c");
    anyhow::bail!("still broken")
}

async fn schedule(topic: &str, name: &str, want: &[u64]) {
    let ledger = Ledger::default();
    let app = TestApp::start(app!().with_state(ledger.clone())).await;
    app.publish(topic, &Doomed { n: 1 }).await.unwrap();
    app.wait_idle().await;
    let t = ledger.times(name);
    let gaps: Vec<u64> = t.windows(2).map(|w| (w[1] - w[0] + 500) / 1000).collect();
    assert_eq!(gaps, want, "{name}: seconds between attempts");
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 1);
    let l = &letters[0];
    assert_eq!(l.attempts as usize, want.len() + 1);
    assert_eq!(l.failures.len(), want.len() + 1);
    assert!(l.failures.iter().all(|f| f.error == "still broken"));
    assert!(!l.permanent);
    assert!(
        l.reason.starts_with(&format!(
            "retries exhausted after {} attempts",
            want.len() + 1
        )),
        "{}",
        l.reason
    );
    assert_eq!(
        l.event.topic, topic,
        "the original topic, not a retry topic"
    );
    assert!(l.first_failure_at < l.last_failure_at);
}

#[tokio::test(start_paused = true)]
async fn schedule_30_300_1800_delayed() {
    schedule("sched-a", "sched_a", &[30, 300, 1800]).await;
}

#[tokio::test(start_paused = true)]
async fn schedule_exponential_to_512_delayed() {
    schedule(
        "sched-b",
        "sched_b",
        &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn schedule_1_to_16_inline() {
    schedule("sched-c", "sched_c", &[1, 2, 4, 8, 16]).await;
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "flaky.once", version = "1.0")]
pub struct Flaky {
    pub user_id: String,
}

#[event_handler(topic = "restart-topic", retry = [60])]
async fn flaky_once(_e: Flaky, Attempt(a): Attempt, State(l): State<Ledger>) -> anyhow::Result<()> {
    l.tick("flaky_once");
    anyhow::ensure!(a > 1, "first attempt fails");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn delayed_retry_survives_an_app_restart() {
    let ledger = Ledger::default();
    let app = TestApp::start(app!().with_state(ledger.clone())).await;
    app.publish(
        "restart-topic",
        &Flaky {
            user_id: "u".into(),
        },
    )
    .await
    .unwrap();
    // Let the first attempt fail and the retry be scheduled in the broker.
    tokio::time::timeout(Duration::from_secs(30), async {
        let retry_topic = event_runtime::retry::retry_topic(&event_runtime::config::app_id(), 60);
        while app.published_to(&retry_topic).is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("retry scheduled");
    // The app goes away with the retry pending, and a new process starts.
    let app = app.restart(app!().with_state(ledger.clone())).await;
    app.wait_idle().await;
    let runs = app.runs_of("flaky_once");
    assert_eq!(
        runs.iter()
            .map(|r| (r.attempt, r.outcome.as_str()))
            .collect::<Vec<_>>(),
        [(1, "retry"), (2, "success")]
    );
    let t = ledger.times("flaky_once");
    assert_eq!((t[1] - t[0] + 500) / 1000, 60);
    assert!(app.dead_letters("dlq").is_empty());
}

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
        assert_eq!(l.event.source, event_runtime::config::app_id());
        assert_eq!(l.event.pubsub, "kafka-pubsub");
    }
    assert_eq!(app.runs_of("dropper")[0].outcome, "drop");
}

#[event_handler(topic = "given-up", retry = [1, 1])]
async fn gives_up(_e: Doomed) -> Outcome {
    Outcome::dead_letter("this one is hopeless")
}

#[tokio::test(start_paused = true)]
async fn an_explicit_dead_letter_skips_the_retries() {
    let app = TestApp::start(app!().with_state(Ledger::default())).await;
    app.publish("given-up", &Doomed { n: 4 }).await.unwrap();
    app.wait_idle().await;
    assert_eq!(app.runs_of("gives_up").len(), 1, "no retry");
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].permanent && letters[0].attempts == 1,
        "{:?}",
        letters[0]
    );
    assert!(
        letters[0].reason.contains("this one is hopeless"),
        "{}",
        letters[0].reason
    );
}

/// Posts `body` to `route` of an app whose sidecar cannot be reached; Dapr's answer.
async fn answer_without_a_sidecar(route: &str, body: serde_json::Value) -> serde_json::Value {
    let app = app!()
        .with_state(Ledger::default())
        .with_signing_key("a secret of sixteen bytes or more")
        .with_dapr_client(event_runtime::dapr::DaprClient::new(
            "http://127.0.0.1:9",
            None,
        ));
    let req = axum::http::Request::post(route)
        .header("content-type", "application/cloudevents+json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.router(), req).await.unwrap();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_cannot_be_scheduled_answers_retry() {
    // First attempt panics -> a delayed retry must be scheduled -> publishing fails -> RETRY.
    let body =
        json!({"specversion":"1.0","id":"x","type":"always.fails","source":"s","data":{"n":1}});
    let answer = answer_without_a_sidecar("/events/panics/panicking", body).await;
    assert_eq!(answer["status"], "RETRY");
}

#[event_handler(topic = "doomed-for-good")]
async fn doomed_for_good(_e: Doomed) -> Result<(), Permanent> {
    Err(Permanent::new("never"))
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_that_cannot_be_published_answers_retry() {
    // A permanent failure must be dead-lettered; the sidecar is unreachable, so the broker keeps
    // the event (RETRY), for a dead letter and for a record that is no CloudEvent alike.
    let body =
        json!({"specversion":"1.0","id":"y","type":"always.fails","source":"s","data":{"n":2}});
    let answer = answer_without_a_sidecar("/events/doomed-for-good/doomed_for_good", body).await;
    assert_eq!(answer["status"], "RETRY");
    let answer = answer_without_a_sidecar(
        "/_dispatch/kafka-pubsub/doomed-for-good",
        json!("not a CloudEvent"),
    )
    .await;
    assert_eq!(answer["status"], "RETRY");
}

#[derive(Clone, Default)]
struct Gate(Arc<tokio::sync::Notify>, Arc<Mutex<u32>>);

#[event_handler(topic = "dupes", idempotent)]
async fn slow_once(_e: Flaky, EventId(_id): EventId, State(g): State<Gate>) {
    *g.1.lock().unwrap() += 1;
    g.0.notified().await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_duplicates_run_the_handler_once() {
    let gate = Gate::default();
    let app = TestApp::start(
        app!()
            .with_state(gate.clone())
            .with_state(Ledger::default()),
    )
    .await;
    let body = json!({"specversion":"1.0","id":"same","type":"flaky.once","source":"s","data":{"user_id":"u"}}).to_string();
    let first = {
        let router = app.router();
        let body = body.clone();
        tokio::spawn(async move {
            let req = axum::http::Request::post("/events/dupes/slow_once")
                .body(axum::body::Body::from(body))
                .unwrap();
            tower::ServiceExt::oneshot(router, req)
                .await
                .unwrap()
                .status()
        })
    };
    while *gate.1.lock().unwrap() == 0 {
        tokio::task::yield_now().await;
    }
    let (_, second) = app.post("/events/dupes/slow_once", body.clone()).await;
    assert_eq!(
        second["status"], "RETRY",
        "a duplicate while the first runs asks for redelivery"
    );
    gate.0.notify_waiters();
    assert_eq!(first.await.unwrap(), 200);
    let (_, third) = app.post("/events/dupes/slow_once", body).await;
    assert_eq!(third["status"], "SUCCESS");
    assert_eq!(*gate.1.lock().unwrap(), 1, "the handler ran once");
    assert_eq!(
        app.runs_of("slow_once")
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
        ["success", "skipped"]
    );
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

#[event_handler(topic = "replayable", retry = [1])]
async fn fails_until_fixed(e: Flaky, State(fixed): State<Fixed>) -> anyhow::Result<()> {
    anyhow::ensure!(*fixed.0.lock().unwrap(), "not fixed yet for {}", e.user_id);
    Ok(())
}

#[derive(Clone, Default)]
struct Fixed(Arc<Mutex<bool>>);

#[tokio::test(start_paused = true)]
async fn dead_letters_are_replayed_to_their_original_topic() {
    let fixed = Fixed::default();
    let app = TestApp::start(
        app!()
            .with_state(fixed.clone())
            .with_state(Ledger::default()),
    )
    .await;
    app.publish(
        "replayable",
        &Flaky {
            user_id: "a".into(),
        },
    )
    .await
    .unwrap();
    app.publish(
        "replayable",
        &Flaky {
            user_id: "b".into(),
        },
    )
    .await
    .unwrap();
    app.wait_idle().await;
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 2);
    *fixed.0.lock().unwrap() = true;
    // A replay keeps the partition key (the user) of each event.
    let mut keys: Vec<Option<String>> = letters
        .iter()
        .map(|l| l.replay_event("me").partition_key)
        .collect();
    keys.sort();
    assert_eq!(keys, [Some("a".to_owned()), Some("b".to_owned())]);

    use event_runtime::dlq::{replay, ReplayFilter};
    let by_handler = ReplayFilter {
        handler: Some("fails_until_fixed".into()),
        ..Default::default()
    };
    let none = ReplayFilter {
        event_type: Some("other.type".into()),
        ..Default::default()
    };
    assert_eq!(replay(&app.publisher(), &letters, &none).await.matched, 0);
    let future = ReplayFilter {
        since: Some("2999-01-01T00:00:00Z".into()),
        ..Default::default()
    };
    assert_eq!(replay(&app.publisher(), &letters, &future).await.matched, 0);
    let report = replay(&app.publisher(), &letters, &by_handler).await;
    assert_eq!(
        (report.matched, report.replayed, report.failed.len()),
        (2, 2, 0)
    );
    app.wait_idle().await;
    let successes: Vec<_> = app
        .runs_of("fails_until_fixed")
        .into_iter()
        .filter(|r| r.outcome == "success")
        .collect();
    assert_eq!(successes.len(), 2, "both replayed events handled");
    let mut replayed_ids: Vec<&str> = successes.iter().map(|r| r.event_id.as_str()).collect();
    let mut original_ids: Vec<&str> = letters.iter().map(|l| l.event.id.as_str()).collect();
    replayed_ids.sort_unstable();
    original_ids.sort_unstable();
    assert_eq!(
        replayed_ids, original_ids,
        "replayed with their original ids"
    );
    assert_eq!(app.dead_letters("dlq").len(), 2, "no new dead letters");
}
