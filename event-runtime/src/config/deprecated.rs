//! The readers of single variables that came before [`Config`]: each parses the whole process
//! environment with [`Config::from_env`] and keeps one field. Build a [`Config`] once instead.

use super::{Config, ConfigError, Deployment, Mode, Settings};

fn from_env_or_panic() -> Config {
    Config::from_env().unwrap_or_else(|e| panic!("{e}"))
}

impl Mode {
    /// [`Config::from_env`]'s `mode`.
    #[deprecated(since = "0.1.0", note = "use `Config::from_env()?.mode`")]
    pub fn from_env() -> Result<Mode, ConfigError> {
        Ok(Config::from_env()?.mode)
    }
}

impl Settings {
    /// [`Config::from_env`]'s `settings`.
    #[deprecated(since = "0.1.0", note = "use `Config::from_env()?.settings`")]
    pub fn from_env() -> Result<Settings, ConfigError> {
        Ok(Config::from_env()?.settings)
    }
}

impl Deployment {
    /// [`Config::from_env`]'s `manifests.deployment` (`EVENTS_ENV`).
    ///
    /// # Panics
    ///
    /// When the environment's configuration is malformed, an unknown `EVENTS_ENV` included.
    #[deprecated(
        since = "0.1.0",
        note = "use `Config::from_env()?.manifests.deployment`"
    )]
    pub fn from_env() -> Self {
        from_env_or_panic().manifests.deployment
    }
}

/// [`Config::from_env`]'s `default_pubsub` (`EVENTS_PUBSUB`, else `kafka-pubsub`).
///
/// # Panics
///
/// When the environment's configuration is malformed.
#[deprecated(since = "0.1.0", note = "use `Config::from_env()?.default_pubsub`")]
pub fn default_pubsub() -> String {
    from_env_or_panic().default_pubsub
}

/// [`Config::from_env`]'s `app_id` (`APP_ID`, else `event-runtime-app`).
///
/// # Panics
///
/// When the environment's configuration is malformed.
#[deprecated(
    since = "0.1.0",
    note = "use `Config::from_env()?.app_id` or `App::app_id`"
)]
pub fn app_id() -> String {
    from_env_or_panic().app_id
}

/// [`Config::from_env`]'s `app_port` (`APP_PORT`, else 8080).
#[deprecated(since = "0.1.0", note = "use `Config::from_env()?.app_port`")]
pub fn app_port() -> Result<u16, ConfigError> {
    Ok(Config::from_env()?.app_port)
}

/// [`Config::from_env`]'s `dapr_endpoint` (`DAPR_HTTP_ENDPOINT`, else
/// `http://127.0.0.1:$DAPR_HTTP_PORT`).
#[deprecated(since = "0.1.0", note = "use `Config::from_env()?.dapr_endpoint`")]
pub fn dapr_endpoint() -> Result<String, ConfigError> {
    Ok(Config::from_env()?.dapr_endpoint)
}

/// The sidecar's HTTP port: `DAPR_HTTP_PORT`, else 3500.
#[deprecated(since = "0.1.0", note = "use `Config::from_env()?.dapr_endpoint`")]
pub fn dapr_http_port() -> Result<u16, ConfigError> {
    super::Vars(&super::process_env).port("DAPR_HTTP_PORT", 3500, 1..=u16::MAX)
}

/// A non-empty environment variable.
#[deprecated(
    since = "0.1.0",
    note = "the runtime's variables are `Config` fields; read your own in one place of your app"
)]
pub fn non_empty(name: &str) -> Option<String> {
    super::process_env(name).filter(|v| !v.is_empty())
}
