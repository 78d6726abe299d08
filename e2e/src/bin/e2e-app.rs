//! The application under test of the real-stack suite: one module of `#[event_handler]`s per
//! scenario (`E2E_SCENARIO=s4` serves only `e2e_app::s4::*`), each run recorded as one JSON line
//! in `$LEDGER_FILE`, every request daprd makes recorded in `$REQUEST_LOG`.
//!
//! `e2e-app --topics` prints every topic the handlers subscribe to (`topic:partitions`), so the
//! script can create them before any daprd subscribes.

// Handlers take every extractor there is, as axum handlers may: that is what is under test.
#![allow(clippy::too_many_arguments)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use e2e::ledger::{now_ms, AppendFile};
use event_runtime::dlq::DeadLetter;
use event_runtime::{
    event_handler, Attempt, Event, EventId, EventType, PartitionKey, Permanent, Publisher,
    PubsubName, Source, State, Topic, TraceContext,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The work item every scenario publishes; behaviour knobs ride in the data.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(type = "e2e.work", version = "1.0")]
pub struct Work {
    /// Stable id (the CloudEvent id).
    pub event_id: String,
    /// Partition key.
    pub user_id: String,
    /// Position in the user's sequence.
    pub seq: u64,
    /// Runs with `attempt < fail_until_attempt` fail (transiently).
    #[serde(default)]
    pub fail_until_attempt: u32,
    /// Fail permanently (straight to the DLQ).
    #[serde(default)]
    pub permanent: bool,
    /// Sleep this long inside the handler (to be killed mid-run).
    #[serde(default)]
    pub sleep_ms: u64,
}

/// Seed-style events, tagged by `event_type` in the data (an internally tagged enum).
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[serde(tag = "event_type")]
#[event(version = "1.0")]
pub enum SeedChange {
    /// Created.
    #[serde(rename = "e2e.seed.created")]
    Created {
        /// Id.
        event_id: String,
        /// Owner.
        user_id: String,
        /// Task.
        task_id: i64,
    },
    /// Updated.
    #[serde(rename = "e2e.seed.updated")]
    Updated {
        /// Id.
        event_id: String,
        /// Owner.
        user_id: String,
        /// Task.
        task_id: i64,
    },
}

/// A seed-style event with its own struct and handler.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(type = "e2e.seed.completed", version = "1.0")]
pub struct SeedCompleted {
    /// Id.
    pub event_id: String,
    /// Owner.
    pub user_id: String,
    /// Task.
    pub task_id: i64,
}

/// What every handler shares: the ledger.
#[derive(Clone)]
pub struct Ledger {
    file: Arc<AppendFile>,
    replica: String,
}

/// The CloudEvent side of one run, from the extractors.
pub struct Meta {
    handler: &'static str,
    id: String,
    source: String,
    ty: String,
    topic: String,
    pubsub: String,
    attempt: u32,
    key: Option<String>,
    traceparent: Option<String>,
}

impl Ledger {
    fn line(&self, m: &Meta, outcome: &str, extra: Value) {
        let mut v = json!({
            "replica": self.replica, "handler": m.handler, "outcome": outcome,
            "ce_id": m.id, "ce_source": m.source, "ce_type": m.ty, "topic": m.topic,
            "pubsub": m.pubsub, "attempt": m.attempt, "partition_key": m.key,
            "traceparent": m.traceparent, "time_ms": now_ms(),
        });
        if let (Value::Object(a), Value::Object(b)) = (&mut v, extra) {
            a.extend(b);
        }
        self.file.append_json(&v);
    }

    async fn work(&self, m: Meta, w: Work) -> anyhow::Result<()> {
        let ids = json!({"event_id": w.event_id, "user": w.user_id, "seq": w.seq});
        if w.sleep_ms > 0 {
            self.line(&m, "start", ids.clone());
            tokio::time::sleep(Duration::from_millis(w.sleep_ms)).await;
        }
        if w.permanent {
            self.line(&m, "fail", ids);
            return Err(anyhow::Error::new(Permanent::new(format!(
                "planned permanent failure of {}",
                w.event_id
            ))));
        }
        if m.attempt < w.fail_until_attempt {
            self.line(&m, "fail", ids);
            anyhow::bail!("planned failure of {} at attempt {}", w.event_id, m.attempt);
        }
        self.line(&m, "ok", ids);
        Ok(())
    }

    fn dead_letter(&self, m: Meta, l: DeadLetter) {
        let failed: Vec<u32> = l.failures.iter().map(|f| f.attempt).collect();
        let failed_at: Vec<&str> = l.failures.iter().map(|f| f.at.as_str()).collect();
        self.line(
            &m,
            "dead_letter",
            json!({
                "event_id": l.event.id, "dl_handler": l.handler, "dl_attempts": l.attempts,
                "dl_failed_attempts": failed, "dl_failed_at": failed_at, "dl_permanent": l.permanent,
                "dl_reason": l.reason, "dl_topic": l.event.topic, "dl_partition_key": l.event.partition_key,
                "dl_type": l.event.ty, "dl_data": l.event.data,
                "dl_record": l.event.record, "dl_version": l.event.version,
                "dl_record_ref": l.event.record_ref,
                "dl_letter": serde_json::to_value(&l).unwrap_or(Value::Null),
            }),
        );
    }
}

/// Defines a handler of `Work` with the given attributes that records every run.
macro_rules! work_handler {
    ($name:ident, $($attr:tt)*) => {
        /// A recorded `Work` handler.
        #[event_handler($($attr)*)]
        pub async fn $name(
            w: Work,
            EventId(id): EventId,
            Source(source): Source,
            EventType(ty): EventType,
            Topic(topic): Topic,
            PubsubName(pubsub): PubsubName,
            Attempt(attempt): Attempt,
            PartitionKey(key): PartitionKey,
            tc: TraceContext,
            State(ledger): State<Ledger>,
        ) -> anyhow::Result<()> {
            let m = Meta { handler: stringify!($name), id, source, ty, topic, pubsub, attempt, key, traceparent: tc.traceparent };
            ledger.work(m, w).await
        }
    };
}

