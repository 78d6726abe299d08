//! A delivery route: the app token, the body limit, and Dapr's answer as an HTTP response.

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::Either;
use futures::FutureExt as _;

use crate::handler::registry::Target;
use crate::pipeline::{deliver, Answer, Runtime};

/// Answers one request on a delivery route.
///
/// Written with combinators rather than as one `async fn`: axum boxes this future for every
/// request, and an `async fn` would keep the event it reads, and the run's future, twice over in
/// its state. This way the common path's future stays small, and so cheap to allocate and move.
pub(crate) fn handle(
    rt: Arc<Runtime>,
    target: Target,
    request: Request,
) -> impl Future<Output = Response> + Send + 'static {
    // The headers are taken, not cloned as axum's `HeaderMap` extractor would.
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    if !crate::http::server::token_ok(&headers, rt.settings.app_api_token.as_deref()) {
        return Either::Left(std::future::ready(crate::http::server::unauthorized()));
    }
    let limit = body_limit(&rt, target);
    Either::Right(read_body(body, limit).then(move |body| match body {
        Ok(body) => Either::Left(deliver(rt, target, headers, body).map(respond)),
        Err(refused) => Either::Right(std::future::ready(refused)),
    }))
}

/// The largest body a route takes: the app's limit per event, or for a bulk subscription
/// `EVENTS_MAX_BULK_BODY_BYTES`, which start-up checked to hold any batch of its
/// `maxMessagesCount` records (a batch refused as a whole would be redelivered as a whole,
/// forever).
fn body_limit(rt: &Runtime, target: Target) -> usize {
    match target {
        Target::Topic(t) if rt.registry.topics[t].bulk.is_some() => rt.settings.max_bulk_body_bytes,
        _ => rt.settings.body_limit,
    }
}

/// The request body, up to `limit` bytes. Beyond that the answer is 413, which Dapr does not take
/// as an acknowledgement, so the broker keeps the event.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|cause| cause.is::<http_body_util::LengthLimitError>());
        if too_large {
            let message = format!("the body is larger than the limit of {limit} bytes");
            (StatusCode::PAYLOAD_TOO_LARGE, message).into_response()
        } else {
            (
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
            )
                .into_response()
        }
    })
}

/// Dapr's answer as the response it reads: `{"status": ...}` from a constant body, so the common
/// answer costs no serialization, or a bulk batch's statuses.
fn respond(answer: Answer) -> Response {
    match answer {
        Answer::One(status) => {
            let body = status.body();
            (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
        }
        Answer::Bulk(statuses) => (StatusCode::OK, axum::Json(statuses)).into_response(),
    }
}
