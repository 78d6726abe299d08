//! Exactly-once effect: duplicates, SIGKILLs, idempotency stores, long event ids.

use e2e::{lines, work, PairOpts, RawRecord, Scenario};
use serde_json::{json, Value};

use crate::support::*;

// ---------------------------------------------------------------------------------------- 5

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s5_exactly_once_effect_with_duplicates_and_sigkill_mid_handler() {
    let mut s = Scenario::new("s5");
    let lease = 6;
    let p = s.pair(
        "r1",
        PairOpts {
            // An idempotent handler's timeout must be shorter than the lease (the app refuses to
            // start otherwise); the slow run below takes 3 s.
            app_env: vec![
                ("EVENTS_CLAIM_LEASE_SECS".into(), lease.to_string()),
                (
                    "EVENTS_HANDLER_TIMEOUT_SECS".into(),
                    (lease - 1).to_string(),
                ),
            ],
            ..Default::default()
        },
    );
    s.start_pair(&p).await;
    let run = uid();
    let ids: Vec<String> = (0..6).map(|i| format!("s5-{run}-{i}")).collect();
    let events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| work(id, &format!("u{}", i % 3), i as u64))
        .collect();
    let k = format!("s5-{run}-killed");
    let mut ek = work(&k, "u-k", 0);
    ek["sleep_ms"] = json!(3000);

    // Each event three times (same event_id, so the same CloudEvent id), the slow one once.
    for _ in 0..3 {
        s.publish(&p, "s5-events", &events).await;
    }
    s.publish(&p, "s5-events", std::slice::from_ref(&ek)).await;
    s.wait_ledger("the slow handler started", secs(60), |l| {
        l.iter()
            .any(|v| v["event_id"] == k.as_str() && v["outcome"] == "start")
    })
    .await;
    let t_kill = e2e::now_ms() as i64;
    s.kill_app(&p); // SIGKILL in the middle of the handler
    s.start_app(&p).await; // same port; daprd stays up and redelivers
    for _ in 0..2 {
        s.publish(&p, "s5-events", &events).await;
        s.publish(&p, "s5-events", std::slice::from_ref(&ek)).await;
    }
    let mut all = ids.clone();
    all.push(k.clone());
    s.wait_ledger("every event applied", secs(120), |l| {
        has_ok(l, "s5_once", &all)
    })
    .await;
    s.settle(secs(4), secs(60)).await;
    let l = s.ledger();
    let counts = ok_counts(&l, "s5_once");
    for id in &all {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{id} applied exactly once: {counts:?}"
        );
    }
    let starts: Vec<&Value> = l
        .iter()
        .filter(|v| v["event_id"] == k.as_str() && v["outcome"] == "start")
        .collect();
    assert!(
        starts.len() >= 2,
        "the killed run and the run after the restart: {starts:?}"
    );
    let rerun = t(starts[1]);
    s.note(format!(
        "killed run restarted {} ms after the kill (claim lease {lease} s); {} deliveries of the killed event answered RETRY meanwhile",
        rerun - t_kill,
        s.requests().iter().filter(|r| r["event_id"] == k.as_str() && r["answer"]["status"] == "RETRY").count()
    ));
    assert!(
        rerun - t(starts[0]) >= (lease as i64) * 1000 - 500,
        "the lease held the key until it ran out"
    );
    let deliveries = s
        .requests()
        .iter()
        .filter(|r| {
            r["event_id"]
                .as_str()
                .is_some_and(|e| e.starts_with(&format!("s5-{run}")))
        })
        .count();
    s.note(format!(
        "{deliveries} deliveries for {} events, each applied once",
        all.len()
    ));
    assert!(deliveries >= 3 * ids.len() + 3, "duplicates were delivered");
    // The claim in the real state store says done.
    // The default key is the CloudEvent's source and id, escaped (`|` as `%7C`).
    let source = l
        .iter()
        .find(|v| v["event_id"] == k.as_str())
        .and_then(|v| v["ce_source"].as_str())
        .expect("the killed event's ledger line names its source")
        .to_string();
    let key = format!("{}|e2e_app::s5::s5_once|{source}%7C{k}", s.app_id);
    let v = state_get(&s, &p, &key).await;
    s.note(format!("state store claim of the killed event: {v}"));
    assert_eq!(v["status"], "done", "{v}");
}

