//! W3C trace context: what a handler publishes, its retries and its dead letters stay in the
//! incoming trace, and carry its `tracestate`. Without OpenTelemetry each has a fresh span id;
//! with the `otel` feature ([`otel`]), against the SDK's in-memory exporter, the delivery's span
//! is the child of the incoming context and what it publishes names it.
//!
//! `cargo test -p event-runtime --test it trace_context::` (add `--features otel` for [`otel`]).

#![allow(missing_docs)]

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, App, Event, OutgoingEvent, Publisher, TraceContext};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "vendor=abc";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "tc.ping", version = "1.0")]
pub struct Ping {
    pub event_id: String,
    pub user_id: String,
}

#[event_handler(topic = "tc-in")]
async fn tc_forward(e: Ping, trace: TraceContext, publisher: Publisher) -> anyhow::Result<()> {
    assert_eq!(trace.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(trace.tracestate.as_deref(), Some(TRACESTATE));
    let next = Ping {
        event_id: format!("next-{}", e.event_id),
        user_id: e.user_id,
    };
    publisher.publish("tc-out", &next).await?;
    Ok(())
}

#[event_handler(topic = "tc-fail", retry = [1], dlq = "tc-dlq")]
async fn tc_failing(_e: Ping) -> anyhow::Result<()> {
    anyhow::bail!("always fails")
}

/// The trace context each `tc-seen` delivery saw, by event id.
static SEEN: std::sync::Mutex<Vec<(String, TraceContext)>> = std::sync::Mutex::new(Vec::new());

#[event_handler(topic = "tc-seen")]
async fn tc_seen(e: Ping, trace: TraceContext) -> anyhow::Result<()> {
    SEEN.lock().unwrap().push((e.event_id, trace));
    Ok(())
}

/// What `tc_seen` saw of event `id`.
fn seen(id: &str) -> TraceContext {
    let seen = SEEN.lock().unwrap();
    let found = seen.iter().find(|(event_id, _)| event_id == id);
    found
        .unwrap_or_else(|| panic!("{id} not delivered"))
        .1
        .clone()
}

/// A `Ping` CloudEvent as a plain Kafka producer writes it, its envelope with a `traceparent`
/// or none, delivered as daprd does with `headers` (which carry the record's Kafka headers).
async fn deliver_with_headers(
    app: &TestApp,
    id: &str,
    envelope_traceparent: Option<&str>,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let mut record = serde_json::json!({"specversion": "1.0", "id": id, "type": "tc.ping",
        "source": "a-kafka-producer", "datacontenttype": "application/json",
        "data": {"event_id": id, "user_id": "u"}});
    if let Some(tp) = envelope_traceparent {
        record["traceparent"] = tp.into();
    }
    let mut req = axum::http::Request::post("/events/tc-seen/tc_seen")
        .header("content-type", "application/cloudevents+json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let (status, answer) = app
        .request(req.body(record.to_string().into()).unwrap())
        .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test(start_paused = true)]
async fn an_envelope_without_a_trace_continues_the_one_its_kafka_headers_carry() {
    let app = TestApp::start(app_of("tc_seen")).await;
    let headers = [("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)];
    let answer = deliver_with_headers(&app, "hdr-1", None, &headers).await;
    assert_eq!(answer["status"], "SUCCESS");
    let trace = seen("hdr-1");
    assert_eq!(trace.traceparent.as_deref(), Some(TRACEPARENT));
    assert_eq!(trace.tracestate.as_deref(), Some(TRACESTATE));
}

#[tokio::test(start_paused = true)]
async fn the_envelopes_own_trace_wins_over_the_headers() {
    let app = TestApp::start(app_of("tc_seen")).await;
    let own = "00-11111111111111111111111111111111-2222222222222222-01";
    let headers = [("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)];
    deliver_with_headers(&app, "hdr-2", Some(own), &headers).await;
    let trace = seen("hdr-2");
    assert_eq!(trace.traceparent.as_deref(), Some(own));
    assert_eq!(
        trace.tracestate, None,
        "the headers' tracestate is not the envelope's trace's"
    );
}

#[tokio::test(start_paused = true)]
async fn headers_that_name_no_trace_are_ignored() {
    let app = TestApp::start(app_of("tc_seen")).await;
    // daprd's traceparent when its tracing is off, and one that is not W3C at all.
    let zero = "00-00000000000000000000000000000000-0000000000000000-00";
    for (id, tp) in [("hdr-3", zero), ("hdr-4", "not-a-traceparent")] {
        let headers = [("traceparent", tp), ("tracestate", TRACESTATE)];
        deliver_with_headers(&app, id, None, &headers).await;
        assert_eq!(seen(id), TraceContext::default(), "{tp}");
    }
}

/// `Ping` sent as an upstream service would: with a `traceparent` and a `tracestate`.
fn traced_ping(topic: &str, id: &str) -> OutgoingEvent {
    let ping = Ping {
        event_id: id.into(),
        user_id: "u".into(),
    };
    let mut out = OutgoingEvent::from_event("kafka-pubsub", topic, "upstream", &ping).unwrap();
    out.traceparent = Some(TRACEPARENT.into());
    out.tracestate = Some(TRACESTATE.into());
    out
}

fn app_of(handler: &str) -> App {
    App::with_handlers(
        event_runtime::__private::registered()
            .into_iter()
            .filter(|h| h.name() == handler),
    )
    .unwrap()
}

/// The same trace as [`TRACEPARENT`], another span.
fn assert_continues(out: &OutgoingEvent) {
    let tp = out.traceparent.as_deref().expect("a traceparent");
    assert_eq!(tp.split('-').nth(1), TRACEPARENT.split('-').nth(1), "{tp}");
    assert_ne!(tp, TRACEPARENT);
    assert_eq!(out.tracestate.as_deref(), Some(TRACESTATE));
}

#[tokio::test(start_paused = true)]
async fn a_handlers_publish_continues_the_trace_with_its_tracestate() {
    let app = TestApp::start(app_of("tc_forward")).await;
    app.send(traced_ping("tc-in", "plain-1")).await.unwrap();
    app.wait_idle().await;
    assert_eq!(app.runs_of("tc_forward")[0].outcome, "success");
    assert_continues(&app.published_to("tc-out")[0]);
}

#[tokio::test(start_paused = true)]
async fn retries_and_dead_letters_continue_the_trace_with_its_tracestate() {
    let app = TestApp::start(app_of("tc_failing")).await;
    app.send(traced_ping("tc-fail", "plain-2")).await.unwrap();
    app.wait_idle().await;
    assert_eq!(app.runs_of("tc_failing").len(), 2);
    // The retry message carries the trace in its own envelope, beside the original record.
    let retries: Vec<OutgoingEvent> = app
        .broker()
        .published()
        .into_iter()
        .filter(|e| e.topic.contains(".retry."))
        .collect();
    assert_eq!(retries.len(), 1, "{retries:?}");
    let sealed: serde_json::Value =
        serde_json::from_slice(retries[0].record.as_ref().unwrap()).unwrap();
    let mut carried = retries[0].clone();
    carried.traceparent = sealed["traceparent"].as_str().map(str::to_owned);
    carried.tracestate = sealed["tracestate"].as_str().map(str::to_owned);
    assert_continues(&carried);
    assert_continues(&app.published_to("tc-dlq")[0]);
}

/// An outbox row written inside a delivery, with OpenTelemetry and the SQL outbox.
#[cfg(all(feature = "otel", feature = "sqlx"))]
#[derive(Clone)]
struct Outboxed {
    pool: sqlx::SqlitePool,
    outbox: event_runtime::Outbox,
}

#[cfg(all(feature = "otel", feature = "sqlx"))]
#[event_handler(topic = "tc-outbox")]
async fn tc_outboxing(
    e: Ping,
    event_runtime::State(db): event_runtime::State<Outboxed>,
) -> anyhow::Result<()> {
    let mut tx = db.pool.begin().await?;
    let next = Ping {
        event_id: format!("next-{}", e.event_id),
        user_id: e.user_id,
    };
    db.outbox.add(&mut *tx, "tc-outboxed", &next).await?;
    tx.commit().await?;
    Ok(())
}

/// With OpenTelemetry: spans recorded by the SDK's in-memory exporter.
#[cfg(feature = "otel")]
mod otel {

    use event_runtime::testing::TestApp;
    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

    use super::{app_of, traced_ping};

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT_ID: &str = "00f067aa0ba902b7";
    const TRACESTATE: &str = super::TRACESTATE;

    /// The process-wide subscriber's in-memory exporter (a scoped subscriber would miss spans
    /// whose callsites another test's thread registered first).
    fn exporter() -> &'static InMemorySpanExporter {
        &crate::support::subscriber().otel
    }

    /// The deliveries of `event_id` the exporter saw, in the order they ended.
    fn deliveries(event_id: &str) -> Vec<SpanData> {
        exporter()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| {
                s.name == "delivery"
                    && s.attributes
                        .iter()
                        .any(|kv| kv.key.as_str() == "event_id" && kv.value.as_str() == event_id)
            })
            .collect()
    }

    /// The trace id and the parent span id a `traceparent` names.
    fn ids(traceparent: &str) -> (TraceId, SpanId) {
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        (
            TraceId::from_hex(parts[1]).unwrap(),
            SpanId::from_hex(parts[2]).unwrap(),
        )
    }

    fn event_names(span: &SpanData) -> Vec<String> {
        span.events.iter().map(|e| e.name.to_string()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_delivery_span_continues_the_incoming_trace_and_names_itself_in_what_it_publishes()
    {
        exporter();
        let app = TestApp::start(app_of("tc_forward")).await;
        app.send(traced_ping("tc-in", "otel-1")).await.unwrap();
        app.wait_idle().await;

        let spans = deliveries("otel-1");
        assert_eq!(spans.len(), 1, "{spans:?}");
        let delivery = &spans[0];
        let trace_id = TraceId::from_hex(TRACE_ID).unwrap();
        // The child of the incoming context, which came from another process.
        assert_eq!(delivery.span_context.trace_id(), trace_id);
        assert_eq!(
            delivery.parent_span_id,
            SpanId::from_hex(PARENT_ID).unwrap()
        );
        assert!(delivery.parent_span_is_remote);
        assert_eq!(
            delivery.span_context.trace_state().header(),
            TRACESTATE,
            "the tracestate is the span's"
        );

        // What the handler published names the delivery's span, which the exporter has.
        let pong = app
            .published_to("tc-out")
            .into_iter()
            .find(|e| e.id == "next-otel-1")
            .unwrap();
        let (published_trace, published_parent) = ids(pong.traceparent.as_deref().unwrap());
        assert_eq!(published_trace, trace_id);
        assert_eq!(published_parent, delivery.span_context.span_id());
        assert_eq!(pong.tracestate.as_deref(), Some(TRACESTATE));
    }

    #[tokio::test(start_paused = true)]
    async fn a_delivery_whose_envelope_names_no_trace_is_the_child_of_its_headers_context() {
        exporter();
        let app = TestApp::start(app_of("tc_seen")).await;
        let headers = [
            ("traceparent", super::TRACEPARENT),
            ("tracestate", TRACESTATE),
        ];
        super::deliver_with_headers(&app, "otel-hdr", None, &headers).await;
        let spans = deliveries("otel-hdr");
        assert_eq!(spans.len(), 1, "{spans:?}");
        let delivery = &spans[0];
        assert_eq!(
            delivery.span_context.trace_id(),
            TraceId::from_hex(TRACE_ID).unwrap()
        );
        assert_eq!(
            delivery.parent_span_id,
            SpanId::from_hex(PARENT_ID).unwrap()
        );
        assert_eq!(delivery.span_context.trace_state().header(), TRACESTATE);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_and_dead_letters_are_span_events_and_carry_the_trace() {
        exporter();
        let app = TestApp::start(app_of("tc_failing")).await;
        app.send(traced_ping("tc-fail", "otel-2")).await.unwrap();
        app.wait_idle().await;

        // The first delivery, then the retry's: one trace, each the child of the span before it.
        let spans = deliveries("otel-2");
        assert_eq!(spans.len(), 2, "{spans:?}");
        let (first, retry) = (&spans[0], &spans[1]);
        let trace_id = TraceId::from_hex(TRACE_ID).unwrap();
        assert_eq!(first.parent_span_id, SpanId::from_hex(PARENT_ID).unwrap());
        assert_eq!(retry.span_context.trace_id(), trace_id);
        assert_eq!(retry.parent_span_id, first.span_context.span_id());
        assert_eq!(retry.span_context.trace_state().header(), TRACESTATE);

        assert!(
            event_names(first).iter().any(|e| e == "retry scheduled"),
            "{:?}",
            event_names(first)
        );
        assert!(
            event_names(retry)
                .iter()
                .any(|e| e == "event dead-lettered"),
            "{:?}",
            event_names(retry)
        );

        // The dead letter names the retry's span, and keeps the tracestate.
        let letter = app
            .published_to("tc-dlq")
            .into_iter()
            .find(|e| e.id.ends_with(":otel-2"))
            .unwrap();
        let (dlq_trace, dlq_parent) = ids(letter.traceparent.as_deref().unwrap());
        assert_eq!(dlq_trace, trace_id);
        assert_eq!(dlq_parent, retry.span_context.span_id());
        assert_eq!(letter.tracestate.as_deref(), Some(TRACESTATE));
    }

    /// An event added to the outbox inside a delivery goes out naming the delivery's span.
    #[cfg(feature = "sqlx")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_outbox_row_written_in_a_delivery_carries_its_span() {
        exporter();
        let options = sqlx::sqlite::SqliteConnectOptions::new().in_memory(true);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let outbox = event_runtime::Outbox::sqlite(pool.clone());
        outbox.migrate().await.unwrap();
        let app = app_of("tc_outboxing")
            .with_outbox(outbox.clone())
            .with_state(super::Outboxed { pool, outbox });
        let app = TestApp::start(app).await;
        app.send(traced_ping("tc-outbox", "otel-3")).await.unwrap();
        app.wait_idle().await;

        let spans = deliveries("otel-3");
        assert_eq!(spans.len(), 1, "{spans:?}");
        let out = app.published_to("tc-outboxed");
        assert_eq!(out.len(), 1, "the relay published the row: {out:?}");
        let (trace_id, parent) = ids(out[0].traceparent.as_deref().unwrap());
        assert_eq!(trace_id, TraceId::from_hex(TRACE_ID).unwrap());
        assert_eq!(parent, spans[0].span_context.span_id());
        assert_eq!(out[0].tracestate.as_deref(), Some(TRACESTATE));
    }
}
