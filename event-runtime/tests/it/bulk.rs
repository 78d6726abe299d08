//! Bulk subscriptions: batches arrive as Dapr's bulk envelope, each entry gets its own status.

#![allow(missing_docs)]

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, Event, Permanent};
use serde_json::{json, Value};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "metric.sample", version = "1.0")]
pub struct Sample {
    pub user_id: String,
    pub value: i64,
}

#[event_handler(topic = "samples", bulk(max_messages = 10, max_await_ms = 100))]
async fn ingest(s: Sample) -> Result<(), Permanent> {
    if s.value < 0 {
        return Err(Permanent::new(format!("negative sample {}", s.value)));
    }
    Ok(())
}

#[tokio::test]
async fn subscription_asks_for_bulk() {
    let app = app!();
    let sub = &app.subscriptions()[0];
    let bulk = sub.bulk_subscribe.expect("bulkSubscribe");
    assert!(bulk.enabled);
    assert_eq!(
        (bulk.max_messages_count, bulk.max_await_duration_ms),
        (10, 100)
    );
    let json = serde_json::to_value(sub).unwrap();
    assert_eq!(
        json["bulkSubscribe"],
        json!({"enabled": true, "maxMessagesCount": 10, "maxAwaitDurationMs": 100})
    );
}

#[tokio::test]
async fn each_entry_gets_its_own_status() {
    let app = TestApp::start(app!()).await;
    let entry = |id: &str, value: i64| {
        json!({"entryId": id, "contentType": "application/cloudevents+json", "metadata": {},
            "event": {"specversion": "1.0", "id": format!("ev-{id}"), "type": "metric.sample", "source": "s",
                      "data": {"user_id": "u", "value": value}}})
    };
    let body = json!({"id": "b1", "type": "com.dapr.event.sent.bulk", "topic": "samples", "pubsubname": "kafka-pubsub",
        "metadata": {}, "entries": [entry("1", 5), entry("2", -1), entry("3", 7), {"entryId": "4", "event": "%%%"}]});
    let (code, answer) = app
        .post("/_dispatch/kafka-pubsub/samples", body.to_string())
        .await;
    assert_eq!(code, 200);
    let statuses: Vec<(String, String)> = answer["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["entryId"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("1", "SUCCESS"),
        ("2", "DROP"),
        ("3", "SUCCESS"),
        ("4", "DROP"),
    ];
    assert_eq!(statuses, want.map(|(a, b)| (a.to_owned(), b.to_owned())));
    // Each DROP has its own dead letter, with its reason and the entry's bytes.
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters[0].reason.contains("negative sample -1"),
        "{letters:?}"
    );
    let entry_2: Value = serde_json::from_slice(&letters[0].event.record_bytes().unwrap()).unwrap();
    assert_eq!(entry_2, entry("2", -1)["event"]);
    assert!(
        letters[1].reason.contains("not valid base64"),
        "{letters:?}"
    );
    assert_eq!(letters[1].event.record_bytes().unwrap(), br#""%%%""#);
}

#[tokio::test]
async fn bulk_deliveries_keep_order_and_dead_letter_a_failing_entry_alone() {
    let app = TestApp::start(app!()).await;
    for value in [1, 2, -3, 4] {
        app.publish(
            "samples",
            &Sample {
                user_id: "same-user".into(),
                value,
            },
        )
        .await
        .unwrap();
    }
    app.wait_idle().await;
    let runs = app.runs_of("ingest");
    assert_eq!(
        runs.iter()
            .map(|r| r.data["value"].clone())
            .collect::<Vec<Value>>(),
        [json!(1), json!(2), json!(-3), json!(4)]
    );
    assert_eq!(
        app.dead_letters("dlq").len(),
        1,
        "only the failing entry is dead-lettered"
    );
}
