//! Retries: schedules, the dead-letter topic, restarts and redeploys.

use e2e::{lines, work, PairOpts, Scenario};
use serde_json::{json, Value};

use crate::support::*;

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
