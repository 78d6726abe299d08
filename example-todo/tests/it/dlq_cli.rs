//! `example-todo dlq replay`: parses its filter (refusing a time that is not RFC 3339), sends
//! it and the token to the running service's `POST /dlq/replay`, prints the report, and fails
//! when the service refuses or some letters stay pending.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use example_todo::cli::{DlqCommand, ReplayError};
use serde_json::{json, Value};

/// The service's `dlq` command, as its CLI mounts it.
#[derive(Parser)]
#[command(name = "example-todo")]
enum Cli {
    Dlq {
        #[command(subcommand)]
        action: DlqCommand,
    },
}

fn parse(args: &[&str]) -> Result<DlqCommand, clap::Error> {
    let args = ["example-todo", "dlq"]
        .into_iter()
        .chain(args.iter().copied());
    Cli::try_parse_from(args).map(|Cli::Dlq { action }| action)
}

/// What the fake service's `POST /dlq/replay` received: the bearer token and the body.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// Serves `POST /dlq/replay`, answering `status` and `answer`; answers the base URL.
async fn fake_service(seen: Seen, status: StatusCode, answer: Value) -> String {
    let route = post(
        move |headers: HeaderMap, Json(body): Json<Value>| async move {
            let token = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_start_matches("Bearer ").to_owned());
            seen.lock().unwrap().push((token, body));
            (status, Json(answer))
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new().route("/dlq/replay", route);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    base
}

async fn run(
    command: DlqCommand,
    url: &str,
    token: Option<&str>,
) -> (Result<(), ReplayError>, String) {
    let mut out = Vec::new();
    let result = command
        .run(url.to_owned(), token.map(str::to_owned), &mut out)
        .await
        .map(drop);
    (result, String::from_utf8(out).unwrap())
}

#[test]
fn a_replay_time_that_is_not_rfc3339_is_refused_while_parsing() {
    let err = parse(&["replay", "--since", "yesterday"]).expect_err("refused");
    assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    assert!(err.to_string().contains("not an RFC 3339 time"), "{err}");
    let help = parse(&["replay", "--help"]).expect_err("help");
    assert!(help.to_string().contains("--since <RFC3339>"), "{help}");
}

#[tokio::test]
async fn dlq_replay_sends_the_filter_and_token_and_prints_the_report() {
    let seen = Seen::default();
    let report = json!({"matched": 2, "replayed": 2, "failed": []});
    let base = fake_service(seen.clone(), StatusCode::OK, report).await;
    let command = parse(&[
        "replay",
        "--type",
        "task.completed",
        "--since",
        "2026-01-01T00:00:00Z",
        "--token",
        "from-the-flag",
    ])
    .unwrap();
    let (result, printed) = run(command, &base, Some("from-the-environment")).await;
    result.unwrap();
    assert!(
        printed.contains("matched 2, replayed 2, failed 0"),
        "{printed}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(
            Some("from-the-flag".to_owned()),
            json!({"event_type": "task.completed", "since": "2026-01-01T00:00:00Z"})
        )]
    );
}

#[tokio::test]
async fn dlq_replay_fails_when_letters_stay_pending_or_the_service_refuses() {
    let report = json!({"matched": 2, "replayed": 1, "failed": [["e-1", "sidecar down"]]});
    let base = fake_service(Seen::default(), StatusCode::OK, report).await;
    let (result, _) = run(parse(&["replay"]).unwrap(), &base, None).await;
    assert!(
        matches!(result, Err(ReplayError::Incomplete { failed: 1 })),
        "{result:?}"
    );

    let seen = Seen::default();
    let base = fake_service(seen.clone(), StatusCode::UNAUTHORIZED, json!({})).await;
    let (result, _) = run(parse(&["replay"]).unwrap(), &base, None).await;
    let err = result.unwrap_err();
    assert!(err.to_string().contains("requires a token"), "{err}");
    assert_eq!(seen.lock().unwrap()[0], (None, json!({})));

    let base = fake_service(
        Seen::default(),
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"error": "bad filter"}),
    )
    .await;
    // `--url` wins over the URL the service's environment gives.
    let command = parse(&["replay", "--url", &base]).unwrap();
    let (result, _) = run(command, "http://127.0.0.1:9", None).await;
    let err = result.unwrap_err();
    assert!(err.to_string().contains("bad filter"), "{err}");
}
