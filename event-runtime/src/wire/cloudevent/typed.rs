//! The one-pass read: the envelope and a handler's event decoded together, when the handler is
//! known before the body is read.

use std::any::Any;

use axum::body::Bytes;
use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use super::parse::{Members, Wire, WireData};
use super::CloudEvent;

/// The data decoded as `E`, in the same pass as the envelope around it. Data in another form
/// (a JSON string holding JSON, say) fails to decode as an event type (a struct or a tagged
/// enum), which sends the body down the general path, where it is unwrapped first.
///
/// `E` is decoded from the very deserializer `serde_json::from_str` hands it, so this reuses the
/// decoding code the general path compiles for `E` anyway. Per event type, only the envelope
/// reader's frame is compiled again: its members are read by one shared loop
/// (`Members::read`), and the `CloudEvent` is built by [`envelope`].
struct Typed<E>(E);

impl<'de, E: DeserializeOwned> Deserialize<'de> for Typed<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        E::deserialize(deserializer).map(Typed)
    }
}

/// Reads an envelope whose `data` is decoded as the handler's type `E` in the same pass, as a
/// hand-written handler would: the fast path of a delivery to a handler's own route.
///
/// `None` when anything differs from that common case (no `data`, `data_base64`, data that is
/// not an object or array, data that does not decode as `E`, a bad envelope): the caller then
/// reads the body the general way, which says precisely what is wrong. The data's raw text is not
/// kept; it is read again from `body` on the paths that need it.
#[doc(hidden)]
pub fn read_typed<E: DeserializeOwned + Send + 'static>(
    body: &Bytes,
) -> Option<(CloudEvent, Box<dyn Any + Send>)> {
    let text = std::str::from_utf8(body).ok()?;
    let wire = serde_json::from_str::<Wire<Typed<E>>>(text).ok()?;
    let event = wire.data?.0;
    let ce = envelope(wire.members, body)?;
    Some((ce, Box::new(event)))
}

/// The envelope around data [`read_typed`] decoded, built apart from the event's type so that
/// it is compiled once: `None` when it also has `data_base64`, or is no CloudEvent.
fn envelope(members: Members, body: &Bytes) -> Option<CloudEvent> {
    if members.base64.is_some() {
        return None;
    }
    let data = WireData::Read(body.clone());
    let mut ce = CloudEvent::from_parts(members.known, members.attributes, data).ok()?;
    ce.record = Some(body.clone());
    Some(ce)
}

/// The signature of [`read_typed`] for one event type, as a handler registers it.
#[doc(hidden)]
pub type ReadTyped = fn(&Bytes) -> Option<(CloudEvent, Box<dyn Any + Send>)>;

/// Raw bytes as a JSON value: parsed JSON when they are JSON, else a (lossy) string.
pub(super) fn bytes_to_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}
