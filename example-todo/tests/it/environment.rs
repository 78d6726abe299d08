//! The service as the built binary starts it from its environment: the ops token
//! (`ADMIN_API_TOKEN`, else `APP_API_TOKEN`), the default database (`sqlite://todo.db` in the
//! working directory) and reminders on time from the running binary.

use crate::common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{wait_until, Running, TempDir};
use example_todo::db::Db;
use serde_json::json;

#[tokio::test]
async fn the_ops_token_is_admin_api_token_else_app_api_token() {
    let dir = TempDir::new("todo-env");
    let memory = ("DATABASE_URL", "sqlite::memory:");

    // Both set: ADMIN_API_TOKEN is the ops token, APP_API_TOKEN is not.
    let s = Running::start(
        dir.path(),
        &[
            memory,
            ("ADMIN_API_TOKEN", "adm1n"),
            ("APP_API_TOKEN", "d4pr"),
        ],
    )
    .await;
    assert_eq!(s.get("/dlq", None).await.0, 401);
    assert_eq!(s.get("/dlq", Some("d4pr")).await.0, 401);
    let (code, letters) = s.get("/dlq", Some("adm1n")).await;
    assert_eq!((code, letters), (200, json!([])));
    assert_eq!(
        s.get("/audit", None).await.0,
        200,
        "the rest needs no token"
    );
    s.stop().await;

    // APP_API_TOKEN alone is the ops token.
    let s = Running::start(dir.path(), &[memory, ("APP_API_TOKEN", "d4pr")]).await;
    assert_eq!(s.get("/dlq", None).await.0, 401);
    assert_eq!(s.get("/dlq", Some("adm1n")).await.0, 401);
    assert_eq!(s.get("/dlq", Some("d4pr")).await.0, 200);
    s.stop().await;

    // Neither: open.
    let s = Running::start(dir.path(), &[memory]).await;
    assert_eq!(s.get("/dlq", None).await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn without_database_url_the_data_goes_to_todo_db_in_the_working_directory() {
    let dir = TempDir::new("todo-default-db");
    let file = dir.path().join("todo.db");
    let s = Running::start(dir.path(), &[]).await;
    assert!(file.exists(), "no {}:\n{}", file.display(), s.log());
    let (code, task) = s
        .post("/tasks", json!({"user_id": "u", "title": "in todo.db"}))
        .await;
    assert_eq!(code, 201, "{task}");
    s.stop().await;
    let db = Db::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let stored = db.task(task["id"].as_i64().unwrap()).await.unwrap();
    assert_eq!(stored.unwrap().title, "in todo.db");
}

/// The built service, as `cargo run` starts it, reminds of a task on time: the reminder is a
/// scheduled event of the embedded broker (a job of Dapr's Jobs API under Dapr), with no
/// setting to tune.
#[tokio::test]
async fn the_running_service_reminds_on_time() {
    let dir = TempDir::new("todo-remind");
    let s = Running::start(dir.path(), &[("DATABASE_URL", "sqlite::memory:")]).await;
    let due = Utc::now() + chrono::Duration::milliseconds(1500);
    let (code, task) = s
        .post(
            "/tasks",
            json!({"user_id": "u", "title": "r", "remind_at": due.to_rfc3339()}),
        )
        .await;
    assert_eq!(code, 201, "{task}");
    let path = format!("/tasks/{}", task["id"]);
    let sent: DateTime<Utc> = wait_until(
        Duration::from_secs(30),
        "the reminder is handled",
        || async {
            let (_, t) = s.get(&path, None).await;
            t["reminder_sent_at"].as_str().map(|at| at.parse().unwrap())
        },
    )
    .await;
    let late = (sent - due).num_milliseconds();
    assert!(
        (0..10_000).contains(&late),
        "handled {late} ms after it was due"
    );
    let (_, notes) = s.get("/notifications?user_id=u", None).await;
    assert_eq!(notes.as_array().map(Vec::len), Some(1), "{notes}");
    s.stop().await;
}
