//! The sidecar client: publish and state calls over Dapr's HTTP API.
//!
//! Every name that goes into a sidecar URL (pubsub component, topic, state store, state key) is
//! checked first and refused with an [`InvalidName`] before any request is sent; the names that
//! pass are still percent-encoded as path segments.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::ConfigError;
use crate::publish::{OutgoingEvent, PublishError};

/// A minimal Dapr HTTP client (publish, state), sending `dapr-api-token` when configured.
#[derive(Clone, Debug)]
pub struct DaprClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// A state-store call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state store {store}: {operation} of `{key}` failed: {message}")]
pub struct StateError {
    /// The store.
    pub store: String,
    /// `get`, `save` or `delete`.
    pub operation: &'static str,
    /// The key.
    pub key: String,
    /// HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// What went wrong.
    pub message: String,
    /// Set when the call was refused before any request because the store name or the key is
    /// invalid: trying again cannot help.
    pub invalid_name: Option<Box<InvalidName>>,
}

impl StateError {
    fn refused(store: &str, operation: &'static str, key: &str, invalid: InvalidName) -> Self {
        StateError {
            store: store.to_owned(),
            operation,
            key: key.to_owned(),
            status: None,
            message: invalid.to_string(),
            invalid_name: Some(Box::new(invalid)),
        }
    }
}

/// A name refused before it reached a sidecar URL: it breaks the rule of what it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {}: {reason}", shown(.name))]
pub struct InvalidName {
    /// What the name names: `topic`, `pubsub component`, `state store` or `state key`.
    pub what: &'static str,
    /// The name as given.
    pub name: String,
    /// The rule it breaks.
    pub reason: String,
}

const TOPIC_RULE: &str =
    "Kafka topic names are 1 to 249 characters of `A-Z a-z 0-9 . _ -`, and not `.` or `..`";
const COMPONENT_RULE: &str = "Dapr component names are 1 to 253 characters of \
`A-Z a-z 0-9 . _ -`, and not `.` or `..` (on Kubernetes: lowercase letters, digits, `-` and `.`)";
const KEY_RULE: &str =
    "a state key is not empty, not `.` or `..`, and holds no `||` (Dapr's key-prefix separator)";

/// Checks a topic name against Kafka's rules ([`is_valid_topic_name`]): 1 to 249 characters
/// of `A-Z a-z 0-9 . _ -`, and not `.` or `..`.
///
/// [`is_valid_topic_name`]: crate::topics::is_valid_topic_name
pub fn check_topic(topic: &str) -> Result<(), InvalidName> {
    if crate::topics::is_valid_topic_name(topic) {
        return Ok(());
    }
    let problem = segment_problem(topic, 249).unwrap_or_else(|| "it breaks a rule".into());
    Err(InvalidName {
        what: "topic",
        name: topic.to_owned(),
        reason: format!("{problem}; {TOPIC_RULE}"),
    })
}

/// Checks a Dapr component name (a pubsub component or a state store; `what` says which).
///
/// Dapr on Kubernetes takes a component's name from its resource, so it is a DNS-1123
/// subdomain (lowercase letters, digits, `-`, `.`, at most 253 characters); self-hosted daprd
/// only refuses `.`, `..`, `/` and `%`. Allowed here: 1 to 253 characters of
/// `A-Z a-z 0-9 . _ -`, not `.` or `..`, which covers every Kubernetes name and the usual
/// self-hosted ones, and nothing that changes the meaning of a URL.
pub fn check_component(what: &'static str, name: &str) -> Result<(), InvalidName> {
    match segment_problem(name, 253) {
        None => Ok(()),
        Some(problem) => Err(InvalidName {
            what,
            name: name.to_owned(),
            reason: format!("{problem}; {COMPONENT_RULE}"),
        }),
    }
}

/// Checks a state key: not empty, not `.` or `..` (a URL would read them as a path step), and
/// no `||`, which Dapr refuses in keys. Any other character is sent percent-encoded.
pub fn check_state_key(key: &str) -> Result<(), InvalidName> {
    let reason = if key.is_empty() {
        "the key is empty"
    } else if key == "." || key == ".." {
        "the key is a path step"
    } else if key.contains("||") {
        "the key holds `||`"
    } else {
        return Ok(());
    };
    Err(InvalidName {
        what: "state key",
        name: key.to_owned(),
        reason: format!("{reason}; {KEY_RULE}"),
    })
}

