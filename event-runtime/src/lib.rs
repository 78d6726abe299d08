#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unreachable_pub)]

// Lets the derive's `::event_runtime::...` paths resolve inside this crate's own tests.
extern crate self as event_runtime;

// The layers, bottom to top: each imports only those above it in this list (ARCHITECTURE.md).
mod app;
mod clock;
pub mod config;
mod event;
mod handler;
mod http;
mod metrics;
#[cfg(feature = "sqlx")]
mod outbox;
mod pipeline;
pub mod testing;
pub mod tooling;
mod transport;
mod wire;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

// The root: what a user writes. The macros' contract is under `__private`.
pub use crate::metrics::Metrics;
#[cfg(feature = "grpc")]
pub use app::StreamDeliveries;
pub use app::{App, ShutdownHandle};
pub use config::{Config, ConfigError, Mode};
pub use event::outcome::{BoxError, IntoOutcome, Outcome, OutcomeKind, Permanent};
pub use event::{DataVersion, Event};
#[doc(inline)]
#[doc = include_str!("../docs/handlers.md")]
pub use event_macros::event_handler;
pub use event_macros::Event;
pub use handler::batch::Batch;
pub use handler::delivery::{Delivery, Envelope};
pub use handler::extract::{
    Attempt, EventId, EventTime, EventType, FromDelivery, PartitionKey, PubsubName, Source, State,
    Topic, TraceContext,
};
pub use handler::registry::{AppError, ResolvedHandler};
pub use http::ops::OpsRoutes;
pub use http::server::api_token_ok;
#[cfg(feature = "sqlx")]
pub use outbox::{Outbox, OutboxConnection, OutboxDeadRow, OutboxError, OutboxRelay, OutboxStats};
pub use pipeline::middleware::{DeliveryLayer, DeliveryRequest, DeliveryService};
pub use testing::TestApp;
#[cfg(feature = "cli")]
pub use tooling::cli::EventsCommand;
pub use tooling::topics::TopicSpec;
pub use transport::jobs::Schedule;
pub use transport::outgoing::{OutgoingEvent, PublishError};
pub use transport::publish::Publisher;
pub use wire::bulk::Status;

// The public modules: what users name beyond the root. Each re-exports from the layers.

/// The CloudEvent as a handler's extractors see it.
#[doc = include_str!("../docs/records.md")]
pub mod cloudevent {
    pub use crate::wire::cloudevent::{CloudEvent, CloudEventError};
}

/// The Dapr sidecar client: state, state transactions, and the subscriptions the app declares.
#[doc = include_str!("../docs/dapr-state-outbox.md")]
pub mod dapr {
    pub use crate::transport::dapr::{DaprClient, StateError};
    pub use crate::transport::state_tx::{
        outbox_internal_topic, StateTransaction, StateTransactionError,
    };
    pub use crate::wire::names::InvalidName;
    pub use crate::wire::subscription::{BulkSubscribe, DaprSubscription, Routes, Rule};
}

/// Dead letters: what they hold, and replaying them.
#[doc = include_str!("../docs/dead-letters.md")]
pub mod dlq {
    pub use crate::pipeline::dead_letter::letter::{DeadEvent, DeadLetter, DEAD_LETTER_TYPE};
    pub use crate::pipeline::dead_letter::replay::{
        replay, verify, ReplayFilter, ReplayReport, Unreplayable,
    };
}

/// Idempotency stores: where handlers' claims on events are kept.
#[doc = include_str!("../docs/idempotency.md")]
pub mod idempotency {
    pub use crate::transport::idempotency::{
        Claim, ClaimToken, DaprStateStore, IdempotencyStore, MemoryStore,
    };
}

/// Retry schedules: the delays, the modes, and the app's retry topics.
#[doc = include_str!("../docs/retries.md")]
pub mod retry {
    pub use crate::handler::def::{AfterDeadLetter, RetryMode};
    pub use crate::pipeline::retry::bookkeeping::Failure;
    pub use crate::pipeline::retry::ladder::{retry_topic, RETRY_TIERS};
    pub use crate::pipeline::retry::policy::{delay_after, exponential};
}

/// Event schemas: the registry of event types, and the snapshot that catches breaking changes.
#[doc = include_str!("../docs/schemas.md")]
pub mod schema {
    pub use crate::tooling::schema::{
        breaking_changes, check_snapshot, check_snapshot_with, check_unique, export, schemas,
        snapshot, SchemaEntry,
    };
}
