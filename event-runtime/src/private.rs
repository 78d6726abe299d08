//! Not public API: the paths generated code names. Users never write these.

pub use futures::future::BoxFuture;
pub use inventory;

pub use crate::context::{Delivery, EventArg, FromDelivery};
pub use crate::event::Event;
pub use crate::handler::{HandlerDef, RetryMode};
pub use crate::outcome::{IntoOutcome, Outcome};

/// The field names of a handler's event, from its first argument's type.
pub const fn fields_of<A: EventArg>() -> &'static [&'static str] {
    <A::Event as Event>::FIELDS
}

/// Compile-time check behind `idempotency_key` placeholders: evaluated in a `const`, so a
/// placeholder that names no field of the event fails the build with `message`.
pub const fn require_field(fields: &[&str], name: &str, message: &str) {
    let mut i = 0;
    while i < fields.len() {
        if str_eq(fields[i], name) {
            return;
        }
        i += 1;
    }
    panic!("{}", message);
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
