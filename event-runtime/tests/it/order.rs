//! Per-key order across delayed retries: while a key's event waits on the retry ladder, the
//! key's later events wait too, and other keys flow; what a dead letter does to the key's later
//! events (release, hold until the replay); the `unordered` opt-out; a restart in between.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use event_runtime::__private::HandlerDef;
use event_runtime::dlq::ReplayFilter;
use event_runtime::testing::TestApp;
use event_runtime::{event_handler, App, Attempt, Event, Outcome, State};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "step.taken", version = "1.0")]
pub struct Step {
    pub user_id: String,
    pub n: u32,
    /// How many of its first attempts fail (a number past the schedule fails for good).
    pub failing: u32,
}

/// Each run that succeeded: (user, n, attempt, tokio's clock in s since the test began); and
/// whether the cause of the failures is fixed (then nothing fails).
#[derive(Clone, Default)]
struct Applied(Arc<Mutex<Vec<Run>>>, Arc<AtomicBool>);

type Run = (String, u32, u32, u64);

impl Applied {
    fn of(&self, user: &str) -> Vec<u32> {
        let all = self.0.lock().unwrap();
        all.iter().filter(|a| a.0 == user).map(|a| a.1).collect()
    }

    fn at(&self, user: &str, n: u32) -> u64 {
        let all = self.0.lock().unwrap();
        all.iter()
            .find(|a| a.0 == user && a.1 == n)
            .expect("applied")
            .3
    }
}

fn run(step: &Step, attempt: u32, applied: &Applied) -> Outcome {
    if attempt <= step.failing && !applied.1.load(Ordering::SeqCst) {
        return Outcome::retry(format!("attempt {attempt} of step {} fails", step.n));
    }
    let since = START.get().map_or(0, |s| s.elapsed().as_secs());
    let mut all = applied.0.lock().unwrap();
    all.push((step.user_id.clone(), step.n, attempt, since));
    Outcome::Success
}

static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();

#[event_handler(topic = "steps", retry = [30, 300], dlq = "steps-dlq")]
async fn on_step(s: Step, Attempt(a): Attempt, State(applied): State<Applied>) -> Outcome {
    run(&s, a, &applied)
}

#[event_handler(topic = "held-steps", retry = [30], dlq = "steps-dlq", on_dead_letter = "hold")]
async fn on_held_step(s: Step, Attempt(a): Attempt, State(applied): State<Applied>) -> Outcome {
    run(&s, a, &applied)
}

#[event_handler(topic = "loose-steps", retry = [30], dlq = "steps-dlq", unordered)]
async fn on_loose_step(s: Step, Attempt(a): Attempt, State(applied): State<Applied>) -> Outcome {
    run(&s, a, &applied)
}

fn def(name: &str) -> &'static HandlerDef {
    event_runtime::__private::registered()
        .into_iter()
        .find(|h| h.name() == name)
        .expect("registered")
}

async fn start(handler: &str, applied: &Applied) -> TestApp {
    START.get_or_init(tokio::time::Instant::now);
    TestApp::start(
        App::with_handlers([def(handler)])
            .unwrap()
            .with_state(applied.clone()),
    )
    .await
}

fn step(user: &str, n: u32, failing: u32) -> Step {
    Step {
        user_id: user.into(),
        n,
        failing,
    }
}

