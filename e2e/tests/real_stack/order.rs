//! Per-key order across delayed retries, on the real stack.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use e2e::{lines, work, Scenario};
use serde_json::{json, Value};

use crate::support::*;

// ---------------------------------------------------------------------------------------- 23

/// Two replicas; `E2E_S23_USERS` users (2,000 by default) × 5 events each, published in each
/// user's order; 5 % of the events fail once and take a 2 s delayed retry, so their users'
/// later events are parked until they succeed. One replica is SIGKILLed in the middle of the
/// stream and started again. Every user's events are applied in their order, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s23_each_users_order_survives_delayed_retries_two_replicas_and_a_sigkill() {
    let users: u64 = env_count("E2E_S23_USERS", 2_000);
    let per_user = 5u64;
    let lease = 6u64;
    let opts = || short_lease(lease);
    let mut s = Scenario::new("s23");
    let (r1, r2) = (s.pair("r1", opts()), s.pair("r2", opts()));
    s.start_pair(&r1).await;
    s.start_pair(&r2).await;

    let run = uid();
    let id = |u: u64, seq: u64| format!("s23-{run}-u{u}-{seq}");
    let mut failing = BTreeSet::new();
    let mut events = Vec::new();
    for seq in 0..per_user {
        for u in 0..users {
            let mut w = work(&id(u, seq), &format!("user-{u}"), seq);
            // 5 %: one event in four of every fifth user's, spread over the sequence.
            if (u * per_user + seq) % 20 == 7 {
                w["fail_until_attempt"] = json!(2);
                failing.insert(id(u, seq));
            }
            events.push(w);
        }
    }
    let total = events.len();
    let t0 = Instant::now();
    let publishing = {
        let (http, url) = (s.http.clone(), format!("{}/control/publish", r1.app_url()));
        let body = json!({"topic": "s23-events", "events": events, "retry_for_ms": 60_000});
        tokio::spawn(async move {
            let r = http.post(url).json(&body).send().await.expect("publish");
            r.json::<Value>().await.expect("publish answer")
        })
    };
    // SIGKILL a replica in the middle of the stream, then bring it back.
    s.wait_ledger("a third of the stream applied", secs(300), |l| {
        lines(l, "s23_work", "ok").len() >= total / 3
    })
    .await;
    s.kill_app(&r2);
    s.note(format!(
        "r2 SIGKILLed after {:.1}s",
        t0.elapsed().as_secs_f64()
    ));
    s.start_app(&r2).await;
    let r = publishing.await.unwrap();
    assert_eq!(r["published"].as_u64(), Some(total as u64), "{r}");
    s.wait_ledger(&format!("{total} events applied"), secs(600), |l| {
        ok_counts(l, "s23_work").len() >= total
    })
    .await;
    s.note(format!(
        "all applied {:.1}s after the first publish",
        t0.elapsed().as_secs_f64()
    ));
    s.settle(secs(lease + 4), secs(120)).await;

    let l = s.ledger();
    let oks = lines(&l, "s23_work", "ok");
    let counts = ok_counts(&l, "s23_work");
    let twice: Vec<_> = counts.iter().filter(|(_, &c)| c != 1).collect();
    assert!(twice.is_empty(), "applied more than once: {twice:?}");
    assert_eq!(counts.len(), total, "every event applied");
    assert!(lines(&l, "s23_dead_letters", "dead_letter").is_empty());
    let by_user = seqs_by_user(&oks);
    let out_of_order: Vec<_> = by_user
        .iter()
        .filter(|(_, seqs)| **seqs != (0..per_user).collect::<Vec<_>>())
        .collect();
    assert!(
        out_of_order.is_empty(),
        "{} users out of order, e.g. {:?}",
        out_of_order.len(),
        out_of_order.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(by_user.len(), users as usize);
    // Every failing event ran twice: once failing, once on its retry.
    let fails: BTreeSet<&str> = lines(&l, "s23_work", "fail")
        .iter()
        .map(|v| v["event_id"].as_str().unwrap())
        .collect();
    assert!(failing.iter().all(|f| fails.contains(f.as_str())));
    // How long parked events waited: from the first failure of the event ahead of them to
    // their own run.
    let first_fail: BTreeMap<&str, i64> = lines(&l, "s23_work", "fail")
        .iter()
        .map(|v| (v["event_id"].as_str().unwrap(), t(v)))
        .collect();
    let mut waits = Vec::new();
    for v in &oks {
        let (u, seq) = (v["user"].as_str().unwrap(), v["seq"].as_u64().unwrap());
        let n: u64 = u.trim_start_matches("user-").parse().unwrap();
        let ahead = (0..seq).find_map(|k| first_fail.get(id(n, k).as_str()));
        if let Some(&failed_at) = ahead {
            waits.push(t(v) - failed_at);
        }
    }
    waits.sort_unstable();
    let by_replica = |r: &str| oks.iter().filter(|v| v["replica"] == r).count();
    s.note(format!(
        "{total} events of {users} users: {} failed once, {} parked behind them; worst wait of a parked event {} ms, median {} ms; applied by r1 {}, by r2 {}",
        failing.len(),
        waits.len(),
        waits.last().copied().unwrap_or(0),
        waits.get(waits.len() / 2).copied().unwrap_or(0),
        by_replica("r1"),
        by_replica("r2"),
    ));
    assert!(!waits.is_empty(), "no event was parked");
}
