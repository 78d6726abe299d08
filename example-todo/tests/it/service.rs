//! The todo service end to end in-process, on SQLite: REST calls publish the reference's task
//! events, the embedded broker delivers them through the Dapr routes, the handlers run.

use crate::common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use common::{start, start_on, user};
use event_runtime::dapr::DaprClient;
use event_runtime::App;
use example_todo::db::Db;
use serde_json::{json, Value};

#[tokio::test]
async fn creating_and_completing_a_recurring_task_runs_the_handlers() {
    let s = start().await;
    common::recurring_task_scenario(&s).await;
    assert_eq!(s.events.runs_of("on_task_completed").len(), 1);
}

#[tokio::test]
async fn tasks_are_read_replaced_and_deleted() {
    common::crud_scenario(&start().await).await;
}

#[tokio::test]
async fn a_due_reminder_is_published_once_and_notified() {
    let s = start().await;
    common::reminder_scenario(&s).await;
    let runs = s.events.runs_of("on_reminder_due");
    assert!(runs.iter().all(|r| r.outcome == "success"), "{runs:?}");
}

#[tokio::test]
async fn a_failing_handler_dead_letters_and_the_replay_brings_it_back() {
    common::dlq_scenario(&start().await).await;
}

#[tokio::test]
async fn two_replays_started_together_publish_each_letter_once() {
    common::concurrent_replay_scenario(&start().await).await;
}

/// A letter on the DLQ topic that this app did not sign (changed, or unsigned) is kept under a
/// row of its own, marked unverified: it never replaces the stored letter whose id it reuses, a
/// replay refuses it unless told `allow_unverified`, and `GET /dlq` says which is which.
#[tokio::test]
async fn a_dead_letter_that_does_not_verify_never_replaces_a_stored_one() {
    let s = start().await;
    let task = s
        .create(json!({"user_id": user("forged"), "title": "fail: audit me"}))
        .await;
    let task_id = task["id"].as_i64().unwrap();
    s.events.wait_idle().await;
    let stored = s.db.dead_letters(false).await.unwrap();
    let genuine = stored
        .iter()
        .find(|l| l.letter.event.data["task_id"] == task_id)
        .unwrap()
        .clone();

    // The same ids, other content: the signature no longer matches. And one with no signature.
    let mut changed = genuine.letter.clone();
    changed.event.record = None;
    changed.event.data = json!({"task_id": task_id, "planted": true});
    changed.reason = "changed".into();
    let mut unsigned = changed.clone();
    unsigned.signature = None;
    unsigned.app = None;
    unsigned.reason = "unsigned".into();
    for letter in [&changed, &unsigned, &changed] {
        s.events.publish("dlq", letter).await.unwrap();
    }
    s.events.wait_idle().await;

    let rows: Vec<_> =
        s.db.dead_letters(false)
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.letter.event.id == genuine.letter.event.id)
            .collect();
    let kept = rows.iter().find(|l| l.id == genuine.id).unwrap();
    assert_eq!(kept, &genuine, "the stored letter is untouched");
    let apart: Vec<_> = rows.iter().filter(|l| l.id != genuine.id).collect();
    assert_eq!(apart.len(), 2, "one row per distinct letter: {rows:#?}");
    for l in &apart {
        assert!(
            l.id.starts_with(&format!("{}:unverified:", genuine.id)),
            "{}",
            l.id
        );
    }

    let (code, listed) = s.call("GET", "/dlq", None).await;
    assert_eq!(code, 200);
    let listed: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["event"]["id"] == genuine.letter.event.id.as_str())
        .collect();
    let shown = |reason: &str| {
        *listed
            .iter()
            .find(|l| l["reason"] == reason)
            .unwrap_or_else(|| panic!("no letter {reason:?} in {listed:?}"))
    };
    let genuine_reason = genuine.letter.reason.as_str();
    assert_eq!(shown(genuine_reason)["verified"], true);
    assert_eq!(shown("changed")["verified"], false);
    assert!(shown("changed")["unverified_because"]
        .as_str()
        .unwrap()
        .contains("signature does not match"));
    assert_eq!(shown("unsigned")["verified"], false);
    assert!(shown("unsigned")["unverified_because"]
        .as_str()
        .unwrap()
        .contains("not signed"));

    // A replay publishes the genuine letter only, and leaves the others pending.
    let filter = json!({"handler": "audit_log"});
    let (code, report) = s.call("POST", "/dlq/replay", Some(filter)).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(
        (&report["matched"], &report["replayed"]),
        (&json!(3), &json!(1)),
        "{report}"
    );
    assert_eq!(report["refused"].as_array().unwrap().len(), 2, "{report}");
    s.events.wait_idle().await;
    let published = s.events.published_to("task-events");
    let planted = published
        .iter()
        .filter(|e| e.data.get("planted").is_some())
        .count();
    assert_eq!(planted, 0, "nothing unverified was published");
    for l in &apart {
        assert!(is_pending_row(&s.db, &l.id).await, "{} stays pending", l.id);
    }

    // The operator's override publishes them.
    let filter = json!({"handler": "audit_log", "allow_unverified": true});
    let (code, report) = s.call("POST", "/dlq/replay", Some(filter)).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["refused"], json!([]), "{report}");
    s.events.wait_idle().await;
    let planted = s
        .events
        .published_to("task-events")
        .iter()
        .filter(|e| e.data.get("planted").is_some())
        .count();
    assert_eq!(planted, 2, "the two unverified letters, on request");
}

