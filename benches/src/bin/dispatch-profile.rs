//! A fixed number of deliveries through one router, for a profiler (the criterion harness
//! would profile criterion too):
//!
//! ```text
//! dispatch-profile MODE [ITERATIONS]
//!   MODE: baseline | framework | framework-10 | framework-100 | idempotent
//!         | topic-1 | topic-10 | topic-100   (the topic route, N handlers on one topic)
//! valgrind --tool=callgrind target/bench/release/dispatch-profile framework 20000
//! ```

use axum::body::Bytes;
use event_bench::{
    baseline_router, cloud_event_body, delivery, framework_router, framework_router_idempotent,
    framework_router_shared_topic, ROUTE, ROUTE_IDEMPOTENT, ROUTE_SHARED_DISPATCH,
};
use tower::ServiceExt as _;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let iterations: u64 = args
        .next()
        .map(|n| n.parse().expect("ITERATIONS is a number"))
        .unwrap_or(20_000);
    let count = |prefix: &str| {
        mode.strip_prefix(prefix)
            .and_then(|n| n.parse::<usize>().ok())
    };
    let (router, route) = match mode.as_str() {
        "framework" => (framework_router(1), ROUTE),
        "baseline" => (baseline_router(), ROUTE),
        "idempotent" => (framework_router_idempotent(), ROUTE_IDEMPOTENT),
        _ if count("framework-").is_some() => {
            (framework_router(count("framework-").unwrap_or(1)), ROUTE)
        }
        _ if count("topic-").is_some() => (
            framework_router_shared_topic(count("topic-").unwrap_or(1)),
            ROUTE_SHARED_DISPATCH,
        ),
        _ => {
            eprintln!("usage: dispatch-profile baseline|framework|framework-N|idempotent|topic-N [ITERATIONS]");
            std::process::exit(2);
        }
    };
    let template = cloud_event_body("@ID@");
    let fixed = Bytes::from(cloud_event_body("3f1b2c9e-0d7a-4e57-9a51-7c2f4b8e1d20"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        for i in 0..iterations {
            let body = if mode == "idempotent" {
                Bytes::from(template.replace("@ID@", &format!("evt-{i:012}")))
            } else {
                fixed.clone()
            };
            let Ok(resp) = router.clone().oneshot(delivery(route, body)).await;
            assert!(resp.status().is_success());
            std::hint::black_box(resp);
        }
    });
}
