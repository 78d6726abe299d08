#![doc = include_str!("../../docs/operations.md")]

pub mod asyncapi;
#[cfg(feature = "cli")]
pub mod cli;
pub mod manifests;
pub(crate) mod schema;
pub mod scopes;
pub mod topics;

/// The YAML writer the manifests use.
pub mod yaml {
    pub use crate::wire::yaml::{scalar, stream, Yaml};
}