async fn is_pending_row(db: &Db, row: &str) -> bool {
    let letters = db.dead_letters(true).await.unwrap();
    letters.iter().any(|l| l.id == row)
}

/// Whether the dead letter of task `id` is pending (not replayed).
async fn is_pending(db: &Db, id: i64) -> bool {
    let letters = db.dead_letters(false).await.unwrap();
    let l = letters
        .iter()
        .find(|l| l.letter.event.data["task_id"] == id)
        .expect("the task's dead letter");
    !l.replayed
}

/// A replay that cannot publish (its sidecar is unreachable) gives back the letters it claimed:
/// they are pending again, and the next replay publishes them.
#[tokio::test]
async fn a_replay_that_cannot_publish_leaves_its_letters_pending() {
    let s = start().await;
    let task = s
        .create(json!({"user_id": user("unpublished"), "title": "fail: audit me"}))
        .await;
    s.events.wait_idle().await;
    let id = task["id"].as_i64().unwrap();
    assert!(is_pending(&s.db, id).await);

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let sidecar = DaprClient::new(&format!("http://{closed}"), None);
    let dapr = example_todo::Service::with_ops_token(
        App::new().with_dapr_client(sidecar),
        s.db.clone(),
        Some("t0ken".into()),
    );
    let req = Request::post("/dlq/replay")
        .header("authorization", "Bearer t0ken")
        .body(Body::empty())
        .unwrap();
    let (code, report) = common::send_router(&dapr.routes, req).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(
        (&report["matched"], &report["replayed"]),
        (&json!(1), &json!(0)),
        "{report}"
    );
    assert_eq!(report["failed"].as_array().unwrap().len(), 1, "{report}");
    assert!(is_pending(&s.db, id).await, "given back: pending again");

    let (code, report) = s.call("POST", "/dlq/replay", None).await;
    assert_eq!((code, &report["replayed"]), (200, &json!(1)), "{report}");
}

#[test]
fn handlers_follow_the_reference_retry_schedules() {
    let app = App::new();
    let schedule = |name: &str| {
        app.handlers()
            .iter()
            .find(|h| h.name() == name)
            .unwrap_or_else(|| panic!("no handler {name}"))
            .retry()
            .to_vec()
    };
    assert_eq!(
        schedule("on_reminder_due"),
        [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    );
    assert_eq!(schedule("on_task_completed"), [30, 300, 1800]);
    assert_eq!(schedule("audit_log"), [1, 2, 4, 8, 16]);
    let topics: Vec<(String, String)> = app
        .subscriptions()
        .iter()
        .map(|s| (s.pubsubname.clone(), s.topic.clone()))
        .filter(|(_, t)| !t.contains(".retry."))
        .collect();
    for want in [
        ("kafka-pubsub", "task-events"),
        ("kafka-pubsub", "reminders"),
        ("kafka-fanout", "task-updates"),
        ("kafka-pubsub", "dlq"),
    ] {
        assert!(
            topics.iter().any(|(p, t)| p == want.0 && t == want.1),
            "{want:?} not subscribed: {topics:?}"
        );
    }
}

#[tokio::test]
async fn a_redelivered_completion_creates_no_second_occurrence() {
    let s = start().await;
    let u = user("redeliver");
    let task = s
        .create(json!({"user_id": u, "title": "t", "recurrence": "daily"}))
        .await;
    s.call("POST", &format!("/tasks/{}/complete", task["id"]), None)
        .await;
    s.events.wait_idle().await;
    let completed = s
        .events
        .published_to("task-events")
        .into_iter()
        .find(|e| e.ty == "task.completed")
        .unwrap();
    s.events.send(completed).await.unwrap();
    s.events.wait_idle().await;
    let (_, list) = s.call("GET", &format!("/tasks?user_id={u}"), None).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "original + one occurrence"
    );
    assert_eq!(
        s.events
            .runs_of("on_task_completed")
            .iter()
            .map(|r| r.outcome)
            .collect::<Vec<_>>(),
        ["success", "skipped"]
    );
    // The database guards it too, whatever the idempotency store says.
    let original =
        s.db.task(task["id"].as_i64().unwrap())
            .await
            .unwrap()
            .unwrap();
    let (again, created) = s.db.create_next_occurrence(&original).await.unwrap();
    assert!(!created);
    assert_eq!(Some(again.id), list[1]["id"].as_i64());
}

