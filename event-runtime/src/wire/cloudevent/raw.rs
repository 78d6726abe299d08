//! What Dapr wraps around a broker record on a rawPayload subscription, read without building
//! a tree; and the digest that names a record by its bytes.

use std::borrow::Cow;

use axum::body::Bytes;
use base64::Engine as _;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::fmt;

use super::parse::{Key, StrValue, KNOWN};
use super::BARE_TYPE;

/// The broker record's bytes, when `body` is the envelope daprd wraps a rawPayload delivery in
/// (type `com.dapr.event.sent`, source `Dapr`, the record as `data_base64`). `None` for any other
/// body, which is then the record itself (a delivery of a subscription without rawPayload, or a
/// test posting an event).
pub fn dapr_raw_record(body: &[u8]) -> Option<Bytes> {
    if !mentions_data_base64(body) {
        return None;
    }
    // Checked as UTF-8 in one pass, so that no string is checked again as it is read.
    let text = std::str::from_utf8(body).ok()?;
    let wrapper = serde_json::from_str::<RawWrapper<'_>>(text).ok()?;
    let wrapped = wrapper.ty.as_deref() == Some(BARE_TYPE)
        && wrapper.source.as_deref() == Some("Dapr")
        && wrapper.content_type.as_deref() == Some("application/octet-stream")
        && !wrapper.has_data;
    let b64 = wrapper.base64.filter(|_| wrapped)?;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()
        .map(Bytes::from)
}

/// Whether the key `"data_base64"` occurs in `body`: the look before parsing a body as daprd's
/// wrapper. It looks for the key's `_`, of which a JSON body holds few, eight bytes at a time;
/// comparing the whole key at every position ([`contains`]) costs about ten instructions a byte,
/// which a plain CloudEvent paid on every delivery.
pub(super) fn mentions_data_base64(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"data_base64\"";
    const UNDERSCORE: usize = 5;
    const _: () = assert!(KEY[UNDERSCORE] == b'_');
    let key_at = |i: usize| {
        i.checked_sub(UNDERSCORE)
            .and_then(|start| body.get(start..))
            .is_some_and(|rest| rest.starts_with(KEY))
    };
    let mut words = body.chunks_exact(8);
    for (n, word) in words.by_ref().enumerate() {
        let mut hits = underscores(word.try_into().unwrap_or_default());
        while hits != 0 {
            if key_at(n * 8 + hits.trailing_zeros() as usize / 8) {
                return true;
            }
            hits &= hits - 1;
        }
    }
    let tail = body.len() - words.remainder().len();
    (tail..body.len()).any(|i| body[i] == b'_' && key_at(i))
}

/// Where eight bytes hold `_`: the high bit of each such byte (byte `i` at bits `8 i..8 i + 8`).
/// A byte of `x` is zero exactly where the word holds `_`; adding `0x7f` to its low seven bits
/// sets its high bit unless all eight bits were zero.
fn underscores(word: [u8; 8]) -> u64 {
    const LOW7: u64 = u64::from_le_bytes([0x7f; 8]);
    let x = u64::from_le_bytes(word) ^ u64::from_le_bytes([b'_'; 8]);
    !((x & LOW7).wrapping_add(LOW7) | x | LOW7)
}

/// daprd's rawPayload wrapper, as [`dapr_raw_record`] reads it: the attributes that tell it
/// apart and the record's base64, borrowed from the body (nothing is allocated unless an escape
/// forces a copy). Every member is read as [`Wire`] reads it, so a body is a wrapper exactly when
/// it was one to `Wire`; of two members of one name, the last counts, as there.
struct RawWrapper<'de> {
    ty: Option<Cow<'de, str>>,
    source: Option<Cow<'de, str>>,
    content_type: Option<Cow<'de, str>>,
    has_data: bool,
    /// `data_base64`, when it is a string.
    base64: Option<Cow<'de, str>>,
}

impl<'de> Deserialize<'de> for RawWrapper<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawWrapperVisitor;

        impl<'de> Visitor<'de> for RawWrapperVisitor {
            type Value = RawWrapper<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CloudEvent object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut wrapper = RawWrapper {
                    ty: None,
                    source: None,
                    content_type: None,
                    has_data: false,
                    base64: None,
                };
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Data => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            wrapper.has_data = true;
                        }
                        Key::Base64 => {
                            wrapper.base64 = map.next_value_seed(StrValue { as_value: true })?;
                        }
                        Key::Known(i) => {
                            let value = map.next_value_seed(StrValue { as_value: false })?;
                            match KNOWN[i] {
                                "type" => wrapper.ty = value,
                                "source" => wrapper.source = value,
                                "datacontenttype" => wrapper.content_type = value,
                                _ => {}
                            }
                        }
                        Key::Other(_) => {
                            map.next_value::<Value>()?;
                        }
                    }
                }
                Ok(wrapper)
            }
        }

        deserializer.deserialize_map(RawWrapperVisitor)
    }
}

/// Whether `needle` occurs in `haystack`: a cheap look before a full parse.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A stable id for bytes that carry none: a UUIDv5 of a SHA-256 of them.
pub fn record_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(bytes);
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &digest).to_string()
}
