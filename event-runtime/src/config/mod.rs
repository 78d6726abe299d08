#![doc = include_str!("../../docs/configuration.md")]

use std::time::Duration;

use crate::wire::names::{shown, InvalidName};
use crate::wire::signing::{SigningKey, MIN_SIGNING_KEY_BYTES};
use vars::Vars;

mod deprecated;
mod vars;

#[allow(deprecated)]
pub use deprecated::{app_id, app_port, dapr_endpoint, dapr_http_port, default_pubsub, non_empty};

/// The app id when `APP_ID` is unset.
pub const DEFAULT_APP_ID: &str = "event-runtime-app";
/// The pubsub component when `EVENTS_PUBSUB` is unset.
pub const DEFAULT_PUBSUB: &str = "kafka-pubsub";

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

/// Where the app is deployed, which decides retention and replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deployment {
    /// A local or single-broker cluster (Minikube, kind, a laptop): one replica, local retention.
    #[default]
    Local,
    /// A managed or multi-broker cluster: the topic's replicas, cloud retention.
    Cloud,
}

/// Where the generated manifests are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestTarget {
    /// `EVENTS_ENV`: `cloud`, `prod` or `production` is [`Deployment::Cloud`]; `local`, `dev`
    /// or `development`, or unset, is [`Deployment::Local`]; any other value is an error.
    pub deployment: Deployment,
    /// `KAFKA_CLUSTER`: the Strimzi cluster the `KafkaTopic`s are labelled with (`kafka`).
    pub kafka_cluster: String,
    /// `EVENTS_NAMESPACE`: the Kubernetes namespace of the manifests (none: the current one).
    pub namespace: Option<String>,
}

impl Default for ManifestTarget {
    fn default() -> Self {
        ManifestTarget {
            deployment: Deployment::Local,
            kafka_cluster: "kafka".to_owned(),
            namespace: None,
        }
    }
}

/// Everything the runtime reads from the environment, parsed and checked.
#[derive(Clone)]
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
    /// `DAPR_API_TOKEN`, sent on every call to the sidecar (visible ASCII).
    pub dapr_api_token: Option<String>,
    /// `APP_ID` (letters, digits, `.`, `_`, `-`), else [`DEFAULT_APP_ID`].
    pub app_id: String,
    /// `EVENTS_PUBSUB` (a Dapr component name), else [`DEFAULT_PUBSUB`].
    pub default_pubsub: String,
    /// The delivery pipeline's tunables.
    pub settings: Settings,
    /// `EVENTS_ENV`, `KAFKA_CLUSTER` and `EVENTS_NAMESPACE`: where the manifests go.
    pub manifests: ManifestTarget,
    /// `EVENT_SCHEMAS_UPDATE=1` (or `true`): a schema snapshot check rewrites the snapshot
    /// instead of comparing with it. `0`, `false` or unset: it compares.
    pub schemas_update: bool,
}

impl Default for Config {
    /// Every variable unset.
    fn default() -> Self {
        Config::from_lookup(|_| None).expect("the defaults are valid")
    }
}

impl Config {
    /// The process environment, parsed: the one place the runtime reads it.
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
            dapr_api_token: vars.header_secret("DAPR_API_TOKEN")?,
            app_id: parse_app_id(&vars)?,
            default_pubsub: vars.component("EVENTS_PUBSUB", "pubsub component", DEFAULT_PUBSUB)?,
            settings: Settings::parse(&vars)?,
            manifests: ManifestTarget {
                deployment: deployment(&vars)?,
                kafka_cluster: vars
                    .kubernetes_name("KAFKA_CLUSTER")?
                    .unwrap_or_else(|| "kafka".to_owned()),
                namespace: vars.kubernetes_name("EVENTS_NAMESPACE")?,
            },
            schemas_update: vars
                .choice(
                    "EVENT_SCHEMAS_UPDATE",
                    &[("1", true), ("true", true), ("0", false), ("false", false)],
                )?
                .unwrap_or(false),
        })
    }
}

