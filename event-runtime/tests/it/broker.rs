//! Promises about the embedded broker and the deliveries, checked by recording every request the
//! broker makes to the app's router and every `tracing` span a delivery opens: the broker reads
//! the app's own `/dapr/subscribe`, delivers through the routes it names, as bulk batches and
//! rawPayload wrappers when it says so; and each delivery runs in a span that names the event.

#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{recording, Exchange, Recorded};
use axum::body::Bytes;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use event_runtime::testing::TestApp;
use event_runtime::{event_handler, App, Attempt, Event, State};
use serde_json::{json, Value};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "parcel.sent", version = "1.0")]
pub struct ParcelSent {
    pub event_id: String,
    pub user_id: String,
}

/// The event ids each handler ran with.
#[derive(Clone, Default)]
struct Ran(Arc<Mutex<BTreeMap<&'static str, Vec<String>>>>);

impl Ran {
    fn push(&self, handler: &'static str, id: String) {
        self.0.lock().unwrap().entry(handler).or_default().push(id);
    }
}

#[event_handler(topic = "emb-plain")]
async fn on_plain(e: ParcelSent, State(ran): State<Ran>) {
    ran.push("on_plain", e.event_id);
}

#[event_handler(topic = "emb-bulk", bulk(max_messages = 5, max_await_ms = 10))]
async fn on_bulk(e: ParcelSent, State(ran): State<Ran>) {
    ran.push("on_bulk", e.event_id);
}

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("not base64 ({e}): {text}"))
}

/// The CloudEvent a rawPayload record holds.
fn record_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("the record is the published CloudEvent")
}

/// The ids of the records an exchange carried, checked against the subscription it went to:
/// a bulk batch when the subscription asks for bulk, a rawPayload wrapper (the record in
/// base64) when it says `rawPayload`, the CloudEvent itself otherwise.
fn delivered_ids(x: &Exchange, sub: &Value) -> Vec<String> {
    let raw = sub["metadata"]["rawPayload"] == "true";
    let bulk = sub["bulkSubscribe"]["enabled"] == true;
    let body = x.json();
    assert_eq!(x.status, 200, "{x:?}");
    if bulk {
        assert_eq!(body["type"], "com.dapr.event.sent.bulk", "{body}");
        assert_eq!(
            (&body["topic"], &body["pubsubname"]),
            (&sub["topic"], &sub["pubsubname"])
        );
        let entries = body["entries"].as_array().expect("entries");
        let statuses = x.answer["statuses"]
            .as_array()
            .expect("one status per entry");
        assert_eq!(statuses.len(), entries.len());
        assert!(
            statuses.iter().all(|s| s["status"] == "SUCCESS"),
            "{statuses:?}"
        );
        entries
            .iter()
            .map(|entry| {
                let event = if raw {
                    assert_eq!(entry["contentType"], "application/octet-stream");
                    record_json(&b64(entry["event"].as_str().expect("base64 record")))
                } else {
                    assert_eq!(entry["contentType"], "application/cloudevents+json");
                    entry["event"].clone()
                };
                event["id"].as_str().unwrap().to_owned()
            })
            .collect()
    } else {
        assert_eq!(x.answer["status"], "SUCCESS", "{x:?}");
        assert_eq!(x.headers["content-type"], "application/cloudevents+json");
        let event = if raw {
            assert_eq!(body["type"], "com.dapr.event.sent", "{body}");
            assert_eq!(body["datacontenttype"], "application/octet-stream");
            assert_eq!(
                (&body["topic"], &body["pubsubname"]),
                (&sub["topic"], &sub["pubsubname"])
            );
            record_json(&b64(body["data_base64"].as_str().expect("data_base64")))
        } else {
            assert!(body.get("data_base64").is_none(), "{body}");
            body
        };
        vec![event["id"].as_str().unwrap().to_owned()]
    }
}

/// Starts `app`'s embedded broker on `router` wrapped in a recorder; returns the recording, after
/// `publish` ran and the broker is idle.
async fn run_broker(app: App, router: Router, publish: impl AsyncFnOnce(&App)) -> Recorded {
    let broker = app.broker();
    let app = app.with_broker(broker.clone());
    let recorded = Recorded::default();
    broker
        .start(recording(router, recorded.clone()), None)
        .await
        .unwrap();
    publish(&app).await;
    assert!(
        broker.wait_idle(Duration::from_secs(30)).await,
        "the broker did not drain"
    );
    recorded
}

