//! The REST API: tasks in, task events out; the live stream, the page and the DLQ.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page: a user's tasks, live |
//! | `POST /tasks` | create (`{"user_id","title","due_at"?,"remind_at"?,"recurrence"?}`) → 201 |
//! | `GET /tasks?user_id=` | a user's tasks |
//! | `GET /tasks/stream?user_id=` | Server-Sent Events: the user's task updates |
//! | `GET /tasks/{id}`, `PUT /tasks/{id}`, `DELETE /tasks/{id}` | read, replace, delete |
//! | `POST /tasks/{id}/complete` | complete (a recurring task gets its next occurrence) |
//! | `GET /notifications?user_id=` | reminders delivered to a user |
//! | `GET /audit` | the audit log |
//! | `GET /dlq[?pending=true]` | dead letters, with their failures and whether they verify (ops) |
//! | `POST /dlq/replay` | replay dead letters (`{"event_type"?,"handler"?,"since"?,"until"?,"allow_unverified"?}`) (ops) |
//!
//! Every error is a JSON body `{"error": "..."}` with a 4xx/5xx status. A change and its task
//! event are written in one transaction (the outbox): once it commits, the answer is a success
//! whether the sidecar is up or not, and the app's relay publishes the event.
//!
//! The ops routes take a token when one is configured ([`Settings::ops_token`](crate::settings::Settings::ops_token): `ADMIN_API_TOKEN`,
//! else `APP_API_TOKEN`): `dapr-api-token: <token>` or `Authorization: Bearer <token>`, else 401.
//! With neither variable set they are closed under Dapr (403, naming the variable to set) and
//! open on the embedded broker, a newcomer's `cargo run` on their own machine ([`OpsAccess`]).

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use event_runtime::dlq::{self, DeadLetter, ReplayFilter, ReplayReport};
use event_runtime::{Mode, Publisher};
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::db::{AuditEntry, Db, Notification, StoredDeadLetter, Task, TaskFields};
use crate::events::SyncAction;
use crate::handlers::sync;
use crate::Updates;

/// What the API handlers share.
#[derive(Clone, Debug)]
pub struct Api {
    /// The database.
    pub db: Db,
    /// Where live updates (`task.sync`) and replays go (the app's publisher); task events go
    /// through the database's outbox.
    pub publisher: Publisher,
    /// This replica's live updates.
    pub updates: Updates,
    /// Who may call the ops routes (`/dlq`, `/dlq/replay`).
    pub ops: OpsAccess,
}

/// Who may call the ops routes, which show events and re-publish them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpsAccess {
    /// Requests that carry this token.
    Token(String),
    /// Anyone: the embedded broker with no token set, a try-out on one machine.
    Open,
    /// No one: a service under Dapr with no token set; the answer names the variable to set.
    NoTokenSet,
}

impl OpsAccess {
    /// `token` when there is one; else open on the embedded broker and closed under Dapr, where
    /// the service is deployed and reachable by others.
    pub fn new(mode: Mode, token: Option<String>) -> OpsAccess {
        match (token, mode) {
            (Some(token), _) => OpsAccess::Token(token),
            (None, Mode::Embedded) => OpsAccess::Open,
            (None, Mode::Dapr) => OpsAccess::NoTokenSet,
        }
    }
}

/// A JSON error answer: `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl ApiError {
    fn invalid(message: impl Into<String>) -> Self {
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, message.into())
    }
}

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

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError(StatusCode::BAD_REQUEST, r.body_text())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = format!("{e:#}"), "request failed");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (see the service's log)".into(),
        )
    }
}

/// `axum::Json` whose rejections answer with a JSON body.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// `axum::extract::Query` whose rejections answer with a JSON body.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` whose rejections answer with a JSON body.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `POST /tasks` body.
#[derive(Debug, Deserialize)]
pub struct NewTask {
    user_id: String,
    title: String,
    #[serde(default)]
    due_at: Option<DateTime<Utc>>,
    #[serde(default)]
    remind_at: Option<DateTime<Utc>>,
    #[serde(default)]
    recurrence: Option<String>,
}

