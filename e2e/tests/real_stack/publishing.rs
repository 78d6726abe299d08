//! Publishing: our publisher and seed-style publishers reach the right handler.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use e2e::{lines, work, PairOpts, Scenario};
use serde_json::{json, Value};

use crate::support::*;

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
