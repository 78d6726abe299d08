//! What per-key order costs under load: the events/s of a topic whose handler keeps per-key
//! order, with 1 % of its keys parked (their first event failed onto a one-hour retry, so each
//! of their later events is parked in the store as it arrives), against none parked. Side by
//! side in one run, the two cases alternating round by round. Embedded mode, the bare broker as
//! `App::serve` runs it, on one tokio worker thread. Prints a markdown table of medians.
//!
//! ```text
//! order-throughput [--events N] [--keys K] [--rounds R]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bench::{app_with, task_event};
use event_runtime::testing::Broker;

const TOPIC: &str = "task-events-gated";

/// Events/s from the first publish until every event of the topic is acknowledged (run, or
/// parked); the retries of the held keys' first events stay on the ladder.
async fn run(events: usize, keys: usize, parked: usize) -> f64 {
    let app = app_with("on_task_event_gated");
    let broker: Arc<Broker> = app.broker();
    broker.start(app.router(), None).await.expect("start");
    let publisher = app.publisher();
    let user = |i: usize| {
        let k = i % keys;
        if k < parked {
            format!("parked-{k}")
        } else {
            format!("user-{k}")
        }
    };
    let evs: Vec<_> = (0..events)
        .map(|i| task_event(&format!("evt-{i:09}"), i as i64, &user(i)))
        .collect();
    let start = Instant::now();
    for e in &evs {
        publisher.publish(TOPIC, e).await.expect("publish");
    }
    let deadline = start + Duration::from_secs(300);
    while broker.pending_on(TOPIC) > 0 {
        assert!(Instant::now() < deadline, "the topic drained within 300 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = events as f64 / start.elapsed().as_secs_f64();
    broker.stop();
    rate
}

use event_bench::median;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| event_bench::flag(&args, name, default);
    let events = flag("--events", 20_000);
    let keys = flag("--keys", 1_000);
    let rounds = flag("--rounds", 5).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let cases = [("none parked", 0), ("1 % of keys parked", keys / 100)];
    let mut rates = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, &(_, parked)) in cases.iter().enumerate() {
            let rate = rt
                .block_on(rt.spawn(run(events, keys, parked)))
                .expect("the run panicked");
            rates[i].push(rate);
        }
    }
    println!("| case | keys | events | median events/s | ratio |");
    println!("|---|---|---|---|---|");
    let base = median(rates[0].clone());
    for (i, (name, _)) in cases.iter().enumerate() {
        let m = median(rates[i].clone());
        println!("| {name} | {keys} | {events} | {m:.0} | {:.3} |", m / base);
    }
}
