//! Wire formats: what travels between the broker, the sidecar and the app, read and written in
//! one place each. Nothing here knows handlers, transports or the app.

pub(crate) mod bulk;
pub(crate) mod cloudevent;
pub(crate) mod ladder;
pub(crate) mod names;
pub(crate) mod signing;
pub(crate) mod subscription;
pub(crate) mod trace;
pub(crate) mod yaml;
