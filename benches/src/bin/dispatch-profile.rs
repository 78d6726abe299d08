//! A fixed number of deliveries through one router, for a profiler (the criterion harness
//! would profile criterion too):
//!
//! ```text
//! dispatch-profile MODE [ITERATIONS]
//!   MODE: baseline | framework | framework-10 | framework-100 | idempotent
//!         | topic-1 | topic-10 | topic-100   (the topic route, N handlers on one topic)
//!         | ordered | unordered   (delayed retries that keep per-key order or not; no key
//!           parked, each record the next offset of its partition)
//!   each in the form daprd sends now (rawPayload wrapper, topic route, Kafka headers);
//!   prefixed `ce-` (ce-baseline, ce-framework, ...) in the form it sent before (the plain
//!   CloudEvent, on the handler's own route).
//!   `setup` (or `ce-setup`) only builds each request and drops it: what every other mode
//!   counts besides the work behind the route.
//! valgrind --tool=callgrind target/bench/release/dispatch-profile framework 20000
//! ```

use axum::body::Bytes;
use axum::http::Request;
use axum::Router;
use event_bench::{
    app_with, baseline_raw_router, baseline_router, cloud_event_body, delivery, framework_router,
    framework_router_idempotent, framework_router_shared_topic, raw_delivery_at, raw_payload_body,
    ROUTE, ROUTE_IDEMPOTENT, ROUTE_IDEMPOTENT_TOPIC, ROUTE_SHARED_DISPATCH, ROUTE_TOPIC, TOPIC,
};
use tower::ServiceExt as _;

/// Idempotent bodies (a new event id each) are rendered before the loop, at least this many (the
/// longer of `profile.sh`'s two runs), so that the two runs it subtracts render the same number
/// and the difference counts deliveries only.
const IDEMPOTENT_BODIES: u64 = 11_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let arg = args.next().unwrap_or_default();
    let iterations: u64 = args
        .next()
        .map(|n| n.parse().expect("ITERATIONS is a number"))
        .unwrap_or(20_000);
    let (raw, mode) = match arg.strip_prefix("ce-") {
        Some(mode) => (false, mode),
        None => (true, arg.as_str()),
    };
    let count = |prefix: &str| mode.strip_prefix(prefix)?.parse::<usize>().ok();
    // The measured handler's route: its topic's default route for the wrapper, its own route for
    // the plain CloudEvent.
    let measured = if raw { ROUTE_TOPIC } else { ROUTE };
    // The router, the route the form reaches it on, and the topic the record was read from.
    let (router, route, topic): (Option<Router>, &str, &str) = match mode {
        "setup" => (None, measured, TOPIC),
        "baseline" if raw => (Some(baseline_raw_router()), ROUTE_TOPIC, TOPIC),
        "baseline" => (Some(baseline_router()), ROUTE, TOPIC),
        "framework" => (Some(framework_router(1)), measured, TOPIC),
        "idempotent" if raw => (
            Some(framework_router_idempotent()),
            ROUTE_IDEMPOTENT_TOPIC,
            "task-events-idem",
        ),
        "idempotent" => (Some(framework_router_idempotent()), ROUTE_IDEMPOTENT, TOPIC),
        "ordered" | "unordered" if raw => {
            let (name, topic) = if mode == "ordered" {
                ("on_task_event_ordered", "task-events-ordered")
            } else {
                ("on_task_event_unordered", "task-events-unordered")
            };
            let route = if mode == "ordered" {
                "/_dispatch/kafka-pubsub/task-events-ordered"
            } else {
                "/_dispatch/kafka-pubsub/task-events-unordered"
            };
            (Some(app_with(name).router()), route, topic)
        }
        _ if count("framework-").is_some() => (
            Some(framework_router(count("framework-").unwrap_or(1))),
            measured,
            TOPIC,
        ),
        _ if count("topic-").is_some() => (
            Some(framework_router_shared_topic(count("topic-").unwrap_or(1))),
            ROUTE_SHARED_DISPATCH,
            "task-events-shared",
        ),
        _ => {
            eprintln!(
                "usage: dispatch-profile [ce-]setup|baseline|framework|framework-N|idempotent|topic-N|ordered|unordered [ITERATIONS]"
            );
            std::process::exit(2);
        }
    };
    let body = |id: &str| {
        let record = cloud_event_body(id);
        if raw {
            Bytes::from(raw_payload_body(record.as_bytes(), topic))
        } else {
            Bytes::from(record)
        }
    };
    let request = |body: Bytes, offset: u64| -> Request<axum::body::Body> {
        if raw {
            raw_delivery_at(route, topic, 18234 + offset, body)
        } else {
            delivery(route, body)
        }
    };
    let fresh: Vec<Bytes> = if mode == "idempotent" {
        (0..iterations.max(IDEMPOTENT_BODIES))
            .map(|i| body(&format!("evt-{i:012}")))
            .collect()
    } else {
        Vec::new()
    };
    let fixed = body("3f1b2c9e-0d7a-4e57-9a51-7c2f4b8e1d20");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        for i in 0..iterations {
            let body = fresh.get(i as usize).unwrap_or(&fixed).clone();
            let request = request(body, i);
            let Some(router) = &router else {
                drop(std::hint::black_box(request));
                continue;
            };
            let Ok(resp) = router.clone().oneshot(request).await;
            assert!(resp.status().is_success());
            std::hint::black_box(resp);
        }
    });
}
