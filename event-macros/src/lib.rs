//! Procedural macros for `event-runtime`: [`macro@event_handler`] and [`derive@Event`].
//!
//! Use them through `event-runtime`, which re-exports both and provides the paths the generated
//! code names (`::event_runtime::__private`). Each macro is a pipeline of three stages, one file
//! each: `attr.rs`/`ast.rs` parse the input into a model that keeps the user's tokens,
//! `valid.rs` checks it (every mistake is collected in a `Ctxt` and reported at once), and
//! `expand/` generates the code.

mod ast;
mod attr;
mod contract;
mod ctxt;
mod expand;
mod mirror;
mod symbol;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput, ItemFn};

/// Registers an `async fn` as the handler of a topic's events.
///
/// The function stays as written (callable from a unit test); beside it the macro generates a
/// hidden adapter that decodes the delivery into the function's arguments and maps its return
/// value to an `Outcome`, and registers both with the runtime.
///
/// ```ignore
/// use event_runtime::{event_handler, Event, EventId};
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[event(type = "task.completed", version = "1.0")]
/// pub struct TaskCompleted { pub task_id: i64, pub user_id: String }
///
/// #[event_handler(
///     topic = "task-events",
///     pubsub = "kafka-pubsub",
///     retry = [30, 300, 1800],
///     dlq = "task-events-dlq",
///     idempotency_key = "{task_id}-{user_id}",
/// )]
/// async fn on_task_completed(event: TaskCompleted, id: EventId) -> anyhow::Result<()> {
///     println!("task {} completed (event {})", event.task_id, id.0);
///     Ok(())
/// }
/// ```
///
/// The first argument is the event (a type implementing `Event`, or `Envelope<T>`); the others
/// are extractors (`EventId`, `Topic`, `Attempt`, `Publisher`, `State<T>`, ...). The function
/// returns `()`, `Result<(), E>` with `E` convertible to a boxed error, or `Outcome`.
///
/// Keys:
///
/// | key | value | meaning |
/// | --- | --- | --- |
/// | `topic` | `"task-events"` | required; a valid Kafka topic name |
/// | `pubsub` | `"kafka-pubsub"` | the Dapr pubsub component (else the app's default) |
/// | `route` | `"/events/x"` | the HTTP route Dapr delivers to (else derived) |
/// | `retry` | `[30, 300, 1800]` or `exponential(initial = 1, factor = 2, attempts = 10, cap = 512)` | seconds between attempts |
/// | `retry_mode` | `"delayed"` (default) or `"inline"` | inline schedules may total at most 60 s |
/// | `dlq` | `"task-events-dlq"` | the dead-letter topic (else the app's default); not the topic itself |
/// | `idempotent` | flag | run at most once per CloudEvent id |
/// | `idempotency_key` | `"{event_type}-{task_id}"` | run at most once per key; each `{field}` is checked against the event type, and two placeholders need a separator between them |
/// | `bulk` | flag or `bulk(max_messages = 100, max_await_ms = 1000)` | Dapr bulk subscription; `max_messages` is 1 to 1000 |
/// | `raw_payload` | flag | subscribe with `rawPayload` |
/// | `metadata` | `metadata(priority = "high")` | extra subscription metadata (string values) |
/// | `timeout` | `30` | seconds per run (else the app's default) |
/// | `concurrency` | `8` | at most this many deliveries at once, in lanes by partition key |
/// | `unordered` | flag | delayed retries give up per-key order: a key's later events run while an earlier one waits on the retry ladder |
/// | `on_dead_letter` | `"release"` (default) or `"hold"` | once a key's event is dead-lettered, its later events run (`release`) or wait for the letter's replay (`hold`) |
#[proc_macro_attribute]
pub fn event_handler(args: TokenStream, input: TokenStream) -> TokenStream {
    match syn::parse::<ItemFn>(input.clone()) {
        Ok(item) => expand::handler::expand(args.into(), &item)
            .unwrap_or_else(|errors| expand::handler::fallback(&item, errors)),
        Err(_) => expand::handler::not_a_function(input.into()),
    }
    .into()
}

