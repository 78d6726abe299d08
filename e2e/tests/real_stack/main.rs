//! The real-stack scenarios: Kafka + Redis + daprd + `e2e-app`. Run with `scripts/e2e.sh`.
//!
//! Each test uses its own topics (`sN-*`), app id and Kafka consumer group, its own ledger and
//! logs; it waits by condition with deadlines and fails (it never skips) when the stack is not
//! there.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::{lines, work, PairOpts, RawRecord, Scenario, StateStore};
use serde_json::{json, Value};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// `ok` lines per `event_id`.
fn ok_counts(l: &[Value], handler: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in lines(l, handler, "ok") {
        *m.entry(v["event_id"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    m
}

fn has_ok(l: &[Value], handler: &str, ids: &[String]) -> bool {
    let c = ok_counts(l, handler);
    ids.iter().all(|id| c.contains_key(id))
}

fn runs_of<'a>(l: &'a [Value], handler: &str, id: &str) -> Vec<&'a Value> {
    l.iter()
        .filter(|v| v["handler"] == handler && v["event_id"] == id && v["outcome"] != "start")
        .collect()
}

/// The value under `key` in the pair's state store (`statestore`), or null.
async fn state_get(s: &Scenario, p: &e2e::Pair, key: &str) -> Value {
    let enc: String = key
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let resp = s
        .http
        .get(format!("{}/v1.0/state/statestore/{enc}", p.dapr_url()))
        .send()
        .await
        .expect("GET state");
    resp.json().await.unwrap_or(Value::Null)
}

fn t(v: &Value) -> i64 {
    v["time_ms"].as_i64().expect("time_ms")
}

// ---------------------------------------------------------------------------------------- 1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s1_daprd_discovers_subscriptions_with_retry_and_dlq_topics() {
    let mut s = Scenario::new("s1");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;

    let app_subs = s.app_subscriptions(&p).await;
    let meta = s.metadata(&p).await;
    let dsubs = meta["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    s.note(format!(
        "app answers {} subscriptions; daprd lists {}",
        app_subs.len(),
        dsubs.len()
    ));
    for d in &dsubs {
        s.note(format!("  daprd: {d}"));
    }
    let topics: BTreeSet<&str> = dsubs.iter().filter_map(|d| d["topic"].as_str()).collect();
    let ladder: Vec<String> = event_runtime::retry::RETRY_TIERS
        .iter()
        .map(|&tier| event_runtime::retry::retry_topic(&s.app_id, tier))
        .collect();
    let mut want: BTreeSet<&str> = ["s1-events", "s1-inline", "s1-dlq"].into();
    want.extend(ladder.iter().map(String::as_str));
    assert_eq!(
        topics, want,
        "daprd's subscribed topics: the handlers' and the app's retry ladder"
    );
    for a in &app_subs {
        let topic = a["topic"].as_str().unwrap();
        let d = dsubs
            .iter()
            .find(|d| d["topic"] == topic && d["pubsubname"] == a["pubsubname"])
            .unwrap_or_else(|| panic!("daprd lacks {topic}"));
        let drules = d["rules"].as_array().cloned().unwrap_or_default();
        let paths: Vec<&str> = drules.iter().filter_map(|r| r["path"].as_str()).collect();
        for r in a["routes"]["rules"].as_array().unwrap() {
            let rule = drules
                .iter()
                .find(|d| d["path"] == r["path"])
                .unwrap_or_else(|| panic!("daprd lacks rule {r} of {topic}: {drules:?}"));
            assert_eq!(rule["match"], r["match"], "CEL match of {topic}");
        }
        let default = a["routes"]["default"].as_str().unwrap();
        assert!(
            paths.contains(&default),
            "default route {default} of {topic} not in {paths:?}"
        );
        assert_eq!(d["type"], "PROGRAMMATIC", "{d}");
    }
    // Every topic takes its records raw, to its one route, which dispatches on the record's
    // type (main topics) or on the retry bookkeeping (retry topics).
    for a in &app_subs {
        assert_eq!(a["metadata"]["rawPayload"], "true", "{a}");
        assert_eq!(a["routes"]["rules"], json!([]), "{a}");
    }
    let subscribe_calls: Vec<Value> = s
        .requests()
        .into_iter()
        .filter(|r| r["path"] == "/dapr/subscribe")
        .collect();
    assert_eq!(
        subscribe_calls.len(),
        1,
        "daprd fetches GET /dapr/subscribe once: {subscribe_calls:?}"
    );
    assert_eq!(subscribe_calls[0]["method"], "GET");
}

