//! One delivery through the router: the framework (unwrap the record, parse the CloudEvent,
//! choose the handler, decode, run a no-op handler, answer) against a hand-written axum handler
//! that reads the same body and answers the same JSON. Both are driven with `oneshot` on a cloned
//! `Router` in a current-thread runtime, so what differs is only the work behind the route.
//!
//! Two forms, each against its own hand-written handler: `raw_*` is what daprd sends now (every
//! subscription is rawPayload: its wrapper around the record, on the topic's default route, with
//! the Kafka headers); `ce_*` what it sent before (the CloudEvent, on the handler's own route).
//!
//! `cargo bench -p event-bench --bench dispatch -- --warm-up-time 1 --measurement-time 3`
//! then `benches/dispatch-report.sh` for the table of medians and ratios.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use axum::body::{Body, Bytes};
use axum::http::Request;
use axum::Router;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use event_bench::{
    baseline_raw_router, baseline_router, cloud_event_body, delivery, framework_router,
    framework_router_idempotent, framework_router_shared_topic, raw_delivery, raw_payload_body,
    ROUTE, ROUTE_IDEMPOTENT_TOPIC, ROUTE_SHARED_DISPATCH, ROUTE_TOPIC, TOPIC,
};
use tower::ServiceExt as _;

/// Times `router.clone().oneshot(request)` only; building the request is the untimed setup.
fn bench_route(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    router: Router,
    mut request: impl FnMut() -> Request<Body>,
) {
    c.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            &mut request,
            |req| {
                let router = router.clone();
                async move {
                    let Ok(resp) = router.oneshot(req).await;
                    debug_assert!(resp.status().is_success());
                    resp
                }
            },
            BatchSize::SmallInput,
        )
    });
}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let record = cloud_event_body("3f1b2c9e-0d7a-4e57-9a51-7c2f4b8e1d20");
    let plain = Bytes::from(record.clone());
    let wrapped = |topic: &str| Bytes::from(raw_payload_body(record.as_bytes(), topic));
    let raw = |route: &'static str, topic: &'static str| {
        let body = wrapped(topic);
        move || raw_delivery(route, topic, body.clone())
    };
    let ce = |route: &'static str| {
        let body = plain.clone();
        move || delivery(route, body.clone())
    };

    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(1));

    // The form daprd sends now.
    let baseline = baseline_raw_router();
    bench_route(
        &mut g,
        &rt,
        "raw_axum_baseline",
        baseline,
        raw(ROUTE_TOPIC, TOPIC),
    );
    for n in [1, 10, 100] {
        let name = format!("raw_framework_{n}_handlers");
        bench_route(
            &mut g,
            &rt,
            &name,
            framework_router(n),
            raw(ROUTE_TOPIC, TOPIC),
        );
    }

    // Idempotent, a new event id per delivery: every delivery claims a new key, runs the
    // handler and marks the key done. The in-memory store keeps every key (7 days' retention),
    // so the map grows by one entry per iteration, as a real store's would; its growth is part
    // of what is measured.
    let template = cloud_event_body("@ID@");
    let mut next = 0u64;
    bench_route(
        &mut g,
        &rt,
        "raw_framework_idempotent_new_id",
        framework_router_idempotent(),
        move || {
            next += 1;
            let record = template.replace("@ID@", &format!("evt-{next:012}"));
            let body = raw_payload_body(record.as_bytes(), "task-events-idem");
            raw_delivery(ROUTE_IDEMPOTENT_TOPIC, "task-events-idem", body)
        },
    );
    // Idempotent, the same id every time: after the first, each delivery finds the key done and
    // is acknowledged without running the handler (a redelivery).
    bench_route(
        &mut g,
        &rt,
        "raw_framework_idempotent_duplicate",
        framework_router_idempotent(),
        raw(ROUTE_IDEMPOTENT_TOPIC, "task-events-idem"),
    );

    // A topic shared by several handlers, where the framework chooses among them by type.
    for n in [1, 10, 100] {
        let name = format!("raw_framework_topic_route_{n}_handlers_one_topic");
        bench_route(
            &mut g,
            &rt,
            &name,
            framework_router_shared_topic(n),
            raw(ROUTE_SHARED_DISPATCH, "task-events-shared"),
        );
    }

    // The form daprd sent before, for comparison.
    bench_route(
        &mut g,
        &rt,
        "ce_axum_baseline",
        baseline_router(),
        ce(ROUTE),
    );
    for n in [1, 10, 100] {
        let name = format!("ce_framework_{n}_handlers");
        bench_route(&mut g, &rt, &name, framework_router(n), ce(ROUTE));
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = dispatch
}
criterion_main!(benches);
