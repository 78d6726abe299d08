//! The service in-process on its embedded broker, and the scenarios both databases run.
#![allow(dead_code)] // each module uses part of it

use axum::body::Body;
use axum::http::Request;
use event_runtime::testing::TestApp;
use event_runtime::{App, Mode};
use example_todo::db::Db;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tower::ServiceExt as _;

/// The service: its events on a `TestApp`, its API routes publishing into the same broker.
pub struct Service {
    pub events: TestApp,
    pub api: axum::Router,
    pub db: Db,
    pub updates: example_todo::Updates,
}

/// A fresh in-memory SQLite database.
pub async fn memory_db() -> Db {
    Db::connect("sqlite::memory:")
        .await
        .expect("in-memory SQLite")
}

pub async fn start() -> Service {
    start_on(memory_db().await).await
}

/// The service with open ops routes, whatever the environment says.
pub async fn start_on(db: Db) -> Service {
    start_with_ops_token(db, None).await
}

/// The service with its ops routes (`/dlq`, `/dlq/replay`) behind `ops_token`.
pub async fn start_with_ops_token(db: Db, ops_token: Option<&str>) -> Service {
    let s = example_todo::Service::with_ops_token(
        App::new().with_mode(Mode::Embedded),
        db,
        ops_token.map(str::to_owned),
    );
    Service {
        events: TestApp::start(s.app).await,
        api: s.routes,
        db: s.db,
        updates: s.updates,
    }
}

/// Sends a request to `api`; answers the status and the JSON body (`null` if none).
pub async fn call_router(
    api: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let req = Request::builder().method(method).uri(uri);
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    send_router(api, req).await
}

