//! The Phase V todo service: a REST API that publishes the reference's task events, and the
//! handlers that consume them, built with `event-runtime`.
//!
//! Run it with `cargo run -p example-todo` (embedded broker, nothing to install) or under a
//! Dapr sidecar (`EVENTS_MODE=dapr`).

pub mod api;
pub mod events;
pub mod handlers;
pub mod store;

use event_runtime::App;

/// The service: the event app with its state, and the API routes to merge in.
pub fn service() -> (App, axum::Router) {
    let (app, routes, _) = service_parts();
    (app, routes)
}

/// [`service`], with a handle on the data (tests look at it).
pub fn service_parts() -> (App, axum::Router, store::Store) {
    let store = store::Store::default();
    let app = App::new().with_state(store.clone());
    let api = api::Api {
        store: store.clone(),
        publisher: app.publisher(),
    };
    (app, api::routes(api), store)
}