/// Defines a dead-letter consumer on `topic` that records every record.
macro_rules! dlq_handler {
    ($name:ident, $($attr:tt)*) => {
        /// Records dead letters.
        #[event_handler($($attr)*)]
        pub async fn $name(
            letter: DeadLetter,
            EventId(id): EventId,
            Source(source): Source,
            EventType(ty): EventType,
            Topic(topic): Topic,
            PubsubName(pubsub): PubsubName,
            Attempt(attempt): Attempt,
            PartitionKey(key): PartitionKey,
            State(ledger): State<Ledger>,
        ) {
            let m = Meta {
                handler: stringify!($name),
                id,
                source,
                ty,
                topic,
                pubsub,
                attempt,
                key,
                traceparent: None,
            };
            ledger.dead_letter(m, letter);
        }
    };
}

/// 1: subscription discovery (main, retry and DLQ topics).
pub mod s1 {
    use super::*;
    work_handler!(
        s1_delayed,
        topic = "s1-events",
        retry = [1, 2],
        dlq = "s1-dlq"
    );
    work_handler!(
        s1_inline,
        topic = "s1-inline",
        retry = [1],
        retry_mode = "inline",
        dlq = "s1-dlq"
    );
    dlq_handler!(s1_dead_letters, topic = "s1-dlq");
}

/// 2: framework publisher -> Kafka -> daprd -> handler.
pub mod s2 {
    use super::*;
    work_handler!(s2_work, topic = "s2-events", dlq = "s2-dlq", idempotent);
    dlq_handler!(s2_dead_letters, topic = "s2-dlq");
}

/// 3: seed-style publishers dispatched on `event_type`.
pub mod s3 {
    use super::*;

    /// The enum handler.
    #[event_handler(topic = "s3-events", dlq = "s3-dlq")]
    pub async fn s3_changes(
        e: SeedChange,
        EventId(id): EventId,
        Source(source): Source,
        EventType(ty): EventType,
        Topic(topic): Topic,
        PubsubName(pubsub): PubsubName,
        Attempt(attempt): Attempt,
        PartitionKey(key): PartitionKey,
        State(ledger): State<Ledger>,
    ) {
        let (kind, event_id, user, task) = match &e {
            SeedChange::Created {
                event_id,
                user_id,
                task_id,
            } => ("created", event_id, user_id, task_id),
            SeedChange::Updated {
                event_id,
                user_id,
                task_id,
            } => ("updated", event_id, user_id, task_id),
        };
        let m = Meta {
            handler: "s3_changes",
            id,
            source,
            ty,
            topic,
            pubsub,
            attempt,
            key,
            traceparent: None,
        };
        ledger.line(
            &m,
            "ok",
            json!({"kind": kind, "event_id": event_id, "user": user, "task_id": task}),
        );
    }

    /// The struct handler.
    #[event_handler(topic = "s3-events", dlq = "s3-dlq")]
    pub async fn s3_completed(
        e: SeedCompleted,
        EventId(id): EventId,
        Source(source): Source,
        EventType(ty): EventType,
        Topic(topic): Topic,
        PubsubName(pubsub): PubsubName,
        Attempt(attempt): Attempt,
        PartitionKey(key): PartitionKey,
        State(ledger): State<Ledger>,
    ) {
        let m = Meta {
            handler: "s3_completed",
            id,
            source,
            ty,
            topic,
            pubsub,
            attempt,
            key,
            traceparent: None,
        };
        ledger.line(&m, "ok", json!({"kind": "completed", "event_id": e.event_id, "user": e.user_id, "task_id": e.task_id}));
    }
    dlq_handler!(s3_dead_letters, topic = "s3-dlq");
}

/// 4: retry schedules, DLQ, restart, inline order.
pub mod s4 {
    use super::*;
    work_handler!(
        s4_delayed,
        topic = "s4-events",
        retry = [2, 3],
        dlq = "s4-dlq",
        idempotent
    );
    work_handler!(
        s4_restart,
        topic = "s4-restart",
        retry = [8],
        dlq = "s4-dlq",
        idempotent
    );
    work_handler!(
        s4_inline,
        topic = "s4-inline",
        retry = [1, 1],
        retry_mode = "inline",
        dlq = "s4-dlq"
    );
    dlq_handler!(s4_dead_letters, topic = "s4-dlq");
}

/// 5: exactly-once effect with duplicates and a SIGKILL mid-handler.
pub mod s5 {
    use super::*;
    work_handler!(
        s5_once,
        topic = "s5-events",
        retry = [1],
        dlq = "s5-dlq",
        idempotent
    );
    dlq_handler!(s5_dead_letters, topic = "s5-dlq");
}

/// 6: scale-out, two replicas in one consumer group.
pub mod s6 {
    use super::*;
    work_handler!(
        s6_work,
        topic = "s6-task-events",
        retry = [1],
        retry_mode = "inline",
        dlq = "s6-dlq",
        idempotent
    );
    dlq_handler!(s6_dead_letters, topic = "s6-dlq");
}

/// 7: APP_API_TOKEN / DAPR_API_TOKEN.
pub mod s7 {
    use super::*;
    work_handler!(
        s7_work,
        topic = "s7-events",
        retry = [1],
        dlq = "s7-dlq",
        idempotent
    );
    dlq_handler!(s7_dead_letters, topic = "s7-dlq");
}

/// 8: bulk subscribe.
pub mod s8 {
    use super::*;
    work_handler!(
        s8_bulk,
        topic = "s8-events",
        bulk(max_messages = 10, max_await_ms = 500),
        retry = [1],
        dlq = "s8-dlq"
    );
    dlq_handler!(s8_dead_letters, topic = "s8-dlq");
}

/// 13: a bulk subscription whose batches are larger than the 4 MiB body limit.
pub mod s13 {
    use super::*;
    work_handler!(
        s13_bulk,
        topic = "s13-events",
        bulk(max_messages = 100, max_await_ms = 2000),
        dlq = "s13-dlq",
        idempotent
    );
    dlq_handler!(s13_dead_letters, topic = "s13-dlq");
}

