//! The HTTP surface the sidecar calls: the delivery routes (token, body limit, Dapr's answers),
//! `/dapr/subscribe` and the operational routes, and serving them.

pub(crate) mod delivery;
pub(crate) mod jobs;
pub(crate) mod ops;
pub(crate) mod router;
pub(crate) mod server;
