//! Event versions: which version an event carries, and reading older ones through upcasters.
//!
//! An event's version travels as the reference's `event_version` field inside the data, and as
//! the `eventversion` CloudEvent extension (our publisher sends it as publish metadata, which the
//! Kafka component turns into a record header and Dapr hands to the app as a header). Minor
//! versions are compatible by rule: unknown fields are ignored and missing optional fields take
//! their defaults. A major version the handler's type does not read, and no upcaster reaches, is
//! not retried: the event goes to the dead-letter topic with that reason.

use crate::cloudevent::CloudEvent;
use crate::context::decode_event;
use crate::event::Event;

/// The CloudEvent extension attribute that carries the version.
pub const EXT_VERSION: &str = "eventversion";

/// The major number of `major.minor`.
///
/// ```
/// assert_eq!(event_runtime::version::major("2.13"), Some(2));
/// assert_eq!(event_runtime::version::major("x"), None);
/// ```
pub fn major(version: &str) -> Option<u64> {
    version.split('.').next()?.trim().parse().ok()
}

/// The version an event says it has, if it says one.
pub fn version_of(ce: &CloudEvent) -> Option<String> {
    match ce.extension_str(EXT_VERSION) {
        Some(v) => Some(v.to_owned()),
        None => ce.data_str("event_version"),
    }
}

/// Why an event cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
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
pub fn decode_versioned<E: Event>(ce: &CloudEvent) -> Result<E, VersionError> {
    let expected = major(E::VERSION).unwrap_or(0);
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
        _ => Ok(decode_event(ce)?),
    }
}
