//! The service as the built binary starts it from its environment: the ops token
//! (`ADMIN_API_TOKEN`, else `APP_API_TOKEN`), the default database (`sqlite://todo.db` in the
//! working directory) and the scheduler's period (`REMINDER_TICK_SECS`).

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

/// When the scheduler published the reminder of the task it creates (its tick's time).
async fn reminded_at(s: &Running, n: usize) -> DateTime<Utc> {
    let (code, task) = s
        .post(
            "/tasks",
            json!({"user_id": "u", "title": format!("r{n}"), "remind_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(code, 201, "{task}");
    let path = format!("/tasks/{}", task["id"]);
    wait_until(
        Duration::from_secs(30),
        "the reminder is published",
        || async {
            let (_, t) = s.get(&path, None).await;
            t["reminder_sent_at"].as_str().map(|at| at.parse().unwrap())
        },
    )
    .await
}

#[tokio::test]
async fn reminder_tick_secs_sets_the_scheduler_period() {
    let dir = TempDir::new("todo-tick");
    let s = Running::start(
        dir.path(),
        &[
            ("DATABASE_URL", "sqlite::memory:"),
            ("REMINDER_TICK_SECS", "1"),
        ],
    )
    .await;
    // Each reminder is created right after the previous one was published, so the next tick
    // publishes it: the gaps between the ticks' times are the period (or, when the machine is
    // slow, a multiple of it).
    let mut at = vec![reminded_at(&s, 0).await];
    for n in 1..4 {
        at.push(reminded_at(&s, n).await);
    }
    let gaps: Vec<i64> = at
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    let shortest = *gaps.iter().min().unwrap();
    assert!(
        (900..1500).contains(&shortest),
        "ticks {gaps:?} ms apart, not 1 s (the default is 5 s)"
    );
    s.stop().await;
}