/// The idempotency claim lives in the state store, outside the handler's transaction: a crash
/// after the commit, before the claim completes, runs the handler again. The inbox claim, in
/// the handler's transaction, makes that second run write nothing.
#[tokio::test]
async fn a_completion_run_twice_past_its_idempotency_claim_recurs_once() {
    use event_runtime::{Attempt, EventId, State};
    use example_todo::events::TaskCompleted;
    let s = start().await;
    let u = user("inbox");
    let task = s
        .create(json!({"user_id": u, "title": "t", "recurrence": "daily"}))
        .await;
    let id = task["id"].as_i64().unwrap();
    // Completed: the handler ran once, through a delivery.
    complete_and_settle(&s, id).await;
    let before = s.db.outbox().stats().await.unwrap();
    let completed = TaskCompleted::of(&s.db.task(id).await.unwrap().unwrap());
    for attempt in 1..=2 {
        example_todo::handlers::on_task_completed(
            completed.clone(),
            State(s.db.clone()),
            s.events.publisher(),
            EventId(completed.change.event_id.clone()),
            Attempt(attempt),
        )
        .await
        .unwrap();
    }
    let after = s.db.outbox().stats().await.unwrap();
    assert_eq!(
        after.pending + after.sent,
        before.pending + before.sent,
        "no second task.created for the occurrence: {before:?} -> {after:?}"
    );
    let (_, list) = s.call("GET", &format!("/tasks?user_id={u}"), None).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
}

/// Marks task `id` done through the API and waits until its events are handled.
async fn complete_and_settle(s: &common::Service, id: i64) {
    s.events.wait_idle().await;
    let (code, _) = s.call("POST", &format!("/tasks/{id}/complete"), None).await;
    assert_eq!(code, 200);
    s.events.wait_idle().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let s = start().await;
    let long = "x".repeat(501);
    let cases = [
        ("POST", "/tasks", Some(json!({"title": "no user"})), 422),
        (
            "POST",
            "/tasks",
            Some(json!({"user_id": 5, "title": "x"})),
            422,
        ),
        (
            "POST",
            "/tasks",
            Some(json!({"user_id": "u", "title": ""})),
            422,
        ),
        (
            "POST",
            "/tasks",
            Some(json!({"user_id": "u", "title": long})),
            422,
        ),
        (
            "POST",
            "/tasks",
            Some(json!({"user_id": "u", "title": "x", "recurrence": "hourly"})),
            422,
        ),
        (
            "POST",
            "/tasks",
            Some(json!({"user_id": "u", "title": "x", "remind_at": "tomorrow"})),
            422,
        ),
        (
            "POST",
            "/tasks",
            Some(json!({"user_id": "u", "title": "x", "due_at": 5})),
            422,
        ),
        ("POST", "/tasks/999/complete", None, 404),
        ("GET", "/tasks/999", None, 404),
        ("GET", "/tasks/abc", None, 400),
        ("PUT", "/tasks/999", Some(json!({"title": "x"})), 404),
        ("DELETE", "/tasks/999", None, 404),
        ("GET", "/tasks", None, 400),
        ("GET", "/tasks/stream", None, 400),
        ("GET", "/notifications", None, 400),
        (
            "POST",
            "/dlq/replay",
            Some(json!({"since": "yesterday"})),
            422,
        ),
        ("POST", "/dlq/replay", Some(json!({"typo": "x"})), 422),
    ];
    for (method, uri, body, want) in cases {
        let (code, answer) = s.call(method, uri, body.clone()).await;
        assert_eq!(code, want, "{method} {uri} {body:?}: {answer}");
        assert!(answer["error"].is_string(), "{method} {uri}: {answer}");
    }
    let task = s.create(json!({"user_id": "owner", "title": "x"})).await;
    let uri = format!("/tasks/{}", task["id"]);
    for (body, want) in [
        (json!({"recurrence": "daily"}), 422),            // no title
        (json!({"title": "x", "user_id": "thief"}), 422), // owner cannot change
        (json!({"title": ["x"]}), 422),
    ] {
        let (code, answer) = s.call("PUT", &uri, Some(body.clone())).await;
        assert_eq!(code, want, "PUT {body}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let (code, answer) = s
        .send(
            Request::post("/tasks")
                .header("content-type", "application/json")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].is_string());
}

async fn consume_fixture(fixture: &str, event_type: &str) {
    let s = start().await;
    let u = user("python");
    let task = s.create(json!({"user_id": u, "title": "t"})).await;
    s.events.wait_idle().await;
    let id = task["id"].as_i64().unwrap();
    let body = fixture
        .replace("user-456", &u)
        .replace("\\\"task_id\\\": 123", &format!("\\\"task_id\\\": {id}"));
    assert!(
        body.contains(&u) && !body.contains("123"),
        "fixture rewritten: {body}"
    );
    let (_, answer) = s
        .events
        .post("/_dispatch/kafka-pubsub/task-events", body)
        .await;
    assert_eq!(answer["status"], "SUCCESS", "{answer}");
    s.events.wait_idle().await;
    let audit = s.db.audit_log().await.unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.event_type == event_type && a.task_id == id && a.user_id == u),
        "{audit:?}"
    );
}

