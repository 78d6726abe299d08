#![doc = include_str!("../../README.md")]

// Lets the derive's `::event_runtime::...` paths resolve inside this crate's own tests.
extern crate self as event_runtime;

mod app;
pub mod asyncapi;
pub mod clock;
pub mod cloudevent;
pub mod config;
mod context;
pub mod dapr;
mod dispatch;
pub mod dlq;
pub mod embedded;
mod event;
mod handler;
pub mod idempotency;
pub mod manifests;
pub mod metrics;
mod outcome;
pub mod publish;
pub mod retry;
pub mod schema;
mod server;
pub mod subscription;
pub mod testing;
pub mod topics;
pub mod trace;
pub mod version;
pub mod yaml;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use app::{App, ShutdownHandle};
pub use config::{ConfigError, Mode};
pub use context::{
    Attempt, Delivery, Envelope, EventArg, EventId, EventTime, EventType, FromDelivery,
    PartitionKey, PubsubName, Source, State, Topic, TraceContext,
};
pub use dispatch::Status;
pub use event::Event;
pub use event_macros::{event_handler, Event};
pub use handler::{registered, BulkConfig, HandlerDef, RetryMode, INLINE_RETRY_LIMIT_SECS};
pub use manifests::manifests;
pub use metrics::Metrics;
pub use outcome::{BoxError, IntoOutcome, Outcome, Permanent};
pub use publish::{PublishError, Publisher};
pub use schema::schemas;
pub use server::api_token_ok;
pub use subscription::AppError;
pub use topics::{Deployment, TopicSpec};
