//! What the promise tests share: a router that records every request made to it, and the
//! answer, so a test sees exactly what the embedded broker asked of the app.

// Each test binary that includes this module uses part of it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use serde_json::Value;
use tokio::time::Instant;

/// One request made to the router, with its answer and when both happened (tokio's clock).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: StatusCode,
    pub answer: Value,
    pub started: Instant,
    pub answered: Instant,
}

impl Exchange {
    /// The request body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Every exchange, in the order the requests arrived.
#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<(usize, Exchange)>>>, Arc<Mutex<usize>>);

impl Recorded {
    pub fn all(&self) -> Vec<Exchange> {
        let mut all = self.0.lock().unwrap().clone();
        all.sort_by_key(|(seq, _)| *seq);
        all.into_iter().map(|(_, e)| e).collect()
    }
}

/// `router`, recording every request made to it in `recorded`.
pub fn recording(router: Router, recorded: Recorded) -> Router {
    router.layer(axum::middleware::from_fn_with_state(recorded, record))
}

async fn record(State(recorded): State<Recorded>, request: Request, next: Next) -> Response {
    let seq = {
        let mut n = recorded.1.lock().unwrap();
        *n += 1;
        *n
    };
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let (method, path, headers) = (
        parts.method.clone(),
        parts.uri.path().to_owned(),
        parts.headers.clone(),
    );
    let response = next
        .run(Request::from_parts(parts, Body::from(body.clone())))
        .await;
    let (parts, answer) = response.into_parts();
    let answer = axum::body::to_bytes(answer, usize::MAX).await.unwrap();
    recorded.0.lock().unwrap().push((
        seq,
        Exchange {
            method,
            path,
            headers,
            body,
            status: parts.status,
            answer: serde_json::from_slice(&answer).unwrap_or(Value::Null),
            started,
            answered: Instant::now(),
        },
    ));
    Response::from_parts(parts, Body::from(answer))
}
