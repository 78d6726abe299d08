//! Retries: each schedule (delayed, exponential, inline) runs on time on tokio's paused clock, a
//! delayed retry survives an app restart; and the retry ladder: a redeploy with another
//! schedule, another retry mode, or without the handler strands no pending retry, and a delay
//! that is no tier is waited out exactly.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_runtime::__private::HandlerDef;
use event_runtime::retry::RetryMode;
use event_runtime::retry::{retry_topic, RETRY_TIERS};
use event_runtime::testing::TestApp;
use event_runtime::{event_handler, App, Attempt, Event, State};

use crate::ledger::{Doomed, Flaky, Ledger};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "invoice.issued", version = "1.0")]
pub struct InvoiceIssued {
    pub n: i64,
    pub user_id: String,
}

/// When each run started (tokio's clock, ms) and its attempt.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<Vec<(u64, u32)>>>);

impl Runs {
    fn all(&self) -> Vec<(u64, u32)> {
        self.0.lock().unwrap().clone()
    }
}

/// Fails its first attempt.
#[event_handler(topic = "invoices", retry = [300], dlq = "invoices-dlq")]
async fn on_invoice(
    _e: InvoiceIssued,
    Attempt(a): Attempt,
    State(r): State<Runs>,
) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    r.0.lock().unwrap().push((ms(started), a));
    anyhow::ensure!(a > 1, "first attempt fails");
    Ok(())
}

/// Another handler with delayed retries, so the app keeps its retry ladder without `on_invoice`.
#[event_handler(topic = "receipts", retry = [1])]
async fn on_receipt(_e: InvoiceIssued) {}

fn ms(t: tokio::time::Instant) -> u64 {
    // Relative to a fixed origin in the paused clock: only differences matter.
    static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
    t.saturating_duration_since(origin).as_millis() as u64
}

fn def(name: &str) -> &'static HandlerDef {
    event_runtime::__private::registered()
        .into_iter()
        .find(|h| h.name() == name)
        .expect("registered")
}

