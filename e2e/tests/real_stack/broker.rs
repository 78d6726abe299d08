//! The broker: restarts and its message size limit.

use std::time::Instant;

use e2e::{lines, work, PairOpts, RawRecord, Scenario};
use serde_json::{json, Value};

use crate::support::*;

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
