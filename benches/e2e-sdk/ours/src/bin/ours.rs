//! The trivial handler written with event-runtime: one non-idempotent no-op handler that counts.
use event_runtime::{event_handler, App, Event};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "bench.event", version = "1.0", unkeyed)]
pub struct BenchEvent {
    pub n: u64,
}

#[event_handler(topic = "bench-events")]
async fn on_bench(_event: BenchEvent) {
    e2e_sdk_bench::hit();
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = e2e_sdk_bench::listener().await;
    App::new().serve_on(listener, e2e_sdk_bench::count_routes()).await
}
