//! What a handler can ask for besides its event: the delivery and its extractors.
//!
//! Each argument after the event implements [`FromDelivery`], as axum handler arguments
//! implement `FromRequestParts`.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::cloudevent::CloudEvent;
use crate::event::Event;
use crate::handler::HandlerDef;
use crate::outcome::Outcome;
use crate::publish::Publisher;

/// Values shared with every handler, keyed by type (see [`State`]).
#[derive(Clone, Default)]
pub(crate) struct StateMap(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl StateMap {
    pub(crate) fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.0
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }
}

/// One delivery of one event to one handler: the CloudEvent and everything around it.
///
/// The generated adapter builds the handler's arguments from it.
pub struct Delivery {
    pub(crate) event: Arc<CloudEvent>,
    pub(crate) topic: Arc<str>,
    pub(crate) attempt: u32,
    pub(crate) partition_key: Option<String>,
    /// The handler's event when it was decoded with the envelope; taken by [`Delivery::event_arg`].
    pub(crate) decoded: std::cell::Cell<Option<Box<dyn Any + Send>>>,
    pub(crate) handler: &'static HandlerDef,
    /// The app (its state, publisher and per-handler settings), shared by every delivery.
    pub(crate) rt: Arc<crate::dispatch::Runtime>,
    /// The handler's index in the app.
    pub(crate) h: usize,
}

impl Delivery {
    fn pubsub(&self) -> &str {
        &self.rt.registry.handlers[self.h].pubsub
    }
}

impl Delivery {
    /// The CloudEvent being delivered.
    pub fn cloud_event(&self) -> &CloudEvent {
        &self.event
    }

    /// Decodes the handler's first argument. A body that does not match the event type is a
    /// permanent failure: retrying cannot fix it.
    pub fn event_arg<A: EventArg>(&self) -> Result<A, Outcome> {
        let decoded = self
            .decoded
            .take()
            .and_then(|event| event.downcast::<A::Event>().ok())
            .map(|event| *event);
        let event = crate::version::decode_versioned_from::<A::Event>(&self.event, decoded)
            .map_err(|e| {
                Outcome::DeadLetter(
                    format!(
                        "event {} of type `{}` cannot be read as `{}`: {e}",
                        self.event.id, self.event.ty, self.handler.event_type_name
                    )
                    .into(),
                )
            })?;
        Ok(A::from_event(event, self))
    }

    /// Builds one extractor argument.
    pub fn extract<X: FromDelivery>(&self) -> Result<X, Outcome> {
        X::from_delivery(self)
    }
}

/// Decodes `data` as `E`, whatever its version says (see [`crate::version`] for the checked
/// path). For an internally tagged enum whose data lacks the tag (a publisher
/// that put the type only in the CloudEvent `type`), the tag is taken from the CloudEvent type.
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
            serde_json::from_value(Value::Object(map))
        }
        _ => fast,
    }
}

/// The first argument of a handler: an [`Event`] or an [`Envelope`] around one.
#[diagnostic::on_unimplemented(
    message = "the first argument of an #[event_handler] must be an event, but `{Self}` does not implement `event_runtime::Event`",
    label = "not an event type",
    note = "derive it: `#[derive(Event)]` with `#[event(type = \"...\", version = \"...\")]`, or take `Envelope<T>` where `T: Event`"
)]
pub trait EventArg: Sized + Send + 'static {
    /// The event type inside.
    type Event: Event;
    /// Builds the argument from the decoded event.
    fn from_event(event: Self::Event, delivery: &Delivery) -> Self;
}

impl<E: Event> EventArg for E {
    type Event = E;
    fn from_event(event: E, _: &Delivery) -> Self {
        event
    }
}

/// An event with its CloudEvent attributes, for handlers that want both.
///
/// ```
/// use event_runtime::{event_handler, Envelope, Event};
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[event(type = "task.deleted", version = "1.0")]
/// pub struct TaskDeleted { pub task_id: i64, pub user_id: String }
///
/// #[event_handler(topic = "task-events")]
/// async fn on_deleted(event: Envelope<TaskDeleted>) {
///     println!("{} from {}: task {}", event.id, event.source, event.data.task_id);
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Envelope<E> {
    /// CloudEvent `id`.
    pub id: String,
    /// CloudEvent `source`.
    pub source: String,
    /// CloudEvent `type`.
    pub ty: String,
    /// CloudEvent `time`.
    pub time: Option<String>,
    /// The topic it arrived on.
    pub topic: String,
    /// The pubsub component it arrived through.
    pub pubsub: String,
    /// Other attributes (extensions).
    pub extensions: serde_json::Map<String, Value>,
    /// The event.
    pub data: E,
}

