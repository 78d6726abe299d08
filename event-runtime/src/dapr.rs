//! The sidecar client: publish and state calls over Dapr's HTTP API.

use std::time::Duration;

use serde_json::{json, Value};

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
}

impl DaprClient {
    /// A client for the sidecar at `http://127.0.0.1:$DAPR_HTTP_PORT`, with `DAPR_API_TOKEN`.
    pub fn from_env() -> Self {
        Self::new(
            &format!("http://127.0.0.1:{}", crate::config::dapr_http_port()),
            crate::config::non_empty("DAPR_API_TOKEN"),
        )
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
    pub async fn publish(&self, ev: &OutgoingEvent) -> Result<(), PublishError> {
        let path = format!("/v1.0/publish/{}/{}", ev.pubsub, ev.topic);
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

    /// `GET /v1.0/state/{store}/{key}`: the value and its ETag, `None` when absent.
    pub async fn get_state(
        &self,
        store: &str,
        key: &str,
    ) -> Result<Option<(Value, Option<String>)>, StateError> {
        let err = |status: Option<u16>, message: String| StateError {
            store: store.to_owned(),
            operation: "get",
            key: key.to_owned(),
            status,
            message,
        };
        let resp = self
            .request(
                reqwest::Method::GET,
                &format!("/v1.0/state/{store}/{}", encode(key)),
            )
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
    pub async fn save_state(
        &self,
        store: &str,
        key: &str,
        value: &Value,
        etag: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        let mut item = json!({"key": key, "value": value, "options": {"concurrency": "first-write", "consistency": "strong"}});
        if let Some(etag) = etag {
            item["etag"] = json!(etag);
        }
        if let Some(ttl) = ttl {
            item["metadata"] = json!({"ttlInSeconds": ttl.as_secs().max(1).to_string()});
        }
        let resp = self
            .request(reqwest::Method::POST, &format!("/v1.0/state/{store}"))
            .json(&json!([item]))
            .send()
            .await
            .map_err(|e| StateError {
                store: store.to_owned(),
                operation: "save",
                key: key.to_owned(),
                status: None,
                message: e.to_string(),
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
        })
    }

    /// `DELETE /v1.0/state/{store}/{key}`, with `If-Match` when an ETag is given.
    pub async fn delete_state(
        &self,
        store: &str,
        key: &str,
        etag: Option<&str>,
    ) -> Result<(), StateError> {
        let mut req = self.request(
            reqwest::Method::DELETE,
            &format!("/v1.0/state/{store}/{}", encode(key)),
        );
        if let Some(etag) = etag {
            req = req.header("if-match", etag);
        }
        let err = |status, message| StateError {
            store: store.to_owned(),
            operation: "delete",
            key: key.to_owned(),
            status,
            message,
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

/// Percent-encodes a state key for a URL path segment.
fn encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