/// The first rule of topic and component names that `name` breaks (1 to `max` characters of
/// `A-Z a-z 0-9 . _ -`, and not `.` or `..`), or `None`.
fn segment_problem(name: &str, max: usize) -> Option<String> {
    if name.is_empty() {
        Some("it is empty".to_owned())
    } else if name == "." || name == ".." {
        Some("it is a path step".to_owned())
    } else if name.len() > max {
        Some(format!("it is {} bytes long", name.len()))
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .map(|c| format!("{c:?} is not allowed"))
    }
}

/// A name or value from outside, fit for a message: quoted, escaped, cut after 80 characters.
pub(crate) fn shown(name: &str) -> String {
    match name.char_indices().nth(80) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &name[..cut], name.len()),
        None => format!("{name:?}"),
    }
}

impl DaprClient {
    /// A client for the sidecar the environment names: `DAPR_HTTP_ENDPOINT`, else
    /// `http://127.0.0.1:$DAPR_HTTP_PORT` (3500), with `DAPR_API_TOKEN`.
    ///
    /// # Panics
    ///
    /// When `DAPR_HTTP_ENDPOINT` or `DAPR_HTTP_PORT` is malformed, with the message of
    /// [`DaprClient::try_from_env`]'s error.
    pub fn from_env() -> Self {
        Self::try_from_env().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`DaprClient::from_env`], or the error that names the malformed variable.
    pub fn try_from_env() -> Result<Self, ConfigError> {
        Ok(Self::new(
            &crate::config::dapr_endpoint()?,
            crate::config::non_empty("DAPR_API_TOKEN"),
        ))
    }