/// `PUT /tasks/{id}` body: the task's new fields (absent optional fields are cleared).
#[derive(Debug, Deserialize)]
pub struct TaskUpdate {
    /// Optional; when given it must be the task's owner (a task cannot change hands).
    #[serde(default)]
    user_id: Option<String>,
    title: String,
    #[serde(default)]
    due_at: Option<DateTime<Utc>>,
    #[serde(default)]
    remind_at: Option<DateTime<Utc>>,
    #[serde(default)]
    recurrence: Option<String>,
}

/// `?user_id=` query.
#[derive(Debug, Deserialize)]
pub struct ByUser {
    user_id: String,
}

/// `GET /dlq` query.
#[derive(Debug, Deserialize)]
pub struct DlqQuery {
    #[serde(default)]
    pending: bool,
}

/// A dead letter as `GET /dlq` lists it: as stored, and whether a replay would publish it.
#[derive(Debug, Serialize)]
pub struct ListedDeadLetter {
    /// The letter and its replay state.
    #[serde(flatten)]
    pub stored: StoredDeadLetter,
    /// Whether this app wrote it, unchanged, for a topic it consumes (`dlq::verify`): a replay
    /// publishes only such letters, unless it says `allow_unverified`.
    pub verified: bool,
    /// Why it does not verify, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unverified_because: Option<String>,
}

impl ListedDeadLetter {
    /// `stored`, checked against this app's key.
    fn new(stored: StoredDeadLetter, publisher: &Publisher) -> Self {
        let why = dlq::verify(publisher, &stored.letter).err();
        ListedDeadLetter {
            stored,
            verified: why.is_none(),
            unverified_because: why.map(|why| why.to_string()),
        }
    }

    /// As `GET /dlq` answers it: with the event's `data`, which a letter that keeps the record
    /// leaves out on the wire (the record holds it, in base64).
    fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(self).unwrap_or_default();
        json["event"]["data"] = self.stored.letter.event.data.clone();
        json
    }
}

/// `POST /dlq/replay` body (every field optional; an empty body replays every pending letter).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Only events of this CloudEvent type.
    #[serde(default)]
    pub event_type: Option<String>,
    /// Only events this handler gave up on (`audit_log` or `module::audit_log`).
    #[serde(default)]
    pub handler: Option<String>,
    /// Only letters whose last failure is at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Only letters whose last failure is before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<DateTime<Utc>>,
    /// Replay letters that do not verify too (`GET /dlq` shows which): the operator's override
    /// for letters they checked themselves.
    #[serde(default)]
    pub allow_unverified: bool,
}

impl From<ReplayRequest> for ReplayFilter {
    fn from(r: ReplayRequest) -> Self {
        ReplayFilter {
            event_type: r.event_type,
            handler: r.handler,
            since: r.since.map(|t| t.to_rfc3339()),
            until: r.until.map(|t| t.to_rfc3339()),
            allow_unverified: r.allow_unverified,
        }
    }
}

/// The API routes.
pub fn routes(api: Api) -> Router {
    let ops = Router::new()
        .route("/dlq", get(dead_letters))
        .route("/dlq/replay", post(replay))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), ops_auth));
    Router::new()
        .route("/", get(page))
        .route("/tasks", post(create).get(list))
        .route("/tasks/stream", get(stream))
        .route("/tasks/{id}", get(show).put(update).delete(remove))
        .route("/tasks/{id}/complete", post(complete))
        .route("/notifications", get(notifications))
        .route("/audit", get(audit))
        .merge(ops)
        .with_state(api)
}

/// Lets an ops request through when it carries the ops token (compared in constant time by
/// `event_runtime::api_token_ok`), or when the routes are open; else 401 (403 when no token is
/// set under Dapr), before the body is read.
async fn ops_auth(State(api): State<Api>, request: Request, next: Next) -> Response {
    let token = match &api.ops {
        OpsAccess::Open => return next.run(request).await,
        OpsAccess::Token(token) => token,
        OpsAccess::NoTokenSet => {
            return ApiError(
                StatusCode::FORBIDDEN,
                "the ops routes are closed: this service runs under Dapr with no ops token, set                  ADMIN_API_TOKEN (or APP_API_TOKEN) and send it as `Authorization: Bearer <token>`"
                    .into(),
            )
            .into_response();
        }
    };
    if event_runtime::api_token_ok(request.headers(), Some(token)) {
        return next.run(request).await;
    }
    let error = ApiError(
        StatusCode::UNAUTHORIZED,
        "missing or wrong token: send `dapr-api-token: <token>` or `Authorization: Bearer \
         <token>` (ADMIN_API_TOKEN, else APP_API_TOKEN)"
            .into(),
    );
    ([(header::WWW_AUTHENTICATE, "Bearer")], error).into_response()
}

