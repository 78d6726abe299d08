//! The runtime's integration tests, one binary with a module per feature (STYLE.md, "Tests").
//!
//! One binary links every module's handlers into one registry, so a test builds its app with
//! [`app!`] (the handlers of its own module) where a binary per file used `App::new()`.
//!
//! A few tests need a process of their own. Those of process-wide state (environment variables,
//! the `metrics` recorder) are in `tests/process/`. Those that read the whole binary's event
//! registry need a binary whose event types are theirs: `tests/versions.rs` (versions, the
//! schema snapshot, the uniqueness check), `tests/tooling/` (schema export, with the CLI) and
//! `tests/conflicts.rs` (a registry that conflicts on purpose).

#![allow(missing_docs)]

/// The app of the calling module's handlers (and its submodules'), as `App::new()` would build
/// it in a binary of that module alone; panics on a start-up error as `App::new()` does.
macro_rules! app {
    () => {
        $crate::support::app_of(module_path!())
    };
}

mod support;

mod answers;
mod batch;
mod binding;
mod bodies;
mod broker;
mod bulk;
mod dead_letters;
mod delivery;
mod idempotency;
mod lanes;
mod layers;
mod ledger;
mod middleware;
mod names;
mod ops_routes;
mod order;
#[cfg(feature = "sqlx")]
mod outbox;
mod publisher;
mod retries;
mod schedule;
mod serve;
mod sidecar;
mod trace_context;
mod trust;
mod untrusted;
