//! Delivery middleware on the builder: [`App::delivery_layer`] and [`App::handler_layer`].

use std::sync::{Arc, Mutex};

use crate::handler::def::HandlerDef;
use crate::pipeline::middleware::{layered, BoxedLayer, DeliveryLayer, DeliveryService};
use crate::App;

/// The delivery layers given to an app.
#[derive(Default)]
pub(super) struct Layers {
    /// Around every handler, outermost.
    app: Vec<BoxedLayer>,
    /// Around one handler (named `module::name`), inside the app's.
    own: Vec<(String, BoxedLayer)>,
}

impl Layers {
    /// The pipeline of `def` wrapped in its layers, or `None` when none applies.
    pub(super) fn of(&self, def: &HandlerDef) -> Option<Mutex<DeliveryService>> {
        let name = def.qualified_name();
        let own: Vec<&BoxedLayer> = self
            .own
            .iter()
            .filter(|(handler, _)| *handler == name)
            .map(|(_, layer)| layer)
            .collect();
        layered(&own, &self.app)
    }
}

impl App {
    /// Wraps every delivery to every handler in `layer`, a tower `Layer` over the rest of the
    /// handler's pipeline (a [`DeliveryService`]: from a
    /// [`DeliveryRequest`](crate::DeliveryRequest) to Dapr's [`Status`](crate::Status); see
    /// [`DeliveryLayer`]). It sees each delivery once its handler is chosen, before lanes, the
    /// idempotency claim and the runs with their retries; it may answer Dapr itself, say
    /// `Status::Retry` to have the broker keep the event. A layer given later wraps those
    /// given before, and every app-wide layer wraps the handlers' own
    /// ([`App::handler_layer`]). Handlers without layers pay nothing for them.
    ///
    /// ```
    /// use event_runtime::{App, DeliveryRequest, DeliveryService};
    /// use tower::ServiceExt as _;
    ///
    /// // Logs each delivery with its handler and partition key.
    /// let log = tower::layer::layer_fn(|inner: DeliveryService| {
    ///     tower::service_fn(move |req: DeliveryRequest| {
    ///         tracing::info!(handler = req.handler(), key = req.partition_key(), "delivery");
    ///         inner.clone().oneshot(req)
    ///     })
    /// });
    /// let app = App::with_handlers([]).unwrap().delivery_layer(log);
    /// ```
    pub fn delivery_layer(mut self, layer: impl DeliveryLayer) -> Self {
        self.run.layers.app.push(Arc::new(layer));
        self
    }

    /// Wraps every delivery to one handler in `layer` (see [`App::delivery_layer`]), inside the
    /// app-wide layers. `handler` is its function name, or `module::name` when two handlers
    /// share a name. Panics when it names no handler of the app, or two.
    pub fn handler_layer(mut self, handler: &str, layer: impl DeliveryLayer) -> Self {
        let name = self.layered_handler(handler);
        self.run.layers.own.push((name, Arc::new(layer)));
        self
    }

    /// The `module::name` of the one handler `name` names.
    fn layered_handler(&self, name: &str) -> String {
        let all: Vec<String> = self
            .handlers()
            .iter()
            .map(|h| h.def.qualified_name())
            .collect();
        let named: Vec<&String> = all
            .iter()
            .filter(|q| *q == name || q.rsplit("::").next() == Some(name))
            .collect();
        match named[..] {
            [one] => one.clone(),
            [] => panic!(
                "handler_layer: no handler is named `{name}`; the app's handlers are: {}",
                all.join(", ")
            ),
            _ => panic!(
                "handler_layer: `{name}` names several handlers ({}); give `module::name`",
                named
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}
