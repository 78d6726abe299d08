//! Where events go and where claims are kept: the Dapr sidecar's HTTP API (with its state
//! transactions and their outbox), the embedded broker that stands in for Dapr and Kafka, the
//! publisher over both, and the idempotency stores.

pub(crate) mod dapr;
pub(crate) mod embedded;
pub(crate) mod idempotency;
pub(crate) mod jobs;
pub(crate) mod kv;
pub(crate) mod outgoing;
pub(crate) mod publish;
pub(crate) mod state_tx;
#[cfg(feature = "grpc")]
pub(crate) mod stream;