/// 14: a redeploy with another retry schedule (`E2E_RETRY`) strands no pending retry.
pub mod s14 {
    use super::*;
    work_handler!(
        s14_work,
        topic = "s14-events",
        retry = [30],
        dlq = "s14-dlq",
        idempotent
    );
    dlq_handler!(s14_dead_letters, topic = "s14-dlq");
}

/// 9: broker restart.
pub mod s9 {
    use super::*;
    work_handler!(
        s9_work,
        topic = "s9-events",
        retry = [1, 2],
        dlq = "s9-dlq",
        idempotent
    );
    dlq_handler!(s9_dead_letters, topic = "s9-dlq");
}

/// 11: the accounting scenario: two apps, each with its own consumer group, share one topic.
pub mod s11a {
    use super::*;
    work_handler!(
        s11a_work,
        topic = "s11-events",
        retry = [1, 2],
        dlq = "s11a-dlq",
        idempotent
    );
    dlq_handler!(s11a_dead_letters, topic = "s11a-dlq");
}

/// 11: the second app of the accounting scenario (run with two replicas).
pub mod s11b {
    use super::*;
    work_handler!(
        s11b_work,
        topic = "s11-events",
        retry = [1, 2],
        dlq = "s11b-dlq",
        idempotent
    );
    dlq_handler!(s11b_dead_letters, topic = "s11b-dlq");
}

/// 12: idempotency on each Dapr state store the README names: Redis (`s12a`), PostgreSQL
/// (`s12b`), in-memory (`s12c`).
macro_rules! s12_store {
    ($module:ident, $work:ident, $dead:ident, $topic:literal, $dlq:literal) => {
        /// One state store's app.
        pub mod $module {
            use super::*;
            work_handler!($work, topic = $topic, dlq = $dlq, idempotent);
            dlq_handler!($dead, topic = $dlq);
        }
    };
}
s12_store!(
    s12a,
    s12a_once,
    s12a_dead_letters,
    "s12a-events",
    "s12a-dlq"
);
s12_store!(
    s12b,
    s12b_once,
    s12b_dead_letters,
    "s12b-events",
    "s12b-dlq"
);
s12_store!(
    s12c,
    s12c_once,
    s12c_dead_letters,
    "s12c-events",
    "s12c-dlq"
);

/// 10: records from outside: bytes no Dapr publisher wrote, forged retry bookkeeping.
pub mod s10 {
    use super::*;
    work_handler!(
        s10_work,
        topic = "s10-events",
        retry = [1, 2],
        dlq = "s10-dlq"
    );
    dlq_handler!(s10_dead_letters, topic = "s10-dlq");
}

/// 15: Dapr's state outbox: `/control/outbox` saves state and publishes a `Work` item in one
/// transaction on an outbox store; each store's `outboxPublishTopic` is one handler's topic
/// (PostgreSQL's `s15-orders`, Redis's `s15-redis-orders`).
pub mod s15 {
    use super::*;
    work_handler!(s15_orders, topic = "s15-orders", dlq = "s15-dlq");
    work_handler!(
        s15_redis_orders,
        topic = "s15-redis-orders",
        dlq = "s15-dlq"
    );
    dlq_handler!(s15_dead_letters, topic = "s15-dlq");
}

/// 16: the SQL outbox while the sidecar is stopped: writes commit, their events go out later.
pub mod s16 {
    use super::*;
    work_handler!(s16_work, topic = "s16-events", dlq = "s16-dlq", idempotent);
    dlq_handler!(s16_dead_letters, topic = "s16-dlq");
}

/// 17: the SQL outbox across a SIGKILL between commit and publish.
pub mod s17 {
    use super::*;
    work_handler!(s17_work, topic = "s17-events", dlq = "s17-dlq", idempotent);
    dlq_handler!(s17_dead_letters, topic = "s17-dlq");
}

/// 18: two replicas relaying one PostgreSQL outbox.
pub mod s18 {
    use super::*;
    work_handler!(s18_work, topic = "s18-events", dlq = "s18-dlq", idempotent);
    dlq_handler!(s18_dead_letters, topic = "s18-dlq");
}

/// 23: per-key order across delayed retries, with two replicas and a SIGKILL.
pub mod s23 {
    use super::*;
    work_handler!(
        s23_work,
        topic = "s23-events",
        retry = [2],
        dlq = "s23-dlq",
        idempotent
    );
    dlq_handler!(s23_dead_letters, topic = "s23-dlq");
}

/// 24: scheduled events on Dapr's Jobs API (the scheduler service).
pub mod s24 {
    use super::*;
    work_handler!(
        s24_work,
        topic = "s24-events",
        retry = [1],
        dlq = "s24-dlq",
        idempotent
    );
    dlq_handler!(s24_dead_letters, topic = "s24-dlq");
}

/// 25: records of the CloudEvents Kafka binding (binary and structured mode).
pub mod s25 {
    use super::*;
    work_handler!(s25_work, topic = "s25-events", dlq = "s25-dlq", idempotent);
    dlq_handler!(s25_dead_letters, topic = "s25-dlq");
}

/// 31: the core guarantees with deliveries over gRPC streams (`EVENTS_TRANSPORT=grpc-stream`).
pub mod s31 {
    use super::*;
    work_handler!(
        s31_work,
        topic = "s31-events",
        retry = [1, 2],
        dlq = "s31-dlq",
        idempotent
    );
    dlq_handler!(s31_dead_letters, topic = "s31-dlq");
}

/// 30: a streaming subscription over gRPC (no app runs: the test is the subscriber).
pub mod s30 {
    use super::*;
    work_handler!(s30_work, topic = "s30-events");
}

/// 29: the core guarantees on Redis Streams (`pubsub.redis`) instead of Kafka: delayed retries,
/// the DLQ, idempotency, per-key order, a poison message written with `XADD`.
pub mod s29 {
    use super::*;
    work_handler!(
        s29_work,
        topic = "s29-events",
        retry = [1, 2],
        dlq = "s29-dlq",
        idempotent
    );
    dlq_handler!(s29_dead_letters, topic = "s29-dlq");
}

