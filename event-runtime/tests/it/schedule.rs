//! Scheduled events: once at a time, every period, cancelled; on the embedded broker's clock
//! (tokio's paused time: a week passes in milliseconds), and through a stand-in sidecar's Jobs
//! API, whose trigger the app checks before it publishes.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::{Path, State};
use axum::routing::{delete, post};
use axum::{Json, Router};
use event_runtime::dapr::DaprClient;
use event_runtime::testing::TestApp;
use event_runtime::{event_handler, App, Event, EventId, Schedule};
use serde_json::{json, Value};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "reminder.due", version = "1.0")]
pub struct ReminderDue {
    pub task_id: i64,
    pub user_id: String,
}

/// Each reminder handled: its id and tokio's clock, in s since the test began.
#[derive(Clone, Default)]
struct Fired(Arc<Mutex<Vec<(String, u64)>>>);

static START: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();

#[event_handler(topic = "reminders", retry = [30], dlq = "reminders-dlq", idempotent)]
async fn on_reminder(
    _r: ReminderDue,
    EventId(id): EventId,
    event_runtime::State(fired): event_runtime::State<Fired>,
) {
    let since = START.get().map_or(0, |s| s.elapsed().as_secs());
    fired.0.lock().unwrap().push((id, since));
}

fn reminder(task_id: i64) -> ReminderDue {
    ReminderDue {
        task_id,
        user_id: "u1".into(),
    }
}

async fn start(fired: &Fired) -> TestApp {
    START.get_or_init(tokio::time::Instant::now);
    TestApp::start(app!().with_state(fired.clone())).await
}

