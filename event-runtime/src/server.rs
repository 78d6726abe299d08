//! Serving concerns: the subscription answer, start-up log, shutdown signal.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::subscription::DaprSubscription;

pub(crate) fn subscribe_answer(
    headers: &HeaderMap,
    token: Option<&str>,
    subs: Vec<DaprSubscription>,
) -> Response {
    if token_ok(headers, token) {
        axum::Json(subs).into_response()
    } else {
        unauthorized()
    }
}

/// With `APP_API_TOKEN` set, Dapr-facing routes require the same `dapr-api-token` (compared in
/// constant time, so the comparison leaks nothing about the token).
pub(crate) fn token_ok(headers: &HeaderMap, expected: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let given = headers
        .get("dapr-api-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    constant_time_eq(given, expected.as_bytes())
}

/// The 401 answer of a refused token.
pub(crate) fn unauthorized() -> Response {
    let body = axum::Json(serde_json::json!({"error": "missing or wrong dapr-api-token"}));
    (StatusCode::UNAUTHORIZED, body).into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn log_startup(app: &crate::App, addr: std::net::SocketAddr) {
    tracing::info!(mode = ?app.mode(), %addr, handlers = app.handlers().len(), "event runtime listening");
    for h in app.handlers() {
        tracing::info!(
            handler = %h.def.qualified_name(),
            pubsub = %h.pubsub,
            topic = h.def.topic,
            route = %h.route,
            types = ?h.def.event_types,
            "handler registered"
        );
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