/// 28: events this app publishes in binary mode (`App::with_binary_mode`), read back by
/// CloudEvents' own SDK and by this handler.
pub mod s28 {
    use super::*;
    work_handler!(s28_work, topic = "s28-binary", dlq = "s28-dlq", idempotent);
}

/// 27: events written by CloudEvents' own Java SDK (its Kafka binding), in both modes.
pub mod s27 {
    use super::*;
    work_handler!(s27_work, topic = "s27-events", dlq = "s27-dlq", idempotent);
    dlq_handler!(s27_dead_letters, topic = "s27-dlq");
}

/// 26: least privilege: the app's generated scopes on its component; another app id is refused
/// its retry topic.
pub mod s26 {
    use super::*;
    work_handler!(s26_work, topic = "s26-events", retry = [1], idempotent);
}

/// 19: one trace from a publisher, through daprd, the handler (an OpenTelemetry span, feature
/// `otel`) and the handler's own publish, to the next handler.
pub mod s19 {
    use super::*;

    /// Records the context it received, then publishes `<id>-fwd` to `s19-out`.
    #[event_handler(topic = "s19-in", dlq = "s19-dlq")]
    pub async fn s19_forward(
        w: Work,
        EventId(id): EventId,
        tc: TraceContext,
        publisher: Publisher,
        State(ledger): State<Ledger>,
    ) -> anyhow::Result<()> {
        ledger.traced("s19_forward", &id, &tc);
        let next = Work {
            event_id: format!("{}-fwd", w.event_id),
            ..w
        };
        publisher.publish("s19-out", &next).await?;
        Ok(())
    }

    /// Records the context the forwarded event arrived with.
    #[event_handler(topic = "s19-out", dlq = "s19-dlq")]
    pub async fn s19_sink(
        _w: Work,
        EventId(id): EventId,
        tc: TraceContext,
        State(ledger): State<Ledger>,
    ) {
        ledger.traced("s19_sink", &id, &tc);
    }
}

/// 21: an idempotent handler given an event whose CloudEvent id is 10 KB: its claim key is
/// bounded, so the state store takes it, and the event is applied once.
pub mod s21 {
    use super::*;
    work_handler!(
        s21_once,
        topic = "s21-events",
        retry = [1],
        dlq = "s21-dlq",
        idempotent
    );
    dlq_handler!(s21_dead_letters, topic = "s21-dlq");
}

/// 22: events near Kafka's 1 MiB message limit failing for good, and failing into a delayed
/// retry: the record is kept in the state store and the letter points at it.
pub mod s22 {
    use super::*;
    work_handler!(s22_big, topic = "s22-events", retry = [1], dlq = "s22-dlq");
    dlq_handler!(s22_dead_letters, topic = "s22-dlq");
}

/// 20: concurrency lanes and a delivery layer, with daprd delivering from every partition at
/// once.
pub mod s20 {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Runs of `s20_lanes` under way.
    static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

    /// At most two runs at a time, in lanes chosen by the partition key. Records how many runs
    /// were under way when it started (their largest value is the peak), then holds the lane
    /// for `sleep_ms`.
    #[event_handler(topic = "s20-events", concurrency = 2, dlq = "s20-dlq")]
    pub async fn s20_lanes(w: Work, EventId(id): EventId, State(ledger): State<Ledger>) {
        let in_flight = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(Duration::from_millis(w.sleep_ms)).await;
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        ledger.file.append_json(&json!({
            "replica": ledger.replica, "handler": "s20_lanes", "outcome": "ok", "event_id": id,
            "user": w.user_id, "seq": w.seq, "in_flight": in_flight, "time_ms": now_ms(),
        }));
    }

    dlq_handler!(s20_dead_letters, topic = "s20-dlq");

    /// The app-wide delivery layer of scenario 20: records every delivery it sees, and answers
    /// DROP itself for the partition key `u-blocked`, so the handler never runs for it.
    pub fn gate(ledger: Ledger) -> impl event_runtime::DeliveryLayer {
        tower::layer::layer_fn(move |inner: event_runtime::DeliveryService| {
            let ledger = ledger.clone();
            tower::service_fn(move |req: event_runtime::DeliveryRequest| {
                let (ledger, inner) = (ledger.clone(), inner.clone());
                async move {
                    let blocked = req.partition_key() == Some("u-blocked");
                    ledger.file.append_json(&json!({
                        "replica": ledger.replica, "handler": "s20_gate",
                        "outcome": if blocked { "dropped" } else { "passed" },
                        "event_id": req.event_id(), "to": req.handler(), "time_ms": now_ms(),
                    }));
                    if blocked {
                        return Ok(event_runtime::Status::Drop);
                    }
                    tower::ServiceExt::oneshot(inner, req).await
                }
            })
        })
    }
}

impl Ledger {
    /// One `ok` line with the trace context a handler received.
    fn traced(&self, handler: &str, id: &str, tc: &TraceContext) {
        self.file.append_json(&json!({
            "replica": self.replica, "handler": handler, "outcome": "ok", "event_id": id,
            "traceparent": tc.traceparent, "tracestate": tc.tracestate, "time_ms": now_ms(),
        }));
    }
}

/// Every span the app finished, for `GET /control/spans` (scenario 19 only).
#[derive(Clone, Default)]
struct Spans(Option<opentelemetry_sdk::trace::InMemorySpanExporter>);

