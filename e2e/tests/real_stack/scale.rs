//! Scale-out: replicas and shared topics.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use e2e::{lines, work, PairOpts, RawRecord, Scenario};
use serde_json::{json, Value};

use crate::support::*;

// ---------------------------------------------------------------------------------------- 6

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s6_scale_out_two_replicas_100_users_x_100_events() {
    let mut s = Scenario::new("s6");
    let p1 = s.pair("r1", PairOpts::default());
    let p2 = s.pair("r2", PairOpts::default());
    // One replica takes the stream; a second joins in the middle of it, so partitions move.
    s.start_pair(&p1).await;
    let run = uid();
    let (users, per_user) = (100u64, 100u64);
    let mut events = Vec::new();
    for seq in 0..per_user {
        for u in 0..users {
            events.push(work(
                &format!("s6-{run}-u{u}-{seq}"),
                &format!("user-{u}"),
                seq,
            ));
        }
    }
    let total = events.len();
    let t0 = Instant::now();
    let publishing = {
        let (http, url) = (s.http.clone(), format!("{}/control/publish", p1.app_url()));
        let body = json!({"topic": "s6-task-events", "events": events, "retry_for_ms": 30_000});
        tokio::spawn(async move {
            let r = http.post(url).json(&body).send().await.expect("publish");
            r.json::<Value>().await.expect("publish answer")
        })
    };
    s.wait_ledger("r1 in the middle of the stream", secs(120), |l| {
        lines(l, "s6_work", "ok").len() >= total / 10
    })
    .await;
    s.start_pair(&p2).await;
    let joined_ms = e2e::now_ms() as i64;
    let r = publishing.await.unwrap();
    assert_eq!(r["published"].as_u64(), Some(total as u64), "{r}");
    s.note(format!(
        "published {total} events in {:.1}s",
        t0.elapsed().as_secs_f64()
    ));
    s.wait_ledger(&format!("{total} events applied"), secs(480), |l| {
        ok_counts(l, "s6_work").len() >= total
    })
    .await;
    s.note(format!(
        "all applied {:.1}s after the first publish",
        t0.elapsed().as_secs_f64()
    ));
    s.settle(secs(4), secs(60)).await;
    let l = s.ledger();
    let oks = lines(&l, "s6_work", "ok");
    let counts = ok_counts(&l, "s6_work");
    let dup: Vec<_> = counts.iter().filter(|(_, &c)| c != 1).collect();
    assert!(dup.is_empty(), "applied more than once: {dup:?}");
    assert_eq!(counts.len(), total);
    assert!(lines(&l, "s6_dead_letters", "dead_letter").is_empty());
    let by_user = seqs_by_user(&oks);
    assert_eq!(by_user.len(), users as usize);
    for (u, seqs) in &by_user {
        assert_eq!(
            seqs,
            &(0..per_user).collect::<Vec<_>>(),
            "{u}'s events in order"
        );
    }
    let mut by_replica: BTreeMap<&str, usize> = BTreeMap::new();
    let mut users_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for v in &oks {
        let r = v["replica"].as_str().unwrap();
        *by_replica.entry(r).or_default() += 1;
        users_of
            .entry(v["user"].as_str().unwrap())
            .or_default()
            .insert(r);
    }
    let moved = users_of.values().filter(|r| r.len() > 1).count();
    s.note(format!(
        "applied per replica: {by_replica:?}; users served by both (rebalance): {moved}"
    ));
    assert!(moved > 0, "no partition moved when r2 joined");
    for r in ["r1", "r2"] {
        let n = by_replica.get(r).copied().unwrap_or(0);
        assert!(n >= total / 10, "replica {r} applied only {n} of {total}");
    }
    // A moved user's events: first on r1, then, after r2 joined, on r2 (in order, once, above).
    assert!(
        oks.iter()
            .all(|v| v["replica"] != "r2" || t(v) >= joined_ms - 1_000),
        "r2 applied nothing before it joined"
    );
    let deliveries = s
        .requests()
        .iter()
        .filter(|r| r["path"] != "/dapr/subscribe")
        .count();
    s.note(format!("{deliveries} deliveries for {total} events"));
}

// ---------------------------------------------------------------------------------------- 11

