//! `deploy/`: every file parses, and the keys that matter say what the service needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use yaml_serde::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every YAML document under `deploy/`, by file (relative path).
fn documents() -> BTreeMap<String, Vec<Value>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&deploy_dir(), &mut files);
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let docs: Vec<Value> = yaml_serde::Deserializer::from_str(&text)
                .map(|d| {
                    Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                })
                .filter(|v| !v.is_null())
                .collect();
            let rel = path
                .strip_prefix(deploy_dir())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, docs)
        })
        .collect()
}

fn one(file: &str) -> Value {
    let docs = documents();
    let docs = docs
        .get(file)
        .unwrap_or_else(|| panic!("deploy/{file} is missing"));
    assert_eq!(docs.len(), 1, "deploy/{file} holds one document");
    docs[0].clone()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// A Dapr component's metadata as name → value (or secret reference).
fn component(file: &str, kind: &str, name: &str) -> BTreeMap<String, Value> {
    let c = one(file);
    assert_eq!(s(&c["apiVersion"]), "dapr.io/v1alpha1");
    assert_eq!(s(&c["kind"]), "Component");
    assert_eq!(s(&c["metadata"]["name"]), name);
    assert_eq!(s(&c["spec"]["type"]), kind);
    assert_eq!(s(&c["spec"]["version"]), "v1");
    c["spec"]["metadata"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            let v = if m["value"].is_null() {
                m["secretKeyRef"].clone()
            } else {
                m["value"].clone()
            };
            assert!(!v.is_null(), "{name}: {m:?} has no value");
            (s(&m["name"]).to_owned(), v)
        })
        .collect()
}

#[test]
fn every_file_parses_and_the_kustomization_lists_them() {
    let docs = documents();
    assert!(docs.len() >= 8, "{:?}", docs.keys());
    let k = one("kustomization.yaml");
    assert_eq!(s(&k["kind"]), "Kustomization");
    let listed: Vec<&str> = k["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    for file in &listed {
        assert!(
            docs.contains_key(*file),
            "kustomization lists {file}, which is not there"
        );
    }
    for file in docs.keys() {
        // The topics go to the Kafka cluster's namespace, applied on their own.
        if file != "kustomization.yaml" && file != "kafka-topics.yaml" {
            assert!(
                listed.contains(&file.as_str()),
                "deploy/{file} is not in the kustomization"
            );
        }
    }
}

#[test]
fn the_pubsub_components() {
    let m = component(
        "components/kafka-pubsub.yaml",
        "pubsub.kafka",
        "kafka-pubsub",
    );
    for key in ["brokers", "consumerGroup", "authType"] {
        assert!(m.contains_key(key), "kafka-pubsub needs {key}");
    }
    // The fan-out component: each pod its own consumer group, so each sees every update.
    let m = component(
        "components/kafka-fanout.yaml",
        "pubsub.kafka",
        example_todo::events::FANOUT_PUBSUB,
    );
    assert_eq!(s(&m["consumerID"]), "{podName}");
    assert!(
        !m.contains_key("consumerGroup"),
        "a consumerGroup would override consumerID"
    );
    assert_eq!(
        s(&m["brokers"]),
        s(&component(
            "components/kafka-pubsub.yaml",
            "pubsub.kafka",
            "kafka-pubsub"
        )["brokers"])
    );
}

#[test]
fn the_state_store_holds_the_idempotency_keys() {
    let m = component("components/statestore.yaml", "state.redis", "statestore");
    assert!(m.contains_key("redisHost") && m.contains_key("redisPassword"));
}

#[test]
fn resiliency_does_not_fight_the_framework() {
    let r = one("components/resiliency.yaml");
    assert_eq!(s(&r["kind"]), "Resiliency");
    let retries = &r["spec"]["policies"]["retries"];
    for pubsub in ["kafka-pubsub", "kafka-fanout"] {
        let inbound = &r["spec"]["targets"]["components"][pubsub]["inbound"];
        let policy = &retries[s(&inbound["retry"])];
        // RETRY from the app means "keep the event": never give up, never back off on top of
        // the framework's schedule, never cut a delivery short.
        assert_eq!(s(&policy["policy"]), "constant", "{pubsub}");
        assert_eq!(policy["maxRetries"].as_i64(), Some(-1), "{pubsub}");
        assert!(
            inbound["timeout"].is_null() && inbound["circuitBreaker"].is_null(),
            "{pubsub}"
        );
        let outbound =
            &retries[s(&r["spec"]["targets"]["components"][pubsub]["outbound"]["retry"])];
        assert!(
            outbound["maxRetries"].as_i64().unwrap() > 0,
            "publishing is retried a little"
        );
    }
}