/// Implements `event_runtime::Event` for a struct (one event type) or an internally tagged enum
/// (one event type per variant).
///
/// ```ignore
/// use event_runtime::Event;
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[event(type = "task.completed", version = "1.0")]
/// pub struct TaskCompleted { pub task_id: i64, pub user_id: String }
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[serde(tag = "event_type")]
/// #[event(version = "1.0")]
/// pub enum TaskEvent {
///     #[serde(rename = "task.created")]
///     Created { task_id: i64, user_id: String },
///     #[serde(rename = "task.deleted")]
///     Deleted { task_id: i64, #[event(partition_key)] owner: String },
/// }
/// ```
///
/// Container keys: `type = "..."` (required on a struct; an enum's variants give theirs with
/// `#[event(type = "...")]` or `#[serde(rename = "...")]`), `version = "major.minor"`
/// (required), `upcast_from = OlderType`, `contract = "path"` with `message = "Name"` for an
/// AsyncAPI contract, and the flags `unkeyed`, `schema` and `body`. The partition
/// key is the field marked `#[event(partition_key)]`, else the `user_id` field; a type with
/// neither must say `#[event(unkeyed)]`. A field named `event_id` becomes the CloudEvent id.
///
/// Bodies: variants that share their fields hold one struct instead of repeating them,
/// `Created(TaskChange)`, where `TaskChange` derives `Event` with `#[event(body)]`. A body names
/// no type or version (its variant gives them); its partition key, `event_id` and
/// `event_version` fields serve every variant that holds it, and its fields count in `FIELDS`.
/// A struct event holds a body as a field marked `#[serde(flatten)]` and `#[event(body)]`: the
/// body's key, id and version serve it where its own fields give none.
///
/// ```ignore
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[event(body)]
/// pub struct TaskChange { pub event_id: String, pub task_id: i64, pub user_id: String }
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[serde(tag = "event_type")]
/// #[event(version = "1.0")]
/// pub enum TaskChanged {
///     #[serde(rename = "task.created")]
///     Created(TaskChange),
///     #[serde(rename = "task.deleted")]
///     Deleted(TaskChange),
/// }
/// ```
///
/// JSON Schema: `#[event(schema)]` registers the schema `schemars` derives, so the type must
/// also derive `schemars::JsonSchema` (an error points at `schema` otherwise). Without the flag
/// the registered schema is the permissive `{}`: a derive cannot see the other derives of its own
/// `#[derive(...)]` list, so it never guesses. A generic type cannot take `schema`.
///
/// Contracts: `contract = "contracts/task-event.schema.json"` (a JSON Schema, as Pydantic's
/// `model_json_schema()` writes it), or `contract = "contracts/todo.asyncapi.json", message =
/// "TaskEvent"` (a message of an AsyncAPI 2.x/3.0 document), checks the type against the
/// producer's published schema at compile time. The path is relative to the crate's
/// `Cargo.toml`, and a change to the file rebuilds the crate. A field required here must be
/// required there; its type must hold every value the schema admits (`String` a string, an
/// integer type an integer, `f64` any number, `Vec<T>` an array of what `T` holds, a map an
/// object, `Option<T>` also null, chrono and time date-times a `format: date-time` string;
/// `serde_json::Value` and types the macro cannot see into hold anything); an enum's tag values
/// must be ones the schema allows. Fields the schema has and the type ignores are fine.
///
/// Versions: an `event_version` field whose type is written `String` or `Option<String>` (by
/// those names or their `std::`/`core::`/`alloc::` paths), and that serde reads as written, hands
/// the version it decoded to the runtime; with any other type (an alias included) the runtime
/// reads the version from the data itself, which is correct but a second look at the text.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::event::derive(&input)
        .unwrap_or_else(|errors| expand::event::fallback(&input, errors))
        .into()
}
