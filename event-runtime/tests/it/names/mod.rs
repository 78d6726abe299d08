//! Names checked before they reach Dapr: the pubsub and topic names a handler or a builder sets,
//! and the names a publish or a state call sends to the sidecar.

mod sidecar;
mod startup;
