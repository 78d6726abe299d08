//! The trivial handler as a batch handler: a bulk subscription (up to 100 events, 100 ms), one
//! call per bulk delivery, counting the batch.
use event_runtime::{event_handler, App, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "bench.event", version = "1.0", unkeyed)]
pub struct BenchEvent {
    pub n: u64,
}

#[event_handler(topic = "bench-events", bulk(max_messages = 100, max_await_ms = 100))]
async fn on_bench(events: Vec<BenchEvent>) {
    e2e_sdk_bench::hits(events.len() as u64);
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = e2e_sdk_bench::listener().await;
    App::new().serve_on(listener, e2e_sdk_bench::count_routes()).await
}
