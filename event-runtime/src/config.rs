//! Settings read from the environment, in one place.

use std::time::Duration;

/// The pubsub component a handler uses when it names none: `EVENTS_PUBSUB`, else `kafka-pubsub`.
pub fn default_pubsub() -> String {
    env_or("EVENTS_PUBSUB", "kafka-pubsub")
}

/// This app's id (`APP_ID`), used as the CloudEvent `source` and to namespace idempotency keys.
pub fn app_id() -> String {
    env_or("APP_ID", "event-runtime-app")
}

/// Whether the app talks to a Dapr sidecar or runs the embedded broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A Dapr sidecar delivers and publishes.
    Dapr,
    /// The in-process broker delivers and publishes.
    Embedded,
}

impl Mode {
    /// `EVENTS_MODE=dapr|embedded` when set, else Dapr when `DAPR_HTTP_PORT` is set, else embedded.
    pub fn from_env() -> Mode {
        match std::env::var("EVENTS_MODE").ok().as_deref() {
            Some("dapr") => Mode::Dapr,
            Some("embedded") => Mode::Embedded,
            _ if std::env::var_os("DAPR_HTTP_PORT").is_some() => Mode::Dapr,
            _ => Mode::Embedded,
        }
    }
}

/// The port `serve` binds: `APP_PORT`, else 8080.
pub fn app_port() -> u16 {
    std::env::var("APP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080)
}

/// The sidecar's HTTP port: `DAPR_HTTP_PORT`, else 3500.
pub fn dapr_http_port() -> u16 {
    std::env::var("DAPR_HTTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3500)
}

/// A non-empty environment variable.
pub fn non_empty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn secs_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        non_empty(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn env_or(name: &str, default: &str) -> String {
    non_empty(name).unwrap_or_else(|| default.to_owned())
}

/// Tunables of the delivery pipeline, with their defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The dead-letter topic of handlers that name none (`EVENTS_DLQ`, else `dlq`).
    pub default_dlq: String,
    /// Largest request body accepted (Dapr's own default, 4 MiB).
    pub body_limit: usize,
    /// Per-run handler timeout unless the handler sets one.
    pub handler_timeout: Duration,
    /// How long an idempotency claim is held before a crashed holder is taken over.
    pub claim_lease: Duration,
    /// How long a "done" idempotency mark is kept (7 days, the reference's topic retention).
    pub idempotency_retention: Duration,
    /// Dapr state store for idempotency (`EVENTS_STATE_STORE`, else `statestore`).
    pub state_store: String,
    /// The longest a delayed-retry delivery is held waiting for its due time before it is
    /// answered RETRY and redelivered by the broker.
    pub max_hold: Duration,
    /// `APP_API_TOKEN`: when set, Dapr-facing routes require it.
    pub app_api_token: Option<String>,
}

impl Settings {
    /// Defaults, with the environment's overrides.
    pub fn from_env() -> Settings {
        Settings {
            default_dlq: env_or("EVENTS_DLQ", "dlq"),
            body_limit: 4 * 1024 * 1024,
            handler_timeout: secs_env("EVENTS_HANDLER_TIMEOUT_SECS", 60),
            claim_lease: secs_env("EVENTS_CLAIM_LEASE_SECS", 120),
            idempotency_retention: Duration::from_secs(7 * 24 * 3600),
            state_store: env_or("EVENTS_STATE_STORE", "statestore"),
            max_hold: secs_env("EVENTS_MAX_HOLD_SECS", 20),
            app_api_token: non_empty("APP_API_TOKEN"),
        }
    }
}
