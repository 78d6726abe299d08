//! Serving concerns: the subscription answer, start-up log, shutdown signal.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::wire::subscription::DaprSubscription;

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
/// An empty token opens nothing (start-up refuses one anyway).
pub(crate) fn token_ok(headers: &HeaderMap, expected: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    !expected.is_empty() && constant_time_eq(dapr_api_token(headers), expected.as_bytes())
}

/// Whether a request carries `expected` as `dapr-api-token: <token>` or as
/// `Authorization: Bearer <token>`, compared in constant time; `true` when `expected` is `None`,
/// `false` for every request when it is empty.
///
/// For routes of your own that take a token (an admin API, say); the Dapr-facing routes take
/// `dapr-api-token` only, as Dapr sends it.
///
/// ```
/// use axum::http::HeaderMap;
/// let mut headers = HeaderMap::new();
/// headers.insert("authorization", "Bearer s3cret".parse().unwrap());
/// assert!(event_runtime::api_token_ok(&headers, Some("s3cret")));
/// assert!(!event_runtime::api_token_ok(&headers, Some("other")));
/// assert!(event_runtime::api_token_ok(&HeaderMap::new(), None));
/// ```
pub fn api_token_ok(headers: &HeaderMap, expected: Option<&str>) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    if expected.is_empty() {
        return false;
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim_start().as_bytes())
        .unwrap_or_default();
    // Both compared, so the time taken does not say which header was tried.
    let dapr = constant_time_eq(dapr_api_token(headers), expected.as_bytes());
    let bearer = constant_time_eq(bearer, expected.as_bytes());
    dapr | bearer
}

fn dapr_api_token(headers: &HeaderMap) -> &[u8] {
    headers
        .get("dapr-api-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn api_tokens_come_as_dapr_api_token_or_bearer() {
        let t = Some("s3cret");
        assert!(api_token_ok(&headers(&[("dapr-api-token", "s3cret")]), t));
        assert!(api_token_ok(
            &headers(&[("authorization", "Bearer s3cret")]),
            t
        ));
        assert!(api_token_ok(
            &headers(&[("authorization", "bearer  s3cret")]),
            t
        ));
        for wrong in [
            headers(&[]),
            headers(&[("dapr-api-token", "s3cre")]),
            headers(&[("dapr-api-token", "s3cret ")]),
            headers(&[("authorization", "s3cret")]),
            headers(&[("authorization", "Basic s3cret")]),
            headers(&[("authorization", "Bearer")]),
            headers(&[("authorization", "Bearer other")]),
        ] {
            assert!(!api_token_ok(&wrong, t), "{wrong:?}");
        }
        assert!(api_token_ok(&headers(&[]), None), "no token: open");
        assert!(
            !api_token_ok(&headers(&[]), Some("")),
            "an empty token opens nothing"
        );
        // Dapr-facing routes take the Dapr header only.
        assert!(!token_ok(
            &headers(&[("authorization", "Bearer s3cret")]),
            t
        ));
        assert!(token_ok(&headers(&[("dapr-api-token", "s3cret")]), t));
        assert!(
            !token_ok(&headers(&[]), Some("")),
            "an empty token opens no Dapr-facing route"
        );
        assert!(!token_ok(&headers(&[("dapr-api-token", "")]), Some("")));
    }
}