/// `GET /control/spans`: each finished span's name, ids, attributes and event names.
async fn control_spans(AxState(spans): AxState<Spans>) -> Json<Value> {
    let finished = spans
        .0
        .map(|e| e.get_finished_spans().unwrap_or_default())
        .unwrap_or_default();
    Json(Value::Array(
        finished
            .iter()
            .map(|s| {
                let attributes: serde_json::Map<String, Value> = s
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.to_string(), json!(kv.value.to_string())))
                    .collect();
                json!({
                    "name": s.name, "trace_id": s.span_context.trace_id().to_string(),
                    "span_id": s.span_context.span_id().to_string(),
                    "parent_span_id": s.parent_span_id.to_string(),
                    "tracestate": s.span_context.trace_state().header(),
                    "attributes": attributes,
                    "events": s.events.iter().map(|e| e.name.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect(),
    ))
}

/// The log to stderr and, for scenario 19, OpenTelemetry spans into an in-memory exporter.
fn init_tracing(scenario: &str) -> Spans {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let log = tracing_subscriber::fmt::layer().with_ansi(false);
    let registry = tracing_subscriber::registry().with(filter).with(log);
    if scenario != "s19" {
        registry.init();
        return Spans(None);
    }
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = provider.tracer("e2e-app");
    // The provider lives as long as the process.
    std::mem::forget(provider);
    registry
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .init();
    Spans(Some(exporter))
}

/// The app's own database with the framework's SQL outbox (`E2E_OUTBOX_DB`): a table of
/// changes, each written with its event in one transaction by `POST /control/outbox-write`.
struct OutboxDb {
    pool: OutboxPool,
    outbox: event_runtime::Outbox,
    replica: String,
}

enum OutboxPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

const CHANGES_TABLE: &str = "CREATE TABLE IF NOT EXISTS e2e_changes (event_id TEXT PRIMARY KEY, \
     user_id TEXT NOT NULL, seq BIGINT NOT NULL, replica TEXT NOT NULL)";

impl OutboxDb {
    /// Opens `url` (`sqlite://FILE` or `postgres://.../DB`, the database created when missing),
    /// migrates the outbox and the changes table. `E2E_OUTBOX_LEASE_MS` sets the bucket lease.
    async fn open(url: &str, replica: &str) -> anyhow::Result<OutboxDb> {
        use std::str::FromStr as _;
        let lease = std::env::var("E2E_OUTBOX_LEASE_MS")
            .ok()
            .map(|v| v.parse::<u64>())
            .transpose()?
            .unwrap_or(4_000);
        let (pool, outbox) = if url.starts_with("sqlite:") {
            let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10));
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts)
                .await?;
            sqlx::query(CHANGES_TABLE).execute(&pool).await?;
            let outbox = event_runtime::Outbox::sqlite(pool.clone());
            (OutboxPool::Sqlite(pool), outbox)
        } else {
            let opts = sqlx::postgres::PgConnectOptions::from_str(url)?;
            let db = url
                .rsplit('/')
                .next()
                .and_then(|d| d.split('?').next())
                .unwrap_or_default()
                .to_owned();
            anyhow::ensure!(
                !db.is_empty() && db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "E2E_OUTBOX_DB names no plain database: {url}"
            );
            // The scenario's own database, created by the first replica.
            let admin = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect_with(opts.clone().database("postgres"))
                .await?;
            if let Err(e) = sqlx::query(&format!("CREATE DATABASE {db}"))
                .execute(&admin)
                .await
            {
                let code = e
                    .as_database_error()
                    .and_then(|d| d.code().map(|c| c.into_owned()));
                // 42P04: exists already; 23505: another replica created it at the same time.
                if !matches!(code.as_deref(), Some("42P04") | Some("23505")) {
                    return Err(e.into());
                }
            }
            admin.close().await;
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect_with(opts)
                .await?;
            sqlx::query(CHANGES_TABLE).execute(&pool).await?;
            let outbox = event_runtime::Outbox::postgres(pool.clone());
            (OutboxPool::Postgres(pool), outbox)
        };
        let outbox = outbox
            .with_lease(Duration::from_millis(lease))
            .with_poll_interval(Duration::from_millis(250));
        outbox.migrate().await?;
        Ok(OutboxDb {
            pool,
            outbox,
            replica: replica.to_owned(),
        })
    }

    /// One change and its event, in one transaction.
    async fn write(&self, topic: &str, w: &Work) -> anyhow::Result<()> {
        const INSERT: &str =
            "INSERT INTO e2e_changes (event_id, user_id, seq, replica) VALUES ($1, $2, $3, $4)";
        match &self.pool {
            OutboxPool::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(INSERT)
                    .bind(&w.event_id)
                    .bind(&w.user_id)
                    .bind(w.seq as i64)
                    .bind(&self.replica)
                    .execute(&mut *tx)
                    .await?;
                self.outbox.add(&mut *tx, topic, w).await?;
                self.outbox.commit(tx).await?;
            }
            OutboxPool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(INSERT)
                    .bind(&w.event_id)
                    .bind(&w.user_id)
                    .bind(w.seq as i64)
                    .bind(&self.replica)
                    .execute(&mut *tx)
                    .await?;
                self.outbox.add(&mut *tx, topic, w).await?;
                self.outbox.commit(tx).await?;
            }
        }
        Ok(())
    }

    async fn changes(&self) -> anyhow::Result<i64> {
        const COUNT: &str = "SELECT COUNT(*) FROM e2e_changes";
        Ok(match &self.pool {
            OutboxPool::Sqlite(pool) => sqlx::query_scalar(COUNT).fetch_one(pool).await?,
            OutboxPool::Postgres(pool) => sqlx::query_scalar(COUNT).fetch_one(pool).await?,
        })
    }
}

/// `POST /control/outbox-write`: each `Work` item written, in the given order, as one change
/// row plus its event in the outbox, one transaction each. Stops at the first failure.
#[derive(Deserialize)]
struct OutboxWriteRequest {
    topic: String,
    events: Vec<Work>,
    /// A pause after each write (to keep writing while something else happens).
    #[serde(default)]
    pace_ms: u64,
}

async fn control_outbox_write(
    AxState(db): AxState<Option<Arc<OutboxDb>>>,
    Json(req): Json<OutboxWriteRequest>,
) -> Json<Value> {
    let Some(db) = db else {
        return Json(json!({"written": 0, "failed": [{"error": "E2E_OUTBOX_DB is not set"}]}));
    };
    let mut written = 0u64;
    for w in &req.events {
        if let Err(e) = db.write(&req.topic, w).await {
            return Json(json!({
                "written": written,
                "failed": [{"event_id": w.event_id, "error": format!("{e:#}")}],
            }));
        }
        written += 1;
        if req.pace_ms > 0 {
            tokio::time::sleep(Duration::from_millis(req.pace_ms)).await;
        }
    }
    Json(json!({"written": written, "failed": []}))
}

