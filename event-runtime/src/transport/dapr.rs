//! The sidecar client: publish and state calls over Dapr's HTTP API.
//!
//! Every name that goes into a sidecar URL (pubsub component, topic, state store, state key) is
//! checked first and refused with an [`InvalidName`] before any request is sent; the names that
//! pass are still percent-encoded as path segments.

use std::time::Duration;

use serde_json::{json, Value};

use crate::config::{Config, ConfigError};
use crate::transport::outgoing::{Form, OutgoingEvent, PublishError};
use crate::wire::names::{check_component, check_state_key, check_topic, encode, InvalidName};

/// A minimal Dapr HTTP client (publish, state), sending `dapr-api-token` when configured.
#[derive(Clone, Debug)]
pub struct DaprClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// The largest record a publish may write (see [`DaprClient::with_max_message_bytes`]).
    max_message_bytes: usize,
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
    /// Whether the store refused the call for good (a 4xx other than 408 and 429, or a name
    /// refused before sending): the same call would be refused again, so it is no outage.
    pub fn is_refusal(&self) -> bool {
        self.invalid_name.is_some()
            || self
                .status
                .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429)
    }

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

impl DaprClient {
    /// The `dapr-api-token` it sends, if any (the streaming subscriptions send it too).
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub(crate) fn api_token(&self) -> Option<String> {
        self.token.clone()
    }

    /// A client for the sidecar `config` names ([`Config::dapr_endpoint`], with
    /// [`Config::dapr_api_token`]), writing records of at most `EVENTS_MAX_MESSAGE_BYTES`.
    pub fn from_config(config: &Config) -> Self {
        Self::new(&config.dapr_endpoint, config.dapr_api_token.clone())
            .with_max_message_bytes(config.settings.max_message_bytes)
    }

