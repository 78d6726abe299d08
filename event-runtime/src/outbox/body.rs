//! What a row keeps of its event besides its columns: written by `add`, read by the relay, and
//! checked on the way in so that every row written is one the relay can read and publish.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::outbox::store::PendingRow;
use crate::transport::outgoing::OutgoingEvent;
use crate::transport::publish::Publisher;

/// The stored form of an event: its JSON is a row's `body`.
#[derive(Serialize, Deserialize)]
struct Body {
    id: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    source: String,
    data: Value,
    #[serde(default)]
    partition_key: Option<String>,
    #[serde(default)]
    extensions: Map<String, Value>,
    #[serde(default)]
    traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tracestate: Option<String>,
    /// The exact record, base64.
    #[serde(default)]
    record: Option<String>,
}

/// Why an event's body was refused ([`encode`]); `add` names the event around it.
#[derive(Debug)]
pub(crate) enum Refused {
    /// It does not serialize.
    Encode(serde_json::Error),
    /// It is `bytes` long, more than the limit.
    TooLarge { bytes: usize },
    /// It does not read back.
    Unreadable(serde_json::Error),
}

/// `event`'s body, refused when it is larger than `max_bytes` (its record, or else the body
/// itself, which carries the data and attributes the envelope will) or when it does not read
/// back (serde_json stops at 128 levels of nesting, and the relay would fail on it forever).
pub(crate) fn encode(event: &OutgoingEvent, max_bytes: usize) -> Result<String, Refused> {
    let body = Body {
        id: event.id.clone(),
        ty: event.ty.clone(),
        source: event.source.clone(),
        data: event.data.clone(),
        partition_key: event.partition_key.clone(),
        extensions: event.extensions.clone(),
        traceparent: event.traceparent.clone(),
        tracestate: event.tracestate.clone(),
        record: event
            .record
            .as_ref()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
    };
    let text = serde_json::to_string(&body).map_err(Refused::Encode)?;
    let bytes = event.record.as_ref().map_or(text.len(), |r| r.len());
    if bytes > max_bytes {
        return Err(Refused::TooLarge { bytes });
    }
    read(&text).map_err(Refused::Unreadable)?;
    Ok(text)
}

/// A body as stored, read back: the one parser `encode`'s check and the relay share.
fn read(text: &str) -> Result<Body, serde_json::Error> {
    serde_json::from_str(text)
}

/// The event a pending row holds, as the relay publishes it through `publisher`.
pub(crate) fn decode(
    row: &PendingRow,
    publisher: &Publisher,
) -> Result<OutgoingEvent, serde_json::Error> {
    let body = read(&row.body)?;
    let pubsub = if row.pubsub.is_empty() {
        publisher.default_pubsub()
    } else {
        &row.pubsub
    };
    let source = if body.source.is_empty() {
        publisher.source().to_owned()
    } else {
        body.source
    };
    let record = body
        .record
        .map(|r| base64::engine::general_purpose::STANDARD.decode(r))
        .transpose()
        .map_err(serde::de::Error::custom)?;
    Ok(OutgoingEvent {
        pubsub: pubsub.to_owned(),
        topic: row.topic.clone(),
        id: body.id,
        ty: body.ty,
        source,
        data: body.data,
        partition_key: body.partition_key,
        extensions: body.extensions,
        traceparent: body.traceparent,
        tracestate: body.tracestate,
        record: record.map(Into::into),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: Value) -> OutgoingEvent {
        OutgoingEvent {
            pubsub: String::new(),
            topic: "items".into(),
            id: "e-1".into(),
            ty: "item.added".into(),
            source: String::new(),
            data,
            partition_key: Some("ann".into()),
            extensions: Map::new(),
            traceparent: None,
            tracestate: None,
            record: None,
        }
    }

    fn nested(depth: usize) -> Value {
        (0..depth).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
    }

    #[test]
    fn a_body_the_relay_reads_is_accepted() {
        let text = encode(&event(nested(100)), 1 << 20).unwrap();
        assert!(read(&text).is_ok());
    }

    #[test]
    fn a_body_too_deep_to_read_back_is_refused() {
        let err = encode(&event(nested(200)), 1 << 20).unwrap_err();
        assert!(matches!(err, Refused::Unreadable(_)), "{err:?}");
    }

    #[test]
    fn a_body_over_the_limit_is_refused() {
        let err = encode(&event(Value::String("x".repeat(2_000))), 1_000).unwrap_err();
        assert!(
            matches!(err, Refused::TooLarge { bytes } if bytes > 2_000),
            "{err:?}"
        );
    }

    #[test]
    fn a_record_is_measured_by_its_bytes() {
        let mut record = event(Value::Null);
        record.record = Some(vec![0u8; 900].into());
        // Base64 makes the body about 1 200 bytes; the record itself fits.
        assert!(encode(&record, 1_000).is_ok());
    }
}