/// `on_invoice` with another schedule, as a redeploy would have it.
fn redeployed(retry: &'static [u64], mode: RetryMode) -> &'static HandlerDef {
    Box::leak(Box::new(def("on_invoice").retry(retry).retry_mode(mode)))
}

async fn first_attempt_failed(runs: &Runs) -> TestApp {
    let app = TestApp::start(
        App::with_handlers([def("on_invoice"), def("on_receipt")])
            .unwrap()
            .with_state(runs.clone()),
    )
    .await;
    let invoice = InvoiceIssued {
        n: 1,
        user_id: "u".into(),
    };
    app.publish("invoices", &invoice).await.unwrap();
    let ladder = retry_topic(
        &event_runtime::config::Config::from_env().unwrap().app_id,
        300,
    );
    tokio::time::timeout(Duration::from_secs(30), async {
        while app.published_to(&ladder).is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the retry is on the 300 s tier");
    app
}

#[tokio::test(start_paused = true)]
async fn a_pending_retry_runs_after_a_redeploy_with_another_schedule() {
    for (retry, mode) in [
        (&[60u64][..], RetryMode::Delayed),
        (&[5u64][..], RetryMode::Inline),
    ] {
        let runs = Runs::default();
        let app = first_attempt_failed(&runs).await;
        let app = app
            .restart(
                App::with_handlers([redeployed(retry, mode), def("on_receipt")])
                    .unwrap()
                    .with_state(runs.clone()),
            )
            .await;
        app.wait_idle().await;
        let all = runs.all();
        assert_eq!(
            all.iter().map(|r| r.1).collect::<Vec<_>>(),
            [1, 2],
            "{mode:?}"
        );
        assert_eq!((all[1].0 - all[0].0 + 500) / 1000, 300, "{mode:?}: {all:?}");
        assert!(app.dead_letters("invoices-dlq").is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_pending_retry_of_a_removed_handler_is_dead_lettered() {
    let runs = Runs::default();
    let app = first_attempt_failed(&runs).await;
    let app = app
        .restart(
            App::with_handlers([def("on_receipt")])
                .unwrap()
                .with_state(runs.clone()),
        )
        .await;
    app.wait_idle().await;
    assert_eq!(runs.all().len(), 1);
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].reason.contains("no longer has"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].event.topic, "invoices");
    assert_eq!(letters[0].attempts, 1);
}

#[event_handler(topic = "statements", retry = [47, 3601])]
async fn on_statement(
    _e: InvoiceIssued,
    Attempt(a): Attempt,
    State(r): State<Runs>,
) -> anyhow::Result<()> {
    r.0.lock()
        .unwrap()
        .push((ms(tokio::time::Instant::now()), a));
    anyhow::ensure!(a > 2, "the first two attempts fail");
    Ok(())
}

/// 47 s is 30 + 10 + 5 + 1 + 1 on the ladder, 3601 s is 3600 + 1: each hop held on its tier.
#[tokio::test(start_paused = true)]
async fn a_delay_that_is_no_tier_is_waited_out_exactly() {
    let runs = Runs::default();
    let app = TestApp::start(
        App::with_handlers([def("on_statement")])
            .unwrap()
            .with_state(runs.clone()),
    )
    .await;
    let s = InvoiceIssued {
        n: 2,
        user_id: "u".into(),
    };
    app.publish("statements", &s).await.unwrap();
    app.wait_idle().await;
    let all = runs.all();
    assert_eq!(all.iter().map(|r| r.1).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!((all[1].0 - all[0].0 + 500) / 1000, 47, "{all:?}");
    assert_eq!((all[2].0 - all[1].0 + 500) / 1000, 3601, "{all:?}");
    let app_id = event_runtime::config::Config::from_env().unwrap().app_id;
    for tier in [30, 10, 5, 1, 3600] {
        assert!(
            !app.published_to(&retry_topic(&app_id, tier)).is_empty(),
            "a hop on the {tier} s tier"
        );
    }
    assert_eq!(RETRY_TIERS.len(), 9);
}

#[event_handler(topic = "ledgers-long", retry = [45])]
async fn on_ledger_long(
    _e: InvoiceIssued,
    Attempt(a): Attempt,
    State(r): State<Runs>,
) -> anyhow::Result<()> {
    r.0.lock()
        .unwrap()
        .push((ms(tokio::time::Instant::now()), 100 + a));
    anyhow::ensure!(a > 1, "first attempt fails");
    Ok(())
}

#[event_handler(topic = "ledgers-short", retry = [30])]
async fn on_ledger_short(
    _e: InvoiceIssued,
    Attempt(a): Attempt,
    State(r): State<Runs>,
) -> anyhow::Result<()> {
    r.0.lock()
        .unwrap()
        .push((ms(tokio::time::Instant::now()), 200 + a));
    anyhow::ensure!(a > 1, "first attempt fails");
    Ok(())
}

/// Both retries start on the 30 s tier; the 45 s one, ahead on it, takes the 10 s tier after its
/// 30 s, so the one behind it runs on time, not 15 s late.
#[tokio::test(start_paused = true)]
async fn on_a_tier_no_retry_holds_up_a_later_one() {
    let runs = Runs::default();
    let app = TestApp::start(
        App::with_handlers([def("on_ledger_long"), def("on_ledger_short")])
            .unwrap()
            .with_state(runs.clone()),
    )
    .await;
    let e = InvoiceIssued {
        n: 3,
        user_id: "u".into(),
    };
    app.publish("ledgers-long", &e).await.unwrap();
    app.publish("ledgers-short", &e).await.unwrap();
    app.wait_idle().await;
    let at = |tag: u32| runs.all().iter().find(|r| r.1 == tag).unwrap().0;
    assert_eq!((at(102) - at(101) + 500) / 1000, 45);
    assert_eq!((at(202) - at(201) + 500) / 1000, 30, "{:?}", runs.all());
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
        let retry_topic = event_runtime::retry::retry_topic(
            &event_runtime::config::Config::from_env().unwrap().app_id,
            60,
        );
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
