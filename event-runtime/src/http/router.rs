//! The app's routes: one per handler and per subscribed topic, `/dapr/subscribe`, and the
//! operational routes (`/healthz`, `/metrics`, `/asyncapi.json`, `/events/schemas`).

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::routing::{get, post};
use axum::Router;

use crate::handler::registry::ResolvedHandler;
use crate::pipeline::metrics::Metrics;
use crate::pipeline::Runtime;
use crate::wire::subscription::DaprSubscription;

/// What the routes serve besides deliveries, which `rt` runs.
pub(crate) struct RouterParts {
    pub rt: Arc<Runtime>,
    pub subscriptions: Vec<DaprSubscription>,
    pub metrics: Arc<Metrics>,
    /// The app id, handlers and declared publish targets the AsyncAPI document describes.
    pub asyncapi: (String, Vec<ResolvedHandler>, Vec<(&'static str, String)>),
}

/// The router Dapr calls. Building it starts nothing in the background.
pub(crate) fn router(parts: RouterParts) -> Router {
    let RouterParts {
        rt,
        subscriptions,
        metrics,
        asyncapi,
    } = parts;
    let token = rt.settings.app_api_token.clone();
    // Built on request, not with the router: it is rarely asked for and costs a schema walk.
    let asyncapi = Arc::new(asyncapi);
    let mut router =
        Router::new()
            .route(
                "/dapr/subscribe",
                get(move |headers: axum::http::HeaderMap| {
                    let subs = subscriptions.clone();
                    let token = token.clone();
                    async move {
                        crate::http::server::subscribe_answer(&headers, token.as_deref(), subs)
                    }
                }),
            )
            .route(
                "/healthz",
                get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
            )
            .route(
                "/metrics",
                get(move || {
                    let metrics = metrics.clone();
                    async move {
                        (
                            [(CONTENT_TYPE, crate::pipeline::metrics::CONTENT_TYPE)],
                            metrics.render(),
                        )
                    }
                }),
            )
            .route(
                "/asyncapi.json",
                get(move || {
                    let parts = asyncapi.clone();
                    async move {
                        axum::Json(crate::tooling::asyncapi::document(
                            &parts.0, &parts.1, &parts.2,
                        ))
                    }
                }),
            )
            .route(
                "/events/schemas",
                get(|| async { axum::Json(crate::tooling::schema::schemas()) }),
            );
    let routes: Vec<_> = rt
        .registry
        .routes
        .iter()
        .map(|(r, &t)| (r.clone(), t))
        .collect();
    for (route, target) in routes {
        let rt = rt.clone();
        router = router.route(
            &route,
            post(move |request| crate::http::delivery::handle(rt.clone(), target, request)),
        );
    }
    router
}