/// Sends `req` to `api`; answers the status and the JSON body (`null` if none).
pub async fn send_router(api: &axum::Router, req: Request<Body>) -> (u16, Value) {
    let resp = api.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Polls `probe` until it answers `Some`, or panics naming `what` after `deadline`.
pub async fn wait_until<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < end, "not within {deadline:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh directory under the system's temporary one, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The variables that change what the built binary does; [`binary`] removes them from what it
/// inherits, so only a test's own settings count.
pub const SERVICE_VARS: [&str; 11] = [
    "ADMIN_API_TOKEN",
    "APP_API_TOKEN",
    "DATABASE_URL",
    "TODO_URL",
    "APP_PORT",
    "EVENTS_MODE",
    "DAPR_HTTP_PORT",
    "DAPR_HTTP_ENDPOINT",
    "DAPR_API_TOKEN",
    "EVENTS_PUBSUB",
    "RUST_LOG",
];

/// The built `example-todo` binary with `args`, run in `dir`, with none of [`SERVICE_VARS`]
/// but `env`.
pub fn binary(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_example-todo"));
    cmd.args(args).current_dir(dir).kill_on_drop(true);
    for var in SERVICE_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The built binary serving (`example-todo` without arguments) on a free loopback port, on its
/// embedded broker, configured only by `env`; killed when dropped.
pub struct Running {
    pub base: String,
    pub client: reqwest::Client,
    child: tokio::process::Child,
    log: PathBuf,
}

impl Running {
    /// Starts it in `dir` (its working directory, where its log goes too) and waits until
    /// `GET /healthz` answers.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Running {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let log = dir.join(format!("service-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = binary(dir, &[], env);
        cmd.env("APP_PORT", &port)
            .env("EVENTS_MODE", "embedded")
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let mut running = Running {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            child: cmd.spawn().expect("the example-todo binary starts"),
            log,
        };
        let health = format!("{}/healthz", running.base);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = running.child.try_wait().unwrap() {
                panic!("the service exited at start ({status}):\n{}", running.log());
            }
            if let Ok(resp) = running.client.get(&health).send().await {
                if resp.status().is_success() {
                    return running;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no /healthz in 60 s:\n{}",
                running.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` with the `Authorization: Bearer` token, if any: the status and the JSON body.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("the service answers");
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// `POST path` with a JSON body: the status and the JSON answer.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("the service answers");
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// Stops it and waits until it is gone.
    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }
}

impl Service {
    /// Sends a request to the API; answers the status and the JSON body (`null` if none).
    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
        call_router(&self.api, method, uri, body).await
    }

    pub async fn send(&self, req: Request<Body>) -> (u16, Value) {
        send_router(&self.api, req).await
    }

    /// `POST /tasks`, expecting 201; answers the task.
    pub async fn create(&self, body: Value) -> Value {
        let (code, task) = self.call("POST", "/tasks", Some(body)).await;
        assert_eq!(code, 201, "{task}");
        task
    }

    pub async fn audited(&self, task_id: i64) -> Vec<String> {
        self.db
            .audit_log()
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.task_id == task_id)
            .map(|a| a.event_type)
            .collect()
    }
}

/// Task ids are per database; user ids keep the scenarios apart on a shared one (PostgreSQL).
pub fn user(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().to_string()[..8])
}

/// Create, complete a recurring task: the events, the next occurrence, the audit log.
pub async fn recurring_task_scenario(s: &Service) {
    let u = user("recurring");
    let task = s
        .create(
            json!({"user_id": u, "title": "water plants", "recurrence": "weekly",
                       "due_at": "2026-12-01T09:00:00Z", "remind_at": "2026-12-01T08:00:00Z"}),
        )
        .await;
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["completed"], false);
    let (code, done) = s.call("POST", &format!("/tasks/{id}/complete"), None).await;
    assert_eq!((code, &done["completed"]), (200, &json!(true)), "{done}");
    s.events.wait_idle().await;

    let published: Vec<_> = s
        .events
        .published_to("task-events")
        .into_iter()
        .filter(|e| e.partition_key.as_deref() == Some(u.as_str()))
        .collect();
    let types: Vec<&str> = published.iter().map(|e| e.ty.as_str()).collect();
    assert_eq!(
        types,
        ["task.created", "task.completed", "task.created"],
        "the next occurrence is announced too"
    );
    for e in &published {
        for field in [
            "event_id",
            "event_type",
            "event_version",
            "task_id",
            "user_id",
            "timestamp",
            "payload",
        ] {
            assert!(e.data.get(field).is_some(), "{field} missing in {}", e.data);
        }
        assert_eq!(e.data["event_type"], e.ty.as_str());
        assert_eq!(e.data["event_version"], "1.0");
        assert_eq!(e.id, e.data["event_id"], "CloudEvent id is the event_id");
    }
    let next =
        s.db.next_occurrence_of(id)
            .await
            .unwrap()
            .expect("next occurrence");
    assert!(!next.completed);
    assert_eq!(next.title, "water plants");
    assert_eq!(
        next.due_at.unwrap().to_rfc3339(),
        "2026-12-08T09:00:00+00:00"
    );
    assert_eq!(
        next.remind_at.unwrap().to_rfc3339(),
        "2026-12-08T08:00:00+00:00"
    );
    assert_eq!(s.audited(id).await, ["task.created", "task.completed"]);
    assert_eq!(s.audited(next.id).await, ["task.created"]);
    let (_, list) = s.call("GET", &format!("/tasks?user_id={u}"), None).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // Completing it again is a no-op: no second event.
    let (code, _) = s.call("POST", &format!("/tasks/{id}/complete"), None).await;
    assert_eq!(code, 200);
    s.events.wait_idle().await;
    let completions = s
        .events
        .published_to("task-events")
        .iter()
        .filter(|e| e.ty == "task.completed" && e.data["task_id"] == id)
        .count();
    assert_eq!(completions, 1);
}

/// Read, replace, delete; each change is an event, audited once.
pub async fn crud_scenario(s: &Service) {
    let u = user("crud");
    let task = s.create(json!({"user_id": u, "title": "draft"})).await;
    let id = task["id"].as_i64().unwrap();
    let (code, got) = s.call("GET", &format!("/tasks/{id}"), None).await;
    assert_eq!((code, &got), (200, &task));
    let (code, put) = s
        .call("PUT", &format!("/tasks/{id}"),
              Some(json!({"title": "final", "due_at": "2027-01-01T00:00:00Z", "recurrence": "monthly"})))
        .await;
    assert_eq!(code, 200, "{put}");
    assert_eq!(
        (put["title"].as_str(), put["recurrence"].as_str()),
        (Some("final"), Some("monthly"))
    );
    assert_eq!(put["due_at"], "2027-01-01T00:00:00Z");
    let (code, _) = s.call("DELETE", &format!("/tasks/{id}"), None).await;
    assert_eq!(code, 204);
    let (code, _) = s.call("GET", &format!("/tasks/{id}"), None).await;
    assert_eq!(code, 404);
    s.events.wait_idle().await;
    assert_eq!(
        s.audited(id).await,
        ["task.created", "task.updated", "task.deleted"]
    );
    let updated = s
        .events
        .published_to("task-events")
        .into_iter()
        .find(|e| e.ty == "task.updated" && e.data["task_id"] == id)
        .unwrap();
    assert_eq!(updated.data["payload"]["title"], "final");
}

/// `remind_at` this many milliseconds from now, as the API takes it.
pub fn in_ms(ms: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::milliseconds(ms))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The `reminder.due` events published for task `id`.
pub fn reminders_of(s: &Service, id: i64) -> Vec<event_runtime::OutgoingEvent> {
    s.events
        .published_to("reminders")
        .into_iter()
        .filter(|e| e.data["task_id"] == id)
        .collect()
}

/// Waits until task `id` has had `n` reminders published, then until they were handled.
pub async fn wait_reminders(s: &Service, id: i64, n: usize) {
    wait_until(Duration::from_secs(30), "the reminder fires", || async {
        (reminders_of(s, id).len() >= n).then_some(())
    })
    .await;
    s.events.wait_idle().await;
}

/// A task's reminder is a scheduled event: not before it is due, then once, on time; the
/// handler records the notification once and marks the task. A new `remind_at` moves it.
pub async fn reminder_scenario(s: &Service) {
    let u = user("remind");
    let due = in_ms(1500);
    let task = s
        .create(json!({"user_id": u, "title": "call mum", "remind_at": due}))
        .await;
    let id = task["id"].as_i64().unwrap();
    s.events.wait_idle().await;
    assert!(reminders_of(s, id).is_empty(), "not before it is due");
    wait_reminders(s, id, 1).await;
    let fired = chrono::Utc::now();
    let reminders = reminders_of(s, id);
    assert_eq!(reminders.len(), 1);
    assert_eq!(reminders[0].ty, "reminder.due");
    assert_eq!(reminders[0].partition_key.as_deref(), Some(u.as_str()));
    assert_eq!(reminders[0].data["remind_at"], due.as_str());
    let late = fired - due.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    assert!(late < chrono::Duration::seconds(10), "fired {late} late");
    let (code, notes) = s
        .call("GET", &format!("/notifications?user_id={u}"), None)
        .await;
    assert_eq!(code, 200);
    let notes = notes.as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["message"], "Reminder: call mum");
    let (_, t) = s.call("GET", &format!("/tasks/{id}"), None).await;
    assert!(t["reminder_sent_at"].is_string(), "marked sent: {t}");

    // A new remind_at moves the reminder: it fires again, at the new time, once.
    let moved = in_ms(1500);
    s.call(
        "PUT",
        &format!("/tasks/{id}"),
        Some(json!({"title": "call mum", "remind_at": moved})),
    )
    .await;
    wait_reminders(s, id, 2).await;
    let reminders = reminders_of(s, id);
    assert_eq!(reminders.len(), 2);
    assert_eq!(reminders[1].data["remind_at"], moved.as_str());
}

/// A handler that fails permanently: the event is in /dlq with its failure; fix, replay, done.
pub async fn dlq_scenario(s: &Service) {
    let u = user("dlq");
    let task = s
        .create(json!({"user_id": u, "title": "fail: audit me"}))
        .await;
    let id = task["id"].as_i64().unwrap();
    s.events.wait_idle().await;
    assert!(s.audited(id).await.is_empty());
    let (code, letters) = s.call("GET", "/dlq?pending=true", None).await;
    assert_eq!(code, 200);
    let mine: Vec<&Value> = letters
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["event"]["data"]["task_id"] == id)
        .collect();
    assert_eq!(mine.len(), 1, "{letters}");
    let l = mine[0];
    assert_eq!(l["event"]["type"], "task.created");
    assert_eq!(l["event"]["topic"], "task-events");
    assert!(l["handler"].as_str().unwrap().ends_with("audit_log"), "{l}");
    assert_eq!(l["permanent"], true);
    assert_eq!(l["replayed"], false);
    assert_eq!(l["verified"], true, "this app signed it: {l}");
    assert!(
        l["failures"][0]["error"]
            .as_str()
            .unwrap()
            .contains("fail:"),
        "{l}"
    );

    // Replaying a letter whose cause is still there: it fails and comes back, pending again.
    let filter = json!({"event_type": "task.created", "handler": "audit_log"});
    let (code, report) = s.call("POST", "/dlq/replay", Some(filter.clone())).await;
    assert_eq!(code, 200, "{report}");
    assert!(report["matched"].as_u64().unwrap() >= 1);
    s.events.wait_idle().await;
    let (_, letters) = s.call("GET", "/dlq?pending=true", None).await;
    let again = letters
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"]["data"]["task_id"] == id)
        .unwrap()
        .clone();
    assert_eq!(again["times_dead_lettered"], 2);
    assert_eq!(again["verified"], true, "{again}");

    // Fix the cause (the update itself is audited), replay: the original event is audited.
    let (code, _) = s
        .call(
            "PUT",
            &format!("/tasks/{id}"),
            Some(json!({"title": "audit me"})),
        )
        .await;
    assert_eq!(code, 200);
    let (code, report) = s.call("POST", "/dlq/replay", Some(filter)).await;
    assert_eq!(code, 200);
    assert!(report["replayed"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(report["failed"], json!([]));
    s.events.wait_idle().await;
    let mut audited = s.audited(id).await;
    audited.sort();
    assert_eq!(audited, ["task.created", "task.updated"]);
    let (_, all) = s.call("GET", "/dlq", None).await;
    let mine = all
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["event"]["data"]["task_id"] == id)
        .unwrap()
        .clone();
    assert_eq!(mine["replayed"], true, "{mine}");
    assert!(mine["replayed_at"].is_string());
    let (_, pending) = s.call("GET", "/dlq?pending=true", None).await;
    assert!(!pending
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["event"]["data"]["task_id"] == id));
}

/// The audit log and the notifications are unique on `event_id`: the same event stored twice is
/// one row (the second store answers `false`).
pub async fn unique_event_scenario(db: &Db) {
    let u = user("unique");
    let entry = example_todo::db::AuditEntry {
        event_id: format!("evt-{u}"),
        event_type: "task.created".into(),
        task_id: 7,
        user_id: u.clone(),
        occurred_at: "2026-01-01T00:00:00Z".into(),
    };
    assert!(
        db.audit(&entry).await.unwrap(),
        "the first store records it"
    );
    // The same event again, as a redelivery brings it (even with another body).
    let again = example_todo::db::AuditEntry {
        occurred_at: "2026-01-01T00:00:01Z".into(),
        ..entry.clone()
    };
    assert!(
        !db.audit(&again).await.unwrap(),
        "the second store is refused"
    );
    let rows: Vec<_> = db
        .audit_log()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.event_id == entry.event_id)
        .collect();
    assert_eq!(rows, [entry], "one audit row, the first");

    let note = example_todo::db::Notification {
        event_id: format!("reminder-{u}"),
        task_id: 7,
        user_id: u.clone(),
        message: "Reminder: once".into(),
        created_at: chrono::Utc::now(),
    };
    assert!(db.record_notification(&note).await.unwrap());
    let again = example_todo::db::Notification {
        message: "Reminder: twice".into(),
        ..note.clone()
    };
    assert!(!db.record_notification(&again).await.unwrap());
    let notes = db.notifications_of(&u).await.unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].message, "Reminder: once");
}

/// Completing or deleting a task before its reminder is due cancels the reminder: it never
/// fires, while another task's, due after them, does. So does moving a reminder off a task.
pub async fn cancelled_reminder_scenario(s: &Service) {
    let u = user("cancel");
    let mut ids = Vec::new();
    for (title, ms) in [
        ("done first", 1500),
        ("deleted", 1500),
        ("unset", 1500),
        ("kept", 3000),
    ] {
        let task = s
            .create(json!({"user_id": u, "title": title, "remind_at": in_ms(ms)}))
            .await;
        ids.push(task["id"].as_i64().unwrap());
    }
    s.events.wait_idle().await;
    let (code, _) = s
        .call("POST", &format!("/tasks/{}/complete", ids[0]), None)
        .await;
    assert_eq!(code, 200);
    let (code, _) = s.call("DELETE", &format!("/tasks/{}", ids[1]), None).await;
    assert_eq!(code, 204);
    s.call(
        "PUT",
        &format!("/tasks/{}", ids[2]),
        Some(json!({"title": "unset"})),
    )
    .await;
    s.events.wait_idle().await;
    wait_reminders(s, ids[3], 1).await;
    for (id, what) in ids[..3]
        .iter()
        .zip(["completed", "deleted", "without remind_at"])
    {
        assert!(
            reminders_of(s, *id).is_empty(),
            "the {what} task's reminder fired"
        );
    }
    let (_, notes) = s
        .call("GET", &format!("/notifications?user_id={u}"), None)
        .await;
    assert_eq!(notes.as_array().unwrap().len(), 1, "{notes}");
}

/// Two replays started together (two operators, or a retried request) over the same pending
/// dead letters: each letter is claimed by one of them and re-published once.
///
/// The cause is fixed before the replays, so the replayed events succeed: a letter that failed
/// again would come back pending, and a replay that started later could rightly replay it again.
pub async fn concurrent_replay_scenario(s: &Service) {
    let u = user("replay-race");
    let rounds = 3;
    let per_round = 4;
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for i in 0..per_round {
            let task = s
                .create(json!({"user_id": u, "title": format!("fail: race {round}.{i}")}))
                .await;
            tasks.push(task["id"].as_i64().unwrap());
        }
        s.events.wait_idle().await;
        let event_ids: Vec<String> = tasks
            .iter()
            .map(|id| {
                s.events
                    .published_to("task-events")
                    .into_iter()
                    .find(|e| e.ty == "task.created" && e.data["task_id"] == *id)
                    .expect("the task's task.created")
                    .id
            })
            .collect();
        for id in &tasks {
            let rename = json!({"title": format!("race {round}, task {id}")});
            let (code, _) = s.call("PUT", &format!("/tasks/{id}"), Some(rename)).await;
            assert_eq!(code, 200);
        }
        s.events.wait_idle().await;

        let filter = json!({"event_type": "task.created", "handler": "audit_log"});
        let (a, b) = tokio::join!(
            s.call("POST", "/dlq/replay", Some(filter.clone())),
            s.call("POST", "/dlq/replay", Some(filter.clone()))
        );
        assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
        s.events.wait_idle().await;

        let published = s.events.published_to("task-events");
        for id in &event_ids {
            let times = published.iter().filter(|e| e.id == *id).count();
            assert_eq!(
                times, 2,
                "event {id}: published {times} times, not once by the outbox and once by one replay ({a:?}, {b:?})"
            );
        }
        let letters = s.db.dead_letters(false).await.unwrap();
        for id in &event_ids {
            let l = letters.iter().find(|l| l.letter.event.id == *id).unwrap();
            assert_eq!((l.times_dead_lettered, l.replayed), (1, true), "{}", l.id);
        }
        for id in &tasks {
            let mut audited = s.audited(*id).await;
            audited.sort();
            assert_eq!(audited, ["task.created", "task.updated"], "task {id}");
        }
    }
}
