//! Streaming subscriptions over gRPC: the framework's client of daprd's
//! `SubscribeTopicEventsAlpha1`, against the real daprd and Kafka.

use e2e::{lines, work, Scenario};
use event_runtime::__private::stream::{self, Answer};
use serde_json::Value;

use crate::support::*;

// ---------------------------------------------------------------------------------------- 30

/// daprd, with no app behind it, delivers a topic's records over the stream: each arrives once,
/// as the record's bytes (rawPayload), and an answer of SUCCESS acknowledges it, so that a new
/// stream of the same consumer group receives nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s30_a_streaming_subscription_delivers_records_and_takes_answers() {
    let mut s = Scenario::new("s30");
    let app_id = s.app_id.clone();
    let d = s.start_daprd_without_app(&app_id, "r1").await;
    let endpoint = format!("http://127.0.0.1:{}", d.dapr_grpc);
    let raw = || [("rawPayload".to_owned(), "true".to_owned())];
    let mut sub = stream::subscribe(&endpoint, None, "kafka-pubsub", "s30-events", raw())
        .await
        .expect("daprd acknowledges the subscription");

    let run = uid();
    // One key, so one partition: daprd sends an event only once the one before is answered.
    // The last is a marker: once it arrives, the three answers before it have reached daprd.
    let ids: Vec<String> = (0..4).map(|i| format!("s30-{run}-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let metadata = [
            ("metadata.cloudevent.id", id.as_str()),
            ("metadata.cloudevent.type", "e2e.work"),
            ("metadata.partitionKey", "u30"),
        ];
        let event = work(id, "u30", i as u64);
        let (status, text) = publish_raw(&s, &d.dapr_url(), "s30-events", &metadata, &event).await;
        assert!(
            (200..300).contains(&status),
            "publish {id}: {status} {text}"
        );
    }

    let mut seen = Vec::new();
    while seen.len() < ids.len() {
        let event = tokio::time::timeout(secs(60), sub.next())
            .await
            .expect("an event within 60 s")
            .expect("the stream goes on")
            .expect("an event");
        let record: Value = serde_json::from_slice(&event.data).expect("the record's bytes");
        seen.push(record["id"].as_str().unwrap_or_default().to_owned());
        sub.answer(&event.id, Answer::Success)
            .await
            .expect("answered");
    }
    assert_eq!(seen, ids, "each record once, in order, as its bytes");
    drop(sub);

    // Acknowledged: the consumer group's next stream gets none of the first three again (the
    // marker's answer may have been lost with the stream: at least once).
    let mut again = stream::subscribe(&endpoint, None, "kafka-pubsub", "s30-events", raw())
        .await
        .expect("subscribed again");
    while let Ok(next) = tokio::time::timeout(secs(8), again.next()).await {
        let event = next.expect("the stream goes on").expect("an event");
        let record: Value = serde_json::from_slice(&event.data).expect("the record's bytes");
        assert_eq!(record["id"], ids[3].as_str(), "an answered event came back");
        again
            .answer(&event.id, Answer::Success)
            .await
            .expect("answered");
    }
}

// ---------------------------------------------------------------------------------------- 31

/// The app takes its deliveries over gRPC streams (`EVENTS_TRANSPORT=grpc-stream`): daprd calls
/// no route of the app. Three users' events with delayed retries (their retry topics streamed
/// too), a permanent failure dead-lettered, duplicates skipped, and the app SIGKILLed in the
/// middle of a handler, then started again: every event is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Kafka, Redis and daprd: run scripts/e2e.sh"]
async fn s31_streamed_deliveries_retry_dead_letter_dedupe_and_survive_sigkill() {
    let mut s = Scenario::new("s31");
    s.set_app_env("EVENTS_TRANSPORT", "grpc-stream");
    let p = s.pair("r1", e2e::PairOpts::default());
    s.start_app(&p).await;
    s.start_daprd(&p).await;
    let topics = ["s31-events", "s31-dlq"].map(String::from).to_vec();
    s.wait_topics(&p, topics).await;

    let run = uid();
    let core = CoreEvents::new("s31", &run, 3, 6);
    let (events, permanent) = (&core.events, &core.permanent);
    s.publish(&p, "s31-events", events).await;
    s.publish(&p, "s31-events", &events[..3]).await; // duplicates

    let killed = format!("s31-{run}-killed");
    let mut slow = work(&killed, "u-k", 0);
    slow["sleep_ms"] = 3000.into();
    s.publish(&p, "s31-events", std::slice::from_ref(&slow))
        .await;
    s.wait_ledger("the slow handler started", secs(60), |l| {
        l.iter()
            .any(|v| v["event_id"] == killed.as_str() && v["outcome"] == "start")
    })
    .await;
    s.kill_app(&p); // SIGKILL in the middle of the handler: daprd redelivers on the new stream
    s.start_app(&p).await;

    let mut want = core.applied();
    want.push(killed.clone());
    s.wait_ledger("every event applied over the streams", secs(180), |l| {
        has_ok(l, "s31_work", &want) && !lines(l, "s31_dead_letters", "dead_letter").is_empty()
    })
    .await;
    s.settle(secs(4), secs(60)).await;
    let l = s.ledger();
    core.assert_applied_once(&l, "s31_work", &want);
    let letters = lines(&l, "s31_dead_letters", "dead_letter");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["event_id"], permanent.as_str());
    assert!(l
        .iter()
        .all(|v| v["pubsub"] == "kafka-pubsub" || v["pubsub"].is_null()));
    let http_deliveries = s
        .requests()
        .iter()
        .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with("/_")))
        .count();
    assert_eq!(
        http_deliveries, 0,
        "daprd called no delivery route of the app"
    );
}