impl<E: Event> EventArg for Envelope<E> {
    type Event = E;
    fn from_event(data: E, d: &Delivery) -> Self {
        Envelope {
            id: d.event.id.clone(),
            source: d.event.source.clone(),
            ty: d.event.ty.clone(),
            time: d.event.time.clone(),
            topic: d.topic.to_string(),
            pubsub: d.pubsub().to_owned(),
            extensions: d.event.extensions.clone(),
            data,
        }
    }
}

/// A handler argument built from the delivery (CloudEvent attributes, publisher, app state).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of an #[event_handler]",
    label = "not an extractor",
    note = "after the event, arguments must be extractors: EventId, Source, EventType, EventTime, Topic, PubsubName, PartitionKey, TraceContext, Attempt, Publisher or State<T>"
)]
pub trait FromDelivery: Sized {
    /// Builds the argument; an `Err` outcome is answered without running the handler.
    fn from_delivery(delivery: &Delivery) -> Result<Self, Outcome>;
}

macro_rules! string_extractor {
    ($(#[$doc:meta])* $name:ident, |$d:ident| $get:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(pub String);

        impl FromDelivery for $name {
            fn from_delivery($d: &Delivery) -> Result<Self, Outcome> {
                Ok($name($get))
            }
        }
    };
}

string_extractor!(
    /// The CloudEvent `id`.
    EventId, |d| d.event.id.clone()
);
string_extractor!(
    /// The CloudEvent `source`.
    Source, |d| d.event.source.clone()
);
string_extractor!(
    /// The CloudEvent `type` (for seed-style events, `com.dapr.event.sent`).
    EventType, |d| d.event.ty.clone()
);
string_extractor!(
    /// The topic the event arrived on.
    Topic, |d| d.topic.to_string()
);
string_extractor!(
    /// The pubsub component the event arrived through.
    PubsubName, |d| d.pubsub().to_owned()
);

/// The event's partition key as delivered: the Kafka record key (Dapr's `__key` header) when the
/// broker reports one, else the `user_id` field of the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionKey(pub Option<String>);

impl FromDelivery for PartitionKey {
    fn from_delivery(d: &Delivery) -> Result<Self, Outcome> {
        Ok(PartitionKey(crate::dispatch::partition_key(
            &d.event,
            d.partition_key.clone(),
        )))
    }
}

/// The CloudEvent `time`, when the publisher set one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTime(pub Option<chrono::DateTime<chrono::Utc>>);

impl FromDelivery for EventTime {
    fn from_delivery(d: &Delivery) -> Result<Self, Outcome> {
        let time = d
            .event
            .time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        Ok(EventTime(time))
    }
}

/// The W3C trace context the event carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    /// `traceparent`.
    pub traceparent: Option<String>,
    /// `tracestate`.
    pub tracestate: Option<String>,
}

impl FromDelivery for TraceContext {
    fn from_delivery(d: &Delivery) -> Result<Self, Outcome> {
        Ok(TraceContext {
            // Dapr sends an all-zero traceparent when tracing is off: that is no trace.
            traceparent: d
                .event
                .traceparent
                .clone()
                .filter(|t| crate::trace::parse(t).is_some()),
            tracestate: d.event.tracestate.clone().filter(|t| !t.is_empty()),
        })
    }
}

/// Which attempt this is: 1 for the first delivery, 2 for the first retry, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt(pub u32);

impl FromDelivery for Attempt {
    fn from_delivery(d: &Delivery) -> Result<Self, Outcome> {
        Ok(Attempt(d.attempt))
    }
}

impl FromDelivery for Publisher {
    fn from_delivery(d: &Delivery) -> Result<Self, Outcome> {
        // Events the handler publishes continue the delivery's trace.
        let traceparent = crate::trace::child(d.event.traceparent.as_deref());
        Ok(d.rt.publisher.clone().with_trace(Some(traceparent)))
    }
}

/// Shared application state given to [`App::with_state`](crate::App::with_state).
///
/// ```
/// use event_runtime::{event_handler, Event, State};
/// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
///
/// #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
/// #[event(type = "task.created", version = "1.0")]
/// pub struct TaskCreated { pub task_id: i64, pub user_id: String }
///
/// #[derive(Clone, Default)]
/// struct Counter(Arc<AtomicU64>);
///
/// #[event_handler(topic = "task-events")]
/// async fn count(_event: TaskCreated, State(counter): State<Counter>) {
///     counter.0.fetch_add(1, Ordering::Relaxed);
/// }
/// ```
#[derive(Debug, Clone)]
pub struct State<T>(pub T);

impl<T: Clone + Send + Sync + 'static> FromDelivery for State<T> {
    fn from_delivery(d: &Delivery) -> Result<Self, Outcome> {
        d.rt.state.get::<T>().map(State).ok_or_else(|| {
            // A deployment mistake, not the event's fault: retry so nothing is lost once fixed.
            Outcome::retry(format!(
                "handler {} asks for State<{}>, but the app has no such state: call App::with_state",
                d.handler.qualified_name(),
                std::any::type_name::<T>()
            ))
        })
    }
}
