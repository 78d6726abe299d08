//! Delivery middleware: tower layers around every delivery (`App::delivery_layer`) and around
//! one handler's (`App::handler_layer`), over a typed `DeliveryRequest`.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, DeliveryRequest, DeliveryService, Event, State, Status};
use serde_json::json;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "order.placed", version = "1.0")]
pub struct OrderPlaced {
    pub order_id: u64,
    pub user_id: String,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

#[event_handler(topic = "orders", route = "/orders")]
async fn on_order(order: OrderPlaced, State(log): State<Log>) {
    log.push(format!("run on_order {}", order.order_id));
}

#[event_handler(topic = "payments", route = "/payments")]
async fn on_payment(order: OrderPlaced, State(log): State<Log>) {
    log.push(format!("run on_payment {}", order.order_id));
}

/// A layer that writes what it sees of each delivery under its label, then runs the rest.
#[derive(Clone)]
struct Labelled {
    label: &'static str,
    log: Log,
}

fn labelled(label: &'static str, log: Log) -> Labelled {
    Labelled { label, log }
}

impl tower::Layer<DeliveryService> for Labelled {
    type Service = LabelledService;
    fn layer(&self, inner: DeliveryService) -> LabelledService {
        LabelledService {
            labelled: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
struct LabelledService {
    labelled: Labelled,
    inner: DeliveryService,
}

impl tower::Service<DeliveryRequest> for LabelledService {
    type Response = Status;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Status, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: DeliveryRequest) -> Self::Future {
        let Labelled { label, log } = self.labelled.clone();
        log.push(format!(
            "{label} {} {} {} {} {} {}",
            req.handler(),
            req.topic(),
            req.event_id(),
            req.event_type(),
            req.partition_key().unwrap_or("-"),
            req.attempt(),
        ));
        let inner = self.inner.call(req);
        Box::pin(async move {
            let status = inner.await?;
            log.push(format!("{label} answered {status:?}"));
            Ok(status)
        })
    }
}

fn order(id: &str, order_id: u64) -> String {
    json!({
        "specversion": "1.0", "id": id, "source": "test", "type": "order.placed",
        "data": {"order_id": order_id, "user_id": "u-7"},
    })
    .to_string()
}

#[tokio::test]
async fn app_layers_wrap_every_handler_and_handler_layers_only_theirs() {
    let log = Log::default();
    let app = app!()
        .with_state(log.clone())
        .handler_layer("on_order", labelled("own", log.clone()))
        .delivery_layer(labelled("inner-app", log.clone()))
        .delivery_layer(labelled("outer-app", log.clone()));
    let app = TestApp::start(app).await;

    let (_, answer) = app.post("/orders", order("e-1", 1)).await;
    assert_eq!(answer, json!({"status": "SUCCESS"}));
    assert_eq!(
        log.take(),
        [
            "outer-app on_order orders e-1 order.placed u-7 1",
            "inner-app on_order orders e-1 order.placed u-7 1",
            "own on_order orders e-1 order.placed u-7 1",
            "run on_order 1",
            "own answered Success",
            "inner-app answered Success",
            "outer-app answered Success",
        ]
    );

    let (_, answer) = app.post("/payments", order("e-2", 2)).await;
    assert_eq!(answer, json!({"status": "SUCCESS"}));
    assert_eq!(
        log.take(),
        [
            "outer-app on_payment payments e-2 order.placed u-7 1",
            "inner-app on_payment payments e-2 order.placed u-7 1",
            "run on_payment 2",
            "inner-app answered Success",
            "outer-app answered Success",
        ]
    );
}

#[tokio::test]
async fn a_layer_may_answer_dapr_itself_and_the_handler_does_not_run() {
    // A shedding layer: every delivery to `on_payment` is answered RETRY (the broker keeps it).
    let shed = tower::layer::layer_fn(|_inner: DeliveryService| {
        tower::service_fn(|_req: DeliveryRequest| async { Ok(Status::Retry) })
    });
    let log = Log::default();
    let app = app!()
        .with_state(log.clone())
        .handler_layer("it::middleware::on_payment", shed);
    let app = TestApp::start(app).await;
    let (_, answer) = app.post("/payments", order("e-3", 3)).await;
    assert_eq!(answer, json!({"status": "RETRY"}));
    assert!(app.runs_of("on_payment").is_empty());
    let (_, answer) = app.post("/orders", order("e-4", 4)).await;
    assert_eq!(answer, json!({"status": "SUCCESS"}));
    assert_eq!(log.take(), ["run on_order 4"]);
}

#[test]
#[should_panic(expected = "handler_layer: no handler is named `on_refund`")]
fn a_layer_for_a_handler_the_app_lacks_is_refused() {
    let shed = tower::layer::layer_fn(|inner: DeliveryService| inner);
    let _ = app!().handler_layer("on_refund", shed);
}

#[test]
fn without_concurrency_the_manifests_set_no_cap() {
    assert!(!app!().manifests().contains("app-max-concurrency"));
}
