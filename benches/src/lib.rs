//! What the benchmarks share: the reference's `TaskEvent`, the handlers under measurement, the
//! framework's router with 1, 10 or 100 handlers registered, the two forms a record reaches the
//! app in, and the hand-written axum handlers it is compared with.
//!
//! Every subscription the framework generates is `rawPayload: "true"` with no routing rules, so
//! daprd posts each record to its topic's default route inside its own wrapper
//! ([`raw_payload_body`], [`raw_delivery`]). The plain CloudEvent posted to the handler's own
//! route ([`cloud_event_body`], [`delivery`]) is what it sent before; it is kept for comparison.
//!
//! See `BENCHMARKS.md` at the repository root for how to run each benchmark and what they found.

use axum::body::{Body, Bytes};
use axum::http::{header, Request, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use event_runtime::__private::HandlerDef;
use event_runtime::idempotency::MemoryStore;
use event_runtime::{event_handler, App, Event, Mode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tower::ServiceExt as _;

/// The filler handlers `build.rs` writes: `filler_000`..`filler_098`, each on its own topic
/// `bench-topic-NNN` with its own event type, and `shared_000`..`shared_098`, all on
/// `task-events-shared`, one event type each.
pub mod fillers {
    include!(concat!(env!("OUT_DIR"), "/fillers.rs"));
}

/// The topic of the measured handler.
pub const TOPIC: &str = "task-events";
/// The route Dapr calls for [`on_task_event`] (the framework's derived route; the hand-written
/// handler is mounted on the same path).
pub const ROUTE: &str = "/events/task-events/on_task_event";
/// The default route of [`TOPIC`]: where daprd posts every record of the topic, as the
/// subscriptions carry no routing rules. The hand-written rawPayload handler is mounted there too.
pub const ROUTE_TOPIC: &str = "/_dispatch/kafka-pubsub/task-events";
/// The route of [`on_task_event_idem`].
pub const ROUTE_IDEMPOTENT: &str = "/events/task-events-idem/on_task_event_idem";
/// The default route of `task-events-idem`, the topic of [`on_task_event_idem`].
pub const ROUTE_IDEMPOTENT_TOPIC: &str = "/_dispatch/kafka-pubsub/task-events-idem";
/// The topic default route of `task-events-shared`, where the framework chooses the handler by
/// CloudEvent type (what seed-style events and Dapr's default route reach).
pub const ROUTE_SHARED_DISPATCH: &str = "/_dispatch/kafka-pubsub/task-events-shared";
/// How many filler handlers `build.rs` generated per family.
pub const FILLERS: usize = 99;

/// The reference's versioned `TaskEvent`: `event_type` is the tag, one variant per CloudEvent type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0")]
#[allow(missing_docs)]
pub enum TaskEvent {
    /// A task was created.
    #[serde(rename = "task.created")]
    Created {
        event_id: String,
        event_version: String,
        task_id: i64,
        user_id: String,
        timestamp: String,
        payload: Value,
    },
    /// A task was changed.
    #[serde(rename = "task.updated")]
    Updated {
        event_id: String,
        event_version: String,
        task_id: i64,
        user_id: String,
        timestamp: String,
        payload: Value,
    },
    /// A task was completed.
    #[serde(rename = "task.completed")]
    Completed {
        event_id: String,
        event_version: String,
        task_id: i64,
        user_id: String,
        timestamp: String,
        payload: Value,
    },
    /// A task was deleted.
    #[serde(rename = "task.deleted")]
    Deleted {
        event_id: String,
        event_version: String,
        task_id: i64,
        user_id: String,
        timestamp: String,
        payload: Value,
    },
}

/// The measured handler: does nothing with the event.
#[event_handler(topic = "task-events")]
pub async fn on_task_event(event: TaskEvent) {
    std::hint::black_box(&event);
}

/// The same, idempotent (keyed by the CloudEvent id).
#[event_handler(topic = "task-events-idem", idempotent)]
pub async fn on_task_event_idem(event: TaskEvent) {
    std::hint::black_box(&event);
}

/// The same, on the topic shared with the `shared_NNN` fillers. Its name sorts after theirs,
/// so choosing it by type scans every other handler of the topic first (the worst case).
#[event_handler(topic = "task-events-shared")]
pub async fn shared_task_event(event: TaskEvent) {
    std::hint::black_box(&event);
}

/// The same with delayed retries, which keep per-key order (deliver to
/// `/_dispatch/kafka-pubsub/task-events-ordered`).
#[event_handler(topic = "task-events-ordered", retry = [30])]
pub async fn on_task_event_ordered(event: TaskEvent) {
    std::hint::black_box(&event);
}

/// The same with delayed retries that give per-key order up (`unordered`), as every delayed
/// retry did before (deliver to `/_dispatch/kafka-pubsub/task-events-unordered`).
#[event_handler(topic = "task-events-unordered", retry = [30], unordered)]
pub async fn on_task_event_unordered(event: TaskEvent) {
    std::hint::black_box(&event);
}

/// Keeps per-key order; fails the events of users named `parked-*` onto a one-hour retry, so
/// that each such user's later events stay parked (`order-throughput`).
#[event_handler(topic = "task-events-gated", retry = [3600])]
pub async fn on_task_event_gated(event: TaskEvent) -> event_runtime::Outcome {
    let (TaskEvent::Created { user_id, .. }
    | TaskEvent::Updated { user_id, .. }
    | TaskEvent::Completed { user_id, .. }
    | TaskEvent::Deleted { user_id, .. }) = &event;
    if user_id.starts_with("parked-") {
        return event_runtime::Outcome::retry("held back on purpose");
    }
    event_runtime::Outcome::Success
}

/// A handler that takes 1 ms (embedded-mode throughput).
#[event_handler(topic = "task-events-sleep")]
pub async fn on_task_event_sleep(event: TaskEvent) {
    std::hint::black_box(&event);
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
}

/// A `TaskEvent` of the reference's shape: the given ids and a typical task as payload.
pub fn task_event(event_id: &str, task_id: i64, user_id: &str) -> TaskEvent {
    TaskEvent::Created {
        event_id: event_id.to_owned(),
        event_version: "1.0".to_owned(),
        task_id,
        user_id: user_id.to_owned(),
        timestamp: "2026-01-15T09:30:00.000Z".to_owned(),
        payload: json!({
            "id": task_id,
            "user_id": user_id,
            "title": "Write the benchmarks",
            "description": "Measure the framework against a bare axum handler",
            "completed": false,
            "priority": "high",
            "tags": ["perf", "rust"],
            "due_date": "2026-02-01T09:00:00Z",
            "recurring": null,
            "created_at": "2026-01-15T09:30:00.000Z",
            "updated_at": "2026-01-15T09:30:00.000Z"
        }),
    }
}

/// The body Dapr delivers for [`task_event`] published to `task-events` (structured CloudEvent,
/// as the sidecar and the embedded broker write it). About 800 bytes.
pub fn cloud_event_body(event_id: &str) -> String {
    json!({
        "specversion": "1.0",
        "id": event_id,
        "type": "task.created",
        "source": "todo-api",
        "datacontenttype": "application/json",
        "topic": TOPIC,
        "pubsubname": "kafka-pubsub",
        "time": "2026-01-15T09:30:00.000Z",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "data": task_event(event_id, 42, "user-7"),
    })
    .to_string()
}

/// A delivery as the sidecar sent it before the subscriptions were rawPayload: `POST path` with
/// the record, a CloudEvent, as the body.
pub fn delivery(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/cloudevents+json")
        .header("pubsubname", "kafka-pubsub")
        .body(body.into())
        .expect("a valid request")
}

/// The body daprd posts for `record` on a rawPayload subscription: its wrapper, with the record
/// as `data_base64`. daprd builds the wrapper as a Go map and writes it with `encoding/json`,
/// which sorts the keys, so `data_base64` comes first.
pub fn raw_payload_body(record: &[u8], topic: &str) -> String {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(record);
    json!({
        "data_base64": data,
        "datacontenttype": "application/octet-stream",
        "id": "9d4e8b61-2f3a-4c7e-b5d0-6a1f0e3c2b98",
        "pubsubname": "kafka-pubsub",
        "source": "Dapr",
        "specversion": "1.0",
        "topic": topic,
        "type": "com.dapr.event.sent",
    })
    .to_string()
}

/// A delivery as daprd sends it now: `POST path` (the topic's default route) with its rawPayload
/// wrapper as the body, and the Kafka record's key, coordinates and headers (our publisher writes
/// the event's version as one) and daprd's `traceparent` as HTTP headers.
pub fn raw_delivery(path: &str, topic: &str, body: impl Into<Body>) -> Request<Body> {
    raw_delivery_at(path, topic, 18234, body)
}

/// [`raw_delivery`] of the record at `offset` of its partition.
pub fn raw_delivery_at(
    path: &str,
    topic: &str,
    offset: u64,
    body: impl Into<Body>,
) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/cloudevents+json")
        .header("pubsubname", "kafka-pubsub")
        .header("__key", "user-7")
        .header("__topic", topic)
        .header("__partition", "3")
        .header("__offset", offset.to_string())
        .header("eventversion", "1.0")
        // daprd's own trace context, which it sends beside every delivery.
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01",
        )
        .body(body.into())
        .expect("a valid request")
}