#[tokio::test(start_paused = true)]
async fn a_users_events_keep_their_order_across_delayed_retries_while_others_flow() {
    let applied = Applied::default();
    let app = start("on_step", &applied).await;
    let begun = START.get().unwrap().elapsed().as_secs();
    // u1's first event fails twice (30 s, then 300 s on the ladder); u2's run meanwhile.
    for s in [
        step("u1", 1, 2),
        step("u2", 1, 0),
        step("u1", 2, 0),
        step("u2", 2, 0),
        step("u1", 3, 0),
        step("u2", 3, 0),
    ] {
        app.publish("steps", &s).await.unwrap();
    }
    app.wait_idle().await;
    assert_eq!(applied.of("u1"), [1, 2, 3], "u1 in its order");
    assert_eq!(applied.of("u2"), [1, 2, 3]);
    // u2 did not wait for u1's retries; u1's later events waited for its first.
    assert_eq!(applied.at("u2", 3) - begun, 0);
    assert!(applied.at("u1", 1) - begun >= 330);
    assert!(applied.at("u1", 2) >= applied.at("u1", 1));
    let attempts: Vec<u32> = app.runs_of("on_step").iter().map(|r| r.attempt).collect();
    assert_eq!(
        attempts.len(),
        8,
        "u1's first ran three times, each other event once"
    );
    assert!(app.dead_letters("steps-dlq").is_empty());
    let metrics = metrics(&app).await;
    for family in ["event_order_parked_total", "event_order_released_total"] {
        let line = format!("{family}{{handler=\"it::order::on_step\"}} 2");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

/// What `/metrics` says.
async fn metrics(app: &TestApp) -> String {
    let request = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let Ok(resp) = tower::ServiceExt::oneshot(app.router(), request).await;
    let body = http_body_util::BodyExt::collect(resp.into_body()).await;
    String::from_utf8_lossy(&body.unwrap().to_bytes()).into_owned()
}

#[tokio::test(start_paused = true)]
async fn a_dead_lettered_event_releases_its_keys_later_events_by_default() {
    let applied = Applied::default();
    let app = start("on_step", &applied).await;
    let begun = START.get().unwrap().elapsed().as_secs();
    for s in [step("u1", 1, 9), step("u1", 2, 0), step("u1", 3, 1)] {
        app.publish("steps", &s).await.unwrap();
    }
    app.wait_idle().await;
    assert_eq!(applied.of("u1"), [2, 3], "released in their order");
    assert!(
        applied.at("u1", 2) - begun >= 330,
        "released once the first was dead-lettered, after its retries"
    );
    let letters = app.dead_letters("steps-dlq");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn held_events_wait_for_the_dead_letters_replay_then_run_in_order() {
    let applied = Applied::default();
    let app = start("on_held_step", &applied).await;
    for s in [step("u1", 1, 2), step("u1", 2, 0), step("u2", 1, 0)] {
        app.publish("held-steps", &s).await.unwrap();
    }
    app.wait_idle().await;
    assert!(applied.of("u1").is_empty(), "held behind the dead letter");
    assert_eq!(applied.of("u2"), [1], "another key flows");
    let letters = app.dead_letters("steps-dlq");
    assert_eq!(letters.len(), 1);

    // The cause is fixed, and the operator replays the letter: it runs, then u1's later event.
    applied.1.store(true, Ordering::SeqCst);
    let replayed =
        event_runtime::dlq::replay(&app.publisher(), &letters, &ReplayFilter::default()).await;
    assert_eq!(replayed.replayed, 1, "{replayed:?}");
    app.wait_idle().await;
    assert_eq!(applied.of("u1"), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn unordered_handlers_run_a_keys_later_events_at_once() {
    let applied = Applied::default();
    let app = start("on_loose_step", &applied).await;
    for s in [step("u1", 1, 1), step("u1", 2, 0)] {
        app.publish("loose-steps", &s).await.unwrap();
    }
    app.wait_idle().await;
    assert_eq!(applied.of("u1"), [2, 1], "the opt-out gives order up");
}

/// A restart of the app, also one that redeploys the handler with another retry schedule, finds
/// the parked events where they were, and runs them in order.
#[tokio::test(start_paused = true)]
async fn parked_events_survive_a_restart_and_a_redeploy_with_another_schedule() {
    let redeployed: &'static HandlerDef = Box::leak(Box::new(def("on_step").retry(&[5, 5, 5])));
    for after in [def("on_step"), redeployed] {
        let applied = Applied::default();
        let app = start("on_step", &applied).await;
        for s in [step("u1", 1, 2), step("u1", 2, 0), step("u1", 3, 0)] {
            app.publish("steps", &s).await.unwrap();
        }
        // Wait until u1's later events are parked (acknowledged, not run), then restart.
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while app.runs_of("on_step").is_empty() || app.broker().pending() > 1 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("u1's first failed and its later events were parked");
        assert!(applied.of("u1").is_empty());
        let app = app
            .restart(
                App::with_handlers([after])
                    .unwrap()
                    .with_state(applied.clone()),
            )
            .await;
        app.wait_idle().await;
        assert_eq!(
            applied.of("u1"),
            [1, 2, 3],
            "{:?}",
            after.registration()["retry"]
        );
    }
}