/// `GET /control/outbox-stats`: the outbox's pending and sent rows, and the changes written.
async fn control_outbox_stats(AxState(db): AxState<Option<Arc<OutboxDb>>>) -> Response {
    let Some(db) = db else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "E2E_OUTBOX_DB is not set",
        )
            .into_response();
    };
    match (db.outbox.stats().await, db.changes().await) {
        (Ok(st), Ok(changes)) => {
            Json(json!({"pending": st.pending, "sent": st.sent, "changes": changes}))
                .into_response()
        }
        (Err(e), _) => {
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
        }
        (_, Err(e)) => (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("{e:#}"),
        )
            .into_response(),
    }
}

/// The topics the outbox stores of scenario s15 publish to.
const S15_OUTBOX_TOPICS: [&str; 2] = ["s15-orders", "s15-redis-orders"];

/// `POST /control/outbox`: one state transaction with the framework's sidecar client: `value`
/// upserted under `key` (only if its ETag is still `etag`, when given), `event` published by the
/// outbox in its place. Answers `{"ok": true}` or daprd's refusal.
#[derive(Deserialize)]
struct OutboxRequest {
    store: String,
    key: String,
    value: Value,
    event: Work,
    #[serde(default)]
    etag: Option<String>,
}

async fn control_outbox(Json(req): Json<OutboxRequest>) -> Json<Value> {
    use event_runtime::dapr::{DaprClient, StateTransaction};
    let dapr = match event_runtime::config::Config::from_env().map(|c| DaprClient::from_config(&c))
    {
        Ok(d) => d,
        Err(e) => return Json(json!({"ok": false, "error": e.to_string()})),
    };
    let tx = match &req.etag {
        Some(etag) => StateTransaction::new().upsert_if_match(&req.key, &req.value, etag),
        None => StateTransaction::new().upsert(&req.key, &req.value),
    }
    .publish(&req.event);
    Json(
        match dapr.execute_state_transaction(&req.store, &tx).await {
            Ok(()) => json!({"ok": true}),
            Err(e) => json!({"ok": false, "error_code": e.error_code(), "error": e.to_string()}),
        },
    )
}

/// `POST /control/replay`: replays the given dead letters with the app's publisher.
async fn control_replay(
    AxState(publisher): AxState<Publisher>,
    Json(letters): Json<Vec<DeadLetter>>,
) -> Json<event_runtime::dlq::ReplayReport> {
    let all = event_runtime::dlq::ReplayFilter::default();
    Json(event_runtime::dlq::replay(&publisher, &letters, &all).await)
}

/// `POST /control/publish`: publish `Work` items with the framework's publisher, each user's
/// items in order (users in parallel); a failed publish is retried for up to `retry_for_ms`.
#[derive(Deserialize)]
struct PublishRequest {
    topic: String,
    events: Vec<Work>,
    #[serde(default)]
    retry_for_ms: u64,
    #[serde(default = "default_parallel")]
    parallel: usize,
}

fn default_parallel() -> usize {
    16
}

/// `POST /control/schedule`: schedules `event` on `topic`, once `after_ms` from now (as
/// `Publisher::publish_at`, or as the job `name` when given), or `every_ms` for `times` firings.
#[derive(Deserialize)]
struct ScheduleRequest {
    topic: String,
    event: Work,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    after_ms: Option<u64>,
    #[serde(default)]
    every_ms: Option<u64>,
    #[serde(default)]
    times: Option<u32>,
}

