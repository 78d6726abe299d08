//! The CloudEvent envelope as Dapr delivers it, and decoding its `data`.
//!
//! We parse the envelope ourselves rather than with `cloudevents-sdk`: Dapr's envelope carries
//! non-standard members (`topic`, `pubsubname`, `traceid`), a `data` that may be a JSON string
//! holding JSON, and a rawPayload form whose bytes may themselves be an envelope. A small
//! `serde_json::Value` walk states those rules in one place and never panics on bad input.

use base64::Engine as _;
use serde_json::{Map, Value};

/// A structured CloudEvent 1.0, as delivered by the Dapr sidecar (or our embedded broker).
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    /// `id`.
    pub id: String,
    /// `type`.
    pub ty: String,
    /// `source`.
    pub source: String,
    /// `specversion` (always `1.0` once parsed).
    pub specversion: String,
    /// `time`, as sent (RFC 3339).
    pub time: Option<String>,
    /// `datacontenttype`.
    pub datacontenttype: Option<String>,
    /// `topic` (Dapr extension).
    pub topic: Option<String>,
    /// `pubsubname` (Dapr extension).
    pub pubsubname: Option<String>,
    /// `traceparent` (Dapr extension, W3C trace context).
    pub traceparent: Option<String>,
    /// `tracestate` (Dapr extension).
    pub tracestate: Option<String>,
    /// The event data, decoded: JSON data as is, a JSON string holding JSON parsed, `data_base64`
    /// decoded (and parsed when it is JSON).
    pub data: Value,
    /// Every other attribute (extensions such as our retry bookkeeping).
    pub extensions: Map<String, Value>,
}

/// Why a body is not a CloudEvent we can handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudEventError {
    /// The body is empty.
    #[error("empty body")]
    Empty,
    /// The body is not JSON.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("body is a JSON {0}, not a CloudEvent object")]
    NotObject(&'static str),
    /// A required attribute is missing or not a string.
    #[error("CloudEvent attribute `{0}` is missing or not a string")]
    Missing(&'static str),
    /// `specversion` other than 1.0.
    #[error("unsupported CloudEvent specversion `{0}` (expected 1.0)")]
    SpecVersion(String),
    /// `data_base64` is not valid base64.
    #[error("`data_base64` is not valid base64: {0}")]
    Base64(String),
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl CloudEvent {
    /// Parses a structured CloudEvent from a request body.
    pub fn from_slice(body: &[u8]) -> Result<Self, CloudEventError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(CloudEventError::Empty);
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| CloudEventError::NotJson(e.to_string()))?;
        Self::from_value(value)
    }

    /// Parses a structured CloudEvent from JSON.
    pub fn from_value(value: Value) -> Result<Self, CloudEventError> {
        let Value::Object(mut map) = value else {
            return Err(CloudEventError::NotObject(json_kind(&value)));
        };
        let mut take_str = |key: &'static str| match map.remove(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let specversion = take_str("specversion").ok_or(CloudEventError::Missing("specversion"))?;
        if specversion != "1.0" {
            return Err(CloudEventError::SpecVersion(specversion));
        }
        let id = take_str("id").ok_or(CloudEventError::Missing("id"))?;
        let ty = take_str("type").ok_or(CloudEventError::Missing("type"))?;
        let source = take_str("source").ok_or(CloudEventError::Missing("source"))?;
        let time = take_str("time");
        let datacontenttype = take_str("datacontenttype");
        let topic = take_str("topic");
        let pubsubname = take_str("pubsubname");
        let traceparent = take_str("traceparent");
        let tracestate = take_str("tracestate");
        let data = match (map.remove("data_base64"), map.remove("data")) {
            (Some(Value::String(b64)), _) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| CloudEventError::Base64(e.to_string()))?;
                bytes_to_value(&bytes)
            }
            (Some(other), _) => {
                return Err(CloudEventError::Base64(format!(
                    "expected a string, found a JSON {}",
                    json_kind(&other)
                )))
            }
            (None, Some(Value::String(s))) => {
                // Dapr turns JSON published without `Content-Type: application/json` into a string.
                serde_json::from_str::<Value>(&s)
                    .ok()
                    .filter(|v| v.is_object() || v.is_array())
                    .unwrap_or(Value::String(s))
            }
            (None, Some(v)) => v,
            (None, None) => Value::Null,
        };
        Ok(CloudEvent {
            id,
            ty,
            source,
            specversion,
            time,
            datacontenttype,
            topic,
            pubsubname,
            traceparent,
            tracestate,
            data,
            extensions: map,
        })
    }

    /// For rawPayload deliveries: when the raw bytes are themselves a CloudEvent (what a Dapr
    /// publisher writes to the broker), the inner event; otherwise `self` unchanged.
    pub fn unwrap_raw(self) -> Self {
        if self.data.get("specversion").is_some() {
            if let Ok(mut inner) = CloudEvent::from_value(self.data.clone()) {
                inner.topic = inner.topic.or(self.topic);
                inner.pubsubname = inner.pubsubname.or(self.pubsubname);
                return inner;
            }
        }
        self
    }

    /// Serializes back into a structured CloudEvent (data as JSON).
    pub fn to_value(&self) -> Value {
        let mut map = self.extensions.clone();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                map.insert(k.to_owned(), Value::String(v.clone()));
            }
        };
        put("time", &self.time);
        put("datacontenttype", &self.datacontenttype);
        put("topic", &self.topic);
        put("pubsubname", &self.pubsubname);
        put("traceparent", &self.traceparent);
        put("tracestate", &self.tracestate);
        map.insert(
            "specversion".into(),
            Value::String(self.specversion.clone()),
        );
        map.insert("id".into(), Value::String(self.id.clone()));
        map.insert("type".into(), Value::String(self.ty.clone()));
        map.insert("source".into(), Value::String(self.source.clone()));
        map.insert("data".into(), self.data.clone());
        Value::Object(map)
    }

    /// A string extension attribute.
    pub fn extension_str(&self, name: &str) -> Option<&str> {
        self.extensions.get(name).and_then(Value::as_str)
    }
}

