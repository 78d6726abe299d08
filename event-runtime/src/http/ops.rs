//! The operational routes (`/healthz`, `/readyz`, `/metrics`, `/asyncapi.json`,
//! `/events/schemas`): where they live, whether a token guards them, and readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use crate::handler::registry::ResolvedHandler;
use crate::http::server::api_token_ok;
use crate::metrics::Metrics;
use crate::transport::dapr::DaprClient;

/// Where the app's operational routes are served, and who may call them.
///
/// By default they sit at the root, open: `/healthz`, `/readyz`, `/metrics`, `/asyncapi.json`
/// and `/events/schemas`. An app whose own router already has a `/metrics` or a `/healthz`
/// moves them under a prefix, or turns them off, before merging:
///
/// ```
/// use axum::routing::get;
/// use event_runtime::{App, OpsRoutes};
///
/// let app = App::new().with_ops_routes(OpsRoutes::under("/_events").with_token("s3cret"));
/// let mine = axum::Router::new()
///     .route("/metrics", get(|| async { "my registry" }))
///     .route("/healthz", get(|| async { "mine" }));
/// let router: axum::Router = app.router().merge(mine); // no overlapping route
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpsRoutes {
    /// `None` when they are off; else the prefix (`""` is the root).
    prefix: Option<String>,
    token: Option<String>,
}

impl Default for OpsRoutes {
    fn default() -> Self {
        OpsRoutes::at_root()
    }
}

impl OpsRoutes {
    /// At the root: `/healthz`, `/readyz`, `/metrics`, `/asyncapi.json`, `/events/schemas`.
    pub fn at_root() -> Self {
        OpsRoutes {
            prefix: Some(String::new()),
            token: None,
        }
    }

    /// Under `prefix` (`/_events` serves `/_events/metrics`, ...).
    ///
    /// # Panics
    ///
    /// When `prefix` does not start with `/`, or ends with one.
    pub fn under(prefix: &str) -> Self {
        assert!(
            prefix.starts_with('/') && !prefix.ends_with('/'),
            "an ops route prefix starts with `/` and does not end with one: {prefix:?}"
        );
        OpsRoutes {
            prefix: Some(prefix.to_owned()),
            token: None,
        }
    }

    /// Not served at all.
    pub fn off() -> Self {
        OpsRoutes {
            prefix: None,
            token: None,
        }
    }

    /// Requires `token` on every ops route, as `Authorization: Bearer <token>` or
    /// `dapr-api-token: <token>` (compared as [`api_token_ok`] does); 401 without it.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The path of `route` (`"/metrics"`) under these settings, `None` when they are off.
    ///
    /// ```
    /// use event_runtime::OpsRoutes;
    /// assert_eq!(OpsRoutes::under("/_events").path("/metrics").as_deref(), Some("/_events/metrics"));
    /// assert_eq!(OpsRoutes::off().path("/metrics"), None);
    /// ```
    pub fn path(&self, route: &str) -> Option<String> {
        self.prefix.as_ref().map(|p| format!("{p}{route}"))
    }
}

/// Whether the app can take deliveries: its subscriptions were read (daprd, or the embedded
/// broker, asked `/dapr/subscribe`), and its sidecar answers.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    subscribed: AtomicBool,
}

impl Readiness {
    /// `/dapr/subscribe` was answered.
    pub(crate) fn subscribed(&self) {
        self.subscribed.store(true, Ordering::Relaxed);
    }
}

/// What the ops routes serve.
pub(crate) struct OpsParts {
    pub settings: OpsRoutes,
    pub metrics: Arc<Metrics>,
    /// The app id, handlers and declared publish targets the AsyncAPI document describes.
    pub asyncapi: (
        String,
        Vec<ResolvedHandler>,
        Vec<crate::tooling::scopes::Published>,
    ),
    pub readiness: Arc<Readiness>,
    /// The sidecar `/readyz` asks, in Dapr mode.
    pub sidecar: Option<DaprClient>,
}

/// The ops routes, placed and guarded as `parts.settings` says.
pub(crate) fn ops_router(parts: OpsParts) -> Router {
    let OpsParts {
        settings,
        metrics,
        asyncapi,
        readiness,
        sidecar,
    } = parts;
    let Some(prefix) = settings.prefix else {
        return Router::new();
    };
    // Built on request, not with the router: it is rarely asked for and costs a schema walk.
    let asyncapi = Arc::new(asyncapi);
    let mut ops = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || ready(readiness.clone(), sidecar.clone())),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
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
    if let Some(token) = settings.token {
        let token: Arc<str> = token.into();
        ops = ops.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let token = token.clone();
                async move {
                    if api_token_ok(req.headers(), Some(&token)) {
                        next.run(req).await
                    } else {
                        crate::http::server::unauthorized()
                    }
                }
            },
        ));
    }
    if prefix.is_empty() {
        ops
    } else {
        Router::new().nest(&prefix, ops)
    }
}

/// `/readyz`: 200 once the subscriptions were read and the sidecar's outbound components are
/// ready (Dapr's `GET /v1.0/healthz/outbound`), else 503 saying which is missing.
async fn ready(readiness: Arc<Readiness>, sidecar: Option<DaprClient>) -> Response {
    let subscribed = readiness.subscribed.load(Ordering::Relaxed);
    let sidecar = match &sidecar {
        Some(client) => client.outbound_health().await,
        None => Ok(()),
    };
    let body = json!({
        "status": if subscribed && sidecar.is_ok() { "ready" } else { "not ready" },
        "subscriptions": if subscribed { "loaded" } else { "not yet read by the sidecar" },
        "sidecar": match &sidecar { Ok(()) => "ok".to_owned(), Err(e) => e.clone() },
    });
    let status = if subscribed && sidecar.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