/// Checks what the broker sent against what `/dapr/subscribe` answered (the first request):
/// every other request is a POST to a default route it names, shaped as its subscription says;
/// returns the event ids delivered per topic.
fn check_against_subscribe(all: &[Exchange]) -> BTreeMap<String, Vec<String>> {
    let (first, rest) = all.split_first().expect("the broker asked something");
    assert_eq!(
        (&first.method, first.path.as_str()),
        (&axum::http::Method::GET, "/dapr/subscribe"),
        "the broker reads /dapr/subscribe first"
    );
    let subs = first.answer.as_array().expect("a list of subscriptions");
    let mut by_topic: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for x in rest {
        assert_eq!(x.method, axum::http::Method::POST, "{x:?}");
        let sub = subs
            .iter()
            .find(|s| s["routes"]["default"] == x.path.as_str())
            .unwrap_or_else(|| panic!("{} is no route /dapr/subscribe names: {subs:?}", x.path));
        assert_eq!(x.headers["pubsubname"], sub["pubsubname"].as_str().unwrap());
        by_topic
            .entry(sub["topic"].as_str().unwrap().to_owned())
            .or_default()
            .extend(delivered_ids(x, sub));
    }
    by_topic
}

#[tokio::test]
async fn the_broker_delivers_through_the_routes_of_the_apps_own_dapr_subscribe() {
    let ran = Ran::default();
    let app = App::with_handlers(
        event_runtime::__private::registered()
            .into_iter()
            .filter(|h| ["on_plain", "on_bulk"].contains(&h.name())),
    )
    .unwrap()
    .with_state(ran.clone());
    let router = app.router();
    let recorded = run_broker(app, router, async |app: &App| {
        let publisher = app.publisher();
        for (topic, id) in [
            ("emb-plain", "p-1"),
            ("emb-bulk", "b-1"),
            ("emb-plain", "p-2"),
            ("emb-bulk", "b-2"),
            ("emb-bulk", "b-3"),
        ] {
            let event = ParcelSent {
                event_id: id.into(),
                user_id: "u".into(),
            };
            publisher.publish(topic, &event).await.unwrap();
        }
    })
    .await;
    let all = recorded.all();
    let subs = &all[0].answer;
    // The app's subscriptions are rawPayload, one asks for bulk: both shapes are exercised.
    assert!(
        subs.as_array()
            .unwrap()
            .iter()
            .all(|s| s["metadata"]["rawPayload"] == "true"),
        "{subs}"
    );
    assert!(
        subs.as_array()
            .unwrap()
            .iter()
            .any(|s| s["bulkSubscribe"]["enabled"] == true),
        "{subs}"
    );
    let delivered = check_against_subscribe(&all);
    assert_eq!(
        delivered,
        BTreeMap::from([
            (
                "emb-bulk".to_owned(),
                vec!["b-1".into(), "b-2".into(), "b-3".into()]
            ),
            ("emb-plain".to_owned(), vec!["p-1".into(), "p-2".into()]),
        ])
    );
    let bulk_route = subs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["topic"] == "emb-bulk")
        .unwrap()["routes"]["default"]
        .clone();
    assert!(
        all.iter()
            .any(|x| x.path == bulk_route && x.json()["entries"].as_array().unwrap().len() > 1),
        "a batch of several events"
    );
    let ran = ran.0.lock().unwrap().clone();
    assert_eq!(ran["on_plain"], ["p-1", "p-2"]);
    assert_eq!(ran["on_bulk"], ["b-1", "b-2", "b-3"]);
}

/// A router whose `/dapr/subscribe` lists `subs`; every route under `/x/` answers SUCCESS.
fn scripted_app(subs: Value) -> Router {
    Router::new()
        .route(
            "/dapr/subscribe",
            get(move || {
                let subs = subs.clone();
                async move { axum::Json(subs) }
            }),
        )
        .route(
            "/x/{route}",
            post(|body: Bytes| async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                axum::Json(match body["entries"].as_array() {
                    Some(entries) => json!({"statuses": entries.iter()
                        .map(|e| json!({"entryId": e["entryId"], "status": "SUCCESS"}))
                        .collect::<Vec<_>>()}),
                    None => json!({"status": "SUCCESS"}),
                })
            }),
        )
}

