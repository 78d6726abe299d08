//! `concurrency = N`: a handler runs at most N deliveries at once, in lanes by partition key;
//! the events of one key run in the order they arrived, other keys run beside them, and a
//! delivery whose lane is busy waits (its answer delayed, not dropped), up to a bound.
//!
//! No sleeps: deliveries are sent one by one, each once the previous one is in the pipeline
//! (the in-flight gauge), and held handlers are released by hand.

#![allow(missing_docs)]

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use event_runtime::testing::TestApp;
use event_runtime::{event_handler, App, Event, Metrics, State};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "step.done", version = "1.0")]
pub struct Step {
    pub user_id: String,
    pub n: u32,
    /// Held until the test opens its gate.
    pub hold: bool,
}

/// What the handlers report, and the gates that hold them.
#[derive(Clone)]
struct Lab {
    started: mpsc::UnboundedSender<String>,
    gates: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<(String, u32)>>>,
}

impl Lab {
    fn new() -> (Lab, mpsc::UnboundedReceiver<String>) {
        let (started, rx) = mpsc::unbounded_channel();
        let lab = Lab {
            started,
            gates: Arc::default(),
            running: Arc::default(),
            most: Arc::default(),
            log: Arc::default(),
        };
        (lab, rx)
    }

    fn gate(&self, id: &str) -> Arc<Notify> {
        let mut gates = self.gates.lock().unwrap();
        gates.entry(id.to_owned()).or_default().clone()
    }

    fn open(&self, id: &str) {
        self.gate(id).notify_one();
    }

