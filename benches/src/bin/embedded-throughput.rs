//! Embedded-mode throughput: events per second from the first publish until the broker is idle
//! (every event delivered through the app's routes and acknowledged), on 1 and 2 tokio worker
//! threads, for a no-op handler and one that sleeps 1 ms. Prints a markdown table of medians.
//!
//! ```text
//! embedded-throughput [--events N] [--sleep-events N] [--rounds R]
//! ```
//!
//! Two harnesses: `TestApp` (the test harness: records every run in its journal) and the bare
//! broker as `App::serve` runs it in embedded mode (no journal).

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_bench::{app_with, task_event, TaskEvent};
use event_runtime::testing::Broker;
use event_runtime::testing::TestApp;
use event_runtime::Publisher;

/// Distinct partition keys, so events spread over the topic's 12 partitions.
const USERS: usize = 64;

#[derive(Clone, Copy, Debug)]
enum Harness {
    TestApp,
    Bare,
}

#[derive(Clone, Copy)]
struct Case {
    harness: Harness,
    workers: usize,
    handler: &'static str,
    topic: &'static str,
    events: usize,
}

fn events(n: usize) -> Vec<TaskEvent> {
    (0..n)
        .map(|i| {
            task_event(
                &format!("evt-{i:09}"),
                i as i64,
                &format!("user-{}", i % USERS),
            )
        })
        .collect()
}

/// One timed run: publish every event, wait until idle. Returns events per second.
async fn run(case: &Case) -> f64 {
    let app = app_with(case.handler);
    let evs = events(case.events);
    let deadline = Duration::from_secs(300);
    match case.harness {
        Harness::TestApp => {
            let t = TestApp::start(app).await;
            let start = Instant::now();
            for e in &evs {
                t.publish(case.topic, e).await.expect("publish");
            }
            t.wait_idle_for(deadline).await;
            let secs = start.elapsed().as_secs_f64();
            let runs = t.runs_of(case.handler);
            assert_eq!(runs.len(), case.events, "every event handled once");
            assert!(runs.iter().all(|r| r.outcome == "success"));
            t.stop();
            case.events as f64 / secs
        }
        Harness::Bare => {
            let broker: Arc<Broker> = app.broker();
            // A served app keeps only the last 1,000 published events; this run counts them all.
            broker.keep_published(case.events);
            broker.start(app.router(), None).await.expect("start");
            let publisher: Publisher = app.publisher();
            let start = Instant::now();
            for e in &evs {
                publisher.publish(case.topic, e).await.expect("publish");
            }
            assert!(broker.wait_idle(deadline).await, "idle within {deadline:?}");
            let secs = start.elapsed().as_secs_f64();
            // Nothing but our events was published: no retry, no dead letter.
            assert_eq!(broker.published().len(), case.events);
            broker.stop();
            case.events as f64 / secs
        }
    }
}

/// The ceiling for the 1 ms handler: one task per partition (each partition delivers one event
/// at a time), each sleeping 1 ms once per event the broker puts on its partition (the same
/// hash of the partition key as the broker's), nothing else.
async fn sleep_ceiling(events: usize) -> f64 {
    let partitions = event_runtime::testing::DEFAULT_PARTITIONS;
    let mut per_partition = vec![0usize; partitions];
    for i in 0..events {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(format!("user-{}", i % USERS).as_str(), &mut h);
        per_partition[(std::hash::Hasher::finish(&h) % partitions as u64) as usize] += 1;
    }
    let start = Instant::now();
    let tasks: Vec<_> = per_partition
        .into_iter()
        .map(|n| {
            tokio::spawn(async move {
                for _ in 0..n {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a sleeping task");
    }
    events as f64 / start.elapsed().as_secs_f64()
}

use event_bench::median;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: usize| event_bench::flag(&args, name, default);
    let n = flag("--events", 20_000);
    let n_sleep = flag("--sleep-events", 2_000);
    let rounds = flag("--rounds", 3).max(1);

    let mut cases = Vec::new();
    for harness in [Harness::Bare, Harness::TestApp] {
        for workers in [1, 2] {
            cases.push(Case {
                harness,
                workers,
                handler: "on_task_event",
                topic: "task-events",
                events: n,
            });
            cases.push(Case {
                harness,
                workers,
                handler: "on_task_event_sleep",
                topic: "task-events-sleep",
                events: n_sleep,
            });
        }
    }

    println!("| harness | workers | handler | events | median events/s | min | max |");
    println!("|---|---|---|---|---|---|---|");
    for workers in [1, 2] {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let rates: Vec<f64> = (0..rounds)
            .map(|_| {
                rt.block_on(rt.spawn(sleep_ceiling(n_sleep)))
                    .expect("the run panicked")
            })
            .collect();
        println!(
            "| ceiling: tokio sleeps only, same partitioning | {workers} | sleep 1 ms | {n_sleep} | {:.0} | | |",
            median(rates)
        );
    }
    for case in &cases {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(case.workers)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let mut rates = Vec::new();
        for _ in 0..rounds {
            // On a worker, so the runtime has exactly `workers` threads doing the work.
            let case = *case;
            let rate = rt
                .block_on(rt.spawn(async move { run(&case).await }))
                .expect("the run panicked");
            rates.push(rate);
        }
        let (min, max) = (
            rates.iter().copied().fold(f64::INFINITY, f64::min),
            rates.iter().copied().fold(0.0, f64::max),
        );
        let handler = if case.handler == "on_task_event" {
            "no-op"
        } else {
            "sleep 1 ms"
        };
        println!(
            "| {:?} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
            case.harness,
            case.workers,
            handler,
            case.events,
            median(rates),
            min,
            max
        );
    }
}
