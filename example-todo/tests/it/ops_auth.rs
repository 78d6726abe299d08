//! The ops routes (`GET /dlq`, `POST /dlq/replay`) behind a token: refused without it (and
//! nothing replayed), served with it, closed under Dapr when no token is set, and the
//! `dlq replay` CLI sends it.

use crate::common;

use axum::body::Body;
use axum::http::Request;
use common::{call_router, memory_db, send_router, start_with_ops_token, user, Service};
use event_runtime::{App, Mode};
use serde_json::{json, Value};

const TOKEN: &str = "ops-t0ken";

/// A task whose audit fails permanently: its `task.created` lands in the DLQ, pending.
async fn dead_letter(s: &Service) -> i64 {
    let task = s
        .create(json!({"user_id": user("ops"), "title": "fail: audit me"}))
        .await;
    s.events.wait_idle().await;
    task["id"].as_i64().unwrap()
}

/// The task's dead letter as stored: (times dead-lettered, replayed).
async fn letter_of(s: &Service, task_id: i64) -> (i64, bool) {
    let letters = s.db.dead_letters(false).await.unwrap();
    let l = letters
        .iter()
        .find(|l| l.letter.event.data["task_id"] == task_id)
        .expect("the task's dead letter");
    (l.times_dead_lettered, l.replayed)
}

async fn call_with(
    s: &Service,
    method: &str,
    uri: &str,
    header: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some((name, value)) = header {
        req = req.header(name, value);
    }
    let body = if method == "POST" {
        req = req.header("content-type", "application/json");
        Body::from(json!({"handler": "audit_log"}).to_string())
    } else {
        Body::empty()
    };
    s.send(req.body(body).unwrap()).await
}

#[tokio::test]
async fn without_the_token_the_ops_routes_answer_401_and_replay_nothing() {
    let s = start_with_ops_token(memory_db().await, Some(TOKEN)).await;
    let id = dead_letter(&s).await;
    let published = s.events.published_to("task-events").len();

    let wrong = [
        None,
        Some(("dapr-api-token", "ops-t0ke")),
        Some(("authorization", "Bearer wrong")),
        Some(("authorization", TOKEN)),
        Some(("x-api-token", TOKEN)),
    ];
    for header in wrong {
        for (method, uri) in [
            ("GET", "/dlq"),
            ("GET", "/dlq?pending=true"),
            ("POST", "/dlq/replay"),
        ] {
            let (code, answer) = call_with(&s, method, uri, header).await;
            assert_eq!(code, 401, "{method} {uri} with {header:?}: {answer}");
            assert!(
                answer["error"].as_str().unwrap().contains("token"),
                "{answer}"
            );
        }
    }
    s.events.wait_idle().await;
    assert_eq!(letter_of(&s, id).await, (1, false), "nothing replayed");
    assert_eq!(
        s.events.published_to("task-events").len(),
        published,
        "nothing re-published"
    );
    // The rest of the API needs no token.
    let (code, _) = s.call("GET", "/audit", None).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn with_the_token_the_ops_routes_answer() {
    let s = start_with_ops_token(memory_db().await, Some(TOKEN)).await;
    let id = dead_letter(&s).await;

    let (code, letters) = call_with(
        &s,
        "GET",
        "/dlq?pending=true",
        Some(("dapr-api-token", TOKEN)),
    )
    .await;
    assert_eq!(code, 200, "{letters}");
    assert!(letters
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["event"]["data"]["task_id"] == id));

    let bearer = format!("Bearer {TOKEN}");
    let (code, report) =
        call_with(&s, "POST", "/dlq/replay", Some(("authorization", &bearer))).await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["replayed"], 1, "{report}");
    s.events.wait_idle().await;
    // Still failing, so back in the DLQ, pending again.
    assert_eq!(letter_of(&s, id).await, (2, false));
}

#[tokio::test]
async fn with_no_token_the_ops_routes_stay_open() {
    let s = start_with_ops_token(memory_db().await, None).await;
    dead_letter(&s).await;
    let (code, _) = s.call("GET", "/dlq", None).await;
    assert_eq!(code, 200);
    let (code, report) = s.call("POST", "/dlq/replay", None).await;
    assert_eq!((code, &report["replayed"]), (200, &json!(1)), "{report}");
}

