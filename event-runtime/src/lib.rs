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

pub use crate::metrics::Metrics;
pub use app::{App, ShutdownHandle};
pub use config::{ConfigError, Mode};
pub use event::outcome::{BoxError, IntoOutcome, Outcome, OutcomeKind, Permanent};
pub use event::{DataVersion, Event};
pub use event_macros::{event_handler, Event};
pub use handler::batch::{Batch, BatchArg, IntoBatchOutcome};
pub use handler::def::{registered, BulkConfig, HandlerDef, RetryMode, INLINE_RETRY_LIMIT_SECS};
pub use handler::delivery::{Delivery, Envelope, EventArg};
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
#[cfg(feature = "cli")]
pub use tooling::cli::EventsCommand;
pub use tooling::manifests::manifests;
pub use tooling::schema::schemas;
pub use tooling::topics::{Deployment, TopicSpec};
pub use transport::outgoing::{OutgoingEvent, PublishError};
pub use transport::publish::Publisher;
pub use wire::bulk::Status;

// The public modules: what users name beyond the root. Each re-exports from the layers.

/// The CloudEvent reader and writer, and what Dapr wraps around a broker record.
pub mod cloudevent {
    pub use crate::wire::cloudevent::{
        dapr_raw_record, read_typed, record_digest, CloudEvent, CloudEventError, ReadTyped,
        BARE_TYPE, EXT_VERSION,
    };
}

/// The Dapr sidecar client, and the rules of the names that go into its URLs.
pub mod dapr {
    pub use crate::transport::dapr::{DaprClient, StateError};
    pub use crate::transport::state_tx::{
        outbox_internal_topic, StateTransaction, StateTransactionError,
    };
    pub use crate::wire::bulk::Status;
    pub use crate::wire::names::{check_component, check_state_key, check_topic, InvalidName};
    pub use crate::wire::subscription::{BulkSubscribe, DaprSubscription, Routes, Rule};
}

/// Dead letters: what they hold, and replaying them.
pub mod dlq {
    pub use crate::pipeline::dead_letter::letter::{DeadEvent, DeadLetter, DEAD_LETTER_TYPE};
    pub use crate::pipeline::dead_letter::replay::{
        replay, verify, ReplayFilter, ReplayReport, Unreplayable,
    };
}

/// Idempotency stores: where handlers' claims on events are kept.
pub mod idempotency {
    pub use crate::transport::idempotency::{
        render_key, Claim, ClaimToken, DaprStateStore, IdempotencyStore, MemoryStore,
    };
}

/// Retry schedules and the signed bookkeeping that retry messages carry.
pub mod retry {
    pub use crate::pipeline::retry::bookkeeping::{
        Failure, Opened, RetryRejected, RetryState, SigningKey, EXT_APP, EXT_ATTEMPT, EXT_DUE,
        EXT_FAILURES, EXT_HANDLER, EXT_HOP_DUE, EXT_MAC, EXT_TOPIC,
    };
    pub use crate::pipeline::retry::ladder::{retry_tier, retry_topic, RETRY_TIERS};
    pub use crate::pipeline::retry::policy::{delay_after, exponential};
}

/// Event schemas: the registry of event types, and the snapshot that catches breaking changes.
pub mod schema {
    pub use crate::event::version::major;
    pub use crate::tooling::schema::{
        breaking_changes, check_snapshot, check_unique, export, schemas, snapshot, EventDef,
        SchemaEntry,
    };
}