const MAX_TITLE: usize = 500;
const MAX_USER_ID: usize = 200;

fn validate(user_id: &str, title: &str, recurrence: Option<&str>) -> Result<(), ApiError> {
    if user_id.trim().is_empty() || title.trim().is_empty() {
        return Err(ApiError::invalid("`user_id` and `title` must not be empty"));
    }
    if user_id.len() > MAX_USER_ID || title.len() > MAX_TITLE {
        return Err(ApiError::invalid(format!(
            "`user_id` is at most {MAX_USER_ID} bytes and `title` at most {MAX_TITLE}"
        )));
    }
    if let Some(r) = recurrence {
        if !matches!(r, "daily" | "weekly" | "monthly") {
            return Err(ApiError::invalid(
                "`recurrence` is one of daily, weekly, monthly",
            ));
        }
    }
    Ok(())
}

fn not_found(id: i64) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no task with id {id}"))
}

async fn create(
    State(api): State<Api>,
    Json(new): Json<NewTask>,
) -> Result<(StatusCode, axum::Json<Task>), ApiError> {
    validate(&new.user_id, &new.title, new.recurrence.as_deref())?;
    let fields = TaskFields {
        title: new.title,
        due_at: new.due_at,
        remind_at: new.remind_at,
        recurrence: new.recurrence,
    };
    // The task and its `task.created` event, in one transaction: the relay publishes it.
    let task = api.db.create_task(&new.user_id, &fields).await?;
    sync(&api.publisher, SyncAction::Created, &task).await;
    Ok((StatusCode::CREATED, axum::Json(task)))
}

async fn update(
    State(api): State<Api>,
    Path(id): Path<i64>,
    Json(change): Json<TaskUpdate>,
) -> Result<axum::Json<Task>, ApiError> {
    let current = api.db.task(id).await?.ok_or_else(|| not_found(id))?;
    if change
        .user_id
        .as_ref()
        .is_some_and(|u| *u != current.user_id)
    {
        return Err(ApiError::invalid(
            "`user_id` cannot change: a task stays with its owner",
        ));
    }
    validate(
        &current.user_id,
        &change.title,
        change.recurrence.as_deref(),
    )?;
    let fields = TaskFields {
        title: change.title,
        due_at: change.due_at,
        remind_at: change.remind_at,
        recurrence: change.recurrence,
    };
    let task = api
        .db
        .update_task(id, &fields)
        .await?
        .ok_or_else(|| not_found(id))?;
    sync(&api.publisher, SyncAction::Updated, &task).await;
    Ok(axum::Json(task))
}

