//! The CloudEvent envelope as Dapr delivers it, and decoding its `data`.
//!
//! We parse the envelope ourselves rather than with `cloudevents-sdk`: Dapr's envelope carries
//! non-standard members (`topic`, `pubsubname`, `traceid`), a `data` that may be a JSON string
//! holding JSON, and a rawPayload form whose bytes may themselves be an envelope. One file states
//! those rules, and nothing in it panics on bad input.
//!
//! `data` is kept as the raw JSON text it arrived as and parsed only when asked: a handler's
//! event is decoded straight from that text, as a hand-written handler would, and the JSON tree
//! is built only for the paths that need one (seed-style dispatch, key templates, dead letters).

mod parse;
mod raw;
mod typed;

use parse::{Known, StrMember, Wire, WireData};
pub(crate) use raw::contains;
pub use raw::{dapr_raw_record, record_digest};
use typed::bytes_to_value;
pub use typed::{read_typed, ReadTyped};

use std::sync::OnceLock;

use axum::body::Bytes;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// A structured CloudEvent 1.0, as delivered by the Dapr sidecar (or our embedded broker).
#[derive(Debug, Clone)]
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
    /// Every other attribute (extensions such as our retry bookkeeping).
    pub extensions: Map<String, Value>,
    data: Data,
    /// The broker record's exact bytes, when the event was read from one: what dead letters and
    /// retries keep, so that a replay writes back exactly what arrived.
    record: Option<Bytes>,
}

impl PartialEq for CloudEvent {
    fn eq(&self, other: &Self) -> bool {
        (
            &self.id,
            &self.ty,
            &self.source,
            &self.specversion,
            &self.time,
            &self.datacontenttype,
        ) == (
            &other.id,
            &other.ty,
            &other.source,
            &other.specversion,
            &other.time,
            &other.datacontenttype,
        ) && (
            &self.topic,
            &self.pubsubname,
            &self.traceparent,
            &self.tracestate,
            &self.extensions,
        ) == (
            &other.topic,
            &other.pubsubname,
            &other.traceparent,
            &other.tracestate,
            &other.extensions,
        ) && self.data() == other.data()
    }
}

/// The `data` member: its raw text until someone needs the JSON tree.
#[derive(Debug, Clone, Default)]
struct Data {
    raw: OnceLock<Option<Box<RawValue>>>,
    value: OnceLock<Value>,
    /// The body the event was read from when its data was decoded straight into the handler's
    /// type: the raw text is read again from it, on the paths that need it.
    body: Option<Bytes>,
}

impl Data {
    fn parsed(value: Value) -> Self {
        Data {
            value: OnceLock::from(value),
            ..Data::default()
        }
    }

    fn raw(raw: Box<RawValue>) -> Self {
        Data {
            raw: OnceLock::from(Some(raw)),
            ..Data::default()
        }
    }

    /// The data's JSON text, when it arrived as JSON (not `data_base64`).
    fn text(&self) -> Option<&RawValue> {
        self.raw
            .get_or_init(|| {
                let body = self.body.as_ref()?;
                serde_json::from_slice::<Wire<Box<RawValue>>>(body)
                    .ok()?
                    .data
            })
            .as_deref()
    }
}

/// Dapr turns JSON published without `Content-Type: application/json` into a JSON string: a
/// string that holds a JSON object or array stands for that JSON.
fn unstring(s: String) -> Value {
    serde_json::from_str::<Value>(&s)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
        .unwrap_or(Value::String(s))
}

