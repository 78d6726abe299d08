//! The handler arguments after the event: each implements [`FromDelivery`], as axum handler
//! arguments implement `FromRequestParts`.

use crate::event::outcome::Outcome;
use crate::handler::delivery::{partition_key, Delivery};
use crate::transport::publish::Publisher;

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
        Ok(PartitionKey(partition_key(
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

pub use crate::wire::trace::TraceContext;

impl FromDelivery for TraceContext {
    fn from_delivery(d: &Delivery) -> Result<Self, Outcome> {
        // Dapr sends an all-zero traceparent when tracing is off: that is no trace.
        Ok(TraceContext::received(
            d.event.traceparent.as_deref(),
            d.event.tracestate.as_deref(),
        ))
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
        // Events the handler publishes continue the delivery's trace (with `otel`, they name the
        // span current when they are published).
        let trace = TraceContext::continued(
            d.event.traceparent.as_deref(),
            d.event.tracestate.as_deref(),
        );
        Ok(d.app.publisher().clone().with_trace(trace))
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
        d.app.state().get::<T>().map(State).ok_or_else(|| {
            // A deployment mistake, not the event's fault: retry so nothing is lost once fixed.
            Outcome::retry(format!(
                "handler {} asks for State<{}>, but the app has no such state: call App::with_state",
                d.handler.qualified_name(),
                std::any::type_name::<T>()
            ))
        })
    }
}
