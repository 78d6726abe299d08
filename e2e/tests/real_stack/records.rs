//! Records from outside the framework.

use e2e::{lines, work, PairOpts, RawRecord, Scenario, SdkEvent};
use serde_json::{json, Value};

use crate::support::*;

/// `(ce_source, ce_id, event_id)` of each applied event (`ok` ledger lines).
fn applied<'a>(oks: &[&'a Value]) -> Vec<(&'a str, &'a str, &'a str)> {
    oks.iter()
        .map(|v| {
            let text = |k: &str| v[k].as_str().unwrap_or("");
            (text("ce_source"), text("ce_id"), text("event_id"))
        })
        .collect()
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

// ---------------------------------------------------------------------------------------- 25

/// Records of the CloudEvents Kafka protocol binding, written by Kafka's own producer: in binary
/// mode (the attributes as `ce_*` record headers, the data as the value), which daprd passes on
/// as headers of its rawPayload delivery; and in structured mode (the whole event as the value).
/// Each is the event it describes, applied once by source and id: a second record with the same
/// source and id is skipped, the same id from another source is another event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s25_cloudevents_kafka_binding_binary_and_structured_records_apply_once() {
    let mut s = Scenario::new("s25");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let id = format!("s25-{run}-b");
    let binary = |work_id: &str, source: &str| RawRecord {
        key: Some(b"u1".to_vec()),
        value: work(&format!("s25-{run}-{work_id}"), "u1", 0)
            .to_string()
            .into_bytes(),
        headers: [
            ("ce_specversion", "1.0"),
            ("ce_id", id.as_str()),
            ("ce_source", source),
            ("ce_type", "e2e.work"),
            ("ce_eventversion", "1.0"),
            ("content-type", "application/json"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect(),
    };
    let structured = json!({"specversion": "1.0", "id": format!("s25-{run}-s"),
        "source": "//structured", "type": "e2e.work", "datacontenttype": "application/json",
        "data": work(&format!("s25-{run}-structured"), "u1", 1)});
    s.produce(
        "s25-events",
        &[
            binary("java", "//java-producer"),
            binary("again", "//java-producer"),
            binary("other", "//other-producer"),
            RawRecord {
                key: Some(b"u1".to_vec()),
                value: structured.to_string().into_bytes(),
                headers: vec![(
                    "content-type".into(),
                    b"application/cloudevents+json".to_vec(),
                )],
            },
        ],
    );
    s.wait_ledger("the binding's records applied", secs(60), |l| {
        lines(l, "s25_work", "ok").len() >= 3
    })
    .await;
    s.settle(secs(4), secs(60)).await;
    let l = s.ledger();
    let oks = lines(&l, "s25_work", "ok");
    let seen = applied(&oks);
    s.note(format!("applied: {seen:?}"));
    let want_structured = format!("s25-{run}-s");
    let want = [
        ("//java-producer", id.as_str(), format!("s25-{run}-java")),
        ("//other-producer", id.as_str(), format!("s25-{run}-other")),
        (
            "//structured",
            want_structured.as_str(),
            format!("s25-{run}-structured"),
        ),
    ];
    assert_eq!(
        seen.len(),
        3,
        "three events, the duplicate skipped: {seen:?}"
    );
    for (source, ce_id, work_id) in &want {
        assert!(
            seen.contains(&(*source, *ce_id, work_id.as_str())),
            "{source} {ce_id} in {seen:?}"
        );
    }
    assert!(oks.iter().all(|v| v["ce_type"] == "e2e.work"));
    assert!(lines(&l, "s25_dead_letters", "dead_letter").is_empty());
}

// ---------------------------------------------------------------------------------------- 27

/// Events written by CloudEvents' own Java SDK (`io.cloudevents:cloudevents-kafka`), in binary
/// and structured mode, through daprd: each applied once, identified by source and id, so that a
/// duplicate of either mode is skipped and another producer's same id is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s27_cloudevents_sdk_records_in_both_modes_apply_once() {
    let mut s = Scenario::new("s27");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let event = |binary: bool, id: &str, source: &str, work_id: &str, seq: u64| SdkEvent {
        binary,
        key: "u27".into(),
        id: format!("s27-{run}-{id}"),
        source: source.into(),
        ty: "e2e.work".into(),
        data: work(&format!("s27-{run}-{work_id}"), "u27", seq),
    };
    s.produce_cloudevents(
        "s27-events",
        &[
            event(true, "b", "//sdk-binary", "binary", 0),
            event(true, "b", "//sdk-binary", "binary-again", 1),
            event(false, "s", "//sdk-structured", "structured", 2),
            event(false, "s", "//sdk-structured", "structured-again", 3),
            event(true, "b", "//sdk-other", "other", 4),
        ],
    );
    s.wait_ledger("the SDK's events applied", secs(60), |l| {
        lines(l, "s27_work", "ok").len() >= 3
    })
    .await;
    s.settle(secs(4), secs(60)).await;
    let l = s.ledger();
    let oks = lines(&l, "s27_work", "ok");
    let mut seen = applied(&oks);
    seen.sort_unstable();
    let (b, st) = (format!("s27-{run}-b"), format!("s27-{run}-s"));
    let (binary, structured, other) = (
        format!("s27-{run}-binary"),
        format!("s27-{run}-structured"),
        format!("s27-{run}-other"),
    );
    assert_eq!(
        seen,
        [
            ("//sdk-binary", b.as_str(), binary.as_str()),
            ("//sdk-other", b.as_str(), other.as_str()),
            ("//sdk-structured", st.as_str(), structured.as_str()),
        ],
        "each once; the duplicates of both modes skipped"
    );
    assert!(oks.iter().all(|v| v["ce_type"] == "e2e.work"));
    assert!(lines(&l, "s27_dead_letters", "dead_letter").is_empty());
}

// ---------------------------------------------------------------------------------------- 28

/// Events the app publishes to a topic it writes in binary mode (`App::with_binary_mode`),
/// through daprd and Kafka: CloudEvents' own Java SDK reads each as the binding's binary mode,
/// with the app's id, source, type, version and data, and the app's own handler applies each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s28_binary_mode_publishing_reads_back_in_cloudevents_sdk() {
    let mut s = Scenario::new("s28");
    let p = s.pair("r1", PairOpts::default());
    s.start_pair(&p).await;
    let run = uid();
    let events: Vec<Value> = (0..3)
        .map(|i| work(&format!("s28-{run}-{i}"), "u28", i))
        .collect();
    let r = s.publish(&p, "s28-binary", &events).await;
    assert_eq!(r["published"], 3, "{r}");

    let read = s.consume_cloudevents("s28-binary", 3);
    assert_eq!(read.len(), 3, "{read:?}");
    for (e, sent) in read.iter().zip(&events) {
        assert_eq!(e["mode"], "binary", "{e}");
        assert_eq!(e["id"], sent["event_id"], "{e}");
        assert_eq!(e["source"], "e2e-s28", "{e}");
        assert_eq!(e["type"], "e2e.work", "{e}");
        assert_eq!(e["datacontenttype"], "application/json", "{e}");
        assert_eq!(e["extensions"]["eventversion"], "1.0", "{e}");
        assert_eq!(e["key"], "u28", "{e}");
        let data: Value = serde_json::from_str(e["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["event_id"], sent["event_id"], "the data alone: {e}");
    }

    let ids: Vec<String> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    s.wait_ledger("the app reads its own binary records", secs(60), |l| {
        has_ok(l, "s28_work", &ids)
    })
    .await;
    s.settle(secs(3), secs(60)).await;
    let l = s.ledger();
    let counts = ok_counts(&l, "s28_work");
    assert!(ids.iter().all(|id| counts[id] == 1), "{counts:?}");
    assert!(lines(&l, "s28_work", "ok")
        .iter()
        .all(|v| v["ce_source"] == "e2e-s28" && v["ce_type"] == "e2e.work"));
}