/// Why a body is not a CloudEvent we can handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// A CloudEvent with the given attributes and data, and no others.
    pub fn new(
        id: impl Into<String>,
        ty: impl Into<String>,
        source: impl Into<String>,
        data: Value,
    ) -> Self {
        CloudEvent {
            id: id.into(),
            ty: ty.into(),
            source: source.into(),
            specversion: "1.0".to_owned(),
            time: None,
            datacontenttype: None,
            topic: None,
            pubsubname: None,
            traceparent: None,
            tracestate: None,
            extensions: Map::new(),
            data: Data::parsed(data),
            record: None,
        }
    }

    /// The event data, decoded: JSON data as is, a JSON string holding JSON parsed,
    /// `data_base64` decoded (and parsed when it is JSON); `null` when there is none.
    pub fn data(&self) -> &Value {
        self.data.value.get_or_init(|| match self.data.text() {
            Some(raw) => match serde_json::from_str::<Value>(raw.get()) {
                Ok(Value::String(s)) => unstring(s),
                Ok(v) => v,
                Err(_) => Value::Null,
            },
            None => Value::Null,
        })
    }

    /// Replaces the data.
    pub fn set_data(&mut self, data: Value) {
        self.data = Data::parsed(data);
    }

    /// Decodes the data as `T`: straight from the JSON text when it arrived as a JSON object or
    /// array, else from [`CloudEvent::data`].
    pub fn decode_data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        if self.data.value.get().is_none() {
            if let Some(raw) = self.data.text() {
                let text = raw.get();
                if text.starts_with('{') || text.starts_with('[') {
                    return serde_json::from_str(text);
                }
            }
        }
        T::deserialize(self.data())
    }

    /// A top-level string member of the data (`event_version`, say), read from the raw text
    /// without building the data's JSON tree when that has not been built yet.
    pub fn data_str(&self, name: &str) -> Option<String> {
        if self.data.value.get().is_none() {
            if let Some(raw) = self.data.text() {
                if raw.get().starts_with('{') {
                    let mut de = serde_json::Deserializer::from_str(raw.get());
                    return serde::de::DeserializeSeed::deserialize(StrMember(name), &mut de)
                        .ok()
                        .flatten();
                }
            }
        }
        self.data()
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Parses a structured CloudEvent from a request body.
    pub fn from_slice(body: &[u8]) -> Result<Self, CloudEventError> {
        match serde_json::from_slice::<Wire<Box<RawValue>>>(body) {
            Ok(wire) => {
                let (known, attributes, data) = wire.data();
                Self::from_parts(known, attributes, data)
            }
            // The fast path only reads objects; let the general one say precisely what is wrong.
            Err(_) if body.iter().all(u8::is_ascii_whitespace) => Err(CloudEventError::Empty),
            Err(_) => {
                let value: Value = serde_json::from_slice(body)
                    .map_err(|e| CloudEventError::NotJson(e.to_string()))?;
                Self::from_value(value)
            }
        }
    }

    /// Parses a structured CloudEvent from JSON.
    pub fn from_value(value: Value) -> Result<Self, CloudEventError> {
        let Value::Object(mut map) = value else {
            return Err(CloudEventError::NotObject(json_kind(&value)));
        };
        let data = match (map.remove("data_base64"), map.remove("data")) {
            (Some(b64), _) => WireData::Base64(b64),
            (None, Some(v)) => WireData::Value(v),
            (None, None) => WireData::None,
        };
        let known = Known::from_map(&mut map);
        Self::from_parts(known, map, data)
    }

    /// Reads one broker record, whatever its bytes:
    /// - a structured CloudEvent (what a Dapr publisher writes);
    /// - a JSON object that is no CloudEvent (what a plain Kafka producer writes): read as
    ///   Dapr reads it, a `com.dapr.event.sent` event whose data is the object, dispatched on its
    ///   `event_type`;
    /// - with `raw_payload`, anything else too, as data (binary data as lossy text; the exact
    ///   bytes stay in [`CloudEvent::record`]).
    ///
    /// Events read from records that are not CloudEvents get an id that is a digest of the bytes,
    /// so a redelivered record keeps its id. Anything else is an error that says why.
    pub fn from_record(record: Bytes, raw_payload: bool) -> Result<Self, CloudEventError> {
        let mut ce = match Self::from_slice(&record) {
            Ok(ce) => ce,
            Err(CloudEventError::Missing("specversion")) => {
                match serde_json::from_slice::<Box<RawValue>>(&record) {
                    Ok(raw) => Self::bare(&record, Data::raw(raw), "application/json"),
                    Err(e) => return Err(CloudEventError::NotJson(e.to_string())),
                }
            }
            Err(_) if raw_payload => {
                let data = Data::parsed(bytes_to_value(&record));
                Self::bare(&record, data, "application/octet-stream")
            }
            Err(e) => return Err(e),
        };
        ce.record = Some(record);
        Ok(ce)
    }

    /// Whether this event stands for a record that is no CloudEvent (see [`Self::from_record`]).
    pub(crate) fn is_bare(&self) -> bool {
        self.ty == BARE_TYPE && self.source.is_empty()
    }

    /// A record that is no CloudEvent, as Dapr would wrap it.
    fn bare(record: &[u8], data: Data, content_type: &str) -> Self {
        let mut ce = CloudEvent::new(record_digest(record), BARE_TYPE, "", Value::Null);
        ce.datacontenttype = Some(content_type.to_owned());
        ce.data = data;
        ce
    }

    /// The exact bytes of the broker record this event was read from.
    pub fn record(&self) -> Option<&Bytes> {
        self.record.as_ref()
    }

    /// Keeps `record` as the exact bytes this event was read from.
    pub(crate) fn with_record(mut self, record: Bytes) -> Self {
        self.record = Some(record);
        self
    }

    /// The exact bytes to keep for this event: the record it was read from, else its envelope.
    pub fn record_or_envelope(&self) -> Bytes {
        match &self.record {
            Some(record) => record.clone(),
            None => Bytes::from(self.to_value().to_string()),
        }
    }

    fn from_parts(
        known: Known,
        map: Map<String, Value>,
        data: WireData,
    ) -> Result<Self, CloudEventError> {
        // In the order of `KNOWN`.
        let Known(
            [specversion, id, ty, source, time, datacontenttype, topic, pubsubname, traceparent, tracestate],
        ) = known;
        let specversion = specversion.ok_or(CloudEventError::Missing("specversion"))?;
        if specversion != "1.0" {
            return Err(CloudEventError::SpecVersion(specversion));
        }
        let id = id.ok_or(CloudEventError::Missing("id"))?;
        let ty = ty.ok_or(CloudEventError::Missing("type"))?;
        let source = source.ok_or(CloudEventError::Missing("source"))?;
        let data = match data {
            WireData::Base64(Value::String(b64)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| CloudEventError::Base64(e.to_string()))?;
                Data::parsed(bytes_to_value(&bytes))
            }
            WireData::Base64(other) => {
                return Err(CloudEventError::Base64(format!(
                    "expected a string, found a JSON {}",
                    json_kind(&other)
                )))
            }
            WireData::Raw(raw) => Data::raw(raw),
            WireData::Read(body) => Data {
                body: Some(body),
                ..Data::default()
            },
            WireData::Value(Value::String(s)) => Data::parsed(unstring(s)),
            WireData::Value(v) => Data::parsed(v),
            WireData::None => Data::parsed(Value::Null),
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
            extensions: map,
            data,
            record: None,
        })
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
        put("topic", &self.topic);
        put("pubsubname", &self.pubsubname);
        put("traceparent", &self.traceparent);
        put("tracestate", &self.tracestate);
        let attributes = Required {
            id: &self.id,
            ty: &self.ty,
            source: &self.source,
            content_type: self.datacontenttype.as_deref(),
        };
        Value::Object(write_envelope(
            map,
            attributes,
            Payload::Json(self.data().clone()),
        ))
    }

    /// A string extension attribute.
    pub fn extension_str(&self, name: &str) -> Option<&str> {
        self.extensions.get(name).and_then(Value::as_str)
    }
}

