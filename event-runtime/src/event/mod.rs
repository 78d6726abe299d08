//! The [`Event`] trait: what the runtime needs to know about a typed event.

pub(crate) mod body;
pub(crate) mod outcome;
pub(crate) mod version;

use serde::{de::DeserializeOwned, Serialize};

/// A typed event that travels on a topic: its CloudEvent type(s), version and partition key.
///
/// Implement it with `#[derive(Event)]`; writing it by hand is possible but the derive also
/// checks at compile time that the type has a partition key. A struct is one event type; an
/// internally tagged enum (`#[serde(tag = "event_type")]`) is one event type per variant, so one
/// handler can consume every type of a topic.
///
/// ```
/// use event_runtime::Event;
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[event(type = "task.completed", version = "1.0")]
/// pub struct TaskCompleted { pub task_id: i64, pub user_id: String }
///
/// let e = TaskCompleted { task_id: 1, user_id: "u-1".into() };
/// assert_eq!(e.event_type(), "task.completed");
/// assert_eq!(e.partition_key().as_deref(), Some("u-1"));
/// assert_eq!(TaskCompleted::VERSION, "1.0");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `event_runtime::Event`",
    label = "not an event type",
    note = "add `#[derive(Event)]` and `#[event(type = \"...\", version = \"...\")]` to `{Self}`"
)]
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Every CloudEvent type this Rust type stands for (one for a struct, one per variant of an enum).
    const TYPES: &'static [&'static str];
    /// The schema version, `major.minor`.
    const VERSION: &'static str;
    /// The field inside `data` that names the event type, for internally tagged enums.
    const TAG: Option<&'static str> = None;
    /// The field names an `idempotency_key` template may use: every field of a struct; for an
    /// enum, its tag and the fields every variant has.
    const FIELDS: &'static [&'static str] = &[];

    /// The CloudEvent type of this value.
    fn event_type(&self) -> &'static str;

    /// The partition key (Kafka record key): the `user_id` field or the one marked
    /// `#[event(partition_key)]`; `None` only for `#[event(unkeyed)]` types.
    fn partition_key(&self) -> Option<String>;

    /// A stable id for this event (its `event_id` field when it has one), used as the CloudEvent
    /// `id` so that publishing the same event twice yields the same id.
    fn event_id(&self) -> Option<String> {
        None
    }

    /// The version this decoded event read from its data's `event_version` member (see
    /// [`DataVersion`]). The derive implements it; the runtime then checks the version after
    /// decoding instead of searching the text for it first.
    #[doc(hidden)]
    fn data_version(&self) -> DataVersion<'_> {
        DataVersion::NotRead
    }

    /// The JSON Schema of the event's data: derived with `schemars` when the type says
    /// `#[event(schema)]` (and derives `schemars::JsonSchema`), else the most permissive schema.
    fn json_schema() -> serde_json::Value
    where
        Self: Sized,
    {
        serde_json::json!({})
    }

    /// Reads an event of an older major version `major` through the upcasters declared with
    /// `#[event(upcast_from = Older)]` (chains compose); `None` when no upcaster reads it.
    fn upcast(
        major: u64,
        event: &crate::wire::cloudevent::CloudEvent,
    ) -> Option<Result<Self, serde_json::Error>>
    where
        Self: Sized,
    {
        let _ = (major, event);
        None
    }
}

/// What a decoded event knows of the version its data carried in `event_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataVersion<'a> {
    /// The type does not read `event_version` as text: the runtime looks for it in the data.
    NotRead,
    /// The data had no `event_version`.
    Absent,
    /// The data's `event_version`.
    Is(&'a str),
}

impl<'a> DataVersion<'a> {
    /// `Is` for a version, `Absent` for none: what an `Option<String>` field read.
    pub const fn from_option(version: Option<&'a str>) -> Self {
        match version {
            Some(version) => DataVersion::Is(version),
            None => DataVersion::Absent,
        }
    }
}