    /// A client for the sidecar at `base` (for example `http://127.0.0.1:3500`).
    pub fn new(base: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        DaprClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => req.header("dapr-api-token", t),
            None => req,
        }
    }

    /// `POST /v1.0/publish/{pubsub}/{topic}`: plain JSON data with the CloudEvent attributes as
    /// metadata; an event with extension attributes goes as a full `application/cloudevents+json`
    /// envelope (Dapr keeps our `id` and extensions then).
    ///
    /// A pubsub or topic name that breaks its rule ([`check_component`], [`check_topic`]) is
    /// refused with [`PublishError::InvalidName`] before anything is sent.
    pub async fn publish(&self, ev: &OutgoingEvent) -> Result<(), PublishError> {
        check_component("pubsub component", &ev.pubsub)?;
        check_topic(&ev.topic)?;
        let path = format!("/v1.0/publish/{}/{}", encode(&ev.pubsub), encode(&ev.topic));
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(key) = &ev.partition_key {
            query.push(("metadata.partitionKey", key));
        }
        if let Some(tp) = &ev.traceparent {
            query.push(("metadata.cloudevent.traceparent", tp));
        }
        // The version alone does not need an envelope: publish metadata reaches the consumer as
        // a Kafka record header, which Dapr delivers as an HTTP header.
        let version = ev
            .extensions
            .get(crate::version::EXT_VERSION)
            .and_then(Value::as_str);
        if let Some(v) = version {
            query.push(("metadata.eventversion", v));
        }
        let only_version = ev.extensions.len() == usize::from(version.is_some());
        let req = if let Some(record) = &ev.record {
            // Written to the broker as these bytes, unchanged.
            query.push(("metadata.rawPayload", "true"));
            self.request(reqwest::Method::POST, &path)
                .query(&query)
                .header("content-type", "application/octet-stream")
                .body(record.clone())
        } else if only_version {
            query.push(("metadata.cloudevent.id", &ev.id));
            query.push(("metadata.cloudevent.type", &ev.ty));
            query.push(("metadata.cloudevent.source", &ev.source));
            self.request(reqwest::Method::POST, &path)
                .query(&query)
                .header("content-type", "application/json")
                .body(ev.data.to_string())
        } else {
            let mut envelope = ev.extensions.clone();
            envelope.insert("specversion".into(), json!("1.0"));
            envelope.insert("id".into(), json!(ev.id));
            envelope.insert("type".into(), json!(ev.ty));
            envelope.insert("source".into(), json!(ev.source));
            envelope.insert("datacontenttype".into(), json!("application/json"));
            envelope.insert("data".into(), ev.data.clone());
            self.request(reqwest::Method::POST, &path)
                .query(&query)
                .header("content-type", "application/cloudevents+json")
                .body(Value::Object(envelope).to_string())
        };
        let resp = req.send().await.map_err(|e| PublishError::Unreachable {
            pubsub: ev.pubsub.clone(),
            topic: ev.topic.clone(),
            message: e.to_string(),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.text().await.unwrap_or_default();
        let (error_code, message) = dapr_error(&body);
        Err(PublishError::Rejected {
            pubsub: ev.pubsub.clone(),
            topic: ev.topic.clone(),
            status: status.as_u16(),
            error_code,
            message,
        })
    }

    /// `GET /v1.0/state/{store}/{key}`: the value and its ETag, `None` when absent. An invalid
    /// store name or key ([`check_component`], [`check_state_key`]) is refused before any request.
    pub async fn get_state(
        &self,
        store: &str,
        key: &str,
    ) -> Result<Option<(Value, Option<String>)>, StateError> {
        let path = state_path(store, "get", key, true)?;
        let err = |status: Option<u16>, message: String| StateError {
            store: store.to_owned(),
            operation: "get",
            key: key.to_owned(),
            status,
            message,
            invalid_name: None,
        };
        let resp = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .map_err(|e| err(None, e.to_string()))?;
        let status = resp.status().as_u16();
        if status == 204 {
            return Ok(None);
        }
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .text()
            .await
            .map_err(|e| err(Some(status), e.to_string()))?;
        if status != 200 {
            return Err(err(Some(status), dapr_error(&body).1));
        }
        if body.is_empty() {
            return Ok(None);
        }
        let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
        Ok(Some((value, etag)))
    }

    /// `POST /v1.0/state/{store}` of one item. `Ok(false)` means the write lost a concurrency
    /// race: an ETag mismatch (409), or a store's own "already exists" error for first-write.
    /// An invalid store name or key is refused before any request, as in [`DaprClient::get_state`].
    pub async fn save_state(
        &self,
        store: &str,
        key: &str,
        value: &Value,
        etag: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        let path = state_path(store, "save", key, false)?;
        let mut item = json!({"key": key, "value": value, "options": {"concurrency": "first-write", "consistency": "strong"}});
        if let Some(etag) = etag {
            item["etag"] = json!(etag);
        }
        if let Some(ttl) = ttl {
            item["metadata"] = json!({"ttlInSeconds": ttl.as_secs().max(1).to_string()});
        }
        let resp = self
            .request(reqwest::Method::POST, &path)
            .json(&json!([item]))
            .send()
            .await
            .map_err(|e| StateError {
                store: store.to_owned(),
                operation: "save",
                key: key.to_owned(),
                status: None,
                message: e.to_string(),
                invalid_name: None,
            })?;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            return Ok(true);
        }
        let body = resp.text().await.unwrap_or_default();
        if status == 409
            || (status == 500 && is_concurrency_conflict(&body))
            || (status == 400 && body.contains("ETAG"))
        {
            return Ok(false);
        }
        Err(StateError {
            store: store.to_owned(),
            operation: "save",
            key: key.to_owned(),
            status: Some(status),
            message: dapr_error(&body).1,
            invalid_name: None,
        })
    }

    /// `DELETE /v1.0/state/{store}/{key}`, with `If-Match` when an ETag is given. An invalid
    /// store name or key is refused before any request, as in [`DaprClient::get_state`].
    pub async fn delete_state(
        &self,
        store: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<(), StateError> {
        let path = state_path(store, "delete", key, true)?;
        let mut req = self.request(reqwest::Method::DELETE, &path);
        if let Some(etag) = etag {
            req = req.header("if-match", etag);
        }
        let err = |status, message| StateError {
            store: store.to_owned(),
            operation: "delete",
            key: key.to_owned(),
            status,
            message,
            invalid_name: None,
        };
        let resp = req.send().await.map_err(|e| err(None, e.to_string()))?;
        let status = resp.status().as_u16();
        if resp.status().is_success() || status == 409 {
            // 409: someone else already replaced it; nothing of ours to delete.
            return Ok(());
        }
        Err(err(
            Some(status),
            dapr_error(&resp.text().await.unwrap_or_default()).1,
        ))
    }
}

/// The URL path of a state call, `/v1.0/state/{store}` (a save: the key goes in the body) or
/// `/v1.0/state/{store}/{key}`; the store and the key are checked either way, and encoded.
fn state_path(
    store: &str,
    operation: &'static str,
    key: &str,
    key_in_path: bool,
) -> Result<String, StateError> {
    let refused = |e| StateError::refused(store, operation, key, e);
    check_component("state store", store).map_err(refused)?;
    check_state_key(key).map_err(refused)?;
    Ok(if key_in_path {
        format!("/v1.0/state/{}/{}", encode(store), encode(key))
    } else {
        format!("/v1.0/state/{}", encode(store))
    })
}

/// The store-specific errors that mean "someone else wrote first" (contract §6).
fn is_concurrency_conflict(body: &str) -> bool {
    let b = body.to_ascii_lowercase();
    b.contains("etag")
        || b.contains("first-write")
        || b.contains("possible etag mismatch")
        || b.contains("already exists")
}

/// Dapr's `{"errorCode","message"}`, or the raw body.
fn dapr_error(body: &str) -> (String, String) {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => (
            v.get("errorCode")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            v.get("message")
                .and_then(Value::as_str)
                .unwrap_or(body)
                .to_owned(),
        ),
        Err(_) => (String::new(), body.to_owned()),
    }
}

