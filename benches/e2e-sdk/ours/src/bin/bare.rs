//! daprd's ceiling: a bare axum route that answers SUCCESS to every delivery, and a hand-written
//! GET /dapr/subscribe on the same subscription form as ours (rawPayload: daprd hands over the
//! record's bytes and parses nothing), so that daprd does the same work for both.
use axum::{routing::{get, post}, Json, Router};
use serde_json::json;

#[tokio::main]
async fn main() {
    let listener = e2e_sdk_bench::listener().await;
    let app = Router::new()
        .route(
            "/dapr/subscribe",
            get(|| async {
                Json(json!([{"pubsubname": "kafka-pubsub", "topic": "bench-events", "route": "/events/bench",
                    "metadata": {"rawPayload": "true"}}]))
            }),
        )
        .route(
            "/events/bench",
            post(|_body: axum::body::Bytes| async {
                e2e_sdk_bench::hit();
                Json(json!({"status": "SUCCESS"}))
            }),
        )
        .merge(e2e_sdk_bench::count_routes());
    axum::serve(listener, app).await.unwrap();
}
