//! Bulk subscribe: batches, per-entry statuses, the body limit.

use std::collections::BTreeMap;

use e2e::{lines, work, PairOpts, RawRecord, Scenario};
use serde_json::{json, Value};

use crate::support::*;

// ---------------------------------------------------------------------------------------- 8

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s8_bulk_subscribe_batches_and_per_entry_statuses() {
    let mut s = Scenario::new("s8");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let mut events = Vec::new();
    let mut ids = Vec::new();
    let (retried, dead) = (format!("s8-{run}-u0-3"), format!("s8-{run}-u1-5"));
    for u in 0..3 {
        for seq in 0..10u64 {
            let id = format!("s8-{run}-u{u}-{seq}");
            let mut e = work(&id, &format!("u{u}"), seq);
            if id == retried {
                e["fail_until_attempt"] = json!(2);
            }
            if id == dead {
                e["permanent"] = json!(true);
            }
            events.push(e);
            ids.push(id);
        }
    }
    let r = s.publish(&p, "s8-events", &events).await;
    assert_eq!(r["published"], 30, "{r}");
    let good: Vec<String> = ids.iter().filter(|i| **i != dead).cloned().collect();
    s.wait_ledger("29 applied + 1 dead letter", secs(60), |l| {
        has_ok(l, "s8_bulk", &good)
            && l.iter()
                .any(|v| v["outcome"] == "dead_letter" && v["event_id"] == dead.as_str())
    })
    .await;
    s.settle(secs(3), secs(30)).await;
    let l = s.ledger();
    let reqs = s.requests();
    let bulks: Vec<&Value> = reqs
        .iter()
        .filter(|r| r["bulk_entries"].is_array())
        .collect();
    let sizes: Vec<usize> = bulks
        .iter()
        .map(|r| r["bulk_entries"].as_array().unwrap().len())
        .collect();
    s.note(format!(
        "bulk requests: {} with sizes {sizes:?}",
        bulks.len()
    ));
    assert!(
        sizes.iter().any(|&n| n > 1),
        "batches of more than one entry arrive: {sizes:?}"
    );
    assert!(
        sizes.iter().all(|&n| n <= 10),
        "max_messages = 10: {sizes:?}"
    );
    // Each entry answered on its own.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for b in &bulks {
        let statuses = b["answer"]["statuses"].as_array().expect("statuses array");
        let entries = b["bulk_entries"].as_array().unwrap();
        assert_eq!(statuses.len(), entries.len(), "{b}");
        for e in entries {
            let st = statuses
                .iter()
                .find(|st| st["entryId"] == e["entryId"])
                .expect("a status per entry");
            seen.entry(e["event_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(st["status"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen.len(), 30, "every event arrived in a batch");
    for (id, st) in &seen {
        let want = if *id == dead { "DROP" } else { "SUCCESS" };
        assert_eq!(
            st,
            &vec![want.to_owned()],
            "{id}: delivered in bulk once, answered {want}"
        );
    }
    // The failing entry ran again alone (on its retry topic); the dead one went to the DLQ alone.
    let counts = ok_counts(&l, "s8_bulk");
    for id in &good {
        assert_eq!(counts.get(id), Some(&1), "{id} applied once");
    }
    let rr = runs_of(&l, "s8_bulk", &retried);
    assert_eq!(
        rr.iter()
            .map(|v| (
                v["attempt"].as_u64().unwrap(),
                v["outcome"].as_str().unwrap()
            ))
            .collect::<Vec<_>>(),
        [(1, "fail"), (2, "ok")]
    );
    assert!(t(rr[1]) - t(rr[0]) >= 900);
    let fails: Vec<&Value> = lines(&l, "s8_bulk", "fail");
    assert_eq!(fails.len(), 2, "only the two planned failures: {fails:?}");
    let dl: Vec<&Value> = l.iter().filter(|v| v["outcome"] == "dead_letter").collect();
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0]["event_id"], dead.as_str());
    assert_eq!(dl[0]["dl_permanent"], true);
}

// ---------------------------------------------------------------------------------------- 13

/// 100 events of 50 KB on one partition, written with Kafka's own producer before the app
/// subscribes: daprd hands them over in bulk batches of up to 100, well past the 4 MiB body limit
/// (base64 in rawPayload entries), and every batch is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s13_bulk_batches_past_the_body_limit_are_taken() {
    let mut s = Scenario::new("s13");
    let run = uid();
    let pad = "x".repeat(50 * 1024);
    let ids: Vec<String> = (0..100).map(|i| format!("s13-{run}-{i}")).collect();
    let records: Vec<RawRecord> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let ce = json!({"specversion": "1.0", "id": id, "type": "e2e.work", "source": "outside",
                "datacontenttype": "application/json",
                "data": {"event_id": id, "user_id": "u-big", "seq": i, "pad": pad}});
            RawRecord {
                key: Some(b"u-big".to_vec()),
                value: ce.to_string().into_bytes(),
                headers: Vec::new(),
            }
        })
        .collect();
    s.produce("s13-events", &records);
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    s.wait_ledger("100 events of 50 KB applied", secs(120), |l| {
        has_ok(l, "s13_bulk", &ids)
    })
    .await;
    s.settle(secs(2), secs(60)).await;
    let l = s.ledger();
    let counts = ok_counts(&l, "s13_bulk");
    assert!(
        ids.iter().all(|id| counts.get(id) == Some(&1)),
        "{counts:?}"
    );
    let seqs: Vec<u64> = lines(&l, "s13_bulk", "ok")
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..100).collect::<Vec<_>>(), "in order");
    let batches: Vec<usize> = s
        .requests()
        .iter()
        .filter(|r| r["bulk_entries"].is_array())
        .map(|r| r["bulk_entries"].as_array().unwrap().len())
        .collect();
    s.note(format!("bulk batches of {batches:?} entries"));
    let limit_entries = 4 * 1024 * 1024 / (pad.len() * 4 / 3);
    assert!(
        batches.iter().any(|&n| n > limit_entries),
        "a batch past 4 MiB ({limit_entries} entries): {batches:?}"
    );
    assert!(
        s.requests().iter().all(|r| r["http_status"] != 413),
        "nothing refused"
    );
}
