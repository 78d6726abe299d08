//! The ops routes: at the root by default, under a prefix or off, token-guarded when asked;
//! `/readyz` follows the subscriptions and the sidecar; and a router with its own `/metrics` and
//! `/healthz` merges.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use event_runtime::dapr::DaprClient;
use event_runtime::{event_handler, App, Event, Mode, OpsRoutes};
use serde_json::Value;

/// The event of the one handler these apps have.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "ops.checked", version = "1.0")]
pub struct OpsChecked {
    /// The partition key.
    pub user_id: String,
}

#[event_handler(topic = "ops-checks")]
async fn on_ops_checked(_event: OpsChecked) {}

fn app() -> App {
    App::with_handlers(
        event_runtime::__private::registered()
            .into_iter()
            .filter(|h| h.topic() == "ops-checks"),
    )
    .unwrap()
    .with_mode(Mode::Embedded)
}

async fn call(router: &Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = tower::ServiceExt::oneshot(router.clone(), req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

const OPS: [&str; 5] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/asyncapi.json",
    "/events/schemas",
];

#[tokio::test]
async fn by_default_the_ops_routes_are_at_the_root_and_open() {
    let router = app().router();
    call(&router, "/dapr/subscribe", None).await; // ready, see below
    for path in OPS {
        assert_eq!(call(&router, path, None).await.0, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn under_a_prefix_they_move_and_a_router_with_its_own_metrics_and_healthz_merges() {
    let app = app().with_ops_routes(OpsRoutes::under("/_events"));
    let mine = Router::new()
        .route("/metrics", get(|| async { "my registry" }))
        .route("/healthz", get(|| async { "mine" }));
    let router = app.router().merge(mine);
    call(&router, "/dapr/subscribe", None).await;
    assert_eq!(call(&router, "/metrics", None).await.1, "my registry");
    assert_eq!(call(&router, "/healthz", None).await.1, "mine");
    for path in OPS {
        let moved = format!("/_events{path}");
        assert_eq!(
            call(&router, &moved, None).await.0,
            StatusCode::OK,
            "{moved}"
        );
    }
    let (_, metrics) = call(&router, "/_events/metrics", None).await;
    assert!(metrics.contains("event_deliveries_in_flight"), "{metrics}");
}

#[tokio::test]
async fn off_serves_none_of_them() {
    let router = app().with_ops_routes(OpsRoutes::off()).router();
    for path in OPS {
        assert_eq!(
            call(&router, path, None).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // The Dapr-facing route stays.
    assert_eq!(
        call(&router, "/dapr/subscribe", None).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn with_a_token_they_answer_401_without_it() {
    let router = app()
        .with_ops_routes(OpsRoutes::at_root().with_token("s3cret"))
        .router();
    for path in OPS {
        assert_eq!(
            call(&router, path, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            call(&router, path, Some("wrong")).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    call(&router, "/dapr/subscribe", None).await;
    for path in OPS {
        assert_eq!(
            call(&router, path, Some("s3cret")).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
}

#[tokio::test]
async fn readyz_waits_for_the_subscriptions_to_be_read() {
    let router = app().router();
    let (status, body) = call(&router, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["subscriptions"], "not yet read by the sidecar");
    assert_eq!(
        call(&router, "/dapr/subscribe", None).await.0,
        StatusCode::OK
    );
    let (status, body) = call(&router, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A sidecar whose `/v1.0/healthz/outbound` answers `status`.
async fn sidecar(status: StatusCode) -> String {
    let app = Router::new().route("/v1.0/healthz/outbound", get(move || async move { status }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn in_dapr_mode_readyz_asks_the_sidecar() {
    for (sidecar_says, ready) in [
        (StatusCode::NO_CONTENT, StatusCode::OK),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
        ),
    ] {
        let base = sidecar(sidecar_says).await;
        let router = app()
            .with_mode(Mode::Dapr)
            .with_dapr_client(DaprClient::new(&base, None))
            .router();
        call(&router, "/dapr/subscribe", None).await;
        let (status, body) = call(&router, "/readyz", None).await;
        assert_eq!(status, ready, "sidecar answered {sidecar_says}: {body}");
    }
    // No sidecar at all.
    let router = app()
        .with_mode(Mode::Dapr)
        .with_dapr_client(DaprClient::new("http://127.0.0.1:9", None))
        .router();
    call(&router, "/dapr/subscribe", None).await;
    let (status, body) = call(&router, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("cannot be reached"), "{body}");
}
