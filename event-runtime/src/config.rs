#![doc = include_str!("../docs/configuration.md")]

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::wire::names::{check_component, check_topic, shown, InvalidName};
use crate::wire::signing::{SigningKey, MIN_SIGNING_KEY_BYTES};

/// A variable whose value cannot be used, or settings that contradict each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable is set to a value that does not parse.
    #[error("{var}={} is not valid: expected {expected}", shown(.value))]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        expected: String,
    },
    /// A name the app would put into a sidecar URL breaks its rule: a handler's pubsub
    /// component, dead-letter topic or retry topic, or the Dapr dead-letter topic.
    #[error("{owner}: {invalid}")]
    InvalidName {
        /// Whose name: ``handler `module::name` `` or `App::with_dapr_dead_letter_topic`.
        owner: String,
        /// The name and the rule it breaks.
        invalid: InvalidName,
    },
    /// The app takes delayed retries from a Dapr sidecar, and has no secret to sign them with.
    #[error(
        "handler `{handler}` has delayed retries, and on Dapr their bookkeeping must be signed \
         with a secret that every replica shares: set EVENTS_SIGNING_KEY (at least 16 bytes, \
         from a secret store) or call App::with_signing_key"
    )]
    SigningKeyRequired {
        /// The first handler with delayed retries (`module::name`).
        handler: String,
    },
    /// A bulk subscription could be sent a batch larger than the app reads.
    #[error(
        "{pubsub}/{topic} is subscribed in bulk with up to {max_messages} records, which could \
         make a batch of {batch_bytes} bytes (records of EVENTS_MAX_MESSAGE_BYTES, base64), over \
         EVENTS_MAX_BULK_BODY_BYTES ({limit}): lower `max_messages` or raise the limit"
    )]
    BulkBatchOverLimit {
        /// Pubsub.
        pubsub: String,
        /// Topic.
        topic: String,
        /// The subscription's `maxMessagesCount`.
        max_messages: u32,
        /// The largest batch it could be sent.
        batch_bytes: usize,
        /// The app's limit.
        limit: usize,
    },
    /// An idempotent handler may run as long as, or longer than, its idempotency claim is held.
    #[error(
        "handler `{handler}` is idempotent and may run for {timeout_secs} s ({timeout_from}), \
             which is not shorter than the idempotency claim lease of {lease_secs} s \
             (EVENTS_CLAIM_LEASE_SECS): once the lease runs out a duplicate delivery could run \
             beside it; make the timeout shorter than the lease, or the lease longer"
    )]
    TimeoutNotUnderLease {
        /// The handler (`module::name`).
        handler: String,
        /// Its timeout, in seconds.
        timeout_secs: u64,
        /// Where the timeout comes from: the handler's `timeout = N`, or the app-wide default.
        timeout_from: &'static str,
        /// The claim lease, in seconds.
        lease_secs: u64,
    },
}

/// Whether the app talks to a Dapr sidecar or runs the embedded broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A Dapr sidecar delivers and publishes.
    Dapr,
    /// The in-process broker delivers and publishes.
    Embedded,
}

/// What decided the app's [`Mode`] (a served app says so at start-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeSource {
    /// `EVENTS_MODE` names the mode.
    EventsMode,
    /// `DAPR_HTTP_ENDPOINT` or `DAPR_HTTP_PORT` is set: Dapr.
    SidecarVariable,
    /// Nothing names a mode or a sidecar: embedded.
    Default,
    /// The code chose it (`App::with_mode`, `App::with_broker`, `App::with_dapr_client`).
    Code,
}

impl Mode {
    /// `EVENTS_MODE=dapr|embedded` when set, else Dapr when `DAPR_HTTP_ENDPOINT` or
    /// `DAPR_HTTP_PORT` is set, else embedded. Any other `EVENTS_MODE` is an error.
    pub fn from_env() -> Result<Mode, ConfigError> {
        Ok(mode(&Vars(&process_env))?.0)
    }
}

