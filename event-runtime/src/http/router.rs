//! The app's routes: one per handler and per subscribed topic, `/dapr/subscribe`, and the
//! operational routes (`http::ops`).

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::http::ops::{ops_router, OpsParts};
use crate::pipeline::Runtime;
use crate::wire::subscription::DaprSubscription;

/// What the routes serve besides deliveries, which `rt` runs.
pub(crate) struct RouterParts {
    pub rt: Arc<Runtime>,
    pub subscriptions: Vec<DaprSubscription>,
    pub ops: OpsParts,
}

/// The router Dapr calls. Building it starts nothing in the background.
pub(crate) fn router(parts: RouterParts) -> Router {
    let RouterParts {
        rt,
        subscriptions,
        ops,
    } = parts;
    let token = rt.settings.app_api_token.clone();
    let readiness = ops.readiness.clone();
    let mut router = Router::new()
        .route(
            "/dapr/subscribe",
            get(move |headers: axum::http::HeaderMap| {
                let subs = subscriptions.clone();
                let token = token.clone();
                let readiness = readiness.clone();
                async move {
                    let answer =
                        crate::http::server::subscribe_answer(&headers, token.as_deref(), subs);
                    if answer.status().is_success() {
                        readiness.subscribed();
                    }
                    answer
                }
            }),
        )
        .merge(ops_router(ops));
    let routes: Vec<_> = rt
        .registry
        .routes
        .iter()
        .map(|(r, &t)| (r.clone(), t))
        .collect();
    let jobs = rt.clone();
    router = router.route(
        "/job/{name}",
        post(move |name, request| crate::http::jobs::trigger(jobs.clone(), name, request)),
    );
    for (route, target) in routes {
        let rt = rt.clone();
        router = router.route(
            &route,
            post(move |request| crate::http::delivery::handle(rt.clone(), target, request)),
        );
    }
    router
}
