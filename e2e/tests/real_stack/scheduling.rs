//! Scheduled events on Dapr's Jobs API: the real scheduler service (scripts/e2e.sh starts it),
//! daprd calling the app's `POST /job/{name}`, the app publishing each firing to Kafka.

use std::collections::BTreeSet;
use std::time::Instant;

use e2e::{lines, now_ms, work, PairOpts, Scenario};
use serde_json::{json, Value};

use crate::support::*;

/// `POST /control/schedule` on the app of `pair`: the job's name.
async fn schedule(s: &Scenario, pair: &e2e::Pair, req: Value) -> String {
    let r = s
        .http
        .post(format!("{}/control/schedule", pair.app_url()))
        .json(&req)
        .send()
        .await
        .expect("POST /control/schedule");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "schedule {req}: {status} {body}");
    body["job"].as_str().expect("a job name").to_owned()
}

// ---------------------------------------------------------------------------------------- 24

/// A reminder due in 5 s fires once, on time; a job every 2 s fires its 4 times, each firing an
/// event of its own; a job due in 25 s fires once although the app and daprd were stopped and
/// started again in between; a cancelled job fires nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis, daprd and Dapr's scheduler: run scripts/e2e.sh"]
async fn s24_scheduled_events_fire_once_recur_survive_restarts_and_cancel() {
    assert!(
        std::env::var("SCHEDULER_ADDRESS").is_ok(),
        "SCHEDULER_ADDRESS is not set: run scripts/e2e.sh, which starts Dapr's scheduler"
    );
    let mut s = Scenario::new("s24");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let id = |what: &str| format!("s24-{run}-{what}");
    let t0 = Instant::now();
    let scheduled_ms = now_ms() as i64;
    let once = schedule(
        &s,
        &p,
        json!({"topic": "s24-events", "event": work(&id("once"), "u1", 0), "after_ms": 5_000}),
    )
    .await;
    schedule(
        &s,
        &p,
        json!({"topic": "s24-events", "event": work(&id("every"), "u2", 0), "name": id("every"),
               "every_ms": 2_000, "times": 4}),
    )
    .await;
    let durable = schedule(
        &s,
        &p,
        json!({"topic": "s24-events", "event": work(&id("durable"), "u3", 0), "after_ms": 25_000}),
    )
    .await;
    let cancelled = schedule(
        &s,
        &p,
        json!({"topic": "s24-events", "event": work(&id("cancelled"), "u4", 0), "after_ms": 8_000}),
    )
    .await;
    let r = s
        .http
        .post(format!("{}/control/cancel", p.app_url()))
        .json(&json!({"name": cancelled}))
        .send()
        .await
        .expect("POST /control/cancel");
    assert!(r.status().is_success());
    s.note(format!(
        "scheduled {once}, {}, {durable}; cancelled {cancelled}",
        id("every")
    ));

    let l = s
        .wait_ledger("the reminder fired", secs(60), |l| {
            has_ok(l, "s24_work", &[id("once")])
        })
        .await;
    let fired = lines(&l, "s24_work", "ok")
        .into_iter()
        .find(|v| v["event_id"] == id("once").as_str())
        .map(t)
        .unwrap();
    let late = fired - scheduled_ms;
    s.note(format!(
        "the 5 s reminder ran {late} ms after it was scheduled"
    ));
    assert!((5_000..15_000).contains(&late), "{late} ms");

    // Both the app and its sidecar go down, and come back, before the durable job is due.
    s.stop_app(&p, secs(5));
    s.stop_daprd(&p);
    s.start_pair(&p).await;
    s.note(format!(
        "app and daprd restarted {:.1}s in",
        t0.elapsed().as_secs_f64()
    ));

    // Each firing of the recurring job is an event of its own: its CloudEvent id is the job's
    // event's id and the firing's due time.
    let every = |l: &[Value]| -> Vec<String> {
        lines(l, "s24_work", "ok")
            .iter()
            .filter(|v| v["event_id"] == id("every").as_str())
            .filter_map(|v| v["ce_id"].as_str())
            .map(str::to_owned)
            .collect()
    };
    s.wait_ledger(
        "the durable job fired, and the recurring one four times",
        secs(90),
        |l| has_ok(l, "s24_work", &[id("durable")]) && every(l).len() >= 4,
    )
    .await;
    // Past the cancelled job's due time, and two more periods of the recurring one.
    s.settle(secs(5), secs(60)).await;
    let l = s.ledger();
    let counts = ok_counts(&l, "s24_work");
    assert_eq!(
        counts.get(&id("once")),
        Some(&1),
        "the reminder: {counts:?}"
    );
    assert_eq!(counts.get(&id("durable")), Some(&1), "the durable job");
    let firings = every(&l);
    let distinct: BTreeSet<&String> = firings.iter().collect();
    assert_eq!(firings.len(), 4, "four firings: {firings:?}");
    assert_eq!(distinct.len(), 4, "each its own event, once: {firings:?}");
    let prefix = format!("{}@", id("every"));
    assert!(
        firings.iter().all(|e| e.starts_with(&prefix)),
        "{firings:?}"
    );
    assert!(
        !counts.contains_key(&id("cancelled")),
        "the cancelled job fired"
    );
    assert!(lines(&l, "s24_dead_letters", "dead_letter").is_empty());
    s.note(format!(
        "{} firings applied, each once",
        counts.values().sum::<usize>()
    ));
}