// ---------------------------------------------------------------------------------------- 12

/// Idempotency on one state store: concurrent claims of one key (each event delivered twice,
/// under two partition keys, so on two partitions and, with two replicas, two sidecars, each
/// run slow), then a lease takeover after a SIGKILL in the middle of a run.
async fn idempotency_on(name: &str, store: e2e::StateStore, replicas: &[&str]) {
    let mut s = Scenario::with_state_store(name, store);
    let handler = format!("{name}_once");
    let topic = format!("{name}-events");
    let pairs: Vec<_> = replicas
        .iter()
        .map(|r| s.pair(r, PairOpts::default()))
        .collect();
    for p in &pairs {
        s.start_pair(p).await;
    }
    let run = uid();
    // Rounds of one event delivered twice at once, under two partition keys: on two partitions
    // (most rounds; with two replicas, often two sidecars), so the two claims of its key meet.
    let ids: Vec<String> = (0..6).map(|i| format!("{name}-{run}-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let twice: Vec<Value> = ["a", "b"]
            .iter()
            .map(|key| {
                let mut w = work(id, &format!("{key}{i}"), i as u64);
                w["sleep_ms"] = json!(800);
                w
            })
            .collect();
        s.publish(&pairs[0], &topic, &twice).await;
        s.wait_until(
            &format!("both deliveries of {id} answered"),
            secs(60),
            |s| {
                let id = id.clone();
                async move {
                    s.requests()
                        .iter()
                        .filter(|r| {
                            r["event_id"] == id.as_str() && r["answer"]["status"] == "SUCCESS"
                        })
                        .count()
                        >= 2
                }
            },
        )
        .await;
    }
    s.settle(secs(2), secs(120)).await;
    let l = s.ledger();
    let counts = ok_counts(&l, &handler);
    for id in &ids {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "{name}: {id} applied once: {counts:?}"
        );
    }
    let busy = s
        .requests()
        .iter()
        .filter(|r| {
            r["event_id"]
                .as_str()
                .is_some_and(|e| ids.iter().any(|i| i == e))
                && r["answer"]["status"] == "RETRY"
        })
        .count();
    s.note(format!(
        "{name}: {busy} deliveries found their key claimed and answered RETRY"
    ));
    assert!(busy > 0, "{name}: no two claims of one key ever met");

    // A run killed in the middle: its claim blocks the key until the lease runs out, then the
    // redelivery takes it over and runs once.
    let k = format!("{name}-{run}-killed");
    let mut w = work(&k, "u-k", 0);
    w["sleep_ms"] = json!(3000);
    s.publish(&pairs[0], &topic, std::slice::from_ref(&w)).await;
    let l = s
        .wait_ledger("the slow run started", secs(60), |l| {
            l.iter()
                .any(|v| v["event_id"] == k.as_str() && v["outcome"] == "start")
        })
        .await;
    let start = l
        .iter()
        .find(|v| v["event_id"] == k.as_str() && v["outcome"] == "start")
        .unwrap();
    let victim = pairs
        .iter()
        .find(|p| start["replica"] == p.replica.as_str())
        .unwrap();
    let t_kill = e2e::now_ms() as i64;
    s.kill_app(victim);
    s.start_app(victim).await;
    s.wait_ledger("the killed run taken over", secs(120), |l| {
        has_ok(l, &handler, std::slice::from_ref(&k))
    })
    .await;
    s.settle(secs(2), secs(120)).await;
    let l = s.ledger();
    assert_eq!(ok_counts(&l, &handler).get(&k), Some(&1), "{name}: once");
    let rerun = l
        .iter()
        .filter(|v| v["event_id"] == k.as_str() && v["outcome"] == "start")
        .nth(1)
        .map(t)
        .expect("a second run");
    let lease = e2e::CLAIM_LEASE_SECS as i64 * 1000;
    assert!(
        rerun - t(start) >= lease - 500,
        "{name}: the lease held the key until it ran out ({} ms)",
        rerun - t(start)
    );
    s.note(format!(
        "{name}: the killed run was taken over {} ms after the kill",
        rerun - t_kill
    ));
}