async fn control_schedule(
    AxState(publisher): AxState<Publisher>,
    Json(req): Json<ScheduleRequest>,
) -> Response {
    let scheduled = match (req.every_ms, req.after_ms, req.name) {
        (Some(every), _, Some(name)) => {
            let mut schedule = event_runtime::Schedule::every(Duration::from_millis(every));
            if let Some(n) = req.times {
                schedule = schedule.times(n);
            }
            let done = publisher
                .schedule(&name, &req.topic, &req.event, schedule)
                .await;
            done.map(|()| name)
        }
        (None, Some(after), Some(name)) => {
            let once = event_runtime::Schedule::after(Duration::from_millis(after));
            let done = publisher
                .schedule(&name, &req.topic, &req.event, once)
                .await;
            done.map(|()| name)
        }
        (None, Some(after), None) => {
            let when = std::time::SystemTime::now() + Duration::from_millis(after);
            publisher.publish_at(&req.topic, &req.event, when).await
        }
        _ => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                "after_ms, or every_ms with a name",
            )
                .into_response()
        }
    };
    match scheduled {
        Ok(job) => Json(json!({"job": job})).into_response(),
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// `POST /control/cancel`: cancels the job `name`.
async fn control_cancel(
    AxState(publisher): AxState<Publisher>,
    Json(req): Json<Value>,
) -> Response {
    let name = req["name"].as_str().unwrap_or_default();
    match publisher.cancel_schedule(name).await {
        Ok(()) => Json(json!({"cancelled": name})).into_response(),
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

async fn control_publish(
    AxState(publisher): AxState<Publisher>,
    Json(req): Json<PublishRequest>,
) -> Response {
    let mut by_user: Vec<(String, Vec<Work>)> = Vec::new();
    for w in req.events {
        match by_user.iter_mut().find(|(u, _)| *u == w.user_id) {
            Some((_, v)) => v.push(w),
            None => by_user.push((w.user_id.clone(), vec![w])),
        }
    }
    let topic = Arc::new(req.topic);
    let sem = Arc::new(tokio::sync::Semaphore::new(req.parallel.max(1)));
    let mut tasks = Vec::new();
    for (_, items) in by_user {
        let (publisher, topic, sem) = (publisher.clone(), topic.clone(), sem.clone());
        let retry_for = Duration::from_millis(req.retry_for_ms);
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await;
            let (mut ok, mut failed, mut retried) = (0u64, Vec::new(), 0u64);
            for w in items {
                let deadline = tokio::time::Instant::now() + retry_for;
                loop {
                    match publisher.publish(&topic, &w).await {
                        Ok(()) => {
                            ok += 1;
                            break;
                        }
                        Err(e) if tokio::time::Instant::now() < deadline => {
                            retried += 1;
                            tracing::warn!(error = %e, event_id = %w.event_id, "publish failed, retrying");
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        Err(e) => {
                            failed.push(json!({"event_id": w.event_id, "error": e.to_string()}));
                            break;
                        }
                    }
                }
                if !failed.is_empty() {
                    break; // keep the user's order: nothing after a lost item
                }
            }
            (ok, failed, retried)
        }));
    }
    let (mut ok, mut failed, mut retried) = (0u64, Vec::new(), 0u64);
    for t in tasks {
        match t.await {
            Ok((o, f, r)) => {
                ok += o;
                failed.extend(f);
                retried += r;
            }
            Err(e) => failed.push(json!({"error": e.to_string()})),
        }
    }
    Json(json!({"published": ok, "failed": failed, "retried": retried})).into_response()
}

/// Records every request daprd makes (path, CloudEvent ids, bulk entries, the answer).
async fn request_log(AxState(log): AxState<Arc<RequestLog>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().to_string();
    if path.starts_with("/control")
        || path == "/healthz"
        || req.headers().contains_key(e2e::HARNESS_HEADER)
    {
        return next.run(req).await;
    }
    let had_token = req.headers().contains_key("dapr-api-token");
    let key = req
        .headers()
        .get("__key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let partition = req
        .headers()
        .get("__partition")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let event_version = req
        .headers()
        .get("eventversion")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let body_json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    // Every subscription is rawPayload: the event is the record inside daprd's wrapper.
    let raw = event_runtime::__private::dapr_raw_record(&bytes);
    let event_json = raw.as_deref().map_or(body_json.clone(), record_json);
    let t_start = now_ms();
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    let status = resp.status().as_u16();
    let (rparts, rbody) = resp.into_parts();
    let rbytes: Bytes = axum::body::to_bytes(rbody, usize::MAX)
        .await
        .unwrap_or_default();
    let answer: Value = serde_json::from_slice(&rbytes).unwrap_or(Value::Null);
    let mut rec = json!({
        "replica": log.replica, "method": method, "path": path, "http_status": status,
        "t_start": t_start, "t_end": now_ms(), "had_token": had_token, "key": key,
        "partition": partition, "content_type": content_type, "answer": answer,
        "eventversion": event_version,
    });
    if body_json.get("type").and_then(Value::as_str) == Some("com.dapr.event.sent.bulk") {
        let entries: Vec<Value> = body_json["entries"]
            .as_array()
            .map(|es| {
                es.iter()
                    .map(|e| {
                        let event = match e["event"].as_str() {
                            Some(b64) => record_json(&base64_decode(b64)),
                            None => e["event"].clone(),
                        };
                        json!({"entryId": e["entryId"], "ce_id": event["id"], "event_id": event["data"]["event_id"]})
                    })
                    .collect()
            })
            .unwrap_or_default();
        rec["bulk_entries"] = Value::Array(entries);
    } else if event_json.is_object() {
        rec["raw"] = Value::Bool(raw.is_some());
        rec["ce_id"] = event_json["id"].clone();
        rec["ce_type"] = event_json["type"].clone();
        rec["datacontenttype"] = event_json["datacontenttype"].clone();
        rec["event_id"] = event_json["data"]["event_id"].clone();
        rec["data_is_string"] = Value::Bool(event_json["data"].is_string());
        // Every attribute but the data, as it arrived.
        let mut attributes = event_json.clone();
        if let Some(a) = attributes.as_object_mut() {
            a.remove("data");
            a.remove("data_base64");
        }
        rec["attributes"] = attributes;
    }
    log.file.append_json(&rec);
    Response::from_parts(rparts, Body::from(rbytes))
}

/// A record as JSON, for the request log: a retry message is read down to the record it
/// carries (the log looks, it does not verify).
fn record_json(record: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(record).unwrap_or(Value::Null);
    match v
        .get("evrapp")
        .and(v.get("data_base64"))
        .and_then(Value::as_str)
    {
        Some(b64) => serde_json::from_slice(&base64_decode(b64)).unwrap_or(Value::Null),
        None => v,
    }
}

fn base64_decode(b64: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default()
}

struct RequestLog {
    file: AppendFile,
    replica: String,
}

/// The topics of every scenario, from the same declarations that drive `App::manifests()`:
/// each scenario app declares its main topics as `TopicSpec`s (12 partitions for the scale-out
/// scenario, as the reference's `task-events`, 3 elsewhere) and `App::kafka_topics()` adds their
/// retry and dead-letter topics.
/// `--scopes`: the scopes of scenario `E2E_SCENARIO`'s app (`APP_ID`, `EVENTS_DLQ`) on each
/// component, as JSON: `[{"pubsub": .., "metadata": [[name, value], ..]}]`.
fn scopes() -> anyhow::Result<()> {
    let scenario = std::env::var("E2E_SCENARIO")?;
    let suffix = format!("::{scenario}");
    let app = event_runtime::App::with_handlers(
        event_runtime::__private::registered()
            .into_iter()
            .filter(|h| h.module().ends_with(&suffix)),
    )?;
    let out: Vec<serde_json::Value> = app
        .scopes()
        .into_iter()
        .map(|s| {
            let mut metadata = Vec::new();
            s.merge_into(&mut metadata);
            serde_json::json!({"pubsub": s.pubsub, "metadata": metadata})
        })
        .collect();
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

fn topics() -> anyhow::Result<()> {
    let mut scenarios: Vec<&'static str> = event_runtime::__private::registered()
        .iter()
        .map(|h| h.module())
        .collect();
    scenarios.dedup();
    let mut all: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    for module in scenarios {
        let handlers = event_runtime::__private::registered()
            .into_iter()
            .filter(|h| h.module() == module);
        let scenario = module.rsplit("::").next().unwrap_or(module);
        let app = event_runtime::App::with_handlers(handlers)?
            .with_app_id(&e2e::scenario_app_id(scenario));
        let partitions = if module.ends_with("::s6") || module.contains("::s11") {
            12
        } else {
            3
        };
        let specs: Vec<event_runtime::TopicSpec> = app
            .handlers()
            .iter()
            .map(|h| event_runtime::TopicSpec::new(h.topic()).partitions(partitions))
            .collect();
        for t in app.with_topics(specs).kafka_topics() {
            let p = all.entry(t.name).or_insert(t.partitions);
            *p = (*p).max(t.partitions);
        }
        if scenario == "s15" {
            // daprd's own outbox topics: one partition each, so their messages are checked in order.
            for topic in S15_OUTBOX_TOPICS {
                let app_id = e2e::scenario_app_id(scenario);
                all.insert(
                    // daprd without NAMESPACE is in namespace `default`.
                    event_runtime::dapr::outbox_internal_topic("default", &app_id, topic),
                    1,
                );
            }
        }
    }
    for (t, p) in all {
        println!("{t}:{p}");
    }
    Ok(())
}

/// `E2E_RETRY=5,10`: every handler of the scenario retries after these delays instead of its
/// own (a redeploy with another schedule).
fn retry_override() -> anyhow::Result<Option<&'static [u64]>> {
    let Ok(spec) = std::env::var("E2E_RETRY") else {
        return Ok(None);
    };
    let delays: Vec<u64> = spec
        .split(',')
        .map(|d| d.trim().parse())
        .collect::<Result<_, _>>()?;
    Ok(Some(Box::leak(delays.into_boxed_slice())))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--topics") {
        return topics();
    }
    if std::env::args().any(|a| a == "--scopes") {
        return scopes();
    }
    let scenario =
        std::env::var("E2E_SCENARIO").map_err(|_| anyhow::anyhow!("E2E_SCENARIO is not set"))?;
    let spans = init_tracing(&scenario);
    let replica = std::env::var("REPLICA").unwrap_or_else(|_| "r1".into());
    let ledger_path =
        std::env::var("LEDGER_FILE").map_err(|_| anyhow::anyhow!("LEDGER_FILE is not set"))?;
    let request_path =
        std::env::var("REQUEST_LOG").map_err(|_| anyhow::anyhow!("REQUEST_LOG is not set"))?;
    let port: u16 = std::env::var("APP_PORT")?.parse()?;
    let suffix = format!("::{scenario}");
    let schedule = retry_override()?;
    let app = event_runtime::App::with_handlers(
        event_runtime::__private::registered()
            .into_iter()
            .filter(|h| h.module().ends_with(&suffix))
            .map(|h| match &schedule {
                // A redeploy with another schedule: the same handler, other delays.
                Some(delays) => &*Box::leak(Box::new(h.retry(delays))),
                None => h,
            }),
    )?;
    anyhow::ensure!(
        !app.handlers().is_empty(),
        "no handlers for scenario {scenario}"
    );
    let ledger = Ledger {
        file: Arc::new(AppendFile::open(&ledger_path)?),
        replica: replica.clone(),
    };
    let app = match scenario.as_str() {
        "s20" => app.delivery_layer(s20::gate(ledger.clone())),
        "s28" => app.with_binary_mode("s28-binary"),
        _ => app,
    };
    let app = app.with_state(ledger);
    // `E2E_OUTBOX_DB`: the app's database with the SQL outbox, relayed while the app serves
    // unless `E2E_OUTBOX_RELAY=off` (rows are committed, and nothing publishes them).
    let outbox_db = match std::env::var("E2E_OUTBOX_DB") {
        Ok(url) if !url.is_empty() => Some(Arc::new(OutboxDb::open(&url, &replica).await?)),
        _ => None,
    };
    let relay_on = std::env::var("E2E_OUTBOX_RELAY").map_or(true, |v| v != "off");
    let app = match &outbox_db {
        Some(db) if relay_on => app.with_outbox(db.outbox.clone()),
        _ => app,
    };
    let relay = match &outbox_db {
        Some(db) if relay_on => Some(db.outbox.start_relay(app.publisher())),
        _ => None,
    };
    tracing::info!(
        outbox = outbox_db.is_some(),
        relay = relay.is_some(),
        "e2e app outbox"
    );
    tracing::info!(scenario, replica, mode = ?app.mode(), subscriptions = %serde_json::to_string(&app.subscriptions())?, "e2e app");
    let log = Arc::new(RequestLog {
        file: AppendFile::open(&request_path)?,
        replica,
    });
    let control = Router::new()
        .route("/control/publish", post(control_publish))
        .route("/control/replay", post(control_replay))
        .route("/control/schedule", post(control_schedule))
        .route("/control/cancel", post(control_cancel))
        .with_state(app.publisher())
        .route("/control/outbox", post(control_outbox))
        .merge(
            Router::new()
                .route("/control/spans", axum::routing::get(control_spans))
                .with_state(spans),
        )
        .merge(
            Router::new()
                .route("/control/outbox-write", post(control_outbox_write))
                .route(
                    "/control/outbox-stats",
                    axum::routing::get(control_outbox_stats),
                )
                .with_state(outbox_db.clone()),
        );
    // `EVENTS_TRANSPORT=grpc-stream`: the deliveries come over streams the app opens.
    let streams = app.start_streams();
    let router = app
        .router()
        .merge(control)
        .layer(axum::middleware::from_fn_with_state(log, request_log));
    let shutdown = app.shutdown_handle();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(%port, "listening on 127.0.0.1");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            term.recv().await;
            tracing::info!("SIGTERM: shutting down");
            shutdown.shutdown();
        })
        .await?;
    if let Some(relay) = relay {
        relay.stop().await;
    }
    if let Some(streams) = streams {
        streams.stop().await;
    }
    Ok(())
}