    async fn run(&self, step: Step) {
        let id = format!("{}{}", step.user_id, step.n);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        self.log
            .lock()
            .unwrap()
            .push((step.user_id.clone(), step.n));
        let _ = self.started.send(id.clone());
        if step.hold {
            self.gate(&id).notified().await;
        } else {
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[event_handler(topic = "steps", route = "/two-lanes", concurrency = 2)]
async fn two_lanes(step: Step, State(lab): State<Lab>) {
    lab.run(step).await;
}

#[event_handler(topic = "steps-three", route = "/three-lanes", concurrency = 3)]
async fn three_lanes(step: Step, State(lab): State<Lab>) {
    lab.run(step).await;
}

#[event_handler(topic = "steps-one", route = "/one-lane", concurrency = 1, timeout = 1)]
async fn one_lane(step: Step, State(lab): State<Lab>) {
    lab.run(step).await;
}

/// The lane a key takes among `n`: std's `DefaultHasher` over the key (docs/handlers.md, "Concurrency").
fn lane(key: &str, n: u64) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish() % n
}

/// A key whose lane among `n` differs from `key`'s.
fn other_lane(key: &str, n: u64) -> String {
    (0..)
        .map(|i| format!("k{i}-"))
        .find(|k| lane(k, n) != lane(key, n))
        .unwrap()
}

fn step(user: &str, n: u32, hold: bool) -> Value {
    json!({
        "specversion": "1.0", "id": format!("{user}{n}"), "source": "test", "type": "step.done",
        "datacontenttype": "application/json",
        "data": {"user_id": user, "n": n, "hold": hold},
    })
}

/// Sends one delivery in the background, once the previous ones are in the pipeline; returns
/// its answer's status.
async fn send(
    app: &Arc<TestApp>,
    metrics: &Metrics,
    path: &'static str,
    body: Value,
    key: Option<&str>,
) -> tokio::task::JoinHandle<Value> {
    let before = metrics.in_flight_now();
    let mut req = Request::post(path).header("content-type", "application/cloudevents+json");
    if let Some(key) = key {
        req = req.header("__key", key);
    }
    let req = req.body(Body::from(body.to_string())).unwrap();
    let app = app.clone();
    let answer = tokio::spawn(async move { app.request(req).await.1 });
    // Arrived: counted in flight (waiting for its lane, or running).
    tokio::time::timeout(Duration::from_secs(10), async {
        while metrics.in_flight_now() <= before {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the delivery reaches the pipeline");
    answer
}

async fn start() -> (
    Arc<TestApp>,
    Arc<Metrics>,
    Lab,
    mpsc::UnboundedReceiver<String>,
) {
    let (lab, started) = Lab::new();
    let app = app!().with_state(lab.clone());
    let metrics = app.metrics();
    let app = TestApp::start(app).await;
    (Arc::new(app), metrics, lab, started)
}

#[tokio::test]
async fn one_key_waits_for_its_lane_while_another_key_runs_beside_it() {
    let (app, metrics, lab, mut started) = start().await;
    let a = "user-a";
    let b = other_lane(a, 2);
    let a1 = send(&app, &metrics, "/two-lanes", step(a, 1, true), Some(a)).await;
    assert_eq!(started.recv().await.unwrap(), "user-a1");
    // The same key, then another: the second key runs while the first key's next event waits.
    let a2 = send(&app, &metrics, "/two-lanes", step(a, 2, true), Some(a)).await;
    let b1 = send(&app, &metrics, "/two-lanes", step(&b, 1, true), Some(&b)).await;
    assert_eq!(started.recv().await.unwrap(), format!("{b}1"));
    assert_eq!(lab.running.load(Ordering::SeqCst), 2, "a1 and b1 overlap");
    assert!(started.try_recv().is_err(), "a2 waits behind a1");
    assert!(!a2.is_finished(), "a2's answer is delayed, not given");
    lab.open("user-a1");
    assert_eq!(a1.await.unwrap(), json!({"status": "SUCCESS"}));
    assert_eq!(started.recv().await.unwrap(), "user-a2");
    lab.open("user-a2");
    lab.open(&format!("{b}1"));
    assert_eq!(a2.await.unwrap(), json!({"status": "SUCCESS"}));
    assert_eq!(b1.await.unwrap(), json!({"status": "SUCCESS"}));
}

#[tokio::test]
async fn interleaved_keys_keep_their_order_and_never_exceed_n_lanes() {
    let (app, metrics, lab, _started) = start().await;
    let users = ["u1", "u2", "u3", "u4", "u5", "u6"];
    // Every event held, so that all of them are in the pipeline at once.
    let mut answers = Vec::new();
    for n in 1..=4 {
        for user in users {
            // The key from the data's `user_id` (no Kafka key): the fallback.
            answers.push(send(&app, &metrics, "/three-lanes", step(user, n, true), None).await);
        }
    }
    assert_eq!(metrics.in_flight_now(), 24);
    // Release in reverse order of arrival: only the order the lanes impose remains.
    for n in (1..=4).rev() {
        for user in users {
            lab.open(&format!("{user}{n}"));
        }
    }
    for answer in answers {
        assert_eq!(answer.await.unwrap(), json!({"status": "SUCCESS"}));
    }
    let log = lab.log.lock().unwrap().clone();
    assert_eq!(log.len(), 24);
    for user in users {
        let order: Vec<u32> = log.iter().filter(|(u, _)| u == user).map(|e| e.1).collect();
        assert_eq!(
            order,
            [1, 2, 3, 4],
            "{user}'s events ran in the order they arrived"
        );
    }
    let most = lab.most.load(Ordering::SeqCst);
    assert!(
        (2..=3).contains(&most),
        "at most 3 at once, and more than one: {most}"
    );
}

#[tokio::test]
async fn a_delivery_that_waits_past_the_bound_answers_retry_and_runs_nothing() {
    let (app, metrics, lab, mut started) = start().await;
    // One lane, runs of at most 1 s: a third delivery waits behind two runs that time out.
    let first = send(&app, &metrics, "/one-lane", step("k", 1, true), None).await;
    assert_eq!(started.recv().await.unwrap(), "k1");
    let second = send(&app, &metrics, "/one-lane", step("k", 2, true), None).await;
    let third = send(&app, &metrics, "/one-lane", step("k", 3, true), None).await;
    assert_eq!(third.await.unwrap(), json!({"status": "RETRY"}));
    for answer in [first, second] {
        // Timed out with no retries left: dead-lettered, so DROP.
        assert_eq!(answer.await.unwrap(), json!({"status": "DROP"}));
    }
    let ran: Vec<u32> = lab.log.lock().unwrap().iter().map(|e| e.1).collect();
    assert_eq!(ran, [1, 2], "the third never ran");
}

#[test]
fn the_manifests_cap_daprd_at_the_sum_of_the_handlers_lanes() {
    let app = app!();
    // 2 + 3 + 1: daprd's cap is app-wide, and each handler runs its lanes on its own.
    let first = app.manifests().lines().next().unwrap().to_owned();
    assert_eq!(
        first,
        "# Annotate the app's Deployment (pod template): dapr.io/app-max-concurrency: \"6\""
    );
    let three = event_runtime::__private::registered()
        .into_iter()
        .filter(|h| h.name() == "three_lanes");
    let app = App::with_handlers(three).unwrap();
    assert!(app
        .manifests()
        .contains("dapr.io/app-max-concurrency: \"3\""));
}