/// The attributes every envelope the app writes carries.
pub(crate) struct Required<'a> {
    pub id: &'a str,
    pub ty: &'a str,
    pub source: &'a str,
    /// `datacontenttype`, when known.
    pub content_type: Option<&'a str>,
}

/// What an envelope carries as its data.
pub(crate) enum Payload {
    /// JSON, as `data`.
    Json(Value),
    /// Bytes, already base64-encoded, as `data_base64`.
    Base64(String),
}

/// The one writer of CloudEvent envelopes: `attributes` (the extensions and optional attributes
/// already in it), the required attributes, and the data. Used for what the app publishes, for
/// retry messages, and to write a read event back.
pub(crate) fn write_envelope(
    mut attributes: Map<String, Value>,
    required: Required<'_>,
    payload: Payload,
) -> Map<String, Value> {
    let text = |s: &str| Value::String(s.to_owned());
    attributes.insert("specversion".into(), text("1.0"));
    attributes.insert("id".into(), text(required.id));
    attributes.insert("type".into(), text(required.ty));
    attributes.insert("source".into(), text(required.source));
    if let Some(content_type) = required.content_type {
        attributes.insert("datacontenttype".into(), text(content_type));
    }
    match payload {
        Payload::Json(data) => attributes.insert("data".into(), data),
        Payload::Base64(data) => attributes.insert("data_base64".into(), Value::String(data)),
    };
    attributes
}

/// The CloudEvent extension attribute that carries an event's version (and the publish
/// metadata, so the Kafka record header, that carries it beside a record).
pub(crate) const EXT_VERSION: &str = "eventversion";