    /// [`DaprClient::from_config`] of [`Config::from_env`].
    ///
    /// # Panics
    ///
    /// When the environment's configuration is malformed, with the message of
    /// [`DaprClient::try_from_env`]'s error.
    #[deprecated(
        since = "0.1.0",
        note = "use `DaprClient::from_config(&Config::from_env()?)`"
    )]
    pub fn from_env() -> Self {
        #[allow(deprecated)]
        Self::try_from_env().unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`DaprClient::from_config`] of [`Config::from_env`], or the error that names the
    /// malformed variable.
    #[deprecated(
        since = "0.1.0",
        note = "use `DaprClient::from_config(&Config::from_env()?)`"
    )]
    pub fn try_from_env() -> Result<Self, ConfigError> {
        Ok(Self::from_config(&Config::from_env()?))
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
            max_message_bytes: 1024 * 1024,
        }
    }

    /// The largest record a publish may write, with its key and framing (1 MiB, Kafka's
    /// default `message.max.bytes`; an app sets `EVENTS_MAX_MESSAGE_BYTES`). A larger one is
    /// refused with [`PublishError::TooLarge`] before it is sent: daprd would answer 500 for it
    /// on every try, as for an outage.
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{}", self.base, path));
        match &self.token {
            Some(t) => req.header("dapr-api-token", t),
            None => req,
        }
    }

    /// `GET /v1.0/healthz/outbound`: whether the sidecar answers and its outbound components
    /// (pubsub, state stores) are ready; `Err` says what it answered instead.
    pub async fn outbound_health(&self) -> Result<(), String> {
        let answer = self
            .request(reqwest::Method::GET, "/v1.0/healthz/outbound")
            .send()
            .await;
        match answer {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("the sidecar answered {}", resp.status().as_u16())),
            Err(e) => Err(format!("the sidecar cannot be reached: {e}")),
        }
    }

    /// `POST /v1.0/publish/{pubsub}/{topic}`: plain JSON data with the CloudEvent attributes as
    /// metadata; an event with extension attributes goes as a full `application/cloudevents+json`
    /// envelope (Dapr keeps our `id` and extensions then).
    ///
    /// A pubsub or topic name that breaks its rule (a Dapr component name, a Kafka topic name) is
    /// refused with [`PublishError::InvalidName`] before anything is sent.
    pub async fn publish(&self, ev: &OutgoingEvent) -> Result<(), PublishError> {
        self.publish_in(ev, false).await
    }

    /// [`publish`](Self::publish), in the CloudEvents Kafka binding's binary mode when `binary`:
    /// the data is the record (`rawPayload`) and the attributes go as metadata, which the Kafka
    /// component writes as record headers.
    pub(crate) async fn publish_in(
        &self,
        ev: &OutgoingEvent,
        binary: bool,
    ) -> Result<(), PublishError> {
        check_component("pubsub component", &ev.pubsub)?;
        check_topic(&ev.topic)?;
        let path = format!("/v1.0/publish/{}/{}", encode(&ev.pubsub), encode(&ev.topic));
        let mut query: Vec<(&str, &str)> = Vec::new();
        let key = ev.sent_partition_key();
        if let Some(key) = &key {
            query.push(("metadata.partitionKey", key));
        }
        let form = ev.form_in(binary);
        if !matches!(form, Form::Binary) {
            if let Some(tp) = &ev.traceparent {
                query.push(("metadata.cloudevent.traceparent", tp));
            }
            if let Some(ts) = &ev.tracestate {
                query.push(("metadata.cloudevent.tracestate", ts));
            }
            if let Some(v) = ev.version() {
                query.push(("metadata.eventversion", v));
            }
        }
        let headers = match form {
            Form::Binary => ev
                .binary_headers()
                .into_iter()
                .map(|(k, v)| (format!("metadata.{k}"), v))
                .collect(),
            _ => Vec::new(),
        };
        query.extend(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let (content_type, body) = match form {
            // Written to the broker as these bytes, unchanged.
            Form::Record(record) => {
                query.push(("metadata.rawPayload", "true"));
                (
                    "application/octet-stream",
                    reqwest::Body::from(record.clone()),
                )
            }
            Form::Data => {
                query.push(("metadata.cloudevent.id", &ev.id));
                query.push(("metadata.cloudevent.type", &ev.ty));
                query.push(("metadata.cloudevent.source", &ev.source));
                ("application/json", ev.data.to_string().into())
            }
            Form::Envelope => (
                "application/cloudevents+json",
                Value::Object(ev.envelope()).to_string().into(),
            ),
            Form::Binary => {
                query.push(("metadata.rawPayload", "true"));
                ("application/json", ev.data.to_string().into())
            }
        };
        let len = body.as_bytes().map_or(0, <[u8]>::len);
        ev.check_size(len, self.max_message_bytes)?;
        let req = self
            .request(reqwest::Method::POST, &path)
            .query(&query)
            .header("content-type", content_type)
            .body(body);
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
    /// store name or key (by the rules of Dapr component names and state keys) is refused before any request.
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
        self.save(store, key, value, etag, ttl, "first-write").await
    }

    /// `POST /v1.0/state/{store}` of one item, whatever the key holds (last write wins).
    pub(crate) async fn upsert_state(
        &self,
        store: &str,
        key: &str,
        value: &Value,
    ) -> Result<bool, StateError> {
        self.save(store, key, value, None, None, "last-write").await
    }

    async fn save(
        &self,
        store: &str,
        key: &str,
        value: &Value,
        etag: Option<&str>,
        ttl: Option<Duration>,
        concurrency: &str,
    ) -> Result<bool, StateError> {
        let path = state_path(store, "save", key, false)?;
        let mut item = json!({"key": key, "value": value, "options": {"concurrency": concurrency, "consistency": "strong"}});
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
        // A conflict: someone else already replaced it, so nothing of ours is left to delete.
        self.delete_state_if(store, key, etag).await.map(drop)
    }

    /// [`DaprClient::delete_state`], telling a conflict apart: `Ok(false)` when the key is no
    /// longer at `etag`.
    pub(crate) async fn delete_state_if(
        &self,
        store: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<bool, StateError> {
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
        if resp.status().is_success() {
            return Ok(true);
        }
        let body = resp.text().await.unwrap_or_default();
        if status == 409 || (status == 500 && is_concurrency_conflict(&body)) {
            return Ok(false);
        }
        Err(err(Some(status), dapr_error(&body).1))
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
pub(crate) fn dapr_error(body: &str) -> (String, String) {
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