/// Completing a task that is done already answers it as it is, and publishes nothing.
async fn complete(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<Task>, ApiError> {
    let (task, changed) = api
        .db
        .complete_task(id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if changed {
        sync(&api.publisher, SyncAction::Completed, &task).await;
    }
    Ok(axum::Json(task))
}

async fn remove(State(api): State<Api>, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    let task = api.db.delete_task(id).await?.ok_or_else(|| not_found(id))?;
    sync(&api.publisher, SyncAction::Deleted, &task).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn show(State(api): State<Api>, Path(id): Path<i64>) -> Result<axum::Json<Task>, ApiError> {
    let task = api.db.task(id).await?.ok_or_else(|| not_found(id))?;
    Ok(axum::Json(task))
}

async fn list(
    State(api): State<Api>,
    Query(q): Query<ByUser>,
) -> Result<axum::Json<Vec<Task>>, ApiError> {
    Ok(axum::Json(api.db.tasks_of(&q.user_id).await?))
}

async fn notifications(
    State(api): State<Api>,
    Query(q): Query<ByUser>,
) -> Result<axum::Json<Vec<Notification>>, ApiError> {
    Ok(axum::Json(api.db.notifications_of(&q.user_id).await?))
}

async fn audit(State(api): State<Api>) -> Result<axum::Json<Vec<AuditEntry>>, ApiError> {
    Ok(axum::Json(api.db.audit_log().await?))
}

/// `GET /tasks/stream?user_id=`: a `ready` event once subscribed, then one `task` event (a
/// `task.sync` body) per change of the user's tasks; `resync` when this client fell behind
/// and should reload the list.
async fn stream(
    State(api): State<Api>,
    Query(q): Query<ByUser>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = api.updates.subscribe();
    let ready = futures::stream::once(async { Ok(SseEvent::default().event("ready").data("{}")) });
    let updates = futures::stream::unfold((rx, q.user_id), |(mut rx, user)| async move {
        loop {
            let event = match rx.recv().await {
                Ok(update) if update.user_id == user => SseEvent::default()
                    .event("task")
                    .json_data(&update)
                    .unwrap_or_else(|_| SseEvent::default().event("resync").data("{}")),
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => SseEvent::default().event("resync").data("{}"),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(event), (rx, user)));
        }
    });
    Sse::new(futures::StreamExt::chain(ready, updates)).keep_alive(KeepAlive::default())
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn dead_letters(
    State(api): State<Api>,
    Query(q): Query<DlqQuery>,
) -> Result<axum::Json<Vec<serde_json::Value>>, ApiError> {
    let stored = api.db.dead_letters(q.pending).await?;
    let listed = stored
        .into_iter()
        .map(|l| ListedDeadLetter::new(l, &api.publisher).to_json());
    Ok(axum::Json(listed.collect()))
}

/// `POST /dlq/replay`: re-publishes the pending dead letters that pass the filter to their
/// original topics with their original ids, marks them replayed, and answers the report. A
/// replayed event that fails again comes back to the DLQ, pending again. Of two replays at once,
/// each letter is re-published by the one that claimed it.
async fn replay(State(api): State<Api>, body: Bytes) -> Result<axum::Json<ReplayReport>, ApiError> {
    let request: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid(format!("invalid replay filter: {e}")))?
    };
    let filter = ReplayFilter::from(request);
    let matching: Vec<String> = api
        .db
        .dead_letters(true)
        .await?
        .into_iter()
        .filter(|l| filter.matches(&l.letter))
        .map(|l| l.id)
        .collect();
    // Claimed (marked replayed) before publishing, by a conditional update: a letter another
    // replay claimed first is not published twice, and a replayed event that fails again is
    // stored pending again by the DLQ handler, not overwritten by this mark afterwards.
    let claimed = api.db.claim_for_replay(&matching).await?;
    let mut report = ReplayReport::default();
    let mut give_back = Vec::new();
    let mut publish = Vec::new();
    for l in claimed {
        // As claimed: a letter stored again since it was read may no longer pass the filter.
        if !filter.matches(&l.letter) {
            give_back.push(l.id);
            continue;
        }
        if !filter.allow_unverified {
            if let Err(why) = dlq::verify(&api.publisher, &l.letter) {
                tracing::warn!(id = %l.id, %why, "DLQ replay: letter refused");
                report
                    .refused
                    .push((l.letter.event.id.clone(), why.to_string()));
                give_back.push(l.id);
                continue;
            }
        }
        publish.push(l);
    }
    let letters: Vec<DeadLetter> = publish.iter().map(|l| l.letter.clone()).collect();
    let sent = dlq::replay(&api.publisher, &letters, &filter).await;
    // The report names events, not rows: rows of one event id (two handlers' letters) whose
    // publish failed are all given back.
    let (failed, published): (Vec<_>, Vec<_>) = publish.into_iter().partition(|l| {
        let id = &l.letter.event.id;
        sent.failed
            .iter()
            .chain(&sent.refused)
            .any(|(e, _)| e == id)
    });
    give_back.extend(failed.into_iter().map(|l| l.id));
    api.db.release_replay(&give_back).await?;
    let published: Vec<String> = published.into_iter().map(|l| l.id).collect();
    api.db.replayed_now(&published).await?;
    report.matched = sent.matched + report.refused.len();
    report.replayed = sent.replayed;
    report.failed = sent.failed;
    report.refused.extend(sent.refused);
    tracing::info!(
        matched = report.matched,
        replayed = report.replayed,
        failed = report.failed.len(),
        refused = report.refused.len(),
        "DLQ replay done"
    );
    Ok(axum::Json(report))
}
