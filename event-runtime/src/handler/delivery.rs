//! One delivery of an event to a handler ([`Delivery`]), and the handler's first argument: the
//! event itself, or an [`Envelope`] around it.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::event::outcome::Outcome;
use crate::event::Event;
use crate::handler::def::HandlerDef;
use crate::handler::extract::FromDelivery;
use crate::transport::publish::Publisher;
use crate::wire::cloudevent::CloudEvent;

/// Values shared with every handler, keyed by type (see [`State`]).
#[derive(Clone, Default)]
pub(crate) struct StateMap(HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl StateMap {
    pub(crate) fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        self.0.insert(TypeId::of::<T>(), Arc::new(value));
    }

    pub(crate) fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
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
    /// The app's services (its state and publisher), shared by every delivery.
    pub(crate) app: Arc<dyn AppServices>,
    /// The handler's index in the app.
    pub(crate) h: usize,
}

/// What an app lends its handlers' deliveries. The delivery pipeline implements it; a trait, so
/// that this layer, below the pipeline, need not know it.
pub(crate) trait AppServices: Send + Sync {
    /// The app's publisher.
    fn publisher(&self) -> &Publisher;
    /// The values given to `App::with_state`.
    fn state(&self) -> &StateMap;
    /// The pubsub component of handler `h`.
    fn pubsub(&self, h: usize) -> &str;
}

impl Delivery {
    pub(crate) fn pubsub(&self) -> &str {
        self.app.pubsub(self.h)
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
        let event = crate::event::version::decode_versioned_from::<A::Event>(&self.event, decoded)
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

/// The partition key of a delivered event: the Kafka record key Dapr sent (`__key`), else the
/// data's `user_id`. Only failure paths and the [`PartitionKey`](crate::PartitionKey) extractor
/// need it, so it is worked out there.
pub(crate) fn partition_key(ce: &CloudEvent, hint: Option<String>) -> Option<String> {
    hint.or_else(|| {
        ce.data()
            .get("user_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}