/// Sends one request and returns the status and body (for checks, not for timing).
pub async fn send(router: &Router, req: Request<Body>) -> (StatusCode, Bytes) {
    let Ok(resp) = router.clone().oneshot(req).await;
    let status = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("an in-memory body")
        .to_bytes();
    (status, body)
}

/// The registered handlers whose function names are in `names`, panicking when one is missing
/// (so a benchmark never silently measures fewer handlers than it says).
pub fn handlers_named(names: &[String]) -> Vec<&'static HandlerDef> {
    let defs: Vec<&'static HandlerDef> = event_runtime::__private::registered()
        .into_iter()
        .filter(|h| names.iter().any(|n| n == h.name()))
        .collect();
    assert_eq!(
        defs.len(),
        names.len(),
        "some handlers are not registered: wanted {names:?}"
    );
    defs
}

fn app_of(names: &[String]) -> App {
    App::with_handlers(handlers_named(names))
        .unwrap_or_else(|e| panic!("{e}"))
        .with_mode(Mode::Embedded)
        .with_idempotency_store(MemoryStore::new())
}

/// The framework's router with `n` handlers on distinct topics: [`on_task_event`] and `n - 1`
/// fillers. Deliver to [`ROUTE`].
pub fn framework_router(n: usize) -> Router {
    assert!(
        (1..=FILLERS + 1).contains(&n),
        "1..={} handlers",
        FILLERS + 1
    );
    let mut names = vec!["on_task_event".to_owned()];
    names.extend((0..n - 1).map(|i| format!("filler_{i:03}")));
    app_of(&names).router()
}

