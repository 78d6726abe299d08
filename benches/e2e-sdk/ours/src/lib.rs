//! Delivery counter shared by the two Rust apps: GET /count answers
//! `{"count":N,"first":t0,"last":t1}` (unix seconds of the first and the latest delivery).
#![allow(missing_docs)]

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::{routing::get, Json, Router};

static STATE: Mutex<(u64, f64, f64)> = Mutex::new((0, 0.0, 0.0));

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// Records one delivery.
pub fn hit() {
    hits(1);
}

/// Records `n` deliveries at once (a batch).
pub fn hits(n: u64) {
    let t = now();
    let mut s = STATE.lock().unwrap();
    if s.0 == 0 {
        s.1 = t;
    }
    s.0 += n;
    s.2 = t;
}

/// `GET /count`.
pub fn count_routes() -> Router {
    Router::new().route(
        "/count",
        get(|| async {
            let s = *STATE.lock().unwrap();
            Json(serde_json::json!({"count": s.0, "first": s.1, "last": s.2}))
        }),
    )
}

/// 127.0.0.1:$APP_PORT.
pub async fn listener() -> tokio::net::TcpListener {
    let port: u16 = std::env::var("APP_PORT").expect("APP_PORT").parse().expect("APP_PORT is a port");
    tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind")
}