/// Percent-encodes a URL path segment: every byte but `A-Z a-z 0-9 - _ . ~`.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_follow_kafkas_rules() {
        for ok in [
            "task-events",
            "task-events.retry.30s",
            "a",
            "A_b-c.d",
            "...",
            &"x".repeat(249),
        ] {
            assert_eq!(check_topic(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "it is empty"),
            (".", "path step"),
            ("..", "path step"),
            ("../../state/statestore", "'/' is not allowed"),
            ("task events", "' ' is not allowed"),
            ("tâche", "'â' is not allowed"),
            ("a%2Fb", "'%' is not allowed"),
            ("a?b", "'?' is not allowed"),
            (&"x".repeat(250), "250 bytes long"),
        ] {
            let err = check_topic(bad).unwrap_err();
            assert_eq!((err.what, err.name.as_str()), ("topic", bad));
            assert!(err.reason.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn the_topic_rule_is_the_one_topic_specs_use() {
        for name in [
            "t",
            ".",
            "..",
            "...",
            "a b",
            "a/b",
            "é",
            "",
            &"x".repeat(249),
            &"x".repeat(250),
        ] {
            assert_eq!(
                check_topic(name).is_ok(),
                crate::topics::is_valid_topic_name(name),
                "{name}"
            );
            assert_eq!(
                check_topic(name).is_ok(),
                segment_problem(name, 249).is_none(),
                "{name}"
            );
        }
    }

    #[test]
    fn component_names_allow_what_dapr_allows_and_nothing_that_changes_a_url() {
        for ok in [
            "kafka-pubsub",
            "statestore",
            "pubsub.kafka",
            "My_PubSub",
            &"a".repeat(253),
        ] {
            assert_eq!(check_component("pubsub component", ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "kafka-pubsub/../../state",
            "a b",
            "a%20b",
            "a#b",
            &"a".repeat(254),
        ] {
            let err = check_component("state store", bad).unwrap_err();
            assert_eq!((err.what, err.name.as_str()), ("state store", bad), "{err}");
        }
    }

    #[test]
    fn state_keys_refuse_what_dapr_or_a_url_would_misread() {
        for ok in [
            "todo|e2e_app::s5::s5_once|evt-1",
            "a/b",
            "a b",
            "x%7Cy",
            "...",
            "ключ",
        ] {
            assert_eq!(check_state_key(ok), Ok(()), "{ok}");
        }
        for bad in ["", ".", "..", "app||key"] {
            assert!(check_state_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode("kafka-pubsub"), "kafka-pubsub");
        assert_eq!(encode("a/b c|d%"), "a%2Fb%20c%7Cd%25");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn a_long_or_odd_name_is_shown_escaped_and_cut() {
        let err = check_topic(&format!("{}\n", "x".repeat(500))).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("invalid topic \"xxx"), "{text}");
        assert!(
            text.contains("(501 bytes)") && !text.contains('\n'),
            "{text}"
        );
        let err = check_topic("a\nb").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid topic \"a\\nb\": '\\n' is not allowed"),
            "{err}"
        );
    }
}