/// Raw bytes as a JSON value: parsed JSON when they are JSON, else a (lossy) string.
fn bytes_to_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope(extra: Value) -> Value {
        let mut base = json!({"specversion":"1.0","id":"1","type":"task.completed","source":"s"});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    }

    #[test]
    fn json_data_as_is() {
        let ce = CloudEvent::from_value(envelope(json!({"data":{"a":1}}))).unwrap();
        assert_eq!(ce.data, json!({"a":1}));
    }

    #[test]
    fn string_data_holding_json_is_parsed() {
        let ce = CloudEvent::from_value(envelope(json!({"data":"{\"a\":1}"}))).unwrap();
        assert_eq!(ce.data, json!({"a":1}));
        let ce = CloudEvent::from_value(envelope(json!({"data":"hello"}))).unwrap();
        assert_eq!(ce.data, json!("hello"));
    }

    #[test]
    fn base64_data() {
        let ce = CloudEvent::from_value(envelope(json!({"data_base64":"eyJhIjoxfQ=="}))).unwrap();
        assert_eq!(ce.data, json!({"a":1}));
        let err = CloudEvent::from_value(envelope(json!({"data_base64":"%%%"}))).unwrap_err();
        assert!(matches!(err, CloudEventError::Base64(_)));
    }

    #[test]
    fn raw_payload_holding_an_envelope_unwraps() {
        let inner = envelope(json!({"data":{"a":2}})).to_string();
        let b64 = base64::engine::general_purpose::STANDARD.encode(inner);
        let outer = json!({"specversion":"1.0","id":"x","type":"com.dapr.event.sent","source":"Dapr",
            "topic":"t","pubsubname":"p","data_base64":b64});
        let ce = CloudEvent::from_value(outer).unwrap().unwrap_raw();
        assert_eq!(ce.ty, "task.completed");
        assert_eq!(ce.data, json!({"a":2}));
        assert_eq!(ce.topic.as_deref(), Some("t"));
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert_eq!(
            CloudEvent::from_slice(b"").unwrap_err(),
            CloudEventError::Empty
        );
        assert!(matches!(
            CloudEvent::from_slice(b"{").unwrap_err(),
            CloudEventError::NotJson(_)
        ));
        assert_eq!(
            CloudEvent::from_slice(b"[1]").unwrap_err(),
            CloudEventError::NotObject("array")
        );
        assert_eq!(
            CloudEvent::from_slice(br#"{"specversion":"0.3","id":"1","type":"t","source":"s"}"#)
                .unwrap_err(),
            CloudEventError::SpecVersion("0.3".into())
        );
        assert_eq!(
            CloudEvent::from_slice(br#"{"specversion":"1.0","type":"t","source":"s"}"#)
                .unwrap_err(),
            CloudEventError::Missing("id")
        );
        assert!(CloudEvent::from_slice(b"\xff\xfe").is_err());
    }
}
