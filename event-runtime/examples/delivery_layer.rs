//! Delivery middleware: two tower layers around an app's deliveries.
//!
//! - `Shed`, on one handler: at most `per_second` deliveries start each second; beyond that the
//!   answer is RETRY, so the broker keeps the event and offers it again later.
//! - `Tally`, app-wide: counts Dapr's answers by handler and event type, a label set of our
//!   own beside the built-in metrics.
//!
//! Run it with `cargo run -p event-runtime --example delivery_layer`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, App, DeliveryRequest, DeliveryService, Event, Status};
use futures::future::BoxFuture;
use tower::{Layer, Service, ServiceExt as _};

/// The event.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "report.requested", version = "1.0")]
pub struct ReportRequested {
    /// Whose report.
    pub user_id: String,
}

#[event_handler(topic = "reports", route = "/reports")]
async fn build_report(_event: ReportRequested) {}

/// Sheds deliveries beyond `per_second` a second (a fixed window, shared by every clone).
#[derive(Clone)]
struct Shed {
    per_second: u32,
    window: Arc<Mutex<(Instant, u32)>>,
}

impl Shed {
    fn new(per_second: u32) -> Self {
        let window = Arc::new(Mutex::new((Instant::now(), 0)));
        Shed { per_second, window }
    }

    /// Whether one more delivery may start now.
    fn admit(&self) -> bool {
        let mut window = self.window.lock().unwrap();
        if window.0.elapsed() >= Duration::from_secs(1) {
            *window = (Instant::now(), 0);
        }
        window.1 += 1;
        window.1 <= self.per_second
    }
}

impl Layer<DeliveryService> for Shed {
    type Service = ShedService;
    fn layer(&self, inner: DeliveryService) -> ShedService {
        ShedService {
            shed: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
struct ShedService {
    shed: Shed,
    inner: DeliveryService,
}

impl Service<DeliveryRequest> for ShedService {
    type Response = Status;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Status, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: DeliveryRequest) -> Self::Future {
        if !self.shed.admit() {
            tracing::info!(
                event_id = req.event_id(),
                "over the rate: asking for redelivery"
            );
            return Box::pin(async { Ok(Status::Retry) });
        }
        Box::pin(self.inner.call(req))
    }
}

/// Dapr's answers, counted by (handler, event type, answer).
type Tally = Arc<Mutex<BTreeMap<(String, String, String), u64>>>;

#[tokio::main]
async fn main() {
    let counts = Tally::default();
    let tally = {
        let counts = counts.clone();
        tower::layer::layer_fn(move |inner: DeliveryService| {
            let counts = counts.clone();
            tower::service_fn(move |req: DeliveryRequest| {
                let labels = (req.handler_path().to_owned(), req.event_type().to_owned());
                let (counts, inner) = (counts.clone(), inner.clone());
                async move {
                    let status = inner.oneshot(req).await?;
                    let key = (labels.0, labels.1, status.as_str().to_owned());
                    *counts.lock().unwrap().entry(key).or_default() += 1;
                    Ok::<_, Infallible>(status)
                }
            })
        })
    };
    let app = App::new()
        .with_app_id("reports")
        .handler_layer("build_report", Shed::new(3))
        .delivery_layer(tally);
    let app = TestApp::start(app).await;
    for i in 0..5 {
        let event = serde_json::json!({
            "specversion": "1.0", "id": format!("r-{i}"), "source": "example",
            "type": "report.requested", "data": {"user_id": format!("u-{i}")},
        });
        let (_, answer) = app.post("/reports", event.to_string()).await;
        println!("r-{i}: {answer}");
    }
    for ((handler, ty, status), n) in counts.lock().unwrap().iter() {
        println!("{handler} {ty} {status}: {n}");
    }
}