#[tokio::test]
async fn the_broker_follows_whatever_dapr_subscribe_says() {
    let sub = |topic: &str, raw: bool, bulk: bool| {
        let mut s = json!({"pubsubname": "kafka-pubsub", "topic": topic,
            "routes": {"default": format!("/x/{topic}"), "rules": []}});
        if raw {
            s["metadata"] = json!({"rawPayload": "true"});
        }
        if bulk {
            s["bulkSubscribe"] =
                json!({"enabled": true, "maxMessagesCount": 10, "maxAwaitDurationMs": 10});
        }
        s
    };
    let subs = json!([
        sub("plain", false, false),
        sub("raw", true, false),
        sub("bulk", false, true),
        sub("raw-bulk", true, true),
    ]);
    let app = App::with_handlers([]).unwrap();
    let recorded = run_broker(app, scripted_app(subs), async |app: &App| {
        let publisher = app.publisher();
        for topic in ["plain", "raw", "bulk", "raw-bulk"] {
            for n in 1..=2 {
                let event = ParcelSent {
                    event_id: format!("{topic}-{n}"),
                    user_id: "u".into(),
                };
                publisher
                    .publish_to("kafka-pubsub", topic, &event)
                    .await
                    .unwrap();
            }
        }
    })
    .await;
    let all = recorded.all();
    let delivered = check_against_subscribe(&all);
    let want = |topic: &str| vec![format!("{topic}-1"), format!("{topic}-2")];
    assert_eq!(
        delivered,
        BTreeMap::from_iter(["plain", "raw", "bulk", "raw-bulk"].map(|t| (t.to_owned(), want(t))))
    );
    let paths: BTreeSet<&str> = all[1..].iter().map(|x| x.path.as_str()).collect();
    assert_eq!(
        paths,
        BTreeSet::from(["/x/plain", "/x/raw", "/x/bulk", "/x/raw-bulk"])
    );
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "trace.me", version = "1.0")]
pub struct TraceMe {
    pub event_id: String,
    pub user_id: String,
}

#[event_handler(topic = "emb-traced", retry = [1])]
async fn traced(_e: TraceMe, Attempt(a): Attempt) -> anyhow::Result<()> {
    anyhow::ensure!(a > 1, "the first attempt fails");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn every_delivery_runs_in_a_span_naming_the_event() {
    // The process-wide subscriber: a scoped one (`set_default`) misses spans whose callsite
    // another test's thread registered first.
    let spans = &crate::support::subscriber().spans;

    let app = TestApp::start(
        App::with_handlers(
            event_runtime::__private::registered()
                .into_iter()
                .filter(|h| h.name() == "traced"),
        )
        .unwrap(),
    )
    .await;
    let event = TraceMe {
        event_id: "t-1".into(),
        user_id: "u".into(),
    };
    app.publish("emb-traced", &event).await.unwrap();
    app.wait_idle().await;
    let traceparent = app.published_to("emb-traced")[0]
        .traceparent
        .clone()
        .expect("the publish started a trace");
    let trace_id = traceparent.split('-').nth(1).unwrap().to_owned();
    assert_eq!(trace_id.len(), 32);

    let deliveries: Vec<BTreeMap<String, String>> = spans
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, fields)| {
            name == "delivery" && fields.get("handler").is_some_and(|h| h == "traced")
        })
        .map(|(_, fields)| fields.clone())
        .collect();
    // Two deliveries: the first attempt, and the retry (delivered on a retry topic).
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    for (fields, attempt) in deliveries.iter().zip(["1", "2"]) {
        let get = |k: &str| fields.get(k).map(String::as_str);
        assert_eq!(get("event_id"), Some("t-1"), "{fields:?}");
        assert_eq!(get("event_type"), Some("trace.me"), "{fields:?}");
        assert_eq!(get("topic"), Some("emb-traced"), "{fields:?}");
        assert_eq!(get("handler"), Some("traced"), "{fields:?}");
        assert_eq!(get("attempt"), Some(attempt), "{fields:?}");
        let tp = get("traceparent").unwrap_or_default();
        assert_eq!(
            tp.split('-').nth(1),
            Some(trace_id.as_str()),
            "the span names the W3C trace id: {fields:?}"
        );
    }
}
