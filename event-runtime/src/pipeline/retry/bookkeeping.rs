//! The bookkeeping a delayed retry carries in CloudEvent extensions: which attempt, when it is
//! due, what failed before; signed with the app's key ([`RetryState::seal`]) and checked when
//! read back ([`RetryState::open`]).

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::wire::cloudevent::{write_envelope, CloudEvent, Payload, Required};
use crate::wire::trace::TraceContext;

pub use crate::wire::signing::SigningKey;

/// Extension attribute: the attempt number of the run this message is for (2 = first retry).
pub const EXT_ATTEMPT: &str = "evrattempt";
/// Extension attribute: when the run is due, epoch milliseconds.
pub const EXT_DUE: &str = "evrdue";
/// Extension attribute: when the hop on the current retry tier ends, epoch milliseconds.
pub const EXT_HOP_DUE: &str = "evrhop";
/// Extension attribute: the handler the retry is for (`module::name`).
pub const EXT_HANDLER: &str = "evrhandler";
/// Extension attribute: the topic the event was first delivered on.
pub const EXT_TOPIC: &str = "evrtopic";
/// Extension attribute: the failures so far, a JSON array in a string.
pub const EXT_FAILURES: &str = "evrfailures";

/// One failed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Which attempt failed (1 = the first delivery).
    pub attempt: u32,
    /// When it failed (RFC 3339).
    pub at: String,
    /// The error.
    pub error: String,
}

/// Extension attribute: the app that scheduled the retry (its `APP_ID`).
pub const EXT_APP: &str = "evrapp";
/// Extension attribute: the HMAC-SHA256 over the bookkeeping and the record, hex.
pub const EXT_MAC: &str = "evrmac";

/// The extension attributes the signature covers (with the app id, the event's id and type, and
/// the record), in the order they are signed.
const SIGNED: [&str; 7] = [
    EXT_ATTEMPT,
    EXT_DUE,
    EXT_HOP_DUE,
    EXT_HANDLER,
    EXT_TOPIC,
    crate::wire::cloudevent::EXT_VERSION,
    EXT_FAILURES,
];

/// The retry bookkeeping of a delivery: which attempt it is and what failed before.
///
/// It travels in CloudEvent extensions of the retry message, signed with the app's
/// [`SigningKey`], and is read back only from the app's own retry topics ([`RetryState::open`]);
/// on every other topic a delivery is a first attempt, whatever its extensions say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryState {
    /// The attempt about to run (1 for a first delivery).
    pub attempt: u32,
    /// When it is due (epoch ms), for delayed retries.
    pub due_ms: Option<u64>,
    /// When the hop on the current retry tier ends (epoch ms): the message is held until then,
    /// then run, or moved to the next tier when it is due later still.
    pub hop_due_ms: Option<u64>,
    /// The handler a retry message is for.
    pub handler: Option<String>,
    /// The topic the event was first delivered on.
    pub origin_topic: Option<String>,
    /// The event's version, as it was first delivered.
    pub version: Option<String>,
    /// Earlier failures.
    pub failures: Vec<Failure>,
}

/// Why a message on a retry topic is not run as a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryRejected {
    /// Another app (another `APP_ID`) scheduled it.
    #[error("retry message of app `{0}`, not this one")]
    Foreign(String),
    /// The message does not carry bookkeeping this app signed.
    #[error("retry message whose bookkeeping is not signed by this app: {0}")]
    Unverified(&'static str),
}

/// A retry message read back: its bookkeeping and the record it carries.
#[derive(Debug)]
pub struct Opened {
    /// The bookkeeping.
    pub state: RetryState,
    /// The exact bytes of the record as first delivered.
    pub record: Bytes,
    /// The trace context the retry continues: `traceparent`.
    pub traceparent: Option<String>,
    /// And its `tracestate`.
    pub tracestate: Option<String>,
}

impl RetryState {
    /// A first delivery.
    pub fn first() -> Self {
        RetryState {
            attempt: 1,
            ..RetryState::default()
        }
    }

    /// The signed fields, in the order of [`SIGNED`].
    fn fields(&self) -> [String; 7] {
        [
            self.attempt.to_string(),
            self.due_ms.map(|d| d.to_string()).unwrap_or_default(),
            self.hop_due_ms.map(|d| d.to_string()).unwrap_or_default(),
            self.handler.clone().unwrap_or_default(),
            self.origin_topic.clone().unwrap_or_default(),
            self.version.clone().unwrap_or_default(),
            serde_json::to_string(&self.failures).unwrap_or_else(|_| "[]".into()),
        ]
    }

