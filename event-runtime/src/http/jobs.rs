//! `POST /job/{name}`: daprd's call when one of the app's jobs is due (see
//! [`Publisher::publish_at`](crate::Publisher::publish_at)). The app checks the job it signed,
//! then publishes the firing's event; the scheduler calls again (every 5 s, for 10 minutes)
//! while the app answers an error.

use std::sync::Arc;

use axum::extract::{Path, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::pipeline::Runtime;
use crate::transport::jobs::Signed;

/// Answers one trigger: 200 once the event is published; 503 when the broker is out of reach
/// (called again); 400, 403 or 422 for a job that is no job of this app or can never be
/// published (called again a bounded number of times, and said in the log each time).
pub(crate) async fn trigger(
    rt: Arc<Runtime>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    if !crate::http::server::token_ok(&parts.headers, rt.settings.app_api_token.as_deref()) {
        return crate::http::server::unauthorized();
    }
    let body = match crate::http::delivery::read_body(body, rt.settings.body_limit).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let refuse = |status: StatusCode, why: String| {
        tracing::error!(job = %name, "a job trigger is refused: {why}");
        (status, why).into_response()
    };
    let signed: Signed = match serde_json::from_slice(&body) {
        Ok(signed) => signed,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("not a job of this app: {e}"),
            )
        }
    };
    let job = match signed.open(&name, &rt.signing_key) {
        Ok(job) => job,
        Err(why) => return refuse(StatusCode::FORBIDDEN, why.to_owned()),
    };
    let event = job.firing(job.tick(crate::clock::now_ms()));
    let id = event.id.clone();
    match rt.publisher.send(event).await {
        Ok(()) => {
            tracing::info!(job = %name, event_id = %id, topic = %job.topic, "scheduled event published");
            StatusCode::OK.into_response()
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(job = %name, error = %e, "a scheduled event could not be published yet");
            (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
        Err(e) => refuse(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}
