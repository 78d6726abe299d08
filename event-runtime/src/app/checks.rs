//! The start-up checks: run when the app is built, and again by `serve*` before it binds (the
//! builder methods may have changed what they look at).

use std::time::Duration;

use crate::app::App;
use crate::config::{ConfigError, Mode, ModeSource, Settings};
use crate::handler::def::RetryMode;
use crate::handler::registry::AppError;
use crate::wire::signing::SigningKey;

impl App {
    /// The start-up checks, run when the app is built and again by `serve*` before it binds
    /// (the builder methods may have changed what they look at).
    pub(crate) fn check_startup(&self) -> Result<(), ConfigError> {
        self.check_names()?;
        self.check_timeouts()?;
        self.check_bounds()
    }

    /// The start-up checks [`App::router`] makes too: secrets and bounds.
    pub(crate) fn check_bounds(&self) -> Result<(), ConfigError> {
        self.check_secrets()?;
        self.check_bulk_batches()
    }

    /// Start-up check: an app on Dapr with delayed retries has a signing key of its own (the
    /// retry topics are open to whoever can publish on the broker, and only the key tells this
    /// app's retries from forged ones), and an API token given in code is not empty.
    fn check_secrets(&self) -> Result<(), ConfigError> {
        self.signing_key()?;
        if self.run.settings.app_api_token.as_deref() == Some("") {
            return Err(ConfigError::Invalid {
                var: "APP_API_TOKEN",
                value: String::new(),
                expected: "a token of at least 1 byte (App::with_app_api_token)".into(),
            });
        }
        Ok(())
    }

    /// The key retry bookkeeping and dead letters are signed with: the configured one, else
    /// this process's random key, except on Dapr with delayed retries (see [`Self::check_secrets`]).
    pub(crate) fn signing_key(&self) -> Result<SigningKey, ConfigError> {
        if let Some(key) = &self.run.settings.signing_key {
            return Ok(key.clone());
        }
        let delayed = self
            .run
            .registry
            .handlers
            .iter()
            .find(|h| h.def.retry_mode == RetryMode::Delayed && !h.def.retry.is_empty());
        match (self.io.mode, delayed) {
            (Mode::Dapr, Some(h)) => Err(ConfigError::SigningKeyRequired {
                handler: h.def.qualified_name(),
            }),
            _ => Ok(SigningKey::process()),
        }
    }

    /// Start-up check: no bulk subscription can be sent a batch larger than the app reads
    /// (`EVENTS_MAX_BULK_BODY_BYTES`): a body refused as a whole would be redelivered as a
    /// whole, forever.
    fn check_bulk_batches(&self) -> Result<(), ConfigError> {
        let settings = &self.run.settings;
        for sub in &self.run.registry.topics {
            let Some(bulk) = sub.bulk else { continue };
            let batch_bytes = bulk_body_limit(settings, bulk.max_messages);
            if batch_bytes > settings.max_bulk_body_bytes {
                return Err(ConfigError::BulkBatchOverLimit {
                    pubsub: sub.pubsub.clone(),
                    topic: sub.topic.clone(),
                    max_messages: bulk.max_messages,
                    batch_bytes,
                    limit: settings.max_bulk_body_bytes,
                });
            }
        }
        Ok(())
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

/// The largest bulk body a subscription of `max_messages` records can be sent: each record of
/// up to `EVENTS_MAX_MESSAGE_BYTES`, base64 in its entry, with the entry's metadata.
pub(crate) fn bulk_body_limit(settings: &Settings, max_messages: u32) -> usize {
    const ENTRY_OVERHEAD: usize = 4 * 1024;
    let entry = settings.max_message_bytes.div_ceil(3) * 4 + ENTRY_OVERHEAD;
    entry.saturating_mul(max_messages.max(1) as usize)
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