/// Everything the runtime reads from the environment, parsed and checked.
#[derive(Debug, Clone)]
pub struct Config {
    /// Dapr or embedded.
    pub mode: Mode,
    /// What decided the mode.
    pub mode_source: ModeSource,
    /// The port `serve` binds: `APP_PORT`, else 8080.
    pub app_port: u16,
    /// The sidecar's base URL: `DAPR_HTTP_ENDPOINT`, else `http://127.0.0.1:$DAPR_HTTP_PORT`
    /// (3500).
    pub dapr_endpoint: String,
    /// `DAPR_API_TOKEN`, sent on every call to the sidecar.
    pub dapr_api_token: Option<String>,
    /// `APP_ID`, else `event-runtime-app`.
    pub app_id: String,
    /// `EVENTS_PUBSUB`, else `kafka-pubsub`.
    pub default_pubsub: String,
    /// The delivery pipeline's tunables.
    pub settings: Settings,
}

impl Config {
    /// The process environment, parsed.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(process_env)
    }

    /// The environment `lookup` answers (`None` for an unset variable), parsed.
    ///
    /// ```
    /// use event_runtime::config::{Config, ConfigError, Mode};
    /// let env = |name: &str| (name == "DAPR_HTTP_PORT").then(|| "3501".to_owned());
    /// let config = Config::from_lookup(env).unwrap();
    /// assert_eq!((config.mode, config.dapr_endpoint.as_str()), (Mode::Dapr, "http://127.0.0.1:3501"));
    ///
    /// let env = |name: &str| (name == "APP_PORT").then(|| "80a".to_owned());
    /// let err = Config::from_lookup(env).unwrap_err();
    /// assert!(matches!(&err, ConfigError::Invalid { var: "APP_PORT", value, .. } if value == "80a"));
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let vars = Vars(&lookup);
        let (mode, mode_source) = mode(&vars)?;
        Ok(Config {
            mode,
            mode_source,
            app_port: vars.port("APP_PORT", 8080, 0..=u16::MAX)?,
            dapr_endpoint: dapr_endpoint_from(&vars)?,
            dapr_api_token: vars.get("DAPR_API_TOKEN"),
            app_id: vars.string("APP_ID", "event-runtime-app"),
            default_pubsub: vars.component("EVENTS_PUBSUB", "pubsub component", "kafka-pubsub")?,
            settings: Settings::parse(&vars)?,
        })
    }
}

/// The pubsub component a handler uses when it names none: `EVENTS_PUBSUB`, else `kafka-pubsub`.
pub fn default_pubsub() -> String {
    Vars(&process_env).string("EVENTS_PUBSUB", "kafka-pubsub")
}

/// This app's id (`APP_ID`), used as the CloudEvent `source` and to namespace idempotency keys.
pub fn app_id() -> String {
    Vars(&process_env).string("APP_ID", "event-runtime-app")
}

/// The port `serve` binds: `APP_PORT`, else 8080.
pub fn app_port() -> Result<u16, ConfigError> {
    Vars(&process_env).port("APP_PORT", 8080, 0..=u16::MAX)
}

/// The sidecar's HTTP port: `DAPR_HTTP_PORT`, else 3500.
pub fn dapr_http_port() -> Result<u16, ConfigError> {
    Vars(&process_env).port("DAPR_HTTP_PORT", 3500, 1..=u16::MAX)
}

/// The sidecar's base URL: `DAPR_HTTP_ENDPOINT` (an `http://` or `https://` URL, Dapr's
/// standard variable) when set, else `http://127.0.0.1:$DAPR_HTTP_PORT`.
pub fn dapr_endpoint() -> Result<String, ConfigError> {
    dapr_endpoint_from(&Vars(&process_env))
}