/// The CloudEvent type Dapr gives what it wraps: seed-style publishes, records that are no
/// CloudEvent, and rawPayload deliveries.
pub(crate) const BARE_TYPE: &str = "com.dapr.event.sent";

#[cfg(test)]
mod tests {
    use super::parse::{known_index, KNOWN};
    use super::raw::mentions_data_base64;
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
    fn every_known_attribute_has_its_slot() {
        for (i, name) in KNOWN.iter().enumerate() {
            assert_eq!(known_index(name), Some(i), "{name}");
        }
        assert_eq!(known_index("traceid"), None);
    }

    #[test]
    fn json_data_as_is() {
        let ce = CloudEvent::from_value(envelope(json!({"data":{"a":1}}))).unwrap();
        assert_eq!(*ce.data(), json!({"a":1}));
    }

    #[test]
    fn string_data_holding_json_is_parsed() {
        let ce = CloudEvent::from_value(envelope(json!({"data":"{\"a\":1}"}))).unwrap();
        assert_eq!(*ce.data(), json!({"a":1}));
        let ce = CloudEvent::from_value(envelope(json!({"data":"hello"}))).unwrap();
        assert_eq!(*ce.data(), json!("hello"));
    }

    #[test]
    fn base64_data() {
        let ce = CloudEvent::from_value(envelope(json!({"data_base64":"eyJhIjoxfQ=="}))).unwrap();
        assert_eq!(*ce.data(), json!({"a":1}));
        let err = CloudEvent::from_value(envelope(json!({"data_base64":"%%%"}))).unwrap_err();
        assert!(matches!(err, CloudEventError::Base64(_)));
    }

