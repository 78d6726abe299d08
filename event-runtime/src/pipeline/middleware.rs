//! Delivery middleware: tower layers around the rest of one handler's pipeline.
//!
//! Once the handler of a delivery is chosen, what remains (lanes, the hop of a retry, the
//! idempotency claim, the runs and their retries, the dead letter) is a [`DeliveryService`]:
//! a tower `Service` from a [`DeliveryRequest`] to Dapr's [`Status`]. Layers given to
//! `App::delivery_layer` (every handler) and `App::handler_layer` (one handler) wrap it. A
//! handler without layers is called directly, as before: layers cost only where they are set.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde_json::Value;
use tower::util::BoxCloneService;
use tower::ServiceExt as _;

use crate::pipeline::retry::RetryState;
use crate::pipeline::run::{run_with_retries, Pending};
use crate::pipeline::Runtime;
use crate::wire::bulk::Status;
use crate::wire::cloudevent::CloudEvent;

/// One delivery of an event to a chosen handler, as delivery middleware sees it: what was
/// delivered, to which handler, and the attempt. Its parts are read-only; a layer decides
/// whether and when the rest of the pipeline runs, and may answer Dapr itself (say
/// [`Status::Retry`] when a rate is exceeded, so the broker keeps the event).
pub struct DeliveryRequest {
    pub(crate) rt: Arc<Runtime>,
    pub(crate) h: usize,
    pub(crate) pending: Pending,
    pub(crate) retry: RetryState,
}

impl std::fmt::Debug for DeliveryRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryRequest")
            .field("handler", &self.handler())
            .field("topic", &self.topic())
            .field("event_id", &self.event_id())
            .field("event_type", &self.event_type())
            .field("attempt", &self.attempt())
            .finish_non_exhaustive()
    }
}

impl DeliveryRequest {
    /// The handler's function name.
    pub fn handler(&self) -> &'static str {
        self.rt.registry.handlers[self.h].def.name
    }

    /// The handler as `module::name`, as the metrics and logs name it.
    pub fn handler_path(&self) -> &str {
        &self.rt.handlers[self.h].name
    }

    /// The topic the event was first delivered on (a retry names it too).
    pub fn topic(&self) -> &str {
        &self.pending.origin_topic
    }

    /// The handler's pubsub component.
    pub fn pubsub(&self) -> &str {
        &self.rt.registry.handlers[self.h].pubsub
    }

    /// The CloudEvent `id`.
    pub fn event_id(&self) -> &str {
        &self.pending.ce.id
    }

    /// The CloudEvent `type`.
    pub fn event_type(&self) -> &str {
        &self.pending.ce.ty
    }

    /// The attempt about to run (1 for a first delivery).
    pub fn attempt(&self) -> u32 {
        self.retry.attempt
    }

    /// The event's partition key: the Kafka record key Dapr passed along, else the CloudEvent's
    /// `partitionkey` extension, else the data's `user_id`. Events of one key keep their order
    /// in a handler's lanes (`concurrency = N`).
    pub fn partition_key(&self) -> Option<&str> {
        lane_key(&self.pending)
    }

    /// The CloudEvent as delivered: every attribute, its extensions, and its data.
    pub fn cloud_event(&self) -> &CloudEvent {
        &self.pending.ce
    }
}

/// The key that orders an event among others: the Kafka record key Dapr passed along (`__key`),
/// else the CloudEvent's `partitionkey` extension, else the data's `user_id` (the key the
/// publisher derives by default).
pub(crate) fn lane_key(pending: &Pending) -> Option<&str> {
    pending
        .key_hint
        .as_deref()
        .or_else(|| pending.ce.extension_str("partitionkey"))
        .or_else(|| pending.ce.data().get("user_id").and_then(Value::as_str))
}

/// The rest of one handler's pipeline, type-erased: what delivery layers wrap.
pub type DeliveryService = BoxCloneService<DeliveryRequest, Status, Infallible>;

/// A tower [`Layer`](tower::Layer) that can wrap a handler's deliveries: one over a
/// [`DeliveryService`] whose service answers a [`DeliveryRequest`] with a [`Status`], is
/// `Clone + Send`, and whose future is `Send`. Every such layer implements it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot wrap deliveries",
    note = "a delivery layer is a `tower::Layer<DeliveryService>` whose service is `Service<DeliveryRequest, Response = Status, Error = Infallible> + Clone + Send + 'static`, with a `Send` future"
)]
pub trait DeliveryLayer: Send + Sync + 'static {
    /// Wraps `inner`, the rest of a handler's pipeline.
    fn wrap(&self, inner: DeliveryService) -> DeliveryService;
}

impl<L> DeliveryLayer for L
where
    L: tower::Layer<DeliveryService> + Send + Sync + 'static,
    L::Service: tower::Service<DeliveryRequest, Response = Status, Error = Infallible>
        + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<DeliveryRequest>>::Future: Send + 'static,
{
    fn wrap(&self, inner: DeliveryService) -> DeliveryService {
        DeliveryService::new(self.layer(inner))
    }
}

/// A layer given to the app.
pub(crate) type BoxedLayer = Arc<dyn DeliveryLayer>;

/// The innermost service: the pipeline after the handler is chosen.
#[derive(Clone, Copy)]
struct Rest;

impl tower::Service<DeliveryRequest> for Rest {
    type Response = Status;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Status, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: DeliveryRequest) -> Self::Future {
        let DeliveryRequest {
            rt,
            h,
            pending,
            retry,
        } = req;
        Box::pin(run_with_retries(rt, h, pending, retry).map(Ok))
    }
}

/// One handler's pipeline wrapped in its layers: the handler's own innermost, then the app's;
/// within each, a layer given later wraps those given before (as axum's `Router::layer`).
/// `None` when no layer applies, so the handler is called directly.
pub(crate) fn layered(own: &[&BoxedLayer], app: &[BoxedLayer]) -> Option<Mutex<DeliveryService>> {
    if own.is_empty() && app.is_empty() {
        return None;
    }
    let inner = DeliveryService::new(Rest);
    let service = own
        .iter()
        .copied()
        .chain(app)
        .fold(inner, |service, layer| layer.wrap(service));
    Some(Mutex::new(service))
}

/// Runs a delivery through its handler's layers (the rest of the pipeline when it has none).
/// The service is cloned out of its lock (tower services are called through `&mut`), then
/// driven to readiness and called.
pub(crate) fn call_layered(req: DeliveryRequest) -> BoxFuture<'static, Status> {
    let service = match &req.rt.handlers[req.h].layered {
        Some(service) => service.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        None => DeliveryService::new(Rest),
    };
    Box::pin(service.oneshot(req).map(|answer| match answer {
        Ok(status) => status,
        Err(never) => match never {},
    }))
}
