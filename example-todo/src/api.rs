//! The REST API: tasks in, task events out.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use event_runtime::Publisher;
use serde::Deserialize;
use serde_json::json;

use crate::events::{TaskEvent, TASK_EVENTS};
use crate::store::{Store, Task};

/// What the API handlers share.
#[derive(Clone, Debug)]
pub struct Api {
    /// Data.
    pub store: Store,
    /// Where task events go.
    pub publisher: Publisher,
}

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError(r.status(), r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError(StatusCode::BAD_REQUEST, r.body_text())
    }
}

/// `axum::Json` whose rejections answer with a JSON body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// `POST /tasks` body.
#[derive(Debug, Deserialize)]
pub struct NewTask {
    user_id: String,
    title: String,
    #[serde(default)]
    recurrence: Option<String>,
}

/// `GET /tasks` query.
#[derive(Debug, Deserialize)]
pub struct ByUser {
    user_id: String,
}

/// The API routes.
pub fn routes(api: Api) -> Router {
    Router::new()
        .route("/tasks", post(create).get(list))
        .route("/tasks/{id}", get(show).delete(remove))
        .route("/tasks/{id}/complete", post(complete))
        .with_state(api)
}

async fn publish(api: &Api, kind: &str, task: &Task) -> Result<(), ApiError> {
    let payload = serde_json::to_value(task)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let event = TaskEvent::new(kind, task.id, &task.user_id, payload);
    api.publisher
        .publish(TASK_EVENTS, &event)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "publishing a task event failed");
            ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        })
}

async fn create(
    State(api): State<Api>,
    Json(new): Json<NewTask>,
) -> Result<(StatusCode, axum::Json<Task>), ApiError> {
    if new.user_id.trim().is_empty() || new.title.trim().is_empty() {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`user_id` and `title` must not be empty".into(),
        ));
    }
    if let Some(r) = &new.recurrence {
        if !matches!(r.as_str(), "daily" | "weekly" | "monthly") {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`recurrence` is one of daily, weekly, monthly".into(),
            ));
        }
    }
    let task = api
        .store
        .create(&new.user_id, &new.title, new.recurrence, None);
    publish(&api, "created", &task).await?;
    Ok((StatusCode::CREATED, axum::Json(task)))
}

fn not_found(id: i64) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no task with id {id}"))
}

async fn complete(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<Task>, ApiError> {
    let task = api.store.complete(id).ok_or_else(|| not_found(id))?;
    publish(&api, "completed", &task).await?;
    Ok(axum::Json(task))
}

async fn remove(State(api): State<Api>, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    let task = api.store.delete(id).ok_or_else(|| not_found(id))?;
    publish(&api, "deleted", &task).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn show(State(api): State<Api>, Path(id): Path<i64>) -> Result<axum::Json<Task>, ApiError> {
    api.store
        .get(id)
        .map(axum::Json)
        .ok_or_else(|| not_found(id))
}

async fn list(
    State(api): State<Api>,
    query: Result<Query<ByUser>, QueryRejection>,
) -> Result<axum::Json<Vec<Task>>, ApiError> {
    let Query(q) = query?;
    Ok(axum::Json(api.store.list(&q.user_id)))
}