#[test]
fn the_deployment_runs_under_dapr() {
    let d = one("app/deployment.yaml");
    assert_eq!(s(&d["kind"]), "Deployment");
    let a = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(s(&a["dapr.io/enabled"]), "true");
    assert_eq!(s(&a["dapr.io/app-id"]), "todo");
    assert_eq!(s(&a["dapr.io/enable-app-health-check"]), "true");
    assert_eq!(s(&a["dapr.io/app-health-check-path"]), "/healthz");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let port = c["ports"][0]["containerPort"].as_u64().unwrap();
    assert_eq!(s(&a["dapr.io/app-port"]), port.to_string());
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (s(&e["name"]), e))
        .collect();
    assert_eq!(s(&env["APP_PORT"]["value"]), port.to_string());
    assert_eq!(s(&env["EVENTS_MODE"]["value"]), "dapr");
    assert_eq!(
        s(&env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]),
        "todo-database"
    );
    assert_eq!(s(&c["readinessProbe"]["httpGet"]["path"]), "/healthz");
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels, &d["spec"]["selector"]["matchLabels"]);

    let svc = one("app/service.yaml");
    assert_eq!(s(&svc["kind"]), "Service");
    assert_eq!(&svc["spec"]["selector"], labels);
    assert_eq!(
        s(&svc["spec"]["ports"][0]["targetPort"]),
        s(&c["ports"][0]["name"])
    );
}

#[test]
fn the_tokens_come_from_secrets() {
    let d = one("app/deployment.yaml");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let env: BTreeMap<&str, &Value> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (s(&e["name"]), e))
        .collect();
    for var in ["APP_API_TOKEN", "ADMIN_API_TOKEN"] {
        let e = env
            .get(var)
            .unwrap_or_else(|| panic!("the deployment sets no {var}"));
        assert!(
            e["value"].is_null(),
            "{var} must not be written in the manifest"
        );
        let secret = &e["valueFrom"]["secretKeyRef"];
        assert!(!s(&secret["name"]).is_empty(), "{var}: {e:?}");
        // Dapr's injector reads the app token from the key `token`; the admin token follows suit.
        assert_eq!(s(&secret["key"]), "token", "{var}");
        assert!(
            secret["optional"].is_null(),
            "{var}: a missing secret must stop the pod"
        );
    }
    // daprd sends the same token the app requires.
    let a = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        s(&a["dapr.io/app-token-secret"]),
        s(&env["APP_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"])
    );
    assert_ne!(
        s(&env["ADMIN_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]),
        s(&env["APP_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]),
        "the ops token is not the one daprd holds"
    );
}

/// On Dapr with delayed retries the app does not start without `EVENTS_SIGNING_KEY`, and every
/// replica must share it: a dead letter one replica signed verifies on another.
#[test]
fn the_signing_key_comes_from_a_secret() {
    let d = one("app/deployment.yaml");
    let env = &d["spec"]["template"]["spec"]["containers"][0]["env"];
    let e = env
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| s(&e["name"]) == "EVENTS_SIGNING_KEY")
        .expect("the deployment sets no EVENTS_SIGNING_KEY");
    assert!(
        e["value"].is_null(),
        "the key must not be written in the manifest"
    );
    let secret = &e["valueFrom"]["secretKeyRef"];
    assert!(
        !s(&secret["name"]).is_empty() && !s(&secret["key"]).is_empty(),
        "{e:?}"
    );
    assert!(
        secret["optional"].is_null(),
        "a missing secret must stop the pod"
    );
}

#[test]
fn every_subscribed_topic_is_declared() {
    let docs = documents();
    let topics: BTreeMap<String, Value> = docs["kafka-topics.yaml"]
        .iter()
        .map(|t| {
            assert_eq!(s(&t["kind"]), "KafkaTopic");
            assert_eq!(s(&t["metadata"]["labels"]["strimzi.io/cluster"]), "kafka");
            (s(&t["spec"]["topicName"]).to_owned(), t["spec"].clone())
        })
        .collect();
    let te = &topics["task-events"];
    assert_eq!(te["partitions"].as_u64(), Some(12), "reference §3");
    assert_eq!(
        te["config"]["retention.ms"].as_u64(),
        Some(604_800_000),
        "7 days"
    );
    for sub in event_runtime::App::new()
        .with_app_id("todo")
        .subscriptions()
    {
        assert!(
            topics.contains_key(&sub.topic),
            "{} is subscribed but not declared",
            sub.topic
        );
    }
    assert!(
        topics.contains_key("dlq.dlq"),
        "where a failing DLQ handler dead-letters"
    );
}

/// A Dapr component's metadata as (name, value), in order, values as text.
fn metadata_pairs(file: &str) -> Vec<(String, String)> {
    one(file)["spec"]["metadata"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            let value = match &m["value"] {
                Value::String(v) => v.clone(),
                Value::Null => String::new(), // a secret reference
                other => yaml_serde::to_string(other).unwrap().trim().to_owned(),
            };
            (s(&m["name"]).to_owned(), value)
        })
        .collect()
}

#[test]
fn the_components_carry_the_scopes_the_app_generates() {
    // The app id of deploy/app/deployment.yaml.
    let app = example_todo::declare(event_runtime::App::new())
        .with_app_id("todo")
        .with_default_dlq("dlq");
    let scopes = app.scopes();
    assert_eq!(scopes.len(), 2, "kafka-pubsub and kafka-fanout");
    for scopes in scopes {
        let file = format!("components/{}.yaml", scopes.pubsub);
        let committed = metadata_pairs(&file);
        let mut merged = committed.clone();
        scopes.merge_into(&mut merged);
        assert_eq!(
            merged, committed,
            "deploy/{file} is out of step with App::scopes(): merge `example-todo scopes` into it"
        );
    }
}
