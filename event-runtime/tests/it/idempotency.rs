//! Idempotency, in-process on the embedded broker with tokio's paused clock: every event applied
//! exactly once (in order where the retries are inline) through transient and permanent
//! failures, and concurrent duplicates run the handler once.

#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, Attempt, EventId, Permanent, State};
use serde_json::json;

use crate::ledger::*;

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