/// The claim on `state.redis`, from two replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s12_idempotency_on_redis_across_two_replicas() {
    idempotency_on("s12a", e2e::StateStore::Redis, &["r1", "r2"]).await;
}

/// The claim on `state.postgresql`, from two replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, PostgreSQL and daprd: run scripts/e2e.sh"]
async fn s12_idempotency_on_postgresql_across_two_replicas() {
    idempotency_on("s12b", e2e::StateStore::Postgres, &["r1", "r2"]).await;
}

/// The claim on `state.in-memory`: one sidecar's memory, so one replica (its partitions run
/// concurrently); it survives the app's SIGKILL because daprd keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka and daprd: run scripts/e2e.sh"]
async fn s12_idempotency_on_in_memory_in_one_sidecar() {
    idempotency_on("s12c", e2e::StateStore::InMemory, &["r1"]).await;
}

// ---------------------------------------------------------------------------------------- 21

/// A CloudEvent id of 10 KB, written by Kafka's own producer to an idempotent handler with a
/// delayed retry: the claim key is bounded (a digest), so daprd and the state store take it;
/// the event fails once, is retried and applied once; its duplicate is skipped, and the event
/// behind it on the same key is applied. Before keys were bounded, the claim was refused and
/// the delivery answered RETRY forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s21_a_10_kb_event_id_is_claimed_applied_once_and_stalls_nothing() {
    use sha2::Digest as _;
    let mut s = Scenario::new("s21");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let user = format!("u-long-{run}");
    let source = "e2e-s21-producer";
    let long_id = format!("s21-{run}-{}", "x".repeat(10 * 1024));
    let behind = format!("s21-{run}-behind");
    let record = |id: &str, seq: u64, fail_until_attempt: u32| RawRecord {
        key: Some(user.as_bytes().to_vec()),
        value: json!({"specversion": "1.0", "id": id, "type": "e2e.work", "source": source,
            "datacontenttype": "application/json",
            "data": {"event_id": id, "user_id": user, "seq": seq,
                     "fail_until_attempt": fail_until_attempt}})
        .to_string()
        .into_bytes(),
        headers: Vec::new(),
    };
    s.produce(
        "s21-events",
        &[record(&long_id, 0, 2), record(&behind, 1, 0)],
    );
    let both = [long_id.clone(), behind.clone()];
    s.wait_ledger("both events applied", secs(90), |l| {
        has_ok(l, "s21_once", &both)
    })
    .await;
    // The duplicate, once the first is done: skipped by its claim.
    s.produce("s21-events", &[record(&long_id, 0, 0)]);
    s.settle(secs(6), secs(60)).await;
    let l = s.ledger();
    let counts = ok_counts(&l, "s21_once");
    assert_eq!(counts.get(&long_id), Some(&1), "applied once");
    assert_eq!(counts.get(&behind), Some(&1));
    let attempts: Vec<u64> = runs_of(&l, "s21_once", &long_id)
        .iter()
        .map(|v| v["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2], "failed once, retried once, then skipped");
    assert!(lines(&l, "s21_dead_letters", "dead_letter").is_empty());

    // The claim sits in the real store under the digest of source|id, and says done.
    let inner = format!("{source}|{long_id}");
    let digest: String = sha2::Sha256::digest(inner.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let key = format!("{}|e2e_app::s21::s21_once|sha256:{digest}", s.app_id);
    let v = state_get(&s, &p, &key).await;
    s.note(format!(
        "claim key {} bytes for a {} byte id; state: {v}",
        key.len(),
        long_id.len()
    ));
    assert_eq!(v["status"], "done", "{v}");
}