/// The framework's router with [`on_task_event_idem`] (in-memory idempotency store). Deliver to
/// [`ROUTE_IDEMPOTENT`].
pub fn framework_router_idempotent() -> Router {
    app_of(&["on_task_event_idem".to_owned()]).router()
}

/// The framework's router with `n` handlers on one topic: `n - 1` fillers and
/// [`shared_task_event`], chosen by type on [`ROUTE_SHARED_DISPATCH`].
pub fn framework_router_shared_topic(n: usize) -> Router {
    assert!(
        (1..=FILLERS + 1).contains(&n),
        "1..={} handlers",
        FILLERS + 1
    );
    let mut names = vec!["shared_task_event".to_owned()];
    names.extend((0..n - 1).map(|i| format!("shared_{i:03}")));
    app_of(&names).router()
}

/// An app of only the handler named `name` (embedded mode, fresh in-memory idempotency store).
pub fn app_with(name: &str) -> App {
    app_of(&[name.to_owned()])
}

/// What a hand-written axum handler reads: the CloudEvent envelope with typed data.
#[derive(Debug, Deserialize)]
#[allow(missing_docs)]
pub struct CloudEventIn {
    pub specversion: String,
    pub id: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub source: String,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub datacontenttype: Option<String>,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub pubsubname: Option<String>,
    #[serde(default)]
    pub traceparent: Option<String>,
    /// The event.
    pub data: TaskEvent,
}

/// The hand-written handler: deserialize the body, do nothing, answer Dapr's SUCCESS (DROP for a
/// body that is not a `TaskEvent` CloudEvent).
pub async fn baseline_handler(body: Bytes) -> (StatusCode, Json<Value>) {
    let status = match serde_json::from_slice::<CloudEventIn>(&body) {
        Ok(ce) if ce.specversion == "1.0" => {
            std::hint::black_box(&ce);
            "SUCCESS"
        }
        _ => "DROP",
    };
    (StatusCode::OK, Json(json!({ "status": status })))
}

/// A router with only [`baseline_handler`], on [`ROUTE`].
pub fn baseline_router() -> Router {
    Router::new().route(ROUTE, post(baseline_handler))
}

/// What a hand-written handler of a rawPayload subscription reads of daprd's wrapper: the record.
/// The wrapper's other members are daprd's own (a fresh id, the topic the route already names),
/// so serde skips them.
#[derive(Debug, Deserialize)]
pub struct DaprRawIn {
    /// The Kafka record, base64.
    pub data_base64: String,
}

/// The hand-written handler of a rawPayload subscription: read the wrapper, decode the record
/// from base64, deserialize it as the CloudEvent with its `TaskEvent`, do nothing, answer SUCCESS
/// (DROP for anything else).
pub async fn baseline_raw_handler(body: Bytes) -> (StatusCode, Json<Value>) {
    use base64::Engine as _;
    let event = serde_json::from_slice::<DaprRawIn>(&body)
        .ok()
        .and_then(|raw| {
            base64::engine::general_purpose::STANDARD
                .decode(raw.data_base64)
                .ok()
        })
        .and_then(|record| serde_json::from_slice::<CloudEventIn>(&record).ok());
    let status = match event {
        Some(ce) if ce.specversion == "1.0" => {
            std::hint::black_box(&ce);
            "SUCCESS"
        }
        _ => "DROP",
    };
    (StatusCode::OK, Json(json!({ "status": status })))
}

