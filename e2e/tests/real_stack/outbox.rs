//! Outboxes: Dapr's state outbox and our SQL outbox.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::{lines, work, PairOpts, Scenario, StateStore};
use serde_json::{json, Value};

use crate::support::*;

/// 15: Dapr's state outbox (issue #12), on daprd 1.16.5. Two outbox stores: Redis publishing to
/// `s15-redis-orders`, PostgreSQL to `s15-orders`. On each, a transaction saves an order and
/// publishes its `Work` event (`StateTransaction::upsert(..).publish(..)`): it arrives with our
/// type, version and data, and daprd's own id. Then a transaction with a stale ETag, which the
/// store refuses after daprd already wrote its internal outbox message:
/// - Redis (MULTI without rollback) keeps daprd's marker key, so the refused event IS published;
/// - PostgreSQL rolls it back, so it is never published, but daprd's check of it never gives up
///   and every later outbox event of that store (one internal partition) stalls behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis, PostgreSQL and daprd: run scripts/e2e.sh"]
async fn s15_the_state_outbox_publishes_what_the_store_commits() {
    let mut s = Scenario::new("s15");
    for (name, store, topic) in [
        ("outboxredis", StateStore::Redis, "s15-redis-orders"),
        ("outboxpg", StateStore::Postgres, "s15-orders"),
    ] {
        s.add_state_store(
            name,
            store,
            &[
                ("outboxPublishPubsub", "kafka-pubsub"),
                ("outboxPublishTopic", topic),
                ("outboxDiscardWhenMissingState", "true"),
            ],
        );
    }
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let state_url = |store: &str, key: &str| format!("{}/v1.0/state/{store}/{key}", p.dapr_url());
    let get_state = |store: &str, key: &str| {
        let req = s.http.get(state_url(store, key));
        async move {
            let r = req.send().await.expect("get state");
            match r.status().as_u16() {
                204 => Value::Null,
                200 => r.json().await.expect("state JSON"),
                other => panic!("get state: {other} {}", r.text().await.unwrap_or_default()),
            }
        }
    };
    // ERR_PUBLISH_OUTBOX: daprd could not write its internal message (a Kafka producer whose
    // metadata is not fresh yet, at start-up), so it saved nothing: tried again for up to 30 s.
    let outbox = |store: &str, key: &str, event_id: &str, etag: Option<&str>| {
        let body = json!({"store": store, "key": key, "value": {"status": "placed", "by": event_id},
            "event": work(event_id, "u15", 1), "etag": etag});
        let (http, url) = (s.http.clone(), format!("{}/control/outbox", p.app_url()));
        async move {
            let deadline = Instant::now() + secs(30);
            loop {
                let v: Value = http
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .expect("POST /control/outbox")
                    .json()
                    .await
                    .expect("answer");
                if v["error_code"] != "ERR_PUBLISH_OUTBOX" || Instant::now() > deadline {
                    return v;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    for (store, handler, topic) in [
        ("outboxredis", "s15_redis_orders", "s15-redis-orders"),
        ("outboxpg", "s15_orders", "s15-orders"),
    ] {
        // Accepted: saved, and published.
        let (id, key) = (
            format!("{store}-placed-{run}"),
            format!("{store}-order-{run}"),
        );
        let r = outbox(store, &key, &id, None).await;
        assert_eq!(r["ok"], true, "{store}: {r}");
        let l = s
            .wait_ledger(&format!("{store}: the event arrived"), secs(60), |l| {
                has_ok(l, handler, std::slice::from_ref(&id))
            })
            .await;
        let got = runs_of(&l, handler, &id);
        assert_eq!(got.len(), 1, "{got:?}");
        let line = got[0];
        assert_eq!(line["ce_type"], "e2e.work", "{line}");
        assert_eq!(line["ce_source"], s.app_id, "{line}");
        assert_eq!(line["topic"], topic, "{line}");
        assert!(
            line["ce_id"].as_str().unwrap().starts_with("outbox-"),
            "daprd's id: {line}"
        );
        assert_eq!(
            (&line["user"], &line["seq"]),
            (&json!("u15"), &json!(1)),
            "{line}"
        );
        assert_eq!(
            get_state(store, &key).await,
            json!({"status": "placed", "by": id})
        );
        let delivery = s
            .requests()
            .into_iter()
            .find(|r| r["event_id"] == id.as_str())
            .expect("the delivery is in the request log");
        s.note(format!("{store}: the delivery: {delivery}"));
        assert!(delivery["key"].is_null(), "no Kafka record key: {delivery}");
        assert_eq!(delivery["attributes"]["eventversion"], "1.0", "{delivery}");
        assert_eq!(
            delivery["datacontenttype"], "application/json",
            "{delivery}"
        );

        // Refused: an upsert of an existing order with a stale ETag.
        let refused_id = format!("{store}-refused-{run}");
        let r = outbox(store, &key, &refused_id, Some("999999")).await;
        s.note(format!("{store}: stale ETag: {r}"));
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["error_code"], "ERR_STATE_TRANSACTION", "{r}");
        assert_eq!(
            get_state(store, &key).await,
            json!({"status": "placed", "by": id}),
            "{store}: the refused upsert is not saved"
        );
        if store == "outboxredis" {
            s.wait_ledger(
                "redis: the refused transaction's event was published all the same",
                secs(60),
                |l| has_ok(l, handler, std::slice::from_ref(&refused_id)),
            )
            .await;
        } else {
            // A later transaction commits, but its event waits behind the refused one.
            let (next_id, next_key) =
                (format!("{store}-next-{run}"), format!("{store}-next-{run}"));
            let r = outbox(store, &next_key, &next_id, None).await;
            assert_eq!(r["ok"], true, "{store}: {r}");
            assert_eq!(get_state(store, &next_key).await["by"], next_id.as_str());
            // daprd gives a missing state 1 s + 10 s of checks by design; give it three times that.
            s.settle(secs(35), secs(120)).await;
            let l = s.ledger();
            assert!(
                runs_of(&l, handler, &refused_id).is_empty(),
                "postgres: the refused event was published"
            );
            assert!(
                runs_of(&l, handler, &next_id).is_empty(),
                "postgres: the event after a refused transaction arrived: daprd 1.16.5's check ended after all"
            );
            s.note(
                "postgres: the refused event is not published, and the next one is stuck behind it",
            );
        }
    }
}

// ------------------------------------------------------------------------- SQL outbox (16-18)

/// `POST /control/outbox-write`: each item one change row plus its event in the app's SQL
/// outbox, one transaction each, in the given order. Fails the test unless every write committed.
async fn outbox_write(s: &Scenario, p: &e2e::Pair, topic: &str, events: &[Value], pace_ms: u64) {
    let r: Value = s
        .http
        .post(format!("{}/control/outbox-write", p.app_url()))
        .json(&json!({"topic": topic, "events": events, "pace_ms": pace_ms}))
        .send()
        .await
        .expect("POST /control/outbox-write")
        .json()
        .await
        .expect("outbox-write answer");
    assert_eq!(r["failed"], json!([]), "a write failed: {r}");
    assert_eq!(
        r["written"].as_u64(),
        Some(events.len() as u64),
        "writes committed: {r}"
    );
}

/// `GET /control/outbox-stats`: `{"pending", "sent", "changes"}` of the app's database.
async fn outbox_stats(s: &Scenario, p: &e2e::Pair) -> Value {
    let r = s
        .http
        .get(format!("{}/control/outbox-stats", p.app_url()))
        .send()
        .await
        .expect("GET /control/outbox-stats");
    assert!(r.status().is_success(), "outbox-stats: {}", r.status());
    r.json().await.expect("outbox-stats JSON")
}

/// One value of the app's `/metrics` (0 when the line is missing).
async fn app_metric(s: &Scenario, p: &e2e::Pair, name: &str) -> f64 {
    let text = s
        .http
        .get(format!("{}/metrics", p.app_url()))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `users` x `per_user` `Work` items, user by user interleaved (seq 0 of every user, then 1...).
fn outbox_events(prefix: &str, users: std::ops::Range<u64>, per_user: u64) -> Vec<Value> {
    let mut events = Vec::new();
    for seq in 0..per_user {
        for u in users.clone() {
            events.push(work(
                &format!("{prefix}-u{u}-{seq}"),
                &format!("{prefix}-user-{u}"),
                seq,
            ));
        }
    }
    events
}

/// The exact accounting of an outbox scenario: the events `handler` applied are the `written`
/// ones, each once (by event id), each user's in the order written; nothing dead-lettered.
fn assert_applied_once_in_order(s: &Scenario, handler: &str, dlq: &str, written: &[Value]) {
    let l = s.ledger();
    let counts = ok_counts(&l, handler);
    let dup: Vec<_> = counts.iter().filter(|(_, &c)| c != 1).collect();
    assert!(dup.is_empty(), "applied more than once: {dup:?}");
    let applied: BTreeSet<&str> = counts.keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = written
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        want.len(),
        written.len(),
        "the written event ids are unique"
    );
    let lost: Vec<_> = want.difference(&applied).collect();
    let extra: Vec<_> = applied.difference(&want).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "applied set != written set: lost {lost:?}, never written {extra:?}"
    );
    let mut want_by_user: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in written {
        want_by_user
            .entry(e["user_id"].as_str().unwrap())
            .or_default()
            .push(e["seq"].as_u64().unwrap());
    }
    let mut by_user: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for v in lines(&l, handler, "ok") {
        by_user
            .entry(v["user"].as_str().unwrap())
            .or_default()
            .push(v["seq"].as_u64().unwrap());
    }
    assert_eq!(by_user, want_by_user, "each user's events in written order");
    assert!(
        lines(&l, dlq, "dead_letter").is_empty(),
        "dead letters: {}",
        summarize_dead(&l, dlq)
    );
    let deliveries = s
        .requests()
        .iter()
        .filter(|r| r["path"] != "/dapr/subscribe" && r["event_id"].is_string())
        .count();
    s.note(format!(
        "{} events applied once each, in order per user ({} users); {deliveries} deliveries",
        written.len(),
        want_by_user.len()
    ));
}

fn summarize_dead(l: &[Value], dlq: &str) -> String {
    lines(l, dlq, "dead_letter")
        .iter()
        .map(|v| format!("{} ({})", v["event_id"], v["dl_reason"]))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits until the app's outbox has no pending row and `sent` rows marked sent.
async fn wait_outbox_drained(s: &Scenario, p: &e2e::Pair, sent: u64) {
    s.wait_until(
        &format!("{}: outbox drained ({sent} rows sent)", p.replica),
        secs(30),
        |s| async move {
            let st = outbox_stats(s, p).await;
            st["pending"] == 0 && st["sent"].as_u64() == Some(sent)
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------- 16

/// The sidecar is stopped while the app writes 60 changes (6 users x 10), each with its event
/// in the SQL outbox (SQLite) in one transaction: every write commits although a plain publish
/// fails at that moment; once daprd is back, the relay delivers all 60, each once (by event id),
/// in order per user, and the probe published directly while daprd was down never arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s16_outbox_writes_while_the_sidecar_is_stopped_are_delivered_once_in_order() {
    let mut s = Scenario::new("s16");
    let db = format!("sqlite://{}", s.dir.join("s16.db").display());
    let p = s.pair(
        "r1",
        PairOpts {
            app_env: vec![("E2E_OUTBOX_DB".into(), db)],
            ..PairOpts::default()
        },
    );
    s.start_pair(&p).await;
    let run = uid();
    s.stop_daprd(&p);

    // Without the outbox, the event of a write made now is lost: the publish fails.
    let probe = work(&format!("s16-{run}-probe"), "s16-probe-user", 0);
    let r = s
        .publish_with(&p, "s16-events", std::slice::from_ref(&probe), 0)
        .await;
    assert_eq!(
        r["published"], 0,
        "a direct publish with daprd stopped failed: {r}"
    );
    assert_eq!(r["failed"].as_array().map(Vec::len), Some(1), "{r}");

    let events = outbox_events(&format!("s16-{run}"), 0..6, 10);
    outbox_write(&s, &p, "s16-events", &events, 0).await;
    let st = outbox_stats(&s, &p).await;
    s.note(format!(
        "daprd stopped: {} writes committed; {st}",
        events.len()
    ));
    assert_eq!(st["changes"], 60, "{st}");
    assert_eq!(st["pending"], 60, "every event waits for the sidecar: {st}");
    assert!(
        lines(&s.ledger(), "s16_work", "ok").is_empty(),
        "nothing delivered while daprd is stopped"
    );

    s.start_daprd(&p).await;
    s.wait_subscribed(&p).await;
    let ids: Vec<String> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    s.wait_ledger("the 60 outbox events applied", secs(60), |l| {
        has_ok(l, "s16_work", &ids)
    })
    .await;
    wait_outbox_drained(&s, &p, 60).await;
    s.settle(secs(0), secs(60)).await;
    assert_applied_once_in_order(&s, "s16_work", "s16_dead_letters", &events);
    let l = s.ledger();
    assert!(
        runs_of(&l, "s16_work", probe["event_id"].as_str().unwrap()).is_empty(),
        "the directly published probe was lost, as a write without the outbox would be"
    );
}

// ---------------------------------------------------------------------------------------- 17

/// SIGKILL between commit and publish. (a) The app runs with its relay off
/// (`E2E_OUTBOX_RELAY=off`): 40 writes commit and none is published; the app is SIGKILLed and
/// restarted on the same SQLite file with its relay on: all 40 arrive. (b) 100 more writes with
/// the relay running, the app SIGKILLed as soon as they committed (the relay in the middle of
/// them, holding its bucket leases), restarted: the new relay takes the buckets once the dead
/// one's leases run out, and an idempotent consumer applies every event of both batches once, in
/// order per user, whatever was published twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s17_outbox_sigkill_between_commit_and_publish_delivers_after_restart() {
    let mut s = Scenario::new("s17");
    let db = format!("sqlite://{}", s.dir.join("s17.db").display());
    let paused = s.pair(
        "r1",
        PairOpts {
            app_env: vec![
                ("E2E_OUTBOX_DB".into(), db),
                ("E2E_OUTBOX_RELAY".into(), "off".into()),
            ],
            ..PairOpts::default()
        },
    );
    let p = paused.with_app_env("E2E_OUTBOX_RELAY", "on");
    s.start_pair(&paused).await;
    let run = uid();

    // (a) committed, not published.
    let a = outbox_events(&format!("s17-{run}-a"), 0..4, 10);
    outbox_write(&s, &paused, "s17-events", &a, 0).await;
    let st = outbox_stats(&s, &paused).await;
    s.note(format!("relay off: {} writes committed; {st}", a.len()));
    assert_eq!(st["pending"], 40, "{st}");
    assert_eq!(st["sent"], 0, "{st}");
    s.kill_app(&paused);
    assert!(
        lines(&s.ledger(), "s17_work", "ok").is_empty(),
        "nothing was published before the SIGKILL"
    );
    s.start_app(&p).await;
    let ids_a: Vec<String> = a
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    s.wait_ledger("batch a applied after the restart", secs(60), |l| {
        has_ok(l, "s17_work", &ids_a)
    })
    .await;

    // (b) SIGKILL while the relay publishes.
    let b = outbox_events(&format!("s17-{run}-b"), 0..4, 25);
    outbox_write(&s, &p, "s17-events", &b, 0).await;
    let st = outbox_stats(&s, &p).await;
    s.kill_app(&p);
    s.note(format!(
        "SIGKILLed right after {} writes committed; just before: {st}",
        b.len()
    ));
    s.start_app(&p).await;
    let ids_b: Vec<String> = b
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    s.wait_ledger("batch b applied after the restart", secs(60), |l| {
        has_ok(l, "s17_work", &ids_b)
    })
    .await;
    wait_outbox_drained(&s, &p, 140).await;
    s.settle(secs(0), secs(60)).await;
    let all: Vec<Value> = a.iter().chain(&b).cloned().collect();
    assert_applied_once_in_order(&s, "s17_work", "s17_dead_letters", &all);
}

// ---------------------------------------------------------------------------------------- 18

/// Two replicas, each with its own sidecar, write to and relay one PostgreSQL outbox: r1 writes
/// 90 events (6 users x 15, paced) while r2 starts and joins the relaying (the buckets' leases
/// are shared out under way), then r2 writes 96 (12 other users x 8). Both relays publish, no
/// event is lost, each user's events arrive in written order, each applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s18_outbox_two_replicas_relay_one_database_without_loss_or_reorder() {
    let mut s = Scenario::new("s18");
    let port = s
        .env
        .postgres_port
        .expect("POSTGRES_PORT is not set: run scripts/e2e.sh");
    let run = uid();
    let db = format!("postgres://dapr@127.0.0.1:{port}/e2e_s18_{run}");
    let opts = PairOpts {
        app_env: vec![("E2E_OUTBOX_DB".into(), db)],
        ..PairOpts::default()
    };
    let p1 = s.pair("r1", opts.clone());
    let p2 = s.pair("r2", opts);
    s.start_pair(&p1).await;

    let e1 = outbox_events(&format!("s18-{run}-r1"), 0..6, 15);
    let e2 = outbox_events(&format!("s18-{run}-r2"), 6..18, 8);
    let writing = {
        let (http, url) = (
            s.http.clone(),
            format!("{}/control/outbox-write", p1.app_url()),
        );
        let body = json!({"topic": "s18-events", "events": e1, "pace_ms": 100});
        tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&body)
                .send()
                .await
                .expect("outbox-write");
            r.json::<Value>().await.expect("outbox-write answer")
        })
    };
    s.start_pair(&p2).await;
    s.wait_until("r2's relay holds buckets", secs(30), |s| {
        let p2 = p2.clone();
        async move { app_metric(s, &p2, "event_outbox_buckets_held").await > 0.0 }
    })
    .await;
    let r1_still_writing = !writing.is_finished();
    outbox_write(&s, &p2, "s18-events", &e2, 0).await;
    let r = writing.await.expect("r1's writes");
    assert_eq!(r["failed"], json!([]), "r1: a write failed: {r}");
    assert_eq!(r["written"].as_u64(), Some(e1.len() as u64), "{r}");
    s.note(format!(
        "r1 wrote {} (still writing when r2's relay took buckets: {r1_still_writing}), r2 wrote {}",
        e1.len(),
        e2.len()
    ));

    let all: Vec<Value> = e1.iter().chain(&e2).cloned().collect();
    let ids: Vec<String> = all
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    s.wait_ledger(&format!("{} events applied", all.len()), secs(60), |l| {
        has_ok(l, "s18_work", &ids)
    })
    .await;
    wait_outbox_drained(&s, &p1, all.len() as u64).await;
    s.settle(secs(0), secs(60)).await;
    let st = outbox_stats(&s, &p2).await;
    assert_eq!(st["changes"].as_u64(), Some(all.len() as u64), "{st}");
    assert_applied_once_in_order(&s, "s18_work", "s18_dead_letters", &all);
    let mut published = Vec::new();
    for p in [&p1, &p2] {
        let n = app_metric(&s, p, "event_outbox_published_total").await;
        let held = app_metric(&s, p, "event_outbox_buckets_held").await;
        s.note(format!(
            "{}: relayed {n} events, holds {held} buckets",
            p.replica
        ));
        published.push(n);
    }
    assert!(
        published.iter().all(|&n| n > 0.0),
        "both relays published: {published:?}"
    );
    assert!(
        published.iter().sum::<f64>() >= all.len() as f64,
        "the relays published every event: {published:?}"
    );
}