/// A non-empty environment variable.
pub fn non_empty(name: &str) -> Option<String> {
    Vars(&process_env).get(name)
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
    /// `APP_API_TOKEN`: when set, Dapr-facing routes require it. Set but empty is an error.
    pub app_api_token: Option<String>,
    /// `EVENTS_SIGNING_KEY`: the secret that signs retry bookkeeping and dead letters (at least
    /// 16 bytes). Without it an app on Dapr with delayed retries refuses to start, and any other
    /// app signs with a random key of its process.
    pub signing_key: Option<SigningKey>,
    /// `EVENTS_MAX_MESSAGE_BYTES`: the largest record the broker takes (1 MiB, Kafka's default
    /// `message.max.bytes`). Every publish is checked against it before it is sent.
    pub max_message_bytes: usize,
    /// `EVENTS_MAX_BULK_BODY_BYTES`: the largest bulk delivery body read (256 MiB). A bulk
    /// subscription whose batch could be larger (`max_messages` records of
    /// `EVENTS_MAX_MESSAGE_BYTES`) is refused at start-up.
    pub max_bulk_body_bytes: usize,
}

impl Settings {
    /// Defaults, with the process environment's overrides.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Self::parse(&Vars(&process_env))
    }

    /// Defaults, with the overrides `lookup` answers.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        Self::parse(&Vars(&lookup))
    }

    fn parse(vars: &Vars<'_>) -> Result<Settings, ConfigError> {
        Ok(Settings {
            default_dlq: vars.topic("EVENTS_DLQ", "dlq")?,
            body_limit: 4 * 1024 * 1024,
            handler_timeout: vars.secs("EVENTS_HANDLER_TIMEOUT_SECS", 60, 1..=DAY)?,
            claim_lease: vars.secs("EVENTS_CLAIM_LEASE_SECS", 120, 1..=7 * DAY)?,
            idempotency_retention: Duration::from_secs(7 * DAY),
            state_store: vars.component("EVENTS_STATE_STORE", "state store", "statestore")?,
            max_hold: vars.secs("EVENTS_MAX_HOLD_SECS", 20, 0..=DAY)?,
            app_api_token: vars.secret("APP_API_TOKEN", 1)?,
            signing_key: vars
                .secret("EVENTS_SIGNING_KEY", MIN_SIGNING_KEY_BYTES)?
                .map(SigningKey::new),
            max_message_bytes: vars.bytes("EVENTS_MAX_MESSAGE_BYTES", MIB, KIB..=GIB)?,
            max_bulk_body_bytes: vars.bytes(
                "EVENTS_MAX_BULK_BODY_BYTES",
                256 * MIB,
                MIB..=4 * GIB,
            )?,
        })
    }
}