/// A router with only [`baseline_raw_handler`], on [`ROUTE_TOPIC`].
pub fn baseline_raw_router() -> Router {
    Router::new().route(ROUTE_TOPIC, post(baseline_raw_handler))
}

/// The median of `v` (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The number after `--name` in `args`, else `default`.
///
/// # Panics
///
/// When the value is no number.
pub fn flag<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answers_success(router: Router, req: Request<Body>) {
        let (status, body) = send(&router, req).await;
        assert_eq!(status, StatusCode::OK);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, json!({"status": "SUCCESS"}));
    }

    fn plain(route: &str) -> Request<Body> {
        delivery(route, cloud_event_body("e-1"))
    }

    fn raw(route: &str) -> Request<Body> {
        let record = cloud_event_body("e-1");
        raw_delivery(route, TOPIC, raw_payload_body(record.as_bytes(), TOPIC))
    }

    #[tokio::test]
    async fn every_benchmarked_router_answers_success() {
        answers_success(baseline_router(), plain(ROUTE)).await;
        answers_success(baseline_raw_router(), raw(ROUTE_TOPIC)).await;
        for n in [1, 10, 100] {
            answers_success(framework_router(n), plain(ROUTE)).await;
            answers_success(framework_router(n), raw(ROUTE_TOPIC)).await;
            let shared = framework_router_shared_topic(n);
            answers_success(shared.clone(), plain(ROUTE_SHARED_DISPATCH)).await;
            answers_success(shared, raw(ROUTE_SHARED_DISPATCH)).await;
        }
        answers_success(framework_router_idempotent(), plain(ROUTE_IDEMPOTENT)).await;
        answers_success(framework_router_idempotent(), raw(ROUTE_IDEMPOTENT_TOPIC)).await;
    }

    #[tokio::test]
    async fn idempotent_duplicate_is_skipped_but_acknowledged() {
        let router = framework_router_idempotent();
        answers_success(router.clone(), raw(ROUTE_IDEMPOTENT_TOPIC)).await;
        answers_success(router.clone(), raw(ROUTE_IDEMPOTENT_TOPIC)).await;
        // The second delivery was skipped, not run again: the router's own counters say so.
        let (status, metrics) = send(
            &router,
            Request::get("/metrics").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let metrics = String::from_utf8(metrics.to_vec()).unwrap();
        let count = |outcome: &str| {
            metrics
                .lines()
                .find(|l| {
                    l.starts_with("event_deliveries_total{")
                        && l.contains("on_task_event_idem")
                        && l.contains(&format!("outcome=\"{outcome}\""))
                })
                .and_then(|l| l.rsplit(' ').next())
                .unwrap_or_else(|| panic!("no {outcome} count in:\n{metrics}"))
                .to_owned()
        };
        assert_eq!(
            (count("success"), count("skipped")),
            ("1".to_owned(), "1".to_owned()),
            "{metrics}"
        );
    }

    /// The hand-written rawPayload handler reads the record it is given: a wrapper around a
    /// record that is no `TaskEvent` CloudEvent is dropped, not answered SUCCESS.
    #[tokio::test]
    async fn the_raw_form_is_unwrapped_not_skipped() {
        let record = json!({"specversion": "1.0", "id": "x", "type": "task.created",
            "source": "s", "data": {"not": "a task event"}})
        .to_string();
        let body = raw_payload_body(record.as_bytes(), TOPIC);
        let (_, answer) = send(
            &baseline_raw_router(),
            raw_delivery(ROUTE_TOPIC, TOPIC, body),
        )
        .await;
        assert_eq!(
            serde_json::from_slice::<Value>(&answer).unwrap(),
            json!({"status": "DROP"})
        );
    }

    #[test]
    fn the_body_decodes_as_the_baseline_reads_it() {
        let ce: CloudEventIn = serde_json::from_str(&cloud_event_body("e-2")).unwrap();
        assert_eq!(ce.data, task_event("e-2", 42, "user-7"));
    }

    #[test]
    fn the_wrapper_carries_the_record_byte_for_byte() {
        let record = cloud_event_body("e-3");
        let body = raw_payload_body(record.as_bytes(), TOPIC);
        assert!(body.starts_with(r#"{"data_base64":""#), "{body}");
        let unwrapped = event_runtime::__private::dapr_raw_record(body.as_bytes()).unwrap();
        assert_eq!(&unwrapped[..], record.as_bytes());
    }
}