// ---------------------------------------------------------------------------------------- 2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s2_framework_publisher_to_handler_with_cloudevent_attributes_and_key() {
    let mut s = Scenario::new("s2");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let mut events = Vec::new();
    let mut ids = Vec::new();
    for (user, n) in [("user-7", 5u64), ("user-42", 3)] {
        for seq in 0..n {
            let id = format!("s2-{run}-{user}-{seq}");
            events.push(work(&id, user, seq));
            ids.push(id);
        }
    }
    let t0 = Instant::now();
    let r = s.publish(&p, "s2-events", &events).await;
    assert_eq!(r["published"], 8, "{r}");
    let l = s
        .wait_ledger("8 events handled", secs(60), |l| has_ok(l, "s2_work", &ids))
        .await;
    s.note(format!(
        "publish -> handled: {:.2}s",
        t0.elapsed().as_secs_f64()
    ));
    for v in lines(&l, "s2_work", "ok") {
        let id = v["event_id"].as_str().unwrap();
        assert_eq!(v["ce_id"], id, "CloudEvent id is the event's event_id: {v}");
        assert_eq!(v["ce_type"], "e2e.work", "{v}");
        assert_eq!(
            v["ce_source"],
            s.app_id.as_str(),
            "source is the publisher's app id: {v}"
        );
        assert_eq!(v["topic"], "s2-events");
        assert_eq!(v["pubsub"], "kafka-pubsub");
        assert_eq!(v["attempt"], 1);
        assert_eq!(
            v["partition_key"], v["user"],
            "PartitionKey = the Kafka key = user id: {v}"
        );
        // daprd without a tracing configuration delivers `traceparent: ""` (the extractor
        // gives None or an empty string for it); with one, a W3C `00-...` value.
        let tp = v["traceparent"].as_str().unwrap_or_default();
        assert!(tp.is_empty() || tp.starts_with("00-"), "{v}");
    }
    let reqs: Vec<Value> = s
        .requests()
        .into_iter()
        .filter(|r| {
            r["event_id"]
                .as_str()
                .is_some_and(|e| e.starts_with(&format!("s2-{run}")))
        })
        .collect();
    assert_eq!(reqs.len(), 8, "one delivery per event: {reqs:?}");
    let mut partitions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &reqs {
        let id = r["event_id"].as_str().unwrap();
        let user = if id.contains("user-7") {
            "user-7"
        } else {
            "user-42"
        };
        assert_eq!(r["key"], user, "Kafka __key header: {r}");
        assert_eq!(
            r["eventversion"], "1.0",
            "the version, sent as publish metadata, arrives as a header: {r}"
        );
        assert_eq!(
            r["path"], "/_dispatch/kafka-pubsub/s2-events",
            "rawPayload: daprd matches the rules against its own wrapper, so the topic route: {r}"
        );
        assert_eq!(
            r["raw"], true,
            "the record in daprd's rawPayload wrapper: {r}"
        );
        assert!(r["content_type"]
            .as_str()
            .unwrap()
            .starts_with("application/cloudevents+json"));
        assert_eq!(r["datacontenttype"], "application/json");
        assert_eq!(r["answer"]["status"], "SUCCESS");
        partitions
            .entry(user.into())
            .or_default()
            .insert(r["partition"].as_str().unwrap_or("?").to_owned());
    }
    for (u, ps) in &partitions {
        assert_eq!(ps.len(), 1, "all of {u}'s events on one partition: {ps:?}");
    }
    // Order per user.
    for user in ["user-7", "user-42"] {
        let seqs: Vec<u64> = lines(&l, "s2_work", "ok")
            .iter()
            .filter(|v| v["user"] == user)
            .map(|v| v["seq"].as_u64().unwrap())
            .collect();
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(seqs, sorted, "{user} in order");
    }
}

