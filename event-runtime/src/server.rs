//! Serving concerns: the subscription answer, start-up log, shutdown signal.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::subscription::DaprSubscription;

pub(crate) fn subscribe_answer(
    headers: &HeaderMap,
    token: Option<&str>,
    subs: Vec<DaprSubscription>,
) -> Response {
    if let Some(expected) = token {
        let given = headers.get("dapr-api-token").and_then(|v| v.to_str().ok());
        if given != Some(expected) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    axum::Json(subs).into_response()
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
