//! Code generation, one file per macro.

pub mod batch;
pub mod event;
pub mod handler;

#[cfg(test)]
mod snapshot;