    /// The retry message for the next attempt: the original record, byte for byte, as
    /// `data_base64` of an envelope whose extensions carry this bookkeeping, signed.
    pub fn seal(
        &self,
        app_id: &str,
        key: &SigningKey,
        ce: &CloudEvent,
        record: &[u8],
        trace: Option<&TraceContext>,
    ) -> Vec<u8> {
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(record);
        let fields = self.fields();
        let mut parts: Vec<&[u8]> = vec![app_id.as_bytes(), ce.id.as_bytes(), ce.ty.as_bytes()];
        parts.extend(fields.iter().map(|f| f.as_bytes()));
        parts.push(data.as_bytes());
        let mac = key.sign(&parts);
        let mut m = Map::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_owned(), Value::String(v));
        };
        if let Some(trace) = trace {
            if let Some(tp) = &trace.traceparent {
                put("traceparent", tp.clone());
            }
            if let Some(ts) = &trace.tracestate {
                put("tracestate", ts.clone());
            }
        }
        put(EXT_APP, app_id.to_owned());
        for (name, value) in SIGNED.into_iter().zip(fields) {
            put(name, value);
        }
        put(EXT_MAC, mac);
        let required = Required {
            id: &ce.id,
            ty: &ce.ty,
            source: app_id,
            content_type: Some("application/octet-stream"),
        };
        let m = write_envelope(m, required, Payload::Base64(data));
        Value::Object(m).to_string().into_bytes()
    }

    /// Reads a message of one of this app's retry topics back: its bookkeeping, verified
    /// against `key`, and the record it carries.
    pub fn open(record: &[u8], app_id: &str, key: &SigningKey) -> Result<Opened, RetryRejected> {
        use base64::Engine as _;
        let m: Map<String, Value> = serde_json::from_slice(record)
            .map_err(|_| RetryRejected::Unverified("not a JSON object"))?;
        let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
        let app = text(EXT_APP);
        if app.is_empty() {
            return Err(RetryRejected::Unverified("no app id"));
        }
        if app != app_id {
            return Err(RetryRejected::Foreign(app.to_owned()));
        }
        let fields = SIGNED.map(text);
        let data = text("data_base64");
        let mut parts: Vec<&[u8]> = vec![
            app.as_bytes(),
            text("id").as_bytes(),
            text("type").as_bytes(),
        ];
        parts.extend(fields.iter().map(|f| f.as_bytes()));
        parts.push(data.as_bytes());
        match text(EXT_MAC) {
            "" => return Err(RetryRejected::Unverified("no signature")),
            mac if !key.verify(&parts, mac) => {
                return Err(RetryRejected::Unverified("the signature does not match"))
            }
            _ => {}
        }
        let record = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| RetryRejected::Unverified("the record is not base64"))?;
        let [attempt, due, hop_due, handler, topic, version, failures] = fields;
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let state = RetryState {
            attempt: attempt.parse::<u32>().unwrap_or(1).max(1),
            due_ms: due.parse().ok(),
            hop_due_ms: hop_due.parse().ok(),
            handler: some(handler),
            origin_topic: some(topic),
            version: some(version),
            failures: serde_json::from_str(failures).unwrap_or_default(),
        };
        Ok(Opened {
            state,
            record: record.into(),
            traceparent: some(text("traceparent")),
            tracestate: some(text("tracestate")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(key: &SigningKey) -> Vec<u8> {
        let ce = CloudEvent::new("e-1", "task.completed", "s", Value::Null);
        let state = RetryState {
            attempt: 2,
            due_ms: Some(5),
            hop_due_ms: Some(4),
            handler: Some("m::h".into()),
            origin_topic: Some("task-events".into()),
            version: Some("1.0".into()),
            failures: vec![Failure {
                attempt: 1,
                at: "t".into(),
                error: "boom".into(),
            }],
        };
        state.seal("app", key, &ce, b"\xff exact \x00 bytes", None)
    }

    #[test]
    fn sealed_bookkeeping_opens_with_its_record() {
        let key = SigningKey::new("k");
        let opened = RetryState::open(&sealed(&key), "app", &key).unwrap();
        assert_eq!(opened.state.attempt, 2);
        assert_eq!(opened.state.handler.as_deref(), Some("m::h"));
        assert_eq!(opened.state.version.as_deref(), Some("1.0"));
        assert_eq!(&opened.record[..], b"\xff exact \x00 bytes");
    }

    #[test]
    fn forged_or_foreign_bookkeeping_is_refused() {
        let key = SigningKey::new("k");
        let msg = sealed(&key);
        assert_eq!(
            RetryState::open(&msg, "other-app", &key).unwrap_err(),
            RetryRejected::Foreign("app".into())
        );
        assert!(matches!(
            RetryState::open(&msg, "app", &SigningKey::new("other key")),
            Err(RetryRejected::Unverified(_))
        ));
        let forged = String::from_utf8(msg)
            .unwrap()
            .replace("\"evrattempt\":\"2\"", "\"evrattempt\":\"9\"");
        assert!(matches!(
            RetryState::open(forged.as_bytes(), "app", &key),
            Err(RetryRejected::Unverified(_))
        ));
        assert!(RetryState::open(b"garbage", "app", &key).is_err());
    }
}
