//! Documents and manifests generated from the app: the AsyncAPI document, the Kubernetes
//! manifests (Dapr `Subscription`s, Strimzi `KafkaTopic`s), the declared topics, and the event
//! schema snapshots.

pub mod asyncapi;
#[cfg(feature = "cli")]
pub mod cli;
pub mod manifests;
pub(crate) mod schema;
pub mod topics;

/// The YAML writer the manifests use.
pub mod yaml {
    pub use crate::wire::yaml::{scalar, stream, Yaml};
}
