//! Event versions: which version an event carries, and reading older ones through upcasters.
//!
//! An event's version travels as an `event_version` field inside the data (as the todo platform's
//! shared event contract puts it), and as
//! the `eventversion` CloudEvent extension (our publisher sends it as publish metadata, which the
//! Kafka component turns into a record header and Dapr hands to the app as a header). Minor
//! versions are compatible by rule: unknown fields are ignored and missing optional fields take
//! their defaults. A major version the handler's type does not read, and no upcaster reaches, is
//! not retried: the event goes to the dead-letter topic with that reason.

use serde_json::Value;

use crate::wire::cloudevent::CloudEvent;

use crate::event::{DataVersion, Event};
use crate::wire::cloudevent::EXT_VERSION;

/// Decodes `data` as `E`, whatever its version says (see `decode_versioned` for the checked
/// path). For an internally tagged enum whose data lacks the tag (a publisher
/// that put the type only in the CloudEvent `type`), the tag is taken from the CloudEvent type.
///
/// The tagged copy is decoded from a reference, as [`CloudEvent::decode_data`] decodes a parsed
/// tree: `E`'s decoder is then compiled for one JSON tree deserializer, not two.
pub fn decode_event<E: Event>(ce: &CloudEvent) -> Result<E, serde_json::Error> {
    let fast = ce.decode_data::<E>();
    let Some(tag) = E::TAG else { return fast };
    if fast.is_ok() {
        return fast;
    }
    match ce.data() {
        Value::Object(map) if !map.contains_key(tag) && E::TYPES.contains(&ce.ty.as_str()) => {
            let mut map = map.clone();
            map.insert(tag.to_owned(), Value::String(ce.ty.clone()));
            E::deserialize(&Value::Object(map))
        }
        _ => fast,
    }
}

/// The major number of `major.minor`.
pub(crate) fn major(version: &str) -> Option<u64> {
    plain_major(version).or_else(|| version.split('.').next()?.trim().parse().ok())
}

/// [`major`] of a version whose major is plain decimal digits (every derived event's, and what
/// our publisher sends), else `None`; a loop that a `const` block can run, so that a handler's
/// own major is worked out at compile time.
const fn plain_major(version: &str) -> Option<u64> {
    let bytes = version.as_bytes();
    let mut i = 0;
    let mut major: u64 = 0;
    while i < bytes.len() && bytes[i] != b'.' {
        let digit = bytes[i].wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        major = match major.checked_mul(10) {
            Some(m) => match m.checked_add(digit as u64) {
                Some(m) => m,
                None => return None,
            },
            None => return None,
        };
        i += 1;
    }
    if i == 0 {
        None
    } else {
        Some(major)
    }
}

/// The version an event says it has, if it says one.
pub(crate) fn version_of(ce: &CloudEvent) -> Option<String> {
    match ce.extension_str(EXT_VERSION) {
        Some(v) => Some(v.to_owned()),
        None => ce.data_str("event_version"),
    }
}

/// The event as `E` reads it (upcast from an older version), as JSON: what an idempotency key
/// template is rendered over. `None` when it cannot be read.
pub(crate) fn fields_of<E: Event>(ce: &CloudEvent) -> Option<serde_json::Value> {
    let event = decode_versioned::<E>(ce).ok()?;
    serde_json::to_value(&event).ok()
}

/// Why an event cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VersionError {
    /// No upcaster reaches the handler's version from the event's.
    #[error("version {found} of `{event_type}` cannot be read: the handler reads major version {expected}, and no upcaster converts from {found}")]
    Unknown {
        /// The CloudEvent type.
        event_type: String,
        /// The version the event carries.
        found: String,
        /// The major version the handler reads.
        expected: u64,
    },
    /// The data does not match the type.
    #[error(transparent)]
    Decode(#[from] serde_json::Error),
}

/// Decodes `ce` as `E`, upcasting an older major version and refusing an unknown one.
pub(crate) fn decode_versioned<E: Event>(ce: &CloudEvent) -> Result<E, VersionError> {
    decode_versioned_from(ce, None)
}

/// [`decode_versioned`], given the event when it was already decoded with the envelope.
pub(crate) fn decode_versioned_from<E: Event>(
    ce: &CloudEvent,
    decoded: Option<E>,
) -> Result<E, VersionError> {
    let expected = match const { plain_major(E::VERSION) } {
        Some(m) => m,
        None => major(E::VERSION).unwrap_or(0),
    };
    let extension = ce.extension_str(EXT_VERSION);
    // The common case, one pass over the data: the event is decoded first and its version
    // checked after, from the extension or from the `event_version` the type read itself.
    // Anything else (another major, a decode error, a type that cannot tell) looks for the
    // version before decoding, below.
    let decoded = match (decoded, extension) {
        (Some(event), _) => Some(event),
        (None, None) => decode_event::<E>(ce).ok(),
        (None, Some(_)) => None,
    };
    if let Some(event) = decoded {
        let version = match extension {
            Some(v) => DataVersion::Is(v),
            None => event.data_version(),
        };
        let fits = match version {
            DataVersion::Absent => true,
            DataVersion::Is(v) => major(v).is_none_or(|m| m == expected),
            DataVersion::NotRead => false,
        };
        if fits {
            return Ok(event);
        }
        return checked(ce, expected, Some(event));
    }
    checked(ce, expected, None)
}

/// Reads the version from the event first: an upcaster for an older major, an error for an
/// unknown one, else `decoded` or a fresh decode.
fn checked<E: Event>(
    ce: &CloudEvent,
    expected: u64,
    decoded: Option<E>,
) -> Result<E, VersionError> {
    let version = version_of(ce);
    let found = version.as_deref().and_then(|v| major(v).map(|m| (v, m)));
    match found {
        Some((version, m)) if m != expected => match E::upcast(m, ce) {
            Some(result) => Ok(result?),
            None => Err(VersionError::Unknown {
                event_type: ce.ty.clone(),
                found: version.to_owned(),
                expected,
            }),
        },
        _ => match decoded {
            Some(event) => Ok(event),
            None => Ok(decode_event(ce)?),
        },
    }
}

#[cfg(test)]
mod major_tests {
    use super::*;

    #[test]
    fn the_major_is_the_number_before_the_first_dot() {
        assert_eq!(major("2.13"), Some(2));
        assert_eq!(major("x"), None);
    }

    #[test]
    fn the_plain_major_agrees_with_the_general_reading() {
        let samples = [
            "1.0",
            "2.13",
            "10",
            "0.1",
            "007.2",
            " 1.0",
            "+1.0",
            "1 .0",
            "x.1",
            "",
            ".1",
            "1.2.3",
            "18446744073709551615.0",
            "18446744073709551616.0",
            "\u{661}.0",
        ];
        for v in samples {
            let general = v
                .split('.')
                .next()
                .and_then(|m| m.trim().parse::<u64>().ok());
            assert_eq!(major(v), general, "{v:?}");
            if let Some(m) = plain_major(v) {
                assert_eq!(Some(m), general, "{v:?}");
            }
        }
    }
}