const DAY: u64 = 24 * 3600;
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// An environment: a lookup, read with the rules every variable shares.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    /// The variable's value; `None` when unset or empty.
    fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.is_empty())
    }

    fn string(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    /// The variable parsed by `parse`, `None` when unset or empty.
    fn parse<T>(
        &self,
        var: &'static str,
        expected: impl FnOnce() -> String,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.get(var) else {
            return Ok(None);
        };
        match parse(&value) {
            Some(v) => Ok(Some(v)),
            None => Err(ConfigError::Invalid {
                var,
                value,
                expected: expected(),
            }),
        }
    }

    fn port(
        &self,
        var: &'static str,
        default: u16,
        range: RangeInclusive<u16>,
    ) -> Result<u16, ConfigError> {
        let expected = || format!("a port number from {} to {}", range.start(), range.end());
        let port = self.parse(var, expected, |v| {
            v.parse().ok().filter(|p| range.contains(p))
        })?;
        Ok(port.unwrap_or(default))
    }

    fn secs(
        &self,
        var: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        let expected = || format!("whole seconds from {} to {}", range.start(), range.end());
        let secs = self.parse(var, expected, |v| {
            v.parse().ok().filter(|s| range.contains(s))
        })?;
        Ok(Duration::from_secs(secs.unwrap_or(default)))
    }

    /// A size in bytes.
    fn bytes(
        &self,
        var: &'static str,
        default: usize,
        range: RangeInclusive<usize>,
    ) -> Result<usize, ConfigError> {
        let expected = || format!("a size in bytes from {} to {}", range.start(), range.end());
        let bytes = self.parse(var, expected, |v| {
            v.parse().ok().filter(|b| range.contains(b))
        })?;
        Ok(bytes.unwrap_or(default))
    }

    /// A secret: unset is `None`, but set and empty (a secret reference that resolved to
    /// nothing, say) or shorter than `min` bytes is an error, never "no secret". The value
    /// stays out of the error.
    fn secret(&self, var: &'static str, min: usize) -> Result<Option<String>, ConfigError> {
        match (self.0)(var) {
            None => Ok(None),
            Some(value) if value.len() >= min.max(1) => Ok(Some(value)),
            Some(value) => Err(ConfigError::Invalid {
                var,
                value: format!("<{} bytes>", value.len()),
                expected: format!("a secret of at least {} bytes", min.max(1)),
            }),
        }
    }

    /// A Dapr component name ([`check_component`]).
    fn component(
        &self,
        var: &'static str,
        what: &'static str,
        default: &str,
    ) -> Result<String, ConfigError> {
        self.name(var, default, |v| check_component(what, v))
    }

    /// A Kafka topic name ([`check_topic`]).
    fn topic(&self, var: &'static str, default: &str) -> Result<String, ConfigError> {
        self.name(var, default, check_topic)
    }

    fn name(
        &self,
        var: &'static str,
        default: &str,
        check: impl FnOnce(&str) -> Result<(), InvalidName>,
    ) -> Result<String, ConfigError> {
        let Some(value) = self.get(var) else {
            return Ok(default.to_owned());
        };
        match check(&value) {
            Ok(()) => Ok(value),
            Err(e) => Err(ConfigError::Invalid {
                var,
                value,
                expected: format!("a {} name: {}", e.what, e.reason),
            }),
        }
    }
}

/// The mode, and what decided it.
fn mode(vars: &Vars<'_>) -> Result<(Mode, ModeSource), ConfigError> {
    let named = vars.parse(
        "EVENTS_MODE",
        || "`dapr` or `embedded`".to_owned(),
        |v| match v {
            "dapr" => Some(Mode::Dapr),
            "embedded" => Some(Mode::Embedded),
            _ => None,
        },
    )?;
    Ok(match named {
        Some(mode) => (mode, ModeSource::EventsMode),
        None if vars.get("DAPR_HTTP_ENDPOINT").is_some()
            || vars.get("DAPR_HTTP_PORT").is_some() =>
        {
            (Mode::Dapr, ModeSource::SidecarVariable)
        }
        None => (Mode::Embedded, ModeSource::Default),
    })
}

/// `DAPR_HTTP_ENDPOINT` when set (it wins over `DAPR_HTTP_PORT`, as in Dapr's SDKs), else
/// `http://127.0.0.1:$DAPR_HTTP_PORT`. A malformed `DAPR_HTTP_PORT` is an error either way.
fn dapr_endpoint_from(vars: &Vars<'_>) -> Result<String, ConfigError> {
    let port = vars.port("DAPR_HTTP_PORT", 3500, 1..=u16::MAX)?;
    let endpoint = vars.parse(
        "DAPR_HTTP_ENDPOINT",
        || {
            "an http:// or https:// URL with a host and no user, password, query or fragment, \
             like http://127.0.0.1:3500"
                .to_owned()
        },
        endpoint,
    );
    match endpoint {
        Ok(Some(url)) => Ok(url),
        Ok(None) => Ok(format!("http://127.0.0.1:{port}")),
        // A password stays out of the message (and so out of the logs).
        Err(ConfigError::Invalid {
            var,
            value,
            expected,
        }) => Err(ConfigError::Invalid {
            var,
            value: without_password(&value),
            expected,
        }),
        Err(e) => Err(e),
    }
}

