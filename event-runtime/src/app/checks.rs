//! The start-up checks: run when the app is built, and again by `serve*` before it binds (the
//! builder methods may have changed what they look at).

use std::time::Duration;

use crate::app::App;
use crate::config::{ConfigError, Mode, ModeSource};
use crate::handler::registry::AppError;

impl App {
    /// The start-up checks, run when the app is built and again by `serve*` before it binds
    /// (the builder methods may have changed what they look at).
    pub(crate) fn check_startup(&self) -> Result<(), ConfigError> {
        self.check_names()?;
        self.check_timeouts()
    }

    /// Start-up check: every name a delivery may put into a sidecar URL follows its rule
    /// ([`crate::wire::names::check_component`], [`crate::wire::names::check_topic`]): each handler's pubsub
    /// component, dead-letter topic and retry topics (a long topic plus `.retry.<app>.<N>s` can pass
    /// Kafka's 249 characters), and the Dapr dead-letter topic. Caught here, not as a failed
    /// publish on every delivery.
    fn check_names(&self) -> Result<(), ConfigError> {
        use crate::wire::names::{check_component, check_topic};
        for h in &self.run.registry.handlers {
            let refused = |invalid| ConfigError::InvalidName {
                owner: format!("handler `{}`", h.def.qualified_name()),
                invalid,
            };
            check_component("pubsub component", &h.pubsub).map_err(refused)?;
            check_topic(&h.dlq).map_err(refused)?;
        }
        // Every subscribed topic, the retry topics included.
        for sub in &self.run.registry.topics {
            let owner = sub
                .handlers
                .first()
                .map(|&i| &self.run.registry.handlers[i]);
            let refused = |invalid| ConfigError::InvalidName {
                owner: owner.map_or_else(
                    || format!("topic `{}`", sub.topic),
                    |h| format!("handler `{}`", h.def.qualified_name()),
                ),
                invalid,
            };
            check_component("pubsub component", &sub.pubsub).map_err(refused)?;
            check_topic(&sub.topic).map_err(refused)?;
        }
        if let Some(topic) = &self.declared.dapr_dead_letter_topic {
            check_topic(topic).map_err(|invalid| ConfigError::InvalidName {
                owner: "App::with_dapr_dead_letter_topic".into(),
                invalid,
            })?;
        }
        Ok(())
    }

    /// Start-up check: every idempotent handler's timeout (its own `timeout = N`, else the
    /// app-wide one) is shorter than the idempotency claim lease, so no duplicate delivery can
    /// take the claim over while the first run may still be going.
    fn check_timeouts(&self) -> Result<(), ConfigError> {
        let lease = self.run.settings.claim_lease;
        for h in self
            .run
            .registry
            .handlers
            .iter()
            .filter(|h| h.def.idempotent)
        {
            let (timeout, timeout_from) = match h.def.timeout_secs {
                Some(secs) => (Duration::from_secs(secs), "its own `timeout`"),
                None => (
                    self.run.settings.handler_timeout,
                    "the app-wide handler timeout, EVENTS_HANDLER_TIMEOUT_SECS",
                ),
            };
            if timeout >= lease {
                return Err(ConfigError::TimeoutNotUnderLease {
                    handler: h.def.qualified_name(),
                    timeout_secs: timeout.as_secs(),
                    timeout_from,
                    lease_secs: lease.as_secs(),
                });
            }
        }
        Ok(())
    }
}

/// A start-up error as `serve` returns it.
pub(crate) fn refused(e: ConfigError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, AppError::Config(e))
}

/// What a served app says about its mode: a warning when it fell back to the embedded broker
/// because nothing named a mode or a sidecar, a note when embedded was asked for.
pub(crate) fn mode_notice(
    mode: Mode,
    source: ModeSource,
) -> Option<(tracing::Level, &'static str)> {
    match (mode, source) {
        (Mode::Dapr, _) => None,
        (Mode::Embedded, ModeSource::Default) => Some((
            tracing::Level::WARN,
            "EMBEDDED MODE: neither EVENTS_MODE nor a Dapr sidecar variable (DAPR_HTTP_PORT, \
             DAPR_HTTP_ENDPOINT) is set, so events stay in memory in this process and are LOST \
             when it exits. To use the Dapr sidecar set EVENTS_MODE=dapr (or DAPR_HTTP_PORT); to \
             keep the embedded broker and silence this warning set EVENTS_MODE=embedded",
        )),
        (Mode::Embedded, _) => Some((
            tracing::Level::INFO,
            "embedded mode: events stay in memory in this process and are lost when it exits",
        )),
    }
}