    #[test]
    fn a_raw_delivery_carries_the_record_byte_for_byte() {
        let inner = envelope(json!({"data":{"a":2}})).to_string();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&inner);
        let outer = json!({"specversion":"1.0","id":"x","type":"com.dapr.event.sent","source":"Dapr",
            "datacontenttype":"application/octet-stream","topic":"t","pubsubname":"p","data_base64":b64});
        let record = dapr_raw_record(outer.to_string().as_bytes()).unwrap();
        assert_eq!(&record[..], inner.as_bytes());
        let ce = CloudEvent::from_record(record, false).unwrap();
        assert_eq!(ce.ty, "task.completed");
        assert_eq!(*ce.data(), json!({"a":2}));
        assert_eq!(ce.record().map(|r| &r[..]), Some(inner.as_bytes()));
        // An event that merely carries binary data is no wrapper.
        let binary = envelope(json!({"data_base64": "eyJhIjoxfQ=="})).to_string();
        assert_eq!(dapr_raw_record(binary.as_bytes()), None);
    }

    /// `dapr_raw_record` as it was before it read the wrapper borrowed (a full `Wire` read after
    /// a plain substring search): the reference the faster reader must agree with.
    fn raw_record_via_wire(body: &[u8]) -> Option<Bytes> {
        if !contains(body, b"\"data_base64\"") {
            return None;
        }
        let wire = serde_json::from_slice::<Wire<serde::de::IgnoredAny>>(body).ok()?;
        let [_, _, ty, source, _, content_type, ..] = &wire.members.known.0;
        let wrapped = ty.as_deref() == Some(BARE_TYPE)
            && source.as_deref() == Some("Dapr")
            && content_type.as_deref() == Some("application/octet-stream")
            && wire.data.is_none();
        match wire.members.base64 {
            Some(Value::String(b64)) if wrapped => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .map(Bytes::from),
            _ => None,
        }
    }

    #[test]
    fn the_wrapper_is_read_as_before() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(br#"{"a":1}"#);
        let head = r#""type":"com.dapr.event.sent","source":"Dapr","datacontenttype":"application/octet-stream""#;
        let bodies = [
            // daprd's own (Go sorts the keys), and other orders.
            format!(
                r#"{{"data_base64":"{b64}","datacontenttype":"application/octet-stream","id":"i","pubsubname":"p","source":"Dapr","specversion":"1.0","topic":"t","type":"com.dapr.event.sent"}}"#
            ),
            format!(
                r#"{{"id":"i","specversion":"1.0",{head},"topic":"t","pubsubname":"p","data_base64":"{b64}"}}"#
            ),
            format!(r#" {{ {head} , "data_base64" : " {b64}\n" }} "#),
            // Escapes: in the base64 (a copy), in the attributes that tell a wrapper apart.
            format!(
                r#"{{{head},"data_base64":"{}"}}"#,
                b64.replace('=', "\\u003d")
            ),
            format!(
                r#"{{"type":"com.dapr.event.sent","source":"\u0044apr","datacontenttype":"application\/octet-stream","data_base64":"{b64}"}}"#
            ),
            // The last of two members of one name counts.
            format!(r#"{{{head},"data_base64":"%%%","data_base64":"{b64}"}}"#),
            format!(r#"{{{head},"data_base64":"{b64}","data_base64":"%%%"}}"#),
            format!(r#"{{{head},"data_base64":"{b64}","data_base64":7}}"#),
            format!(r#"{{{head},"data_base64":{{"x":1}},"data_base64":"{b64}"}}"#),
            format!(r#"{{{head},"data_base64":[1e400],"data_base64":"{b64}"}}"#),
            format!(r#"{{{head},"data_base64":null,"data_base64":"{b64}"}}"#),
            format!(
                r#"{{"source":"Dapr","source":"dapr","type":"com.dapr.event.sent","datacontenttype":"application/octet-stream","data_base64":"{b64}"}}"#
            ),
            format!(
                r#"{{"source":"dapr","source":"Dapr","type":"com.dapr.event.sent","datacontenttype":"application/octet-stream","data_base64":"{b64}"}}"#
            ),
            format!(r#"{{{head},"type":1,"data_base64":"{b64}"}}"#),
            format!(r#"{{{head},"datacontenttype":"text/plain","data_base64":"{b64}"}}"#),
            format!(r#"{{"datacontenttype":"text/plain",{head},"data_base64":"{b64}"}}"#),
            // Values each reader must fail on, or skip, alike.
            format!(r#"{{{head},"id":1e400,"data_base64":"{b64}"}}"#),
            format!(r#"{{{head},"id":[1e400],"data_base64":"{b64}"}}"#),
            format!(r#"{{{head},"extra":1e400,"data_base64":"{b64}"}}"#),
            format!(r#"{{{head},"extra":{{"deep":[1,{{"x":null}}]}},"data_base64":"{b64}"}}"#),
            format!(r#"{{{head},"data":null,"data_base64":"{b64}"}}"#),
            format!(r#"{{{head},"data_base64":"{b64}"}} x"#),
            format!(r#"{{{head},"data_base64":"{b64}""#),
            format!("{{{head},\"data_base64\":\"{b64}\u{1}\"}}"),
            format!("{{{head},\"data_base64\":\"\\ud800{b64}\"}}"),
            format!(r#"[{{{head},"data_base64":"{b64}"}}]"#),
            // Not a wrapper: an event with binary data, a key only inside a value.
            envelope(json!({"data_base64": b64})).to_string(),
            format!(r#"{{{head},"note":"\"data_base64\""}}"#),
            String::from(r#"{"data_base64":"eyJhIjoxfQ=="}"#),
            String::from("\"data_base64\""),
            String::new(),
        ];
        let mut wrappers = 0;
        for body in &bodies {
            let expected = raw_record_via_wire(body.as_bytes());
            wrappers += usize::from(expected.is_some());
            assert_eq!(dapr_raw_record(body.as_bytes()), expected, "{body}");
        }
        assert!(wrappers >= 10, "only {wrappers} of the bodies are wrappers");
    }

    #[test]
    fn the_key_is_found_wherever_it_lies() {
        let key = b"\"data_base64\"";
        // Underscores everywhere, and every byte value in turn around the key.
        let fillers: [fn(usize) -> u8; 2] = [|_| b'_', |i| (i * 37 + 11) as u8];
        for filler in fillers {
            for len in 0..40 {
                let plain: Vec<u8> = (0..len).map(filler).collect();
                assert_eq!(mentions_data_base64(&plain), contains(&plain, key));
                for at in 0..=len {
                    let mut body = plain.clone();
                    body.splice(at..at, key.iter().copied());
                    assert!(mentions_data_base64(&body), "{body:?}");
                    // One byte off anywhere in the key, and it is gone.
                    for i in at..at + key.len() {
                        let mut near = body.clone();
                        near[i] ^= 0x20;
                        assert_eq!(mentions_data_base64(&near), contains(&near, key));
                    }
                }
            }
        }
    }

    #[test]
    fn records_that_are_no_cloudevent() {
        // A plain producer's JSON object: read as Dapr reads it, with an id of its bytes.
        let plain =
            Bytes::from_static(br#"{"event_type":"task.created","n":12345678901234567890123}"#);
        let ce = CloudEvent::from_record(plain.clone(), false).unwrap();
        assert_eq!(ce.ty, BARE_TYPE);
        assert_eq!(
            ce.id,
            CloudEvent::from_record(plain.clone(), false).unwrap().id
        );
        assert_eq!(ce.record(), Some(&plain));
        // Anything else is refused, unless the handler takes raw payloads.
        for garbage in [
            &b"\xff\x00 not json"[..],
            b"[1,2]",
            b"",
            b"{\"specversion\":\"0.3\"}",
        ] {
            assert!(CloudEvent::from_record(Bytes::copy_from_slice(garbage), false).is_err());
        }
        let raw = CloudEvent::from_record(Bytes::from_static(b"\xff\x00"), true).unwrap();
        assert_eq!(raw.record().map(|r| &r[..]), Some(&b"\xff\x00"[..]));
    }

    #[test]
    fn the_wire_path_reads_every_data_form_like_the_tree_path() {
        let forms = [
            json!({"data": {"a": 1, "b": [1, 2]}}),
            json!({"data": "{\"a\":1}"}),
            json!({"data": "hello"}),
            json!({"data_base64": "eyJhIjoxfQ=="}),
            json!({"data": null}),
            json!({}),
            json!({"data": {"a": 1}, "traceid": "x", "evrattempt": "2", "id": 7}),
        ];
        for extra in forms {
            let body = envelope(extra.clone()).to_string();
            let wire = CloudEvent::from_slice(body.as_bytes());
            let tree = CloudEvent::from_value(envelope(extra.clone()));
            assert_eq!(wire, tree, "{extra}");
            if let Ok(ce) = wire {
                assert_eq!(
                    ce.data_str("a"),
                    ce.data()
                        .get("a")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                );
                if ce.data().is_object() {
                    assert_eq!(ce.decode_data::<Value>().unwrap(), *ce.data(), "{extra}");
                }
            }
        }
        let ce = CloudEvent::from_slice(br#"{"specversion":"1.0","id":"1","type":"t","source":"s","data":{"event_version":"2.1","x":{"event_version":"9"}}}"#).unwrap();
        assert_eq!(
            ce.data_str("event_version").as_deref(),
            Some("2.1"),
            "top-level member only"
        );
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Typed2 {
        a: i64,
    }

    /// The one-pass read gives the same event as the general one, with the data decoded, and its
    /// raw text read back from the body when asked.
    #[test]
    fn the_one_pass_read_agrees_with_the_general_one() {
        let body =
            envelope(json!({"data": {"a": 3, "b": "x\"y"}, "traceid": "t", "time": 5})).to_string();
        let body = Bytes::from(body);
        let (ce, event) = read_typed::<Typed2>(&body).expect("the common case");
        assert_eq!(*event.downcast::<Typed2>().unwrap(), Typed2 { a: 3 });
        let general = CloudEvent::from_slice(&body).unwrap();
        assert_eq!(ce, general);
        assert_eq!(*ce.data(), json!({"a": 3, "b": "x\"y"}));
        assert_eq!(ce.data_str("b").as_deref(), Some("x\"y"));
        assert_eq!(ce.time, None, "a non-string attribute counts as absent");
        assert_eq!(ce.extension_str("traceid"), Some("t"));
    }

    /// Everything but the common case is left to the general path, which knows the other forms
    /// and says precisely what is wrong.
    #[test]
    fn the_one_pass_read_declines_every_other_form() {
        let declined = [
            envelope(json!({"data": "{\"a\":1}"})),
            envelope(json!({"data_base64": "eyJhIjoxfQ=="})),
            envelope(json!({"data": {"a": 1}, "data_base64": "eyJhIjoxfQ=="})),
            envelope(json!({"data": {"a": "not a number"}})),
            envelope(json!({})),
            json!({"specversion": "0.3", "id": "1", "type": "t", "source": "s", "data": {"a": 1}}),
            json!({"id": "1", "type": "t", "source": "s", "data": {"a": 1}}),
            json!({"type": "com.dapr.event.sent.bulk", "entries": []}),
        ];
        for body in declined {
            let bytes = Bytes::from(body.to_string());
            assert!(read_typed::<Typed2>(&bytes).is_none(), "{body}");
        }
        for garbage in [&b""[..], b"{", b"[1]", b"\xff"] {
            assert!(read_typed::<Typed2>(&Bytes::copy_from_slice(garbage)).is_none());
        }
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