/// An `http(s)://host[:port][/path]` URL, without a trailing `/`.
fn endpoint(value: &str) -> Option<String> {
    let url = reqwest::Url::parse(value).ok()?;
    let fine = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    fine.then(|| url.as_str().trim_end_matches('/').to_owned())
}

fn without_password(value: &str) -> String {
    match reqwest::Url::parse(value) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn parse(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(env(vars))
    }

    #[test]
    fn nothing_set_means_the_defaults_and_embedded() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            (c.mode, c.mode_source),
            (Mode::Embedded, ModeSource::Default)
        );
        assert_eq!(c.app_port, 8080);
        assert_eq!(c.dapr_endpoint, "http://127.0.0.1:3500");
        assert_eq!(
            (c.app_id.as_str(), c.default_pubsub.as_str()),
            ("event-runtime-app", "kafka-pubsub")
        );
        let s = c.settings;
        assert_eq!(s.handler_timeout, Duration::from_secs(60));
        assert_eq!(s.claim_lease, Duration::from_secs(120));
        assert_eq!(s.max_hold, Duration::from_secs(20));
        assert_eq!(
            (s.default_dlq.as_str(), s.state_store.as_str()),
            ("dlq", "statestore")
        );
        assert_eq!(s.app_api_token, None);
    }

    #[test]
    fn empty_values_keep_the_defaults() {
        let all = [
            "APP_PORT",
            "DAPR_HTTP_PORT",
            "DAPR_HTTP_ENDPOINT",
            "EVENTS_MODE",
            "EVENTS_HANDLER_TIMEOUT_SECS",
            "EVENTS_CLAIM_LEASE_SECS",
            "EVENTS_MAX_HOLD_SECS",
            "EVENTS_PUBSUB",
            "EVENTS_STATE_STORE",
            "EVENTS_DLQ",
            "EVENTS_MAX_MESSAGE_BYTES",
            "EVENTS_MAX_BULK_BODY_BYTES",
        ];
        let vars: Vec<(&str, &str)> = all.iter().map(|k| (*k, "")).collect();
        let c = parse(&vars).unwrap();
        assert_eq!(
            (c.mode, c.mode_source),
            (Mode::Embedded, ModeSource::Default)
        );
        assert_eq!(
            (c.app_port, c.dapr_endpoint.as_str()),
            (8080, "http://127.0.0.1:3500")
        );
        assert_eq!(c.settings.app_api_token, None);
    }

    #[test]
    fn valid_values_are_read() {
        let c = parse(&[
            ("APP_PORT", "9090"),
            ("DAPR_HTTP_PORT", "3501"),
            ("EVENTS_HANDLER_TIMEOUT_SECS", "5"),
            ("EVENTS_CLAIM_LEASE_SECS", "6"),
            ("EVENTS_MAX_HOLD_SECS", "0"),
            ("EVENTS_PUBSUB", "my_pubsub.v2"),
            ("EVENTS_STATE_STORE", "redis-state"),
            ("EVENTS_DLQ", "s5-dlq"),
            ("APP_API_TOKEN", "t"),
            ("DAPR_API_TOKEN", "d"),
        ])
        .unwrap();
        assert_eq!(
            (c.mode, c.mode_source),
            (Mode::Dapr, ModeSource::SidecarVariable)
        );
        assert_eq!(
            (c.app_port, c.dapr_endpoint.as_str()),
            (9090, "http://127.0.0.1:3501")
        );
        assert_eq!(c.default_pubsub, "my_pubsub.v2");
        assert_eq!(c.dapr_api_token.as_deref(), Some("d"));
        let s = c.settings;
        assert_eq!(
            (s.handler_timeout, s.claim_lease, s.max_hold),
            (
                Duration::from_secs(5),
                Duration::from_secs(6),
                Duration::ZERO
            )
        );
        assert_eq!(
            (s.state_store.as_str(), s.default_dlq.as_str()),
            ("redis-state", "s5-dlq")
        );
        assert_eq!(s.app_api_token.as_deref(), Some("t"));
    }

    #[test]
    fn each_malformed_variable_is_named_with_its_value() {
        let cases = [
            ("APP_PORT", "80a"),
            ("APP_PORT", "65536"),
            ("APP_PORT", " 8080"),
            ("DAPR_HTTP_PORT", "35OO"),
            ("DAPR_HTTP_PORT", "0"),
            ("EVENTS_HANDLER_TIMEOUT_SECS", "60s"),
            ("EVENTS_HANDLER_TIMEOUT_SECS", "0"),
            ("EVENTS_HANDLER_TIMEOUT_SECS", "-1"),
            ("EVENTS_CLAIM_LEASE_SECS", "2m"),
            ("EVENTS_CLAIM_LEASE_SECS", "18446744073709551615"),
            ("EVENTS_MAX_HOLD_SECS", "1.5"),
            ("EVENTS_MODE", "foo"),
            ("EVENTS_MODE", "Dapr"),
            ("DAPR_HTTP_ENDPOINT", "127.0.0.1:3500"),
            ("DAPR_HTTP_ENDPOINT", "ftp://127.0.0.1"),
            ("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:3500/?x=1"),
            ("EVENTS_PUBSUB", "kafka-pubsub/../../state"),
            ("EVENTS_STATE_STORE", "state store"),
            ("EVENTS_DLQ", ".."),
        ];
        for (var, value) in cases {
            let err = parse(&[(var, value)]).expect_err(&format!("{var}={value}"));
            let ConfigError::Invalid {
                var: named,
                value: shown,
                ..
            } = &err
            else {
                panic!("{var}={value}: {err:?}")
            };
            assert_eq!((*named, shown.as_str()), (var, value), "{err}");
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("{var}={value:?} is not valid: expected ")),
                "{text}"
            );
        }
    }

    #[test]
    fn the_ranges_take_their_upper_bound_and_refuse_one_more() {
        type Read = fn(&Settings) -> Duration;
        let cases: [(&str, u64, Read); 3] = [
            ("EVENTS_HANDLER_TIMEOUT_SECS", 86_400, |s| s.handler_timeout),
            ("EVENTS_CLAIM_LEASE_SECS", 604_800, |s| s.claim_lease),
            ("EVENTS_MAX_HOLD_SECS", 86_400, |s| s.max_hold),
        ];
        for (var, bound, read) in cases {
            let at = bound.to_string();
            let c = parse(&[(var, &at)]).unwrap_or_else(|e| panic!("{var}={at}: {e}"));
            assert_eq!(read(&c.settings), Duration::from_secs(bound), "{var}");
            let over = (bound + 1).to_string();
            let err = parse(&[(var, &over)]).expect_err(&format!("{var}={over}"));
            assert!(
                matches!(&err, ConfigError::Invalid { var: v, value, .. } if *v == var && *value == over),
                "{err:?}"
            );
            assert!(err.to_string().ends_with(&format!(" to {bound}")), "{err}");
        }
    }

    #[test]
    fn the_sidecar_endpoint_wins_over_the_port_and_means_dapr() {
        let c = parse(&[
            ("DAPR_HTTP_ENDPOINT", "https://dapr.example.com:3443/"),
            ("DAPR_HTTP_PORT", "3501"),
        ])
        .unwrap();
        assert_eq!(
            (c.mode, c.mode_source),
            (Mode::Dapr, ModeSource::SidecarVariable)
        );
        assert_eq!(c.dapr_endpoint, "https://dapr.example.com:3443");
        let c = parse(&[("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:3500")]).unwrap();
        assert_eq!(
            (c.mode, c.dapr_endpoint.as_str()),
            (Mode::Dapr, "http://127.0.0.1:3500")
        );
        // EVENTS_MODE still has the last word.
        let c = parse(&[
            ("DAPR_HTTP_ENDPOINT", "http://127.0.0.1:3500"),
            ("EVENTS_MODE", "embedded"),
        ])
        .unwrap();
        assert_eq!(
            (c.mode, c.mode_source),
            (Mode::Embedded, ModeSource::EventsMode)
        );
        // A malformed port is an error even when the endpoint wins.
        let err = parse(&[
            ("DAPR_HTTP_ENDPOINT", "http://h:1"),
            ("DAPR_HTTP_PORT", "x"),
        ])
        .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    var: "DAPR_HTTP_PORT",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn an_endpoint_password_stays_out_of_the_error() {
        let err =
            parse(&[("DAPR_HTTP_ENDPOINT", "http://user:s3cret@127.0.0.1:3500")]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("DAPR_HTTP_ENDPOINT") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[test]
    fn explicit_modes() {
        let c = parse(&[("EVENTS_MODE", "dapr")]).unwrap();
        assert_eq!(
            (c.mode, c.mode_source),
            (Mode::Dapr, ModeSource::EventsMode)
        );
        let c = parse(&[("EVENTS_MODE", "embedded"), ("DAPR_HTTP_PORT", "3500")]).unwrap();
        assert_eq!(
            (c.mode, c.mode_source),
            (Mode::Embedded, ModeSource::EventsMode)
        );
    }

    #[test]
    fn an_empty_or_short_secret_is_an_error_not_no_secret() {
        for (var, value) in [
            ("APP_API_TOKEN", ""),
            ("EVENTS_SIGNING_KEY", ""),
            ("EVENTS_SIGNING_KEY", "fifteen bytes.."),
        ] {
            let err = parse(&[(var, value)]).expect_err(var);
            assert!(
                matches!(&err, ConfigError::Invalid { var: v, .. } if *v == var),
                "{err:?}"
            );
            assert!(err.to_string().contains("a secret of at least"), "{err}");
        }
        let c = parse(&[
            ("EVENTS_SIGNING_KEY", "sixteen bytes..."),
            ("APP_API_TOKEN", "t"),
        ])
        .unwrap();
        assert!(c.settings.signing_key.is_some());
        assert_eq!(c.settings.app_api_token.as_deref(), Some("t"));
        let text = parse(&[("EVENTS_SIGNING_KEY", "s3cret")])
            .unwrap_err()
            .to_string();
        assert!(!text.contains("s3cret"), "the secret stays out: {text}");
    }

    #[test]
    fn the_broker_limits_have_kafkas_defaults_and_bounds() {
        let s = parse(&[]).unwrap().settings;
        assert_eq!(s.max_message_bytes, 1024 * 1024);
        assert_eq!(s.max_bulk_body_bytes, 256 * 1024 * 1024);
        let s = parse(&[("EVENTS_MAX_MESSAGE_BYTES", "2000000")])
            .unwrap()
            .settings;
        assert_eq!(s.max_message_bytes, 2_000_000);
        for (var, value) in [
            ("EVENTS_MAX_MESSAGE_BYTES", "1023"),
            ("EVENTS_MAX_MESSAGE_BYTES", "1MB"),
            ("EVENTS_MAX_BULK_BODY_BYTES", "0"),
        ] {
            let err = parse(&[(var, value)]).expect_err(value);
            assert!(matches!(&err, ConfigError::Invalid { var: v, .. } if *v == var));
        }
    }

    #[test]
    fn a_long_value_is_cut_in_the_message() {
        let long = "9".repeat(10_000);
        let text = parse(&[("APP_PORT", &long)]).unwrap_err().to_string();
        assert!(text.len() < 300 && text.contains("(10000 bytes)"), "{text}");
    }
}