#[tokio::test]
async fn the_reference_python_publish_is_consumed() {
    // Exactly what the reference's Python example publishes (§4: a bare JSON POST of
    // event_type, user_id, task_id): Dapr delivers com.dapr.event.sent, `data` a JSON string.
    consume_fixture(
        include_str!("fixtures/python-task-completed-minimal.json"),
        "task.completed",
    )
    .await;
}

#[tokio::test]
async fn a_full_python_task_event_is_consumed() {
    // The reference's TaskEvent model (§2), all seven fields, published the same way.
    consume_fixture(
        include_str!("fixtures/python-task-completed-full.json"),
        "task.completed",
    )
    .await;
    consume_fixture(
        include_str!("fixtures/python-task-created-full.json"),
        "task.created",
    )
    .await;
}

/// The next SSE event (keep-alive comments skipped), or a panic after 10 s.
async fn next_event(body: &mut Body) -> String {
    loop {
        let frame = tokio::time::timeout(
            Duration::from_secs(10),
            http_body_util::BodyExt::frame(body),
        )
        .await
        .expect("an SSE event in time")
        .expect("the stream is open")
        .unwrap();
        if let Ok(data) = frame.into_data() {
            let text = String::from_utf8(data.to_vec()).unwrap();
            if !text.starts_with(':') {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn the_stream_pushes_a_users_changes_only() {
    let s = start().await;
    let (me, other) = (user("me"), user("other"));
    let resp = tower::ServiceExt::oneshot(
        s.api.clone(),
        Request::get(format!("/tasks/stream?user_id={me}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    assert!(next_event(&mut body).await.starts_with("event: ready"));
    s.create(json!({"user_id": other, "title": "not mine"}))
        .await;
    let mine = s.create(json!({"user_id": me, "title": "mine"})).await;
    s.events.wait_idle().await;
    let text = next_event(&mut body).await;
    assert!(text.starts_with("event: task\n"), "{text}");
    let data: Value =
        serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(data["event_type"], "task.sync");
    assert_eq!(data["action"], "created");
    assert_eq!(data["user_id"], me.as_str());
    assert_eq!(data["task"], mine);
    s.call("POST", &format!("/tasks/{}/complete", mine["id"]), None)
        .await;
    s.events.wait_idle().await;
    let text = next_event(&mut body).await;
    assert!(text.contains("\"action\":\"completed\""), "{text}");
}

#[tokio::test]
async fn the_page_is_served() {
    let s = start().await;
    let resp = tower::ServiceExt::oneshot(
        s.api.clone(),
        Request::get("/").body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let html = String::from_utf8(html.to_vec()).unwrap();
    assert!(html.contains("new EventSource(") && html.contains("/tasks/stream"));
}

#[tokio::test]
async fn a_sqlite_file_keeps_the_data_and_migrates_once() {
    let path = std::env::temp_dir().join(format!("todo-test-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}", path.display());
    let id = {
        let s = start_on(Db::connect(&url).await.unwrap()).await;
        let task = s.create(json!({"user_id": "u", "title": "kept"})).await;
        s.events.wait_idle().await;
        task["id"].as_i64().unwrap()
    };
    let db = Db::connect(&url)
        .await
        .expect("reopened, migrations already applied");
    assert_eq!(db.task(id).await.unwrap().unwrap().title, "kept");
    assert_eq!(db.audit_log().await.unwrap().len(), 1);
    drop(db);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[tokio::test]
async fn a_bad_database_url_says_what_is_wrong() {
    let err = Db::connect("mysql://localhost/todo").await.unwrap_err();
    assert!(err.to_string().contains("sqlite: or postgres://"), "{err}");
}

#[tokio::test]
async fn a_stream_that_falls_behind_is_told_to_resync() {
    use example_todo::events::{SyncAction, TaskSync};
    let s = start().await;
    let me = user("slow");
    let resp = tower::ServiceExt::oneshot(
        s.api.clone(),
        Request::get(format!("/tasks/stream?user_id={me}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    let mut body = resp.into_body();
    assert!(next_event(&mut body).await.starts_with("event: ready"));
    // More updates than the live-update channel holds, while this client reads none.
    let task = s.create(json!({"user_id": me, "title": "busy"})).await;
    s.events.wait_idle().await;
    let task =
        s.db.task(task["id"].as_i64().unwrap())
            .await
            .unwrap()
            .unwrap();
    for _ in 0..2000 {
        s.updates.send(TaskSync::new(SyncAction::Updated, &task));
    }
    let text = next_event(&mut body).await;
    assert!(text.starts_with("event: resync\n"), "{text}");
    // Then it goes on with the updates it still has.
    let text = next_event(&mut body).await;
    assert!(text.starts_with("event: task\n"), "{text}");
}

#[tokio::test]
async fn put_clears_the_fields_it_leaves_out() {
    let s = start().await;
    let task = s
        .create(
            json!({"user_id": user("put"), "title": "full", "recurrence": "daily",
                       "due_at": "2030-01-02T00:00:00Z", "remind_at": "2030-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(task["remind_at"], "2030-01-01T00:00:00Z");
    let uri = format!("/tasks/{}", task["id"]);
    let (code, put) = s.call("PUT", &uri, Some(json!({"title": "bare"}))).await;
    assert_eq!(code, 200, "{put}");
    let (_, read) = s.call("GET", &uri, None).await;
    for t in [&put, &read] {
        assert_eq!(t["title"], "bare", "{t}");
        for field in ["remind_at", "due_at", "recurrence"] {
            assert!(t[field].is_null(), "{field} not cleared: {t}");
        }
    }
}

#[test]
fn the_other_handlers_are_declared_as_the_readme_says() {
    let app = App::new();
    let def = |name: &str| {
        app.handlers()
            .iter()
            .find(|h| h.name() == name)
            .unwrap_or_else(|| panic!("no handler {name}"))
            .clone()
    };
    let audit = def("audit_log");
    assert!(audit.is_idempotent(), "audit_log is idempotent");
    assert_eq!(
        audit.idempotency_key(),
        Some("{event_type}-{task_id}-{timestamp}")
    );
    let reminder = def("on_reminder_due");
    assert!(reminder.is_idempotent(), "on_reminder_due is idempotent");
    assert_eq!(
        reminder.idempotency_key(),
        None,
        "keyed by the CloudEvent id"
    );
    assert_eq!(def("on_dead_letter").retry().to_vec(), [1, 5, 30]);
    let sync = def("on_task_sync");
    assert!(
        sync.retry().is_empty(),
        "on_task_sync retries: {:?}",
        sync.retry()
    );
}

#[tokio::test]
async fn the_audit_log_and_notifications_are_unique_on_event_id() {
    common::unique_event_scenario(&common::memory_db().await).await;
}

#[tokio::test]
async fn a_completed_or_deleted_task_cancels_its_reminder() {
    common::cancelled_reminder_scenario(&start().await).await;
}