/// Lets `d` pass on the paused clock, then waits until what fired was handled.
async fn pass(app: &TestApp, d: Duration) {
    tokio::time::sleep(d).await;
    app.wait_idle().await;
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test(start_paused = true)]
async fn a_reminder_a_week_ahead_fires_once_on_time() {
    let fired = Fired::default();
    let app = start(&fired).await;
    let begun = START.get().unwrap().elapsed().as_secs();
    let due = SystemTime::now() + 7 * DAY;
    let job = app
        .publisher()
        .publish_at("reminders", &reminder(7), due)
        .await
        .unwrap();
    assert!(job.starts_with("at-"), "{job}");
    pass(&app, 7 * DAY - Duration::from_secs(5)).await;
    assert!(fired.0.lock().unwrap().is_empty(), "not before it is due");
    pass(&app, Duration::from_secs(10)).await;
    pass(&app, 7 * DAY).await;
    let all = fired.0.lock().unwrap().clone();
    assert_eq!(all.len(), 1, "{all:?}");
    let at = all[0].1 - begun;
    assert!(
        (7 * 86_400 - 5..=7 * 86_400 + 5).contains(&at),
        "fired at {at} s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_recurring_schedule_fires_its_times_each_with_its_own_id() {
    let fired = Fired::default();
    let app = start(&fired).await;
    let every = Schedule::every(Duration::from_secs(3600)).times(3);
    app.publisher()
        .schedule("hourly-7", "reminders", &reminder(7), every)
        .await
        .unwrap();
    pass(&app, 10 * Duration::from_secs(3600)).await;
    let all = fired.0.lock().unwrap().clone();
    assert_eq!(all.len(), 3, "three times, then no more: {all:?}");
    let ids: std::collections::BTreeSet<_> = all.iter().map(|f| &f.0).collect();
    assert_eq!(ids.len(), 3, "each firing is its own event: {all:?}");
    assert!(all.iter().all(|f| f.0.contains('@')));
    assert!(all.windows(2).all(|w| w[1].1 - w[0].1 == 3600), "{all:?}");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_or_replaced_job_fires_nothing_more() {
    let fired = Fired::default();
    let app = start(&fired).await;
    let publisher = app.publisher();
    let job = publisher
        .publish_at("reminders", &reminder(1), SystemTime::now() + DAY)
        .await
        .unwrap();
    publisher.cancel_schedule(&job).await.unwrap();
    publisher.cancel_schedule(&job).await.unwrap();
    // Scheduling the same name again replaces it: one firing, of the second.
    let daily = || Schedule::every(DAY).times(1);
    publisher
        .schedule("r-2", "reminders", &reminder(2), daily())
        .await
        .unwrap();
    publisher
        .schedule("r-2", "reminders", &reminder(3), daily())
        .await
        .unwrap();
    pass(&app, 3 * DAY).await;
    let all = fired.0.lock().unwrap().clone();
    assert_eq!(all.len(), 1, "{all:?}");
    let runs = app.runs_of("on_reminder");
    assert_eq!(runs[0].data["task_id"], 3);
    assert!(publisher.cancel_schedule("no/such").await.is_err());
}

/// A stand-in sidecar: keeps each job's body, and each publish.
#[derive(Clone, Default)]
struct Sidecar {
    jobs: Arc<Mutex<Vec<(String, Value)>>>,
    published: Arc<Mutex<Vec<Value>>>,
}

async fn sidecar() -> (String, Sidecar) {
    let seen = Sidecar::default();
    let router =
        Router::new()
            .route(
                "/v1.0-alpha1/jobs/{name}",
                post(
                    |State(s): State<Sidecar>,
                     Path(name): Path<String>,
                     Json(body): Json<Value>| async move {
                        s.jobs.lock().unwrap().push((name, body));
                        axum::http::StatusCode::NO_CONTENT
                    },
                ),
            )
            .route(
                "/v1.0-alpha1/jobs/{name}",
                delete(|| async { axum::http::StatusCode::NO_CONTENT }),
            )
            .route(
                "/v1.0/publish/{pubsub}/{topic}",
                post(
                    |State(s): State<Sidecar>,
                     axum::extract::RawQuery(query): axum::extract::RawQuery,
                     body: axum::body::Bytes| async move {
                        let data = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let published = json!({"data": data, "query": query.unwrap_or_default()});
                        s.published.lock().unwrap().push(published);
                        axum::http::StatusCode::NO_CONTENT
                    },
                ),
            )
            .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}"), seen)
}

fn dapr_app(base: &str) -> App {
    app!()
        .with_dapr_client(DaprClient::new(base, None))
        .with_signing_key("a key every replica shares")
}

async fn trigger(app: &App, name: &str, body: &Value) -> u16 {
    use tower::ServiceExt as _;
    let request = axum::http::Request::post(format!("/job/{name}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let Ok(resp) = app.router().oneshot(request).await;
    resp.status().as_u16()
}

#[tokio::test]
async fn on_dapr_a_job_carries_its_signed_event_and_a_forged_trigger_publishes_nothing() {
    let (base, seen) = sidecar().await;
    let app = dapr_app(&base);
    let publisher = app.publisher();
    let due = SystemTime::now() + Duration::from_secs(5);
    let name = publisher
        .publish_at("reminders", &reminder(7), due)
        .await
        .unwrap();
    let every = Schedule::cron("0 0 9 * * *").unwrap().times(2);
    publisher
        .schedule("daily-7", "reminders", &reminder(7), every)
        .await
        .unwrap();
    let jobs = seen.jobs.lock().unwrap().clone();
    assert_eq!(jobs.len(), 2);
    let (once, daily) = (&jobs[0].1, &jobs[1].1);
    assert_eq!(jobs[0].0, name);
    assert!(once["dueTime"].as_str().unwrap().ends_with("ms"), "{once}");
    assert_eq!(once["overwrite"], true);
    assert_eq!(once["failurePolicy"]["constant"]["maxRetries"], 120);
    assert_eq!(daily["schedule"], "0 0 9 * * *");
    assert_eq!(daily["repeats"], 2);

    // daprd's trigger: the data as it was given. The event goes out once per trigger, with the
    // event's own id (a trigger sent twice is the same event).
    assert_eq!(trigger(&app, &name, &once["data"]).await, 200);
    assert_eq!(trigger(&app, &name, &once["data"]).await, 200);
    let published = seen.published.lock().unwrap().clone();
    assert_eq!(published.len(), 2, "{published:?}");
    assert_eq!(published[0]["data"]["task_id"], 7, "{published:?}");
    let query = published[0]["query"].as_str().unwrap();
    assert!(query.contains("cloudevent.id="), "{query}");
    assert_eq!(
        published[0]["query"], published[1]["query"],
        "the same id, twice"
    );

    // Forged: another name, another content, another key, no job at all.
    let before = seen.published.lock().unwrap().len();
    assert_eq!(trigger(&app, "daily-7", &once["data"]).await, 403);
    let mut changed = once["data"].clone();
    changed["job"] = json!(changed["job"]
        .as_str()
        .unwrap()
        .replace("reminders", "payments"));
    assert_eq!(trigger(&app, &name, &changed).await, 403);
    let other = App::with_handlers([])
        .unwrap()
        .with_dapr_client(DaprClient::new(&base, None))
        .with_signing_key("another key");
    let name2 = other
        .publisher()
        .publish_at("reminders", &reminder(8), due)
        .await
        .unwrap();
    let foreign = seen.jobs.lock().unwrap().last().unwrap().1["data"].clone();
    assert_eq!(trigger(&app, &name2, &foreign).await, 403);
    assert_eq!(trigger(&app, &name, &json!({"x": 1})).await, 400);
    assert_eq!(
        seen.published.lock().unwrap().len(),
        before,
        "nothing forged went out"
    );
}

#[tokio::test]
async fn on_dapr_scheduling_needs_a_key_every_replica_shares() {
    let (base, _seen) = sidecar().await;
    let app = app!().with_dapr_client(DaprClient::new(&base, None));
    let err = app
        .publisher()
        .publish_at("reminders", &reminder(7), SystemTime::now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("EVENTS_SIGNING_KEY"), "{err}");
}
