//! `example-todo manifests` and `asyncapi`: generated from the code, valid, and complete.

use event_runtime::App;
use serde_json::Value;

fn docs(yaml: &str) -> Vec<yaml_serde::Value> {
    yaml_serde::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML document"))
        .collect()
}

#[test]
fn manifests_cover_every_subscription_and_declared_topic() {
    let app = example_todo::declare(App::new().with_app_id("todo"));
    let all = docs(&app.manifests());
    let subs: Vec<_> = all.iter().filter(|d| d["kind"] == "Subscription").collect();
    assert_eq!(subs.len(), app.subscriptions().len());
    for s in &subs {
        assert_eq!(s["apiVersion"], "dapr.io/v2alpha1");
        assert!(s["spec"]["routes"]["default"]
            .as_str()
            .unwrap()
            .starts_with('/'));
    }
    let topic = |name: &str| {
        all.iter()
            .find(|d| {
                d["kind"] == "KafkaTopic"
                    && (d["spec"]["topicName"] == name
                        || (d["spec"]["topicName"].is_null() && d["metadata"]["name"] == name))
            })
            .unwrap_or_else(|| panic!("no KafkaTopic for {name}"))
    };
    let task_events = topic("task-events");
    assert_eq!(task_events["spec"]["partitions"], 12);
    assert_eq!(
        task_events["spec"]["config"]["retention.ms"], "604800000",
        "7 days, as a string"
    );
    for name in [
        "reminders",
        "task-updates",
        "dlq",
        "todo.retry.30s",
        "todo.retry.300s",
    ] {
        topic(name);
    }
}

#[test]
fn asyncapi_lists_every_topic_message_and_operation() {
    let doc: Value = example_todo::declare(App::new()).asyncapi();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let addresses: Vec<&str> = doc["channels"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["address"].as_str().unwrap())
        .collect();
    for topic in ["task-events", "reminders", "task-updates", "dlq"] {
        assert!(
            addresses.contains(&topic),
            "{topic} missing from {addresses:?}"
        );
    }
    let ops = doc["operations"].as_object().unwrap();
    assert!(
        ops.values().any(|o| o["action"] == "send"),
        "published events are send operations"
    );
    assert!(
        ops.values().filter(|o| o["action"] == "receive").count() >= 4,
        "one receive per handler"
    );
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"").skip(1) {
        let path = &r[..r.find('"').unwrap()];
        let mut node = &doc;
        for part in path.trim_start_matches("#/").split('/') {
            node = &node[part.replace("~1", "/").replace("~0", "~")];
        }
        assert!(!node.is_null(), "dangling $ref {path}");
    }
}

#[test]
fn event_schemas_stay_compatible_with_the_committed_snapshot() {
    // Fails on a removed or retyped field, or a new required one, in a published major version.
    // After an intended change: EVENT_SCHEMAS_UPDATE=1 cargo test -p example-todo, and review.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/event-schemas.json");
    event_runtime::schema::check_snapshot(path).unwrap();
}
