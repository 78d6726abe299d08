//! Batch handlers: a first argument `Vec<T>` or `Batch<T>` on a bulk subscription takes a bulk
//! delivery's events in one call, and its per-event results are the entries' statuses.

#![allow(missing_docs)]

use std::sync::{Arc, Mutex};

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, Batch, Event, Outcome, Permanent, State};
use serde_json::{json, Value};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "metric.sample", version = "1.0")]
pub struct Sample {
    pub user_id: String,
    pub value: i64,
}

/// One call: the handler, and the values it was given.
type Call = (&'static str, Vec<i64>);

/// Every call, in order.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    fn of(&self, handler: &str) -> Vec<Vec<i64>> {
        let calls = self.0.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.0 == handler)
            .map(|c| c.1.clone())
            .collect()
    }
}

/// One outcome per event: a negative value is dead-lettered, 0 dropped, the rest succeed.
#[event_handler(topic = "samples", bulk(max_messages = 10, max_await_ms = 50))]
async fn ingest_each(samples: Batch<Sample>, State(calls): State<Calls>) -> Vec<Outcome> {
    assert_eq!(samples.ids().len(), samples.len());
    let values = samples.iter().map(|s| s.value).collect();
    calls.0.lock().unwrap().push(("ingest_each", values));
    samples
        .iter()
        .map(|s| match s.value {
            v if v < 0 => Outcome::dead_letter(format!("negative sample {v}")),
            0 => Outcome::Drop("zero".into()),
            _ => Outcome::Success,
        })
        .collect()
}

/// One result for the whole batch: a batch holding 13 fails, and each of its events is
/// retried on its own (delayed, one second), where 13 alone fails again, and a batch holding
/// 66 fails for good.
#[event_handler(topic = "bulk-totals", bulk, retry = [1])]
async fn ingest_all(samples: Vec<Sample>, State(calls): State<Calls>) -> anyhow::Result<()> {
    let values: Vec<i64> = samples.iter().map(|s| s.value).collect();
    calls.0.lock().unwrap().push(("ingest_all", values.clone()));
    if values.contains(&66) {
        return Err(Permanent::new("unlucky batch").into());
    }
    anyhow::ensure!(!values.contains(&13), "a batch with 13");
    Ok(())
}

fn entry(id: &str, value: i64) -> Value {
    json!({"entryId": id, "contentType": "application/cloudevents+json", "metadata": {"__key": "u"},
        "event": {"specversion": "1.0", "id": format!("ev-{id}"), "type": "metric.sample", "source": "s",
                  "data": {"user_id": "u", "value": value}}})
}

fn bulk(topic: &str, entries: Vec<Value>) -> String {
    json!({"id": "b1", "type": "com.dapr.event.sent.bulk", "topic": topic, "pubsubname": "kafka-pubsub",
        "metadata": {}, "entries": entries})
    .to_string()
}

fn statuses(answer: &Value) -> Vec<(String, String)> {
    answer["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap().to_owned();
            (field("entryId"), field("status"))
        })
        .collect()
}

fn pairs<const N: usize>(want: [(&str, &str); N]) -> Vec<(String, String)> {
    want.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn one_call_per_bulk_delivery_and_each_result_is_its_entrys_status() {
    let calls = Calls::default();
    let app = TestApp::start(app!().with_state(calls.clone())).await;
    let entries = vec![
        entry("1", 5),
        entry("2", -1),
        entry("3", 0),
        {
            // Not a CloudEvent: dead-lettered on its own, never in the batch.
            json!({"entryId": "4", "event": "%%%"})
        },
        entry("5", 7),
    ];
    let (code, answer) = app
        .post("/_dispatch/kafka-pubsub/samples", bulk("samples", entries))
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        statuses(&answer),
        pairs([
            ("1", "SUCCESS"),
            ("2", "DROP"),
            ("3", "DROP"),
            ("4", "DROP"),
            ("5", "SUCCESS")
        ])
    );
    assert_eq!(calls.of("ingest_each"), [vec![5, -1, 0, 7]], "one call");
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters
        .iter()
        .any(|l| l.reason.contains("negative sample -1")));
    assert!(letters
        .iter()
        .any(|l| l.reason.contains("not valid base64")));
    let runs = app.runs_of("ingest_each");
    let outcomes: Vec<String> = runs.iter().map(|r| r.outcome.to_string()).collect();
    assert_eq!(outcomes, ["success", "dead_letter", "drop", "success"]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_retries_each_event_on_its_own() {
    let calls = Calls::default();
    let app = TestApp::start(app!().with_state(calls.clone())).await;
    let entries = vec![entry("a", 1), entry("b", 13), entry("c", 2)];
    let (_, answer) = app
        .post(
            "/_dispatch/kafka-pubsub/bulk-totals",
            bulk("bulk-totals", entries),
        )
        .await;
    // Each event's retry is scheduled: safe in the broker, so SUCCESS.
    assert_eq!(
        statuses(&answer),
        pairs([("a", "SUCCESS"), ("b", "SUCCESS"), ("c", "SUCCESS")])
    );
    app.wait_idle().await;
    let mut calls_made = calls.of("ingest_all");
    assert_eq!(calls_made.remove(0), [1, 13, 2]);
    calls_made.sort();
    assert_eq!(calls_made, [vec![1], vec![2], vec![13]], "each alone, once");
    let letters = app.dead_letters("dlq");
    assert_eq!(
        letters.len(),
        1,
        "13 failed alone too: its retries are spent"
    );
    assert_eq!(letters[0].failures.len(), 2, "{letters:?}");

    // A permanent failure skips the retries: every entry of the batch is dead-lettered alone.
    let entries = vec![entry("d", 66), entry("e", 3)];
    let (_, answer) = app
        .post(
            "/_dispatch/kafka-pubsub/bulk-totals",
            bulk("bulk-totals", entries),
        )
        .await;
    assert_eq!(statuses(&answer), pairs([("d", "DROP"), ("e", "DROP")]));
    assert_eq!(app.dead_letters("dlq").len(), 3);
}

#[tokio::test]
async fn a_single_delivery_runs_as_a_batch_of_one() {
    let calls = Calls::default();
    let app = TestApp::start(app!().with_state(calls.clone())).await;
    app.publish(
        "samples",
        &Sample {
            user_id: "u".into(),
            value: 3,
        },
    )
    .await
    .unwrap();
    app.wait_idle().await;
    let sizes: Vec<usize> = calls.of("ingest_each").iter().map(Vec::len).collect();
    assert_eq!(sizes.iter().sum::<usize>(), 1);
    let (_, answer) = app
        .post(
            "/events/samples/ingest_each",
            entry("x", 4)["event"].to_string(),
        )
        .await;
    assert_eq!(answer, json!({"status": "SUCCESS"}));
}