/// Under Dapr the service is deployed where others reach it: with no token set, the ops routes
/// are closed (403, naming the variable to set), not open; with a token they work as ever.
#[tokio::test]
async fn under_dapr_with_no_token_set_the_ops_routes_answer_403_naming_the_variable() {
    let db = memory_db().await;
    // A pending dead letter, made by the service on its embedded broker.
    let embedded = start_with_ops_token(db.clone(), None).await;
    let id = dead_letter(&embedded).await;

    let dapr =
        example_todo::Service::with_ops_token(App::new().with_mode(Mode::Dapr), db.clone(), None);
    for header in [None, Some(("authorization", "Bearer anything"))] {
        for (method, uri) in [
            ("GET", "/dlq"),
            ("GET", "/dlq?pending=true"),
            ("POST", "/dlq/replay"),
        ] {
            let mut req = Request::builder().method(method).uri(uri);
            if let Some((name, value)) = header {
                req = req.header(name, value);
            }
            let (code, answer) = send_router(&dapr.routes, req.body(Body::empty()).unwrap()).await;
            assert_eq!(code, 403, "{method} {uri} with {header:?}: {answer}");
            let error = answer["error"].as_str().unwrap();
            assert!(error.contains("ADMIN_API_TOKEN"), "{answer}");
        }
    }
    let stored = db.dead_letters(false).await.unwrap();
    let letter = stored
        .iter()
        .find(|l| l.letter.event.data["task_id"] == id)
        .unwrap();
    assert_eq!(
        (letter.replayed, letter.replayed_at),
        (false, None),
        "pending, never re-published"
    );
    // The rest of the API is open as ever.
    let (code, _) = call_router(&dapr.routes, "GET", "/audit", None).await;
    assert_eq!(code, 200);

    // Under Dapr with a token: the token opens them.
    let dapr = example_todo::Service::with_ops_token(
        App::new().with_mode(Mode::Dapr),
        db,
        Some(TOKEN.into()),
    );
    let (code, _) = call_router(&dapr.routes, "GET", "/dlq", None).await;
    assert_eq!(code, 401);
    let req = Request::get("/dlq").header("dapr-api-token", TOKEN);
    let (code, letters) = send_router(&dapr.routes, req.body(Body::empty()).unwrap()).await;
    assert_eq!(code, 200, "{letters}");
}

/// Runs `example-todo dlq replay --handler audit_log --url <base>` with `env`.
async fn cli(base: &str, env: &[(&str, &str)]) -> std::process::Output {
    replay_cli(base, &["--handler", "audit_log"], env).await
}

/// Runs `example-todo dlq replay <filter> --url <base>` with `env` (and no other token or URL).
async fn replay_cli(base: &str, filter: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut args = vec!["dlq", "replay"];
    args.extend(filter);
    args.extend(["--url", base]);
    common::binary(std::path::Path::new("."), &args, env)
        .output()
        .await
        .expect("the example-todo binary runs")
}

/// Serves the API of `s` on a loopback port; answers its base URL.
async fn serve(s: &Service) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = s.api.clone();
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });
    base
}

#[tokio::test]
async fn the_cli_sends_the_token_and_says_when_it_is_refused() {
    let s = start_with_ops_token(memory_db().await, Some(TOKEN)).await;
    let id = dead_letter(&s).await;
    let base = serve(&s).await;

    let out = cli(&base, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("requires a token (401 Unauthorized)"),
        "{stderr}"
    );
    let out = cli(&base, &[("ADMIN_API_TOKEN", "wrong")]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refused the token (401 Unauthorized)"),
        "{stderr}"
    );
    assert_eq!(letter_of(&s, id).await, (1, false), "nothing replayed");

    // ADMIN_API_TOKEN wins over APP_API_TOKEN.
    let out = cli(
        &base,
        &[("ADMIN_API_TOKEN", TOKEN), ("APP_API_TOKEN", "dapr's")],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("matched 1, replayed 1, failed 0"),
        "{stdout}"
    );
    s.events.wait_idle().await;
    assert_eq!(letter_of(&s, id).await, (2, false));

    // APP_API_TOKEN alone is used when it is the service's token.
    let out = cli(&base, &[("APP_API_TOKEN", TOKEN)]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_cli_passes_type_since_and_until() {
    let s = start_with_ops_token(memory_db().await, None).await;
    // Letter A: a task.created, dead-lettered before `mid`.
    let a = dead_letter(&s).await;
    let mid = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // Letter B: a task.updated, dead-lettered after `mid`.
    let b = s
        .create(json!({"user_id": user("ops"), "title": "fine"}))
        .await;
    let b = b["id"].as_i64().unwrap();
    s.events.wait_idle().await;
    let (code, _) = s
        .call(
            "PUT",
            &format!("/tasks/{b}"),
            Some(json!({"title": "fail: later"})),
        )
        .await;
    assert_eq!(code, 200);
    s.events.wait_idle().await;
    assert_eq!(
        (letter_of(&s, a).await, letter_of(&s, b).await),
        ((1, false), (1, false))
    );
    let base = serve(&s).await;

    // Each replay re-publishes the letters it matches; they fail again and come back counted.
    let steps: [(&[&str], &str, (i64, i64)); 4] = [
        (
            &["--since", &mid],
            "matched 1, replayed 1, failed 0",
            (1, 2),
        ),
        (
            &["--until", &mid],
            "matched 1, replayed 1, failed 0",
            (2, 2),
        ),
        (
            &["--type", "task.updated"],
            "matched 1, replayed 1, failed 0",
            (2, 3),
        ),
        (
            &["--type", "task.deleted"],
            "matched 0, replayed 0, failed 0",
            (2, 3),
        ),
    ];
    for (filter, summary, (times_a, times_b)) in steps {
        let out = replay_cli(&base, filter, &[]).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{filter:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(summary), "{filter:?}: {stdout}");
        s.events.wait_idle().await;
        assert_eq!(
            (letter_of(&s, a).await.0, letter_of(&s, b).await.0),
            (times_a, times_b),
            "times dead-lettered after {filter:?}"
        );
    }
}
