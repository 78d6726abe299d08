//! [`EventBody`]: the fields that several variants of an enum event share, written once as a
//! struct (`Created(TaskChange)`), so that the enum's derive can reach them through a trait.

use super::DataVersion;

/// What `#[derive(Event)]` with `#[event(body)]` implements, and what an enum event's newtype
/// variants ask of the struct they hold: the parts of [`Event`](super::Event) that come from
/// fields. Not written by hand.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is held by a variant of an event enum, but is not an event body",
    label = "not an event body",
    note = "add `#[derive(Event)]` and `#[event(body)]` to `{Self}`, or write its fields in the variant"
)]
pub trait EventBody {
    /// Whether the body has a partition key (it is not `#[event(unkeyed)]`).
    const KEYED: bool;
    /// Every field name, as serialized.
    const FIELDS: &'static [&'static str];

    /// The partition key; `None` only when not [`KEYED`](Self::KEYED).
    fn partition_key(&self) -> Option<String>;

    /// The `event_id` field, if the body has one.
    fn event_id(&self) -> Option<String> {
        None
    }

    /// The `event_version` field, as [`Event::data_version`](super::Event::data_version).
    fn data_version(&self) -> DataVersion<'_> {
        DataVersion::NotRead
    }
}
