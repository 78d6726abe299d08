//! Concurrency lanes and delivery layers.

use e2e::{lines, work, PairOpts, Scenario};
use serde_json::{json, Value};

use crate::support::*;

// ---------------------------------------------------------------------------------------- 20

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s20_concurrency_lanes_keep_each_users_order_and_a_delivery_layer_sees_every_delivery() {
    let mut s = Scenario::new("s20");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    // Nine users over three partitions: daprd delivers from each partition at once, and the
    // handler (concurrency = 2) runs at most two of them, each user's in order.
    let users: Vec<String> = (0..9).map(|u| format!("u{u}-{run}")).collect();
    let mut events = Vec::new();
    for seq in 0..8 {
        for user in &users {
            let mut w = work(&format!("s20-{user}-{seq}"), user, seq);
            w["sleep_ms"] = json!(40);
            events.push(w);
        }
    }
    let blocked: Vec<Value> = (0..3)
        .map(|seq| work(&format!("s20-blocked-{run}-{seq}"), "u-blocked", seq))
        .collect();
    s.publish(&p, "s20-events", &blocked).await;
    s.publish(&p, "s20-events", &events).await;
    let ids: Vec<String> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    let blocked_ids: Vec<String> = blocked
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    s.wait_ledger(
        "every event through the layer and the lanes",
        secs(120),
        |l| {
            has_ok(l, "s20_lanes", &ids)
                && blocked_ids.iter().all(|id| {
                    lines(l, "s20_gate", "dropped")
                        .iter()
                        .any(|v| v["event_id"] == id.as_str())
                })
        },
    )
    .await;
    s.settle(secs(3), secs(30)).await;
    let l = s.ledger();

    let ran = lines(&l, "s20_lanes", "ok");
    let counts = ok_counts(&l, "s20_lanes");
    assert!(
        counts.values().all(|&n| n == 1),
        "each event ran once: {counts:?}"
    );
    assert_eq!(
        ran.len(),
        ids.len(),
        "nothing else ran: the blocked events never did"
    );
    for user in &users {
        let seqs: Vec<u64> = ran
            .iter()
            .filter(|v| v["user"] == user.as_str())
            .map(|v| v["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..8).collect::<Vec<_>>(), "{user}'s order");
    }
    let peak = ran
        .iter()
        .map(|v| v["in_flight"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(
        peak, 2,
        "at most two runs at a time, and two did run at once"
    );

    // The layer saw every delivery, passed the users' on and dropped the blocked ones, which
    // daprd then took as handled: none was offered again or dead-lettered.
    let passed = lines(&l, "s20_gate", "passed");
    let dropped = lines(&l, "s20_gate", "dropped");
    assert_eq!(passed.len(), ids.len(), "one pass per delivery");
    assert_eq!(
        dropped.len(),
        blocked_ids.len(),
        "each blocked event dropped once"
    );
    assert!(passed.iter().all(|v| v["to"] == "s20_lanes"));
    assert!(lines(&l, "s20_dead_letters", "dead_letter").is_empty());
    s.note(format!(
        "{} events over {} users, peak {peak} runs at once; {} dropped by the layer",
        ids.len(),
        users.len(),
        dropped.len()
    ));
}