/// The accounting scenario. Two apps, each with its own consumer group, share `s11-events`; the
/// second runs two replicas. On it: `E2E_S11_EVENTS` events (10,000 by default), 1 % records
/// that are no CloudEvent and 1 % CloudEvents with forged retry bookkeeping (both written by
/// Kafka's own Java producer), 5 % that fail once, 1 % that fail for good; then one replica is
/// SIGKILLed in the middle of a handler. For each app: every good event applied exactly once,
/// every bad one in that app's DLQ once with its bytes, the applied and dead-lettered sets
/// disjoint and together every event, each app's retries run by that app, and nothing stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s11_accounting_two_apps_shared_topic_bad_records_and_a_sigkill() {
    use base64::Engine as _;
    let total: usize = env_count("E2E_S11_EVENTS", 10_000);
    let lease = 6u64;
    let opts = || short_lease(lease);
    let mut a = Scenario::new("s11a");
    let mut b = Scenario::new("s11b");
    let a1 = a.pair("r1", opts());
    let (b1, b2) = (b.pair("r1", opts()), b.pair("r2", opts()));
    a.start_pair(&a1).await;
    b.start_pair(&b1).await;
    b.start_pair(&b2).await;

    let run = uid();
    let pct = |p: usize| (total * p / 100).max(1);
    let (n_raw, n_forged, n_transient, n_permanent) = (pct(1), pct(1), pct(5), pct(1));
    let user = |i: usize| format!("u{}", i % 97);
    let mut good: Vec<String> = Vec::new();
    let mut permanent: Vec<String> = Vec::new();
    let mut transient: BTreeSet<String> = BTreeSet::new();
    // Records from outside, with Kafka's producer: bytes that are no CloudEvent, and CloudEvents
    // whose retry bookkeeping claims a late attempt, a far due time and another topic.
    let mut raw_bytes: Vec<Vec<u8>> = Vec::new();
    let mut records = Vec::new();
    for i in 0..n_raw {
        let bytes = format!("\u{1}s11-{run} not a CloudEvent #{i} \u{ff}").into_bytes();
        raw_bytes.push(bytes.clone());
        records.push(RawRecord {
            key: Some(user(i).into_bytes()),
            value: bytes,
            headers: Vec::new(),
        });
    }
    for i in 0..n_forged {
        let id = format!("s11-{run}-forged-{i}");
        let ce = json!({"specversion": "1.0", "id": id, "type": "e2e.work", "source": "outside",
            "datacontenttype": "application/json", "evrattempt": "9", "evrdue": "99999999999999",
            "evrtopic": "../../state/statestore", "evrapp": "e2e-s11b", "evrmac": "00",
            "data": work(&id, &user(i), 0)});
        records.push(RawRecord {
            key: Some(user(i).into_bytes()),
            value: ce.to_string().into_bytes(),
            headers: Vec::new(),
        });
        good.push(id);
    }
    a.produce("s11-events", &records);
    let mut events = Vec::new();
    let published = total - n_raw - n_forged;
    for i in 0..published {
        let id = format!("s11-{run}-{i}");
        let mut w = work(&id, &user(i), i as u64);
        if i < n_transient {
            w["fail_until_attempt"] = json!(2);
            transient.insert(id.clone());
        } else if i < n_transient + n_permanent {
            w["permanent"] = json!(true);
            permanent.push(id.clone());
            events.push(w);
            continue;
        }
        events.push(w);
        good.push(id);
    }
    let t0 = Instant::now();
    let r = a.publish(&a1, "s11-events", &events).await;
    assert_eq!(r["published"].as_u64(), Some(published as u64), "{r}");
    a.note(format!("{total} records on s11-events: {n_raw} no CloudEvent, {n_forged} forged, {n_transient} transient, {n_permanent} permanent"));

    // Then one replica of the second app is killed in the middle of a handler.
    let slow = format!("s11-{run}-slow");
    let mut w = work(&slow, "u-slow", 0);
    w["sleep_ms"] = json!(3000);
    for (s, handler, dead) in [
        (&a, "s11a_work", "s11a_dead_letters"),
        (&b, "s11b_work", "s11b_dead_letters"),
    ] {
        s.wait_ledger(
            &format!("{handler}: every record handled"),
            secs(600),
            |l| {
                let oks = ok_counts(l, handler);
                good.iter().all(|id| oks.contains_key(id))
                    && lines(l, dead, "dead_letter").len() >= n_raw + n_permanent
            },
        )
        .await;
    }
    a.note(format!(
        "both apps through the stream in {:.1}s",
        t0.elapsed().as_secs_f64()
    ));
    b.settle(secs(lease + 8), secs(120)).await;
    a.publish(&a1, "s11-events", std::slice::from_ref(&w)).await;
    let l = b
        .wait_ledger(
            "the slow handler started in the second app",
            secs(60),
            |l| {
                l.iter()
                    .any(|v| v["event_id"] == slow.as_str() && v["outcome"] == "start")
            },
        )
        .await;
    let victim = l
        .iter()
        .find(|v| v["event_id"] == slow.as_str() && v["outcome"] == "start")
        .and_then(|v| v["replica"].as_str())
        .unwrap()
        .to_owned();
    let victim = if victim == "r1" { &b1 } else { &b2 };
    b.kill_app(victim);
    b.start_app(victim).await;
    good.push(slow.clone());

    for (s, handler, dead, other) in [
        (&a, "s11a_work", "s11a_dead_letters", "e2e-s11b"),
        (&b, "s11b_work", "s11b_dead_letters", "e2e-s11a"),
    ] {
        s.wait_ledger(
            &format!("{handler}: the killed event too"),
            secs(120),
            |l| has_ok(l, handler, std::slice::from_ref(&slow)),
        )
        .await;
        s.settle(secs(lease + 8), secs(120)).await;
        let l = s.ledger();
        let oks = ok_counts(&l, handler);
        let twice: Vec<_> = oks.iter().filter(|(_, &c)| c != 1).collect();
        assert!(
            twice.is_empty(),
            "{handler}: applied more than once: {twice:?}"
        );
        let applied: BTreeSet<&str> = oks.keys().map(String::as_str).collect();
        let want: BTreeSet<&str> = good.iter().map(String::as_str).collect();
        assert_eq!(applied, want, "{handler}: every good event applied");
        // The forged bookkeeping was ignored: those ran as first attempts.
        for v in lines(&l, handler, "ok") {
            let id = v["event_id"].as_str().unwrap();
            let want_attempt = if transient.contains(id) { 2 } else { 1 };
            assert_eq!(v["attempt"], want_attempt, "{handler}: {v}");
        }
        // Dead letters: the permanent failures and the records from outside, once each.
        let letters = lines(&l, dead, "dead_letter");
        let mut dead_ids = BTreeSet::new();
        for v in &letters {
            assert!(
                dead_ids.insert(v["event_id"].as_str().unwrap()),
                "{dead}: twice: {v}"
            );
        }
        let perm: BTreeSet<&str> = letters
            .iter()
            .filter(|v| v["dl_permanent"] == true && v["dl_handler"].is_string())
            .map(|v| v["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            perm,
            permanent.iter().map(String::as_str).collect(),
            "{dead}"
        );
        let kept: BTreeSet<Vec<u8>> = letters
            .iter()
            .filter(|v| v["dl_handler"].is_null())
            .map(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v["dl_record"].as_str().expect("the record's bytes"))
                    .unwrap()
            })
            .collect();
        assert_eq!(
            kept,
            raw_bytes.iter().cloned().collect(),
            "{dead}: exact bytes"
        );
        assert_eq!(letters.len(), n_permanent + n_raw, "{dead}: nothing else");
        assert!(applied.is_disjoint(&perm), "{handler}");
        assert_eq!(
            applied.len() + letters.len(),
            total + 1,
            "{handler}: every record accounted for"
        );
        // Each app's retries ran in that app: its own ladder, none of the other app's.
        let retried: BTreeSet<&str> = lines(&l, handler, "ok")
            .iter()
            .filter(|v| v["attempt"] == 2)
            .map(|v| v["event_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            retried,
            transient.iter().map(String::as_str).collect(),
            "{handler}"
        );
        assert!(
            !s.requests()
                .iter()
                .any(|r| r["path"].as_str().unwrap_or("").contains(other)),
            "{handler} saw a retry route of {other}"
        );
        s.note(format!(
            "{handler}: {} applied once each ({} after a retry), {} dead letters ({} records from outside byte for byte, {} permanent)",
            applied.len(), retried.len(), letters.len(), kept.len(), perm.len()
        ));
    }
}
