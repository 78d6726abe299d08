//! Not public API: the paths generated code names. Users never write these.

pub use futures::future::BoxFuture;
pub use inventory;

pub use serde_json;

pub use crate::event::body::EventBody;
pub use crate::event::outcome::{IntoOutcome, Outcome};
pub use crate::event::version::decode_event;
pub use crate::event::{DataVersion, Event};
pub use crate::handler::batch::{each, one_of_batch, run_batch, BatchArg, IntoBatchOutcome};
pub use crate::handler::def::{AfterDeadLetter, HandlerDef, RetryMode};
pub use crate::handler::delivery::{Delivery, EventArg};
pub use crate::handler::extract::FromDelivery;
#[cfg(feature = "sqlx")]
pub use crate::outbox::conn::Conn as OutboxConn;
pub use crate::tooling::schema::EventDef;
pub use crate::wire::cloudevent::CloudEvent;

/// The field names of a handler's event, from its first argument's type.
pub const fn fields_of<A: EventArg>() -> &'static [&'static str] {
    <A::Event as Event>::FIELDS
}

/// The `FIELDS` of an enum event whose variants hold bodies: `tag`, then each name of
/// `lists[0]` that every other list has too (the lists are the fields of each body and those the
/// named variants share). `N` is one more than `lists[0]`'s length; the second value is how many
/// of the `N` are used.
pub const fn common_fields<const N: usize>(
    tag: &'static str,
    lists: &[&[&'static str]],
) -> ([&'static str; N], usize) {
    let mut out = [""; N];
    out[0] = tag;
    let mut len = 1;
    let first = lists[0];
    let mut i = 0;
    while i < first.len() {
        let name = first[i];
        let mut everywhere = !str_eq(name, tag);
        let mut l = 1;
        while l < lists.len() {
            everywhere &= contains(lists[l], name);
            l += 1;
        }
        if everywhere {
            out[len] = name;
            len += 1;
        }
        i += 1;
    }
    (out, len)
}

/// The `FIELDS` of a struct event that holds a body: its own fields, then the body's. `N` is the
/// sum of their lengths.
pub const fn concat_fields<const N: usize>(
    own: &[&'static str],
    body: &[&'static str],
) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < own.len() {
        out[i] = own[i];
        i += 1;
    }
    let mut j = 0;
    while j < body.len() {
        out[i + j] = body[j];
        j += 1;
    }
    out
}

const fn contains(fields: &[&str], name: &str) -> bool {
    let mut i = 0;
    while i < fields.len() {
        if str_eq(fields[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

/// Compile-time check behind `idempotency_key` placeholders: evaluated in a `const`, so a
/// placeholder that names no field of the event fails the build with `message`.
pub const fn require_field(fields: &[&str], name: &str, message: &str) {
    if !contains(fields, name) {
        panic!("{}", message);
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Compile-time check behind `upcast_from`: the older type must have a lower major version.
pub const fn require_older(older: &str, newer: &str, message: &str) {
    if const_major(older) >= const_major(newer) {
        panic!("{}", message);
    }
}

/// Compile-time check behind `upcast_from`: the older type must be the same CloudEvent type.
pub const fn require_same_types(older: &[&str], newer: &[&str], message: &str) {
    let mut i = 0;
    while i < older.len() {
        let mut j = 0;
        let mut found = false;
        while j < newer.len() {
            if str_eq(older[i], newer[j]) {
                found = true;
            }
            j += 1;
        }
        if !found {
            panic!("{}", message);
        }
        i += 1;
    }
}

const fn const_major(version: &str) -> u64 {
    let bytes = version.as_bytes();
    let mut n = 0u64;
    let mut i = 0;
    while i < bytes.len() && bytes[i] != b'.' {
        n = n * 10 + (bytes[i] - b'0') as u64;
        i += 1;
    }
    n
}

/// The major number of an event type's version.
pub fn major_of<E: Event>() -> u64 {
    crate::event::version::major(E::VERSION).unwrap_or(0)
}

/// The JSON Schema of `T`, through `schemars`: what `#[event(schema)]` generates.
pub fn json_schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
}

// The registration the macros build, and what tests of the framework itself reach into.
pub use crate::handler::def::{registered, BulkConfig, INLINE_RETRY_LIMIT_SECS};
pub use crate::wire::cloudevent::{dapr_raw_record, read_typed, record_digest, ReadTyped};
pub use crate::wire::names::check_topic;

/// The signed retry bookkeeping, for the framework's own tests that forge retry messages.
pub mod retry {
    pub use crate::pipeline::retry::bookkeeping::{
        Opened, RetryRejected, RetryState, SigningKey, EXT_APP, EXT_ATTEMPT, EXT_DUE, EXT_FAILURES,
        EXT_HANDLER, EXT_HOP_DUE, EXT_MAC, EXT_TOPIC,
    };
    pub use crate::pipeline::retry::ladder::retry_tier;
}

/// The gRPC streaming subscription client (feature `grpc`), which the real-stack suite drives
/// on its own.
#[cfg(feature = "grpc")]
pub mod stream {
    pub use crate::transport::stream::proto::TopicEventRequest;
    pub use crate::transport::stream::{subscribe, Answer, Answers, StreamError, Subscription};
}