/// Tunables of the delivery pipeline, with their defaults.
#[derive(Clone)]
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
    /// How daprd hands events to the app (`EVENTS_TRANSPORT`): `http`, the default, or
    /// `grpc-stream` (feature `grpc`).
    pub transport: Transport,
    /// daprd's gRPC API, which a `grpc-stream` app dials: `DAPR_GRPC_ENDPOINT`, else
    /// `http://127.0.0.1:$DAPR_GRPC_PORT` (50001).
    pub dapr_grpc_endpoint: String,
}

/// How daprd hands events to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Transport {
    /// daprd calls the app's routes (`GET /dapr/subscribe`, then a POST per event).
    #[default]
    Http,
    /// The app dials daprd's streaming subscription (`SubscribeTopicEventsAlpha1`), one
    /// stream per subscription, and answers each event on it: daprd needs no route into the
    /// app. Feature `grpc`.
    GrpcStream,
}

impl Settings {
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
            transport: vars
                .choice(
                    "EVENTS_TRANSPORT",
                    &[
                        ("http", Transport::Http),
                        ("grpc-stream", Transport::GrpcStream),
                    ],
                )?
                .unwrap_or_default(),
            dapr_grpc_endpoint: dapr_grpc_endpoint_from(vars)?,
        })
    }
}

/// A token's debug form: whether it is set, never its value.
fn redacted(token: &Option<String>) -> Option<&'static str> {
    token.as_ref().map(|_| "<redacted>")
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("mode_source", &self.mode_source)
            .field("app_port", &self.app_port)
            .field("dapr_endpoint", &self.dapr_endpoint)
            .field("dapr_api_token", &redacted(&self.dapr_api_token))
            .field("app_id", &self.app_id)
            .field("default_pubsub", &self.default_pubsub)
            .field("settings", &self.settings)
            .field("manifests", &self.manifests)
            .field("schemas_update", &self.schemas_update)
            .finish()
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("default_dlq", &self.default_dlq)
            .field("body_limit", &self.body_limit)
            .field("handler_timeout", &self.handler_timeout)
            .field("claim_lease", &self.claim_lease)
            .field("idempotency_retention", &self.idempotency_retention)
            .field("state_store", &self.state_store)
            .field("max_hold", &self.max_hold)
            .field("app_api_token", &redacted(&self.app_api_token))
            .field("signing_key", &self.signing_key)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_bulk_body_bytes", &self.max_bulk_body_bytes)
            .finish()
    }
}

const DAY: u64 = 24 * 3600;
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `APP_ID`: it names retry topics, idempotency keys and Dapr scopes, so only letters,
/// digits, `.`, `_` and `-`, at most 200 bytes.
fn parse_app_id(vars: &Vars<'_>) -> Result<String, ConfigError> {
    let expected = || "letters, digits, `.`, `_` and `-`, at most 200 bytes".to_owned();
    let fine = |v: &str| {
        v.len() <= 200
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    let id = vars.parse("APP_ID", expected, |v| fine(v).then(|| v.to_owned()))?;
    Ok(id.unwrap_or_else(|| DEFAULT_APP_ID.to_owned()))
}

/// `EVENTS_ENV`, known values only: an unknown one is an error, never local by default.
fn deployment(vars: &Vars<'_>) -> Result<Deployment, ConfigError> {
    let known = [
        ("local", Deployment::Local),
        ("dev", Deployment::Local),
        ("development", Deployment::Local),
        ("cloud", Deployment::Cloud),
        ("prod", Deployment::Cloud),
        ("production", Deployment::Cloud),
    ];
    Ok(vars.choice("EVENTS_ENV", &known)?.unwrap_or_default())
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

/// `DAPR_GRPC_ENDPOINT` when set, else `http://127.0.0.1:$DAPR_GRPC_PORT`.
fn dapr_grpc_endpoint_from(vars: &Vars<'_>) -> Result<String, ConfigError> {
    let port = vars.port("DAPR_GRPC_PORT", 50001, 1..=u16::MAX)?;
    let expected =
        || "an http:// or https:// URL with a host, like http://127.0.0.1:50001".to_owned();
    Ok(vars
        .parse("DAPR_GRPC_ENDPOINT", expected, endpoint)?
        .unwrap_or_else(|| format!("http://127.0.0.1:{port}")))
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
mod tests;
