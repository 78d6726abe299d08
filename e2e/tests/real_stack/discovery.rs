//! Subscriptions daprd discovers from the app.

use std::collections::BTreeSet;

use e2e::{PairOpts, Scenario};
use serde_json::{json, Value};

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