// ---------------------------------------------------------------------------------------- 3

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s3_seed_style_publishers_are_dispatched_on_event_type() {
    let mut s = Scenario::new("s3");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    // (event_type, content type, expected handler, expected kind)
    let cases: [(&str, Option<&str>, &str, &str); 5] = [
        (
            "e2e.seed.created",
            Some("application/json"),
            "s3_changes",
            "created",
        ),
        ("e2e.seed.updated", None, "s3_changes", "updated"),
        (
            "e2e.seed.completed",
            Some("application/json"),
            "s3_completed",
            "completed",
        ),
        ("e2e.seed.completed", None, "s3_completed", "completed"),
        (
            "e2e.seed.created",
            Some("text/plain"),
            "s3_changes",
            "created",
        ),
    ];
    let mut ids = Vec::new();
    for (i, (ty, ct, _, _)) in cases.iter().enumerate() {
        let id = format!("s3-{run}-{i}");
        let body =
            json!({"event_type": ty, "event_id": id, "user_id": format!("u{i}"), "task_id": i});
        let mut req = s
            .http
            .post(format!(
                "{}/v1.0/publish/kafka-pubsub/s3-events",
                p.dapr_url()
            ))
            .body(body.to_string());
        if let Some(ct) = ct {
            req = req.header("content-type", *ct);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 204, "seed publish {i}");
        ids.push(id);
    }
    let bogus = format!("s3-{run}-bogus");
    let r = s
        .http
        .post(format!("{}/v1.0/publish/kafka-pubsub/s3-events", p.dapr_url()))
        .header("content-type", "application/json")
        .body(json!({"event_type": "e2e.seed.unknown", "event_id": bogus, "user_id": "u9", "task_id": 9}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let l = s
        .wait_ledger("5 seed events handled + 1 dead letter", secs(60), |l| {
            ids.iter().all(|id| {
                l.iter()
                    .any(|v| v["event_id"] == id.as_str() && v["outcome"] == "ok")
            }) && l
                .iter()
                .any(|v| v["outcome"] == "dead_letter" && v["event_id"].as_str().is_some())
        })
        .await;
    let reqs = s.requests();
    for (i, (ty, ct, handler, kind)) in cases.iter().enumerate() {
        let hits: Vec<&Value> = l
            .iter()
            .filter(|v| v["event_id"] == ids[i].as_str() && v["outcome"] == "ok")
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "case {i} ({ty}, {ct:?}) handled once: {hits:?}"
        );
        let v = hits[0];
        assert_eq!(v["handler"], *handler, "case {i} ({ty}, {ct:?}): {v}");
        assert_eq!(v["kind"], *kind, "case {i}: {v}");
        assert_eq!(
            v["ce_type"], "com.dapr.event.sent",
            "seed events keep Dapr's type: {v}"
        );
        let req = reqs
            .iter()
            .find(|r| r["event_id"] == ids[i].as_str() || r["ce_id"] == v["ce_id"])
            .unwrap_or_else(|| panic!("request of case {i}"));
        assert_eq!(req["path"], "/_dispatch/kafka-pubsub/s3-events", "{req}");
        s.note(format!(
            "case {i}: {ty} content-type {ct:?} -> datacontenttype {} data_is_string {} -> {handler}",
            req["datacontenttype"], req["data_is_string"]
        ));
        if ct.is_none() {
            assert_eq!(req["datacontenttype"], "text/plain", "{req}");
        }
    }
    // The unknown type is dead-lettered with the reason, not lost and not retried forever.
    let dl = l.iter().find(|v| v["outcome"] == "dead_letter").unwrap();
    assert!(
        dl["dl_reason"].as_str().unwrap().contains("no handler"),
        "{dl}"
    );
    assert_eq!(dl["dl_data"]["event_id"], bogus.as_str(), "{dl}");
    assert_eq!(dl["dl_topic"], "s3-events");
}

// ---------------------------------------------------------------------------------------- 4

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s4_retry_schedules_dlq_restart_and_inline_order() {
    let mut s = Scenario::new("s4");
    // A long claim lease: a retry that runs on time proves the failed run released its key (an
    // unreleased one would block it for two minutes).
    let long_lease = PairOpts {
        app_env: vec![
            ("EVENTS_CLAIM_LEASE_SECS".into(), "120".into()),
            ("EVENTS_HANDLER_TIMEOUT_SECS".into(), "60".into()),
        ],
        ..Default::default()
    };
    let p = s.pair("r1", long_lease);
    s.start_pair(&p).await;
    let run = uid();

    // --- B: a delayed retry (8 s) survives a restart of the app and its sidecar.
    let r_id = format!("s4-{run}-restart");
    let mut ev = work(&r_id, "u-r", 0);
    ev["fail_until_attempt"] = json!(2);
    s.publish(&p, "s4-restart", &[ev]).await;
    let l = s
        .wait_ledger("restart: attempt 1 failed", secs(60), |l| {
            !runs_of(l, "s4_restart", &r_id).is_empty()
        })
        .await;
    let t_fail = t(runs_of(&l, "s4_restart", &r_id)[0]);
    s.wait_until(
        "restart: retry scheduled (answered SUCCESS)",
        secs(30),
        |s| {
            let id = r_id.clone();
            async move {
                s.requests()
                    .iter()
                    .any(|r| r["event_id"] == id.as_str() && r["answer"]["status"] == "SUCCESS")
            }
        },
    )
    .await;
    s.kill_app(&p);
    s.stop_daprd(&p);
    s.start_pair(&p).await;
    let l = s
        .wait_ledger("restart: attempt 2 ran after the restart", secs(60), |l| {
            has_ok(l, "s4_restart", std::slice::from_ref(&r_id))
        })
        .await;
    let runs = runs_of(&l, "s4_restart", &r_id);
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1]["attempt"], 2);
    let waited = t(runs[1]) - t_fail;
    s.note(format!(
        "restart: attempt 2 ran {waited} ms after attempt 1 (delay 8000 ms)"
    ));
    assert!(waited >= 8000 - 100, "ran before its due time: {waited} ms");
    assert!(waited <= 8000 + 25_000, "ran far too late: {waited} ms");

    // --- A: schedule [2, 3] then the DLQ; a success on the first retry; a permanent failure.
    let x = format!("s4-{run}-exhaust");
    let y = format!("s4-{run}-second");
    let z = format!("s4-{run}-permanent");
    let mut ex = work(&x, "u-x", 0);
    ex["fail_until_attempt"] = json!(99);
    let mut ey = work(&y, "u-y", 0);
    ey["fail_until_attempt"] = json!(2);
    let mut ez = work(&z, "u-z", 0);
    ez["permanent"] = json!(true);
    // --- C: inline retries keep each user's order.
    let mut inline = Vec::new();
    let mut inline_ids = Vec::new();
    for user in ["u-i1", "u-i2"] {
        for seq in 0..8u64 {
            let id = format!("s4-{run}-{user}-{seq}");
            let mut e = work(&id, user, seq);
            if seq == 3 {
                e["fail_until_attempt"] = json!(2);
            }
            if seq == 5 {
                e["fail_until_attempt"] = json!(3);
            }
            inline.push(e);
            inline_ids.push(id);
        }
    }
    s.publish(&p, "s4-events", &[ex, ey, ez]).await;
    s.publish(&p, "s4-inline", &inline).await;
    s.wait_ledger(
        "schedules: y ok, x and z dead-lettered, inline done",
        secs(90),
        |l| {
            has_ok(l, "s4_delayed", std::slice::from_ref(&y))
                && has_ok(l, "s4_inline", &inline_ids)
                && [&x, &z].iter().all(|id| {
                    l.iter()
                        .any(|v| v["outcome"] == "dead_letter" && v["event_id"] == id.as_str())
                })
        },
    )
    .await;
    s.settle(secs(3), secs(30)).await;
    let l = s.ledger();

    // x: attempts 1, 2, 3 at +2 s and +3 s, then one dead letter with every failure.
    let xr = runs_of(&l, "s4_delayed", &x);
    assert_eq!(
        xr.iter()
            .map(|v| v["attempt"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3],
        "{xr:?}"
    );
    let (d1, d2) = (t(xr[1]) - t(xr[0]), t(xr[2]) - t(xr[1]));
    s.note(format!(
        "x: attempt 2 after {d1} ms (want 2000), attempt 3 after {d2} ms (want 3000)"
    ));
    assert!(
        (2000 - 100..=2000 + 10_000).contains(&d1),
        "first retry delay {d1} ms"
    );
    assert!(
        (3000 - 100..=3000 + 10_000).contains(&d2),
        "second retry delay {d2} ms"
    );
    for v in &xr[1..] {
        assert_eq!(
            v["topic"], "s4-events",
            "a retry still reports its origin topic: {v}"
        );
        assert_eq!(v["ce_id"], x.as_str());
    }
    let dls: Vec<&Value> = l
        .iter()
        .filter(|v| v["outcome"] == "dead_letter" && v["event_id"] == x.as_str())
        .collect();
    assert_eq!(dls.len(), 1, "one dead letter for x: {dls:?}");
    let d = dls[0];
    assert_eq!(d["ce_type"], "event-runtime.dead-letter");
    assert_eq!(d["topic"], "s4-dlq");
    assert_eq!(d["dl_attempts"], 3, "{d}");
    assert_eq!(d["dl_failed_attempts"], json!([1, 2, 3]), "{d}");
    assert_eq!(d["dl_permanent"], false);
    assert!(
        d["dl_handler"].as_str().unwrap().ends_with("s4_delayed"),
        "{d}"
    );
    assert!(
        d["dl_reason"]
            .as_str()
            .unwrap()
            .contains("retries exhausted"),
        "{d}"
    );
    assert_eq!(d["dl_partition_key"], "u-x");
    assert_eq!(
        d["partition_key"], "u-x",
        "the DLQ record is keyed by the user: {d}"
    );
    assert_eq!(d["dl_topic"], "s4-events");
    assert!(t(d) >= t(xr[2]));

    // y: fails once, succeeds at attempt 2 after >= 2 s.
    let yr = runs_of(&l, "s4_delayed", &y);
    assert_eq!(yr.len(), 2, "{yr:?}");
    assert_eq!(
        (yr[0]["outcome"].as_str(), yr[1]["outcome"].as_str()),
        (Some("fail"), Some("ok"))
    );
    assert!(t(yr[1]) - t(yr[0]) >= 1900, "{yr:?}");
    assert!(!l
        .iter()
        .any(|v| v["outcome"] == "dead_letter" && v["event_id"] == y.as_str()));

    // z: permanent, one run, dead-lettered at once.
    let zr = runs_of(&l, "s4_delayed", &z);
    assert_eq!(zr.len(), 1, "{zr:?}");
    let dz: Vec<&Value> = l
        .iter()
        .filter(|v| v["outcome"] == "dead_letter" && v["event_id"] == z.as_str())
        .collect();
    assert_eq!(dz.len(), 1, "{dz:?}");
    assert_eq!(dz[0]["dl_permanent"], true);
    assert_eq!(dz[0]["dl_attempts"], 1);

    // Inline: per user, successes in seq order; each retry waited its delay in place, and
    // nothing after it ran before it succeeded.
    for user in ["u-i1", "u-i2"] {
        let runs: Vec<&Value> = l
            .iter()
            .filter(|v| v["handler"] == "s4_inline" && v["user"] == user)
            .collect();
        let oks: Vec<u64> = runs
            .iter()
            .filter(|v| v["outcome"] == "ok")
            .map(|v| v["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(
            oks,
            (0..8).collect::<Vec<_>>(),
            "{user} in order, each once: {runs:?}"
        );
        let seq_of = |v: &Value| v["seq"].as_u64().unwrap();
        let order: Vec<(u64, u64)> = runs
            .iter()
            .map(|v| (seq_of(v), v["attempt"].as_u64().unwrap()))
            .collect();
        assert_eq!(
            order,
            [
                (0, 1),
                (1, 1),
                (2, 1),
                (3, 1),
                (3, 2),
                (4, 1),
                (5, 1),
                (5, 2),
                (5, 3),
                (6, 1),
                (7, 1)
            ],
            "{user}: runs in order"
        );
        for pair in runs.windows(2) {
            if seq_of(pair[0]) == seq_of(pair[1]) {
                let gap = t(pair[1]) - t(pair[0]);
                assert!(
                    gap >= 950,
                    "{user}: inline retry after {gap} ms (delay 1000)"
                );
            }
        }
    }
}

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
    // Per user, in ledger order (appends are ordered across processes).
    let mut by_user: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for v in &oks {
        by_user
            .entry(v["user"].as_str().unwrap())
            .or_default()
            .push(v["seq"].as_u64().unwrap());
    }
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

// ---------------------------------------------------------------------------------------- 7

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s7_app_and_dapr_api_tokens_enforced_end_to_end() {
    let mut s = Scenario::new("s7");
    let (app_tok, dapr_tok) = ("app-secret-7", "dapr-secret-7");
    let both = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
    let mut opts = PairOpts {
        app_env: both("APP_API_TOKEN", app_tok),
        daprd_env: both("APP_API_TOKEN", app_tok),
    };
    opts.app_env.extend(both("DAPR_API_TOKEN", dapr_tok));
    opts.daprd_env.extend(both("DAPR_API_TOKEN", dapr_tok));
    let p = s.pair("r1", opts);
    s.start_pair(&p).await;
    let run = uid();
    let id = format!("s7-{run}-0");
    let r = s.publish(&p, "s7-events", &[work(&id, "u7", 0)]).await;
    assert_eq!(
        r["published"], 1,
        "the app's publisher sends DAPR_API_TOKEN: {r}"
    );
    s.wait_ledger("event handled through both tokens", secs(60), |l| {
        has_ok(l, "s7_work", std::slice::from_ref(&id))
    })
    .await;
    for r in s.requests() {
        assert_eq!(
            r["had_token"], true,
            "daprd sends APP_API_TOKEN on every call: {r}"
        );
        if r["path"] != "/dapr/config" {
            assert_eq!(r["http_status"], 200, "{r}");
        }
    }
    // App -> sidecar without / with a wrong token: 401.
    let publish = format!("{}/v1.0/publish/kafka-pubsub/s7-events", p.dapr_url());
    let body = work(&format!("s7-{run}-x"), "u7", 1).to_string();
    for tok in [None, Some("wrong")] {
        let mut req = s
            .http
            .post(&publish)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(t) = tok {
            req = req.header("dapr-api-token", t);
        }
        assert_eq!(
            req.send().await.unwrap().status().as_u16(),
            401,
            "publish with token {tok:?}"
        );
    }
    let state = format!("{}/v1.0/state/statestore/x", p.dapr_url());
    assert_eq!(
        s.http.get(&state).send().await.unwrap().status().as_u16(),
        401
    );
    // Sidecar -> app without / with a wrong token: 401, the handler does not run.
    let ce = json!({"specversion": "1.0", "id": format!("s7-{run}-forged"), "type": "e2e.work", "source": "x",
        "datacontenttype": "application/json", "data": work(&format!("s7-{run}-forged"), "u7", 2)});
    for tok in [None, Some("wrong")] {
        for path in [
            "/events/s7-events/s7_work",
            "/_dispatch/kafka-pubsub/s7-events",
        ] {
            let mut req = s.http.post(format!("{}{path}", p.app_url())).json(&ce);
            if let Some(t) = tok {
                req = req.header("dapr-api-token", t);
            }
            assert_eq!(
                req.send().await.unwrap().status().as_u16(),
                401,
                "{path} with {tok:?}"
            );
        }
        let mut req = s.http.get(format!("{}/dapr/subscribe", p.app_url()));
        if let Some(t) = tok {
            req = req.header("dapr-api-token", t);
        }
        assert_eq!(
            req.send().await.unwrap().status().as_u16(),
            401,
            "/dapr/subscribe with {tok:?}"
        );
    }
    // A sidecar without APP_API_TOKEN gets no subscriptions from the app, and an app with the
    // wrong DAPR_API_TOKEN cannot publish.
    let bad = s.pair(
        "r2",
        PairOpts {
            app_env: vec![
                ("APP_API_TOKEN".into(), app_tok.into()),
                ("DAPR_API_TOKEN".into(), "not-the-token".into()),
            ],
            daprd_env: both("DAPR_API_TOKEN", dapr_tok),
        },
    );
    s.start_app(&bad).await;
    s.start_daprd(&bad).await;
    s.wait_until(
        "r2's daprd asked for the subscriptions",
        secs(30),
        |s| async move {
            s.requests()
                .iter()
                .any(|r| r["replica"] == "r2" && r["path"] == "/dapr/subscribe")
        },
    )
    .await;
    let sub = s
        .requests()
        .into_iter()
        .find(|r| r["replica"] == "r2" && r["path"] == "/dapr/subscribe")
        .unwrap();
    assert_eq!(sub["http_status"], 401, "{sub}");
    assert_eq!(sub["had_token"], false);
    let meta = s.metadata(&bad).await;
    assert!(
        meta["subscriptions"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "no subscriptions for a sidecar without the token: {meta}"
    );
    let r = s
        .publish_with(
            &bad,
            "s7-events",
            &[work(&format!("s7-{run}-bad"), "u7", 3)],
            0,
        )
        .await;
    assert_eq!(r["published"], 0, "{r}");
    assert!(
        r["failed"][0]["error"].as_str().unwrap().contains("401"),
        "{r}"
    );
    s.settle(secs(2), secs(30)).await;
    assert_eq!(
        ok_counts(&s.ledger(), "s7_work").len(),
        1,
        "only the legitimate event ran"
    );
}

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

// ---------------------------------------------------------------------------------------- 9

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s9_broker_restart_loses_nothing() {
    let mut s = Scenario::new("s9");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let mk = |batch: &str, users: u64, per: u64| {
        let mut v = Vec::new();
        for seq in 0..per {
            for u in 0..users {
                let mut e = work(
                    &format!("s9-{run}-{batch}-u{u}-{seq}"),
                    &format!("u{u}"),
                    seq,
                );
                if seq % 7 == 3 {
                    e["fail_until_attempt"] = json!(2); // delayed retries in flight across the outage
                }
                e["sleep_ms"] = json!(if batch == "a" { 40 } else { 0 });
                v.push(e);
            }
        }
        v
    };
    let b1 = mk("a", 20, 15);
    let b2 = mk("b", 10, 10);
    let all: Vec<String> = b1
        .iter()
        .chain(&b2)
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    let r = s.publish(&p, "s9-events", &b1).await;
    assert_eq!(r["published"], 300, "{r}");
    s.wait_ledger("some of batch a applied", secs(60), |l| {
        lines(l, "s9_work", "ok").len() >= 30
    })
    .await;
    s.stack("stack_stop_kafka");
    let t_down = Instant::now();
    assert!(
        std::net::TcpStream::connect(&s.env.kafka_bootstrap).is_err(),
        "Kafka still accepts connections: the outage did not happen"
    );
    let before = ok_counts(&s.ledger(), "s9_work").len();
    // Publish batch b while the broker is down (each publish retried until Kafka is back).
    let http = s.http.clone();
    let url = format!("{}/control/publish", p.app_url());
    let b2c = b2.clone();
    let publishing = tokio::spawn(async move {
        http.post(url)
            .json(&json!({"topic": "s9-events", "events": b2c, "retry_for_ms": 180_000, "parallel": 10}))
            .send()
            .await
            .expect("publish b")
            .json::<Value>()
            .await
            .expect("publish b answer")
    });
    // An outage long enough for publishes, deliveries and retry scheduling to fail.
    tokio::time::sleep(secs(8)).await;
    s.stack("stack_kafka_launch");
    let t_up = e2e::now_ms() as i64;
    let during = ok_counts(&s.ledger(), "s9_work").len();
    s.note(format!(
        "kafka was down {:.1}s; applied: {before} when it stopped, {during} when it was back, of {}",
        t_down.elapsed().as_secs_f64(),
        all.len()
    ));
    assert!(
        before < b1.len(),
        "the broker stopped while batch a was still being consumed"
    );
    let r = publishing.await.unwrap();
    s.note(format!("batch b publish: {r}"));
    assert_eq!(r["published"], 100, "{r}");
    s.wait_ledger("every event of both batches applied", secs(300), |l| {
        has_ok(l, "s9_work", &all)
    })
    .await;
    s.settle(secs(4), secs(60)).await;
    let l = s.ledger();
    let counts = ok_counts(&l, "s9_work");
    for id in &all {
        assert_eq!(counts.get(id), Some(&1), "{id} applied exactly once");
    }
    assert!(
        lines(&l, "s9_dead_letters", "dead_letter").is_empty(),
        "nothing dead-lettered"
    );
    // Retries crossed the outage: failed before the broker was back (before it went down, or on
    // records daprd had fetched before, with the retry's publish refused until it was back), and
    // applied after.
    let across: Vec<&str> = lines(&l, "s9_work", "fail")
        .iter()
        .filter(|f| t(f) < t_up)
        .filter_map(|f| {
            let id = f["event_id"].as_str()?;
            let ok = l.iter().find(|v| {
                v["handler"] == "s9_work" && v["event_id"] == id && v["outcome"] == "ok"
            })?;
            (t(ok) > t_up).then_some(id)
        })
        .collect();
    s.note(format!("{} retries crossed the outage", across.len()));
    assert!(!across.is_empty(), "no retry crossed the outage");
    let retried = runs_of(&l, "s9_work", &all[3 * 20]).len();
    s.note(format!(
        "{} ok, a retried event ran {retried} times",
        counts.len()
    ));
}

// ---------------------------------------------------------------------------------------- 10

/// Records no Dapr publisher wrote, put on the topic with Kafka's own Java producer, all on the
/// partition of one user and ahead of that user's good events: bytes that are not JSON, JSON that
/// is no CloudEvent, a CloudEvent no handler takes (with a number `f64` cannot hold), and a
/// CloudEvent whose forged retry bookkeeping claims attempt 9. None stalls the partition, each
/// bad record lands in the app's DLQ once with its exact bytes, and the forged event runs every
/// attempt of its schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s10_records_from_outside_never_stall_a_partition_nor_skip_a_retry() {
    use base64::Engine as _;
    let mut s = Scenario::new("s10");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;

    let user = "u-poison";
    let not_json = b"\xff\xfe\x00 not JSON at all".to_vec();
    let not_a_cloudevent = b"[1,2,3]".to_vec();
    let nobody_takes = br#"{"specversion":"1.0","id":"s10-nobody","type":"nobody.takes.this","source":"x","data":{"n":123456789012345678901234567890}}"#.to_vec();
    let forged =
        json!({"specversion": "1.0", "id": "s10-forged", "type": "e2e.work", "source": "x",
        "datacontenttype": "application/json", "evrattempt": "9", "evrdue": "99999999999999",
        "evrhandler": "e2e_app::s10::s10_work", "evrtopic": "../../state/statestore",
        "data": {"event_id": "s10-forged", "user_id": user, "seq": 0, "fail_until_attempt": 3}})
        .to_string()
        .into_bytes();
    let bad = [&not_json, &not_a_cloudevent, &nobody_takes];
    let records: Vec<RawRecord> = [&not_json, &not_a_cloudevent, &nobody_takes, &forged]
        .into_iter()
        .map(|value| RawRecord {
            key: Some(user.as_bytes().to_vec()),
            value: value.clone(),
            headers: Vec::new(),
        })
        .collect();
    s.produce("s10-events", &records);
    let good: Vec<Value> = (1..=3)
        .map(|i| work(&format!("s10-good-{i}"), user, i))
        .collect();
    s.publish(&p, "s10-events", &good).await;

    let want_ok = ["s10-good-1", "s10-good-2", "s10-good-3", "s10-forged"].map(String::from);
    let l = s
        .wait_ledger(
            "good events handled behind the bad records, forged one after its retries",
            secs(120),
            |l| {
                has_ok(l, "s10_work", &want_ok)
                    && lines(l, "s10_dead_letters", "dead_letter").len() >= bad.len()
            },
        )
        .await;
    // The good events ran in order, on the partition the bad records came first on.
    let seqs: Vec<u64> = lines(&l, "s10_work", "ok")
        .iter()
        .filter(|v| v["event_id"].as_str().unwrap_or("").starts_with("s10-good"))
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    // The forged bookkeeping was ignored: every attempt of [1, 2] ran, from the first.
    let attempts: Vec<u64> = runs_of(&l, "s10_work", "s10-forged")
        .iter()
        .map(|v| v["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3], "forged attempt count ignored");
    s.settle(secs(6), secs(60)).await;
    let l = s.ledger();
    let letters = lines(&l, "s10_dead_letters", "dead_letter");
    for record in bad {
        let b64 = base64::engine::general_purpose::STANDARD.encode(record);
        let of_it: Vec<_> = letters
            .iter()
            .filter(|v| v["dl_record"] == b64.as_str())
            .collect();
        assert_eq!(
            of_it.len(),
            1,
            "one dead letter with the exact bytes of {}",
            String::from_utf8_lossy(record)
        );
        assert_eq!(of_it[0]["dl_topic"], "s10-events");
        assert!(!of_it[0]["dl_reason"].as_str().unwrap().is_empty());
    }
    assert_eq!(letters.len(), bad.len(), "nothing else dead-lettered");

    // Replayed through the sidecar, a record goes back byte for byte: the CloudEvent nobody
    // takes is dead-lettered a second time with the very same bytes.
    let b64 = base64::engine::general_purpose::STANDARD.encode(&nobody_takes);
    let letter = letters
        .iter()
        .find(|v| v["dl_record"] == b64.as_str())
        .map(|v| v["dl_letter"].clone())
        .unwrap();
    let report = s.replay(&p, &[letter]).await;
    assert_eq!(report["replayed"], 1, "{report}");
    let l = s
        .wait_ledger("the replayed record dead-lettered again", secs(60), |l| {
            lines(l, "s10_dead_letters", "dead_letter")
                .iter()
                .filter(|v| v["dl_record"] == b64.as_str())
                .count()
                == 2
        })
        .await;
    let again: Vec<_> = lines(&l, "s10_dead_letters", "dead_letter")
        .into_iter()
        .filter(|v| v["dl_record"] == b64.as_str())
        .collect();
    assert_eq!(again[1]["event_id"], "s10-nobody");
    assert_eq!(again[1]["dl_topic"], "s10-events");
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
    let total: usize = std::env::var("E2E_S11_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let lease = 6u64;
    let opts = || PairOpts {
        app_env: vec![
            ("EVENTS_CLAIM_LEASE_SECS".into(), lease.to_string()),
            (
                "EVENTS_HANDLER_TIMEOUT_SECS".into(),
                (lease - 1).to_string(),
            ),
        ],
        ..Default::default()
    };
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

// ---------------------------------------------------------------------------------------- 14

/// A retry pending on the retry ladder when the app is redeployed with another schedule: the
/// first attempt fails and waits 30 s on the ladder; the app comes back retrying after 2 and 2 s,
/// and the pending retry still runs when due, and the next one follows the new schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s14_a_redeploy_with_another_schedule_strands_no_retry() {
    let mut s = Scenario::new("s14");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let id = format!("s14-{}", uid());
    let mut w = work(&id, "u14", 0);
    w["fail_until_attempt"] = json!(3);
    s.publish(&p, "s14-events", std::slice::from_ref(&w)).await;
    let l = s
        .wait_ledger("the first attempt failed", secs(60), |l| {
            runs_of(l, "s14_work", &id).len() == 1
        })
        .await;
    let first = t(runs_of(&l, "s14_work", &id)[0]);
    // The redeploy: the app stops, and comes back with `retry = [2, 2]`.
    s.stop_app(&p, secs(10));
    s.start_app(&p.with_app_env("E2E_RETRY", "2,2")).await;
    let l = s
        .wait_ledger("the pending retry ran, then the next one", secs(120), |l| {
            has_ok(l, "s14_work", std::slice::from_ref(&id))
        })
        .await;
    let runs: Vec<(u64, i64)> = runs_of(&l, "s14_work", &id)
        .iter()
        .map(|v| (v["attempt"].as_u64().unwrap(), t(v)))
        .collect();
    assert_eq!(
        runs.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "{runs:?}"
    );
    let (second, third) = (runs[1].1 - first, runs[2].1 - runs[1].1);
    s.note(format!("attempt 2 after {second} ms (old schedule, 30 s), attempt 3 {third} ms later (new schedule, 2 s)"));
    assert!((29_000..40_000).contains(&second), "{second} ms");
    assert!((1_500..8_000).contains(&third), "{third} ms");
    assert!(lines(&l, "s14_dead_letters", "dead_letter").is_empty());
}

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

// ---------------------------------------------------------------------------------------- 19

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s19_one_trace_from_the_publisher_through_daprd_and_the_handler_to_its_own_publish() {
    let mut s = Scenario::new("s19");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let id = format!("s19-{run}");
    // An upstream publisher's span: its own trace id and span id, and a vendor's tracestate.
    let trace_id = format!("{run}{run}{run}{run}");
    let parent_id = format!("{run}{run}");
    let traceparent = format!("00-{trace_id}-{parent_id}-01");
    let tracestate = format!("e2e=s19{run}");
    let event = work(&id, "user-19", 0);
    // Straight to daprd's publish API, as a service with another SDK would; a 5xx (Kafka's "not
    // the leader" just after the topic was made) is tried again.
    let mut published = None;
    for _ in 0..30 {
        let answer = s
            .http
            .post(format!("{}/v1.0/publish/kafka-pubsub/s19-in", p.dapr_url()))
            .query(&[
                ("metadata.cloudevent.id", id.as_str()),
                ("metadata.cloudevent.type", "e2e.work"),
                ("metadata.cloudevent.source", "upstream"),
                ("metadata.cloudevent.traceparent", traceparent.as_str()),
                ("metadata.cloudevent.tracestate", tracestate.as_str()),
                ("metadata.partitionKey", "user-19"),
            ])
            .header("content-type", "application/json")
            .body(event.to_string())
            .send()
            .await
            .expect("publish to daprd");
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        if status.is_success() {
            published = Some(());
            break;
        }
        s.note(format!("publish answered {status}: {body}"));
        assert!(status.is_server_error(), "{status}: {body}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(published.is_some(), "daprd never took the publish");

    let forwarded = format!("{id}-fwd");
    let l = s
        .wait_ledger("the forwarded event handled", secs(60), |l| {
            has_ok(l, "s19_sink", std::slice::from_ref(&forwarded))
        })
        .await;
    let received = |handler: &str, id: &str| -> (String, String) {
        let v = runs_of(&l, handler, id)[0];
        (
            v["traceparent"].as_str().unwrap_or_default().to_owned(),
            v["tracestate"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let ids = |tp: &str| -> (String, String) {
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "a W3C traceparent: {tp:?}");
        (parts[1].to_owned(), parts[2].to_owned())
    };
    // The handler got the publisher's context through daprd and Kafka, as sent.
    let (tp_in, ts_in) = received("s19_forward", &id);
    assert_eq!(tp_in, traceparent);
    assert_eq!(ts_in, tracestate);
    // Its own publish, through daprd and Kafka again: the same trace, a span of its own.
    let (tp_out, ts_out) = received("s19_sink", &forwarded);
    let (out_trace, out_parent) = ids(&tp_out);
    assert_eq!(out_trace, trace_id, "one trace id end to end");
    assert_ne!(out_parent, parent_id);
    assert_eq!(ts_out, tracestate, "the tracestate kept end to end");

    // The spans the app exported (feature `otel`): the delivery is the child of the publisher's
    // span, and the handler's publish names the delivery's span; the next delivery is its child.
    // (A span is exported when it ends, just after its handler wrote the ledger.)
    let first = delivery_span(&s, &p, &id).await;
    assert_eq!(first["trace_id"], trace_id.as_str(), "{first}");
    assert_eq!(first["parent_span_id"], parent_id.as_str(), "{first}");
    assert_eq!(first["tracestate"], tracestate.as_str(), "{first}");
    assert_eq!(first["span_id"], out_parent.as_str(), "{first}");
    let second = delivery_span(&s, &p, &forwarded).await;
    assert_eq!(second["trace_id"], trace_id.as_str(), "{second}");
    assert_eq!(second["parent_span_id"], first["span_id"], "{second}");
    s.note(format!(
        "trace {trace_id}: publisher {parent_id} -> delivery {} -> publish -> delivery {}",
        first["span_id"], second["span_id"]
    ));

    // A record Kafka's own Java producer wrote, as an instrumented service with a plain Kafka
    // client does: a CloudEvent whose envelope names no trace, and the producer's context in
    // `traceparent` and `tracestate` record headers. daprd passes the headers on to the app, and
    // the delivery continues that trace.
    let run2 = uid();
    let kafka_id = format!("s19k-{run2}");
    let (k_trace_id, k_parent_id) = (run2.repeat(4), run2.repeat(2));
    let k_traceparent = format!("00-{k_trace_id}-{k_parent_id}-01");
    let k_tracestate = format!("e2e=s19k{run2}");
    let record = json!({"specversion": "1.0", "id": kafka_id, "type": "e2e.work",
        "source": "a-kafka-producer", "datacontenttype": "application/json",
        "data": work(&kafka_id, "user-19", 1)});
    s.produce(
        "s19-in",
        &[RawRecord {
            key: Some(b"user-19".to_vec()),
            value: record.to_string().into_bytes(),
            headers: vec![
                ("traceparent".into(), k_traceparent.clone().into_bytes()),
                ("tracestate".into(), k_tracestate.clone().into_bytes()),
            ],
        }],
    );
    let l = s
        .wait_ledger("the Kafka producer's record handled", secs(60), |l| {
            has_ok(l, "s19_forward", std::slice::from_ref(&kafka_id))
        })
        .await;
    let v = runs_of(&l, "s19_forward", &kafka_id)[0];
    assert_eq!(v["traceparent"], k_traceparent.as_str(), "{v}");
    assert_eq!(v["tracestate"], k_tracestate.as_str(), "{v}");
    let delivery = delivery_span(&s, &p, &kafka_id).await;
    assert_eq!(delivery["trace_id"], k_trace_id.as_str(), "{delivery}");
    assert_eq!(
        delivery["parent_span_id"],
        k_parent_id.as_str(),
        "{delivery}"
    );
    assert_eq!(delivery["tracestate"], k_tracestate.as_str(), "{delivery}");
}

/// The `delivery` span of `event_id` the app exported (`GET /control/spans`), once it has ended;
/// panics after 5 s without it.
async fn delivery_span(s: &Scenario, p: &e2e::Pair, event_id: &str) -> Value {
    let deadline = Instant::now() + secs(5);
    loop {
        let spans: Vec<Value> = s
            .http
            .get(format!("{}/control/spans", p.app_url()))
            .send()
            .await
            .expect("GET /control/spans")
            .json()
            .await
            .expect("spans");
        let found = spans
            .iter()
            .find(|sp| sp["name"] == "delivery" && sp["attributes"]["event_id"] == event_id);
        match found {
            Some(span) => return span.clone(),
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            None => panic!("no delivery span of {event_id}: {spans:?}"),
        }
    }
}

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

// ---------------------------------------------------------------------------------------- 22

/// Events near Kafka's 1 MiB message limit (about 830 KB, written by Kafka's own producer):
/// one fails for good, one fails into a delayed retry whose message (the record in base64)
/// would exceed the limit. Neither loops: each handler ran once, each event is dead-lettered
/// once with its record kept in the state store (`record_ref`), the small event behind them is
/// applied, and a replay of the letter brings back the exact record from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s22_events_near_the_broker_limit_are_dead_lettered_once_with_their_record_kept() {
    let mut s = Scenario::new("s22");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let user = format!("u-big-{run}");
    let padding = "p".repeat(830 * 1024);
    let record = |id: &str, seq: u64, extra: Value| {
        let mut data = json!({"event_id": id, "user_id": user, "seq": seq});
        if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
            d.extend(e);
        }
        RawRecord {
            key: Some(user.as_bytes().to_vec()),
            value: json!({"specversion": "1.0", "id": id, "type": "e2e.work",
                "source": "e2e-s22-producer", "datacontenttype": "application/json",
                "data": data})
            .to_string()
            .into_bytes(),
            headers: Vec::new(),
        }
    };
    let permanent = format!("s22-{run}-permanent");
    let transient = format!("s22-{run}-transient");
    let small = format!("s22-{run}-small");
    let records = [
        record(
            &permanent,
            0,
            json!({"permanent": true, "padding": padding}),
        ),
        record(
            &transient,
            1,
            json!({"fail_until_attempt": 2, "padding": padding}),
        ),
        record(&small, 2, json!({})),
    ];
    assert!(records[0].value.len() < 1024 * 1024 && records[0].value.len() * 4 / 3 > 1024 * 1024);
    s.produce("s22-events", &records);
    let l = s
        .wait_ledger(
            "the small event applied, both large ones dead-lettered",
            secs(120),
            |l| {
                has_ok(l, "s22_big", std::slice::from_ref(&small))
                    && lines(l, "s22_dead_letters", "dead_letter").len() >= 2
            },
        )
        .await;
    s.settle(secs(6), secs(60)).await;
    let l2 = s.ledger();
    assert!(l2.len() >= l.len());
    let l = l2;
    for id in [&permanent, &transient] {
        let runs = runs_of(&l, "s22_big", id);
        assert_eq!(runs.len(), 1, "{id} ran once, no redelivery loop");
        assert_eq!(runs[0]["outcome"], "fail");
    }
    let letters = lines(&l, "s22_dead_letters", "dead_letter");
    assert_eq!(letters.len(), 2, "one letter per large event");
    for id in [&permanent, &transient] {
        let letter = letters
            .iter()
            .find(|v| v["event_id"] == id.as_str())
            .unwrap_or_else(|| panic!("a letter for {id}"));
        let at = letter["dl_record_ref"].as_str().unwrap_or_default();
        assert!(
            at.starts_with(&s.app_id),
            "record kept in the store: {letter}"
        );
        assert!(
            letter["dl_record"].is_null(),
            "the letter carries no record"
        );
        let kept = state_get(&s, &p, at).await;
        assert!(!kept.is_null(), "the store holds the record under {at}");
    }
    let transient_letter = letters
        .iter()
        .find(|v| v["event_id"] == transient.as_str())
        .unwrap();
    assert!(
        transient_letter["dl_reason"]
            .as_str()
            .unwrap()
            .contains("cannot be scheduled"),
        "{}",
        transient_letter["dl_reason"]
    );

    // Replayed, the permanent one comes back from the store byte for byte: the handler sees
    // it again (and fails it for good again).
    let letter = letters
        .iter()
        .find(|v| v["event_id"] == permanent.as_str())
        .map(|v| v["dl_letter"].clone())
        .unwrap();
    let report = s.replay(&p, &[letter]).await;
    assert_eq!(report["replayed"], 1, "{report}");
    s.wait_ledger("the replayed event ran again", secs(60), |l| {
        runs_of(l, "s22_big", &permanent).len() == 2
            && lines(l, "s22_dead_letters", "dead_letter").len() == 3
    })
    .await;
    s.note(format!(
        "records of {} bytes: dead-lettered once each, kept in the store, replayed",
        records[0].value.len()
    ));
}
