//! Handlers as the macros register them: their definitions, the delivery they are called with,
//! their arguments, and the registry that resolves them into the app's subscriptions.

pub(crate) mod batch;
pub(crate) mod def;
pub(crate) mod delivery;
pub(crate) mod extract;
pub(crate) mod registry;
