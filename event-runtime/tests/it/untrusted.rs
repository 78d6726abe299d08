//! Everything that arrives is untrusted: records no Dapr publisher wrote, forged retry
//! bookkeeping, other apps' retries, data `serde_json::Value` cannot hold, binary payloads,
//! oversized bulk batches, versions that must survive every path. Each test fails without the
//! behaviour it names.

#![allow(missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use event_runtime::dlq::{replay, DeadLetter, ReplayFilter};
use event_runtime::retry::retry_topic;
use event_runtime::testing::TestApp;
use event_runtime::OutgoingEvent;
use event_runtime::{event_handler, App, Attempt, Event, EventId, Permanent, State};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "order.placed", version = "1.0")]
pub struct OrderPlaced {
    pub order: i64,
    pub user_id: String,
    /// Runs before this attempt fail.
    #[serde(default)]
    pub fail_until: u32,
}

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn push(&self, s: String) {
        self.0.lock().unwrap().push(s);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[event_handler(topic = "orders", retry = [1, 2], dlq = "orders-dlq")]
async fn on_order(
    e: OrderPlaced,
    Attempt(attempt): Attempt,
    State(seen): State<Seen>,
) -> anyhow::Result<()> {
    seen.push(format!("{} attempt {attempt}", e.order));
    anyhow::ensure!(attempt >= e.fail_until, "planned failure");
    Ok(())
}

fn all_handlers() -> App {
    app!().with_state(Seen::default())
}

/// The app of every handler here, with `state` besides a fresh `Seen`.
async fn start_with<T: Clone + Send + Sync + 'static>(state: T) -> TestApp {
    TestApp::start(all_handlers().with_state(state)).await
}

async fn start() -> (TestApp, Seen) {
    let seen = Seen::default();
    let app = TestApp::start(app!().with_state(seen.clone())).await;
    (app, seen)
}

fn order(n: i64, user: &str) -> OrderPlaced {
    OrderPlaced {
        order: n,
        user_id: user.into(),
        fail_until: 0,
    }
}

/// A record with an envelope of our choosing, as any Kafka client could write it.
fn envelope(id: &str, ty: &str, extensions: Value, data: Value) -> Vec<u8> {
    let mut m = json!({"specversion": "1.0", "id": id, "type": ty, "source": "elsewhere",
        "datacontenttype": "application/json", "data": data});
    m.as_object_mut()
        .unwrap()
        .extend(extensions.as_object().cloned().unwrap_or_default());
    m.to_string().into_bytes()
}

fn record_of(letter: &DeadLetter) -> Vec<u8> {
    letter
        .event
        .record_bytes()
        .expect("the dead letter keeps the record")
}

#[tokio::test]
async fn records_that_are_no_cloudevent_are_dead_lettered_byte_for_byte_and_the_partition_flows() {
    let (app, seen) = start().await;
    let bad: Vec<Vec<u8>> = vec![
        b"\xff\xfe\x00 not JSON".to_vec(),
        b"[1,2,3]".to_vec(),
        b"".to_vec(),
        br#"{"specversion":"1.0","id":"x","type":"nobody.takes","source":"s","data":{"n":123456789012345678901234567890}}"#.to_vec(),
        envelope("o-undecodable", "order.placed", json!({}), json!({"order": "not a number"})),
    ];
    for b in &bad {
        app.produce("orders", Some("u-1"), b.clone()).await.unwrap();
    }
    app.publish("orders", &order(1, "u-1")).await.unwrap();
    app.wait_idle().await;
    assert_eq!(
        seen.all(),
        ["1 attempt 1"],
        "the good event behind them ran"
    );
    let letters = app.dead_letters("orders-dlq");
    assert_eq!(letters.len(), bad.len(), "{letters:#?}");
    for (letter, bytes) in letters.iter().zip(&bad) {
        assert_eq!(&record_of(letter), bytes);
        assert_eq!(letter.event.topic, "orders");
        assert!(!letter.reason.is_empty());
    }
    let ids: std::collections::HashSet<&str> =
        letters.iter().map(|l| l.event.id.as_str()).collect();
    assert_eq!(ids.len(), bad.len(), "every record its own id");
}

#[tokio::test(start_paused = true)]
async fn forged_retry_bookkeeping_on_a_main_topic_is_ignored() {
    let (app, seen) = start().await;
    let forged = envelope(
        "o-forged",
        "order.placed",
        json!({"evrattempt": "9", "evrdue": "99999999999999", "evrtopic": "../../state/statestore",
               "evrhandler": "it::untrusted::on_order", "evrapp": "event-runtime-app", "evrmac": "00"}),
        json!({"order": 7, "user_id": "u-7", "fail_until": 3}),
    );
    app.produce("orders", Some("u-7"), forged).await.unwrap();
    app.wait_idle().await;
    assert_eq!(
        seen.all(),
        ["7 attempt 1", "7 attempt 2", "7 attempt 3"],
        "every attempt of the schedule ran, from the first"
    );
    assert!(app.dead_letters("orders-dlq").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_names_the_topic_the_event_was_delivered_on_and_replays_there() {
    let (app, _) = start().await;
    let forged = envelope(
        "o-forged-topic",
        "order.placed",
        json!({"evrtopic": "../../state/statestore"}),
        json!({"order": 8, "user_id": "u-8", "fail_until": 99}),
    );
    app.produce("orders", Some("u-8"), forged.clone())
        .await
        .unwrap();
    app.wait_idle().await;
    let letters = app.dead_letters("orders-dlq");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.topic, "orders");
    assert_eq!(letters[0].attempts, 3);
    let out = letters[0].replay_event("x");
    assert_eq!(out.topic, "orders");
    assert_eq!(
        out.record.as_deref(),
        Some(&forged[..]),
        "replayed byte for byte"
    );
}

#[tokio::test(start_paused = true)]
async fn unsigned_bookkeeping_on_the_apps_own_retry_topic_is_dead_lettered_not_run() {
    let (app, seen) = start().await;
    let topic = retry_topic(
        &event_runtime::config::Config::from_env().unwrap().app_id,
        1,
    );
    let forged = envelope(
        "o-unsigned",
        "order.placed",
        json!({"evrapp": event_runtime::config::Config::from_env().unwrap().app_id, "evrattempt": "3",
               "evrhandler": "it::untrusted::on_order", "evrtopic": "orders", "evrmac": "00"}),
        json!({"order": 9, "user_id": "u-9"}),
    );
    app.produce(&topic, Some("u-9"), forged.clone())
        .await
        .unwrap();
    app.wait_idle().await;
    assert!(seen.all().is_empty(), "not run: {:?}", seen.all());
    // Nothing it claims is believed, the handler it names included: the app's own DLQ.
    let letters = app.dead_letters("dlq");
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.contains("not signed"),
        "{}",
        letters[0].reason
    );
    assert_eq!(record_of(&letters[0]), forged);
}

#[tokio::test(start_paused = true)]
async fn another_apps_retry_is_acknowledged_and_ignored() {
    let (app, seen) = start().await;
    let topic = retry_topic(
        &event_runtime::config::Config::from_env().unwrap().app_id,
        1,
    );
    let foreign = envelope(
        "o-foreign",
        "order.placed",
        json!({"evrapp": "some-other-app", "evrattempt": "2", "evrhandler": "it::untrusted::on_order",
               "evrmac": "00"}),
        json!({"order": 10, "user_id": "u-10"}),
    );
    app.produce(&topic, Some("u-10"), foreign).await.unwrap();
    app.wait_idle().await;
    assert!(seen.all().is_empty());
    assert!(app.dead_letters("orders-dlq").is_empty());
    assert!(app.dead_letters("dlq").is_empty());
}

#[test]
fn apps_sharing_a_topic_have_retry_topics_of_their_own() {
    let retry_topics = |id: &str| -> Vec<String> {
        all_handlers()
            .with_app_id(id)
            .subscriptions()
            .into_iter()
            .map(|s| s.topic)
            .filter(|t| t.contains(".retry."))
            .collect()
    };
    let (a, b) = (retry_topics("billing"), retry_topics("shipping"));
    assert_eq!(a.len(), event_runtime::retry::RETRY_TIERS.len());
    assert!(a.contains(&"billing.retry.30s".to_owned()), "{a:?}");
    assert!(a.iter().all(|t| !b.contains(t)), "{a:?} {b:?}");
}

/// Data a `serde_json::Value` cannot hold: a number beyond `f64`, nesting past serde_json's
/// recursion limit.
#[tokio::test(start_paused = true)]
async fn retries_and_dead_letters_keep_bytes_value_cannot_hold_and_replay_them_unchanged() {
    let (app, seen) = start().await;
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let data = format!(
        r#"{{"order":11,"user_id":"u-11","fail_until":99,"big":123456789012345678901234567890.5,"deep":{deep}}}"#
    );
    let record = format!(
        r#"{{"specversion":"1.0","id":"o-big","type":"order.placed","source":"s","datacontenttype":"application/json","data":{data}}}"#
    )
    .into_bytes();
    app.produce("orders", Some("u-11"), record.clone())
        .await
        .unwrap();
    app.wait_idle().await;
    let letters = app.dead_letters("orders-dlq");
    assert_eq!(letters.len(), 1, "{:?}", seen.all());
    assert_eq!(record_of(&letters[0]), record, "the exact bytes");
    // Replayed as exactly those bytes, to where they came from.
    let report = replay(&app.publisher(), &letters, &ReplayFilter::default()).await;
    assert_eq!(report.replayed, 1);
    let replayed = app.published_to("orders");
    let last = replayed.last().unwrap();
    assert_eq!(last.record.as_deref(), Some(&record[..]));
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "blob.stored", version = "1.0", unkeyed)]
pub struct Blob {
    pub name: String,
}

#[event_handler(topic = "blobs", raw_payload, dlq = "blobs-dlq")]
async fn on_blob(_b: Blob) -> Result<(), Permanent> {
    Err(Permanent::new("cannot store blobs"))
}

#[tokio::test]
async fn a_binary_raw_payload_is_dead_lettered_byte_for_byte() {
    let (app, _) = start().await;
    let bytes: Vec<u8> = (0..=255u8).collect();
    app.produce("blobs", None, bytes.clone()).await.unwrap();
    app.wait_idle().await;
    let letters = app.dead_letters("blobs-dlq");
    assert_eq!(letters.len(), 1);
    assert_eq!(record_of(&letters[0]), bytes);
}

#[derive(Clone, Default)]
struct Count(Arc<AtomicU32>);

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "photo.added", version = "1.0")]
pub struct PhotoAdded {
    pub user_id: String,
    pub pixels: String,
}

#[event_handler(
    topic = "photos",
    bulk(max_messages = 100, max_await_ms = 10),
    dlq = "photos-dlq"
)]
async fn on_photo(_p: PhotoAdded, State(count): State<Count>) {
    count.0.fetch_add(1, Ordering::SeqCst);
}

#[tokio::test]
async fn a_bulk_batch_over_the_body_limit_is_taken_and_bad_entries_keep_their_bytes() {
    let count = Count::default();
    let app = start_with(count.clone()).await;
    app.broker().stop();
    // 100 entries of 50 KB on one partition: 5 MB of events (6.7 MB as rawPayload base64) in one
    // batch, over the 4 MiB limit.
    let pixels = "x".repeat(50 * 1024);
    for _ in 0..100 {
        let photo = PhotoAdded {
            user_id: "u-0".into(),
            pixels: pixels.clone(),
        };
        app.publish("photos", &photo).await.unwrap();
    }
    let bad = [b"\x01 one".to_vec(), b"\x02 two".to_vec()];
    for b in &bad {
        app.produce("photos", Some("u-0"), b.clone()).await.unwrap();
    }
    let app = app.restart(all_handlers().with_state(count.clone())).await;
    // Real time: without the fix the batch is refused forever, and this fails instead of hanging.
    app.wait_idle_for(std::time::Duration::from_secs(30)).await;
    assert_eq!(count.0.load(Ordering::SeqCst), 100);
    let letters = app.dead_letters("photos-dlq");
    assert_eq!(letters.len(), 2);
    assert_ne!(letters[0].event.id, letters[1].event.id);
    let mut kept: Vec<Vec<u8>> = letters.iter().map(record_of).collect();
    kept.sort();
    assert_eq!(kept, bad);
}

/// Version 1 of a type whose version 2 reads it only through its upcaster: the v1 data does not
/// decode as v2, so an event whose version got lost on the way would be dead-lettered.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "parcel.sent", version = "1.0")]
pub struct ParcelSentV1 {
    pub parcel: i64,
    pub user_id: String,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "parcel.sent", version = "2.0", upcast_from = ParcelSentV1)]
pub struct ParcelSent {
    pub parcel: i64,
    pub user_id: String,
    pub carrier: String,
}

impl From<ParcelSentV1> for ParcelSent {
    fn from(v1: ParcelSentV1) -> Self {
        ParcelSent {
            parcel: v1.parcel,
            user_id: v1.user_id,
            carrier: "upcast".into(),
        }
    }
}

/// Fails the first run of parcel 1 (a retry), and every run of parcel 2 until told otherwise
/// (a dead letter, then a replay).
#[derive(Clone, Default)]
struct Parcels {
    seen: Seen,
    refuse_2: Arc<std::sync::atomic::AtomicBool>,
}

#[event_handler(topic = "parcels", retry = [5], dlq = "parcels-dlq")]
async fn on_parcel(
    p: ParcelSent,
    Attempt(attempt): Attempt,
    EventId(id): EventId,
    State(s): State<Parcels>,
) -> anyhow::Result<()> {
    s.seen
        .push(format!("{} {} attempt {attempt} {id}", p.parcel, p.carrier));
    anyhow::ensure!(!(p.parcel == 1 && attempt == 1), "planned failure");
    if p.parcel == 2 && s.refuse_2.load(Ordering::SeqCst) {
        return Err(Permanent::new("refused").into());
    }
    Ok(())
}

#[event_handler(topic = "parcels-bulk", bulk(max_messages = 10, max_await_ms = 10))]
async fn on_parcel_bulk(p: ParcelSent, State(s): State<Parcels>) {
    s.seen.push(format!("bulk {} {}", p.parcel, p.carrier));
}

#[tokio::test(start_paused = true)]
async fn a_v1_event_reaches_a_v2_handler_through_its_upcaster_on_every_path() {
    let parcels = Parcels::default();
    parcels.refuse_2.store(true, Ordering::SeqCst);
    let app = start_with(parcels.clone()).await;
    // Our publisher sends the version as a record header, not in the data.
    for n in [1, 2] {
        let v1 = ParcelSentV1 {
            parcel: n,
            user_id: "u".into(),
        };
        app.publish("parcels", &v1).await.unwrap();
    }
    let v1 = ParcelSentV1 {
        parcel: 3,
        user_id: "u".into(),
    };
    app.publish("parcels-bulk", &v1).await.unwrap();
    app.wait_idle().await;
    let seen = parcels.seen.all();
    assert!(
        seen.iter().any(|s| s.starts_with("1 upcast attempt 2")),
        "retry: {seen:?}"
    );
    assert!(
        seen.contains(&"bulk 3 upcast".to_owned()),
        "bulk entry: {seen:?}"
    );
    let letters = app.dead_letters("parcels-dlq");
    assert_eq!(letters.len(), 1, "{seen:?}");
    assert_eq!(letters[0].event.version.as_deref(), Some("1.0"));
    assert!(
        letters[0].reason.contains("refused"),
        "{}",
        letters[0].reason
    );
    // Replayed, the v1 event is still read through the upcaster.
    parcels.refuse_2.store(false, Ordering::SeqCst);
    replay(&app.publisher(), &letters, &ReplayFilter::default()).await;
    app.wait_idle().await;
    let seen = parcels.seen.all();
    assert_eq!(
        seen.iter()
            .filter(|s| s.starts_with("2 upcast attempt 1"))
            .count(),
        2,
        "first delivery and replay: {seen:?}"
    );
}

/// A Dapr-style rawPayload delivery of a v1 record whose version is only in the Kafka header.
#[tokio::test]
async fn the_version_header_of_a_raw_delivery_is_honoured() {
    let parcels = Parcels::default();
    let app = start_with(parcels.clone()).await;
    use base64::Engine as _;
    let record = envelope(
        "p-raw",
        "parcel.sent",
        json!({}),
        json!({"parcel": 4, "user_id": "u"}),
    );
    let wrapper = json!({"id": "w", "specversion": "1.0", "datacontenttype": "application/octet-stream",
        "source": "Dapr", "type": "com.dapr.event.sent", "topic": "parcels", "pubsubname": "kafka-pubsub",
        "data_base64": base64::engine::general_purpose::STANDARD.encode(&record)});
    let (code, answer) = app
        .request(
            axum::http::Request::post("/_dispatch/kafka-pubsub/parcels")
                .header("content-type", "application/cloudevents+json")
                .header("eventversion", "1.0")
                .body(axum::body::Body::from(wrapper.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(
        (code.as_u16(), answer["status"].as_str()),
        (200, Some("SUCCESS"))
    );
    assert_eq!(parcels.seen.all(), ["4 upcast attempt 1 p-raw"]);
}

/// A replayed record from a dead letter written before records were kept still replays as JSON,
/// with its version.
#[test]
fn a_dead_letter_without_a_record_replays_its_data_and_version() {
    let letter: DeadLetter = serde_json::from_value(json!({
        "event": {"id": "e", "type": "parcel.sent", "source": "s", "data": {"parcel": 1},
                  "topic": "parcels", "pubsub": "kafka-pubsub", "version": "1.0"},
        "attempts": 1, "permanent": true, "reason": "r"
    }))
    .unwrap();
    let out: OutgoingEvent = letter.replay_event("me");
    assert_eq!(out.record, None);
    assert_eq!(out.data, json!({"parcel": 1}));
    let mut want = Map::new();
    want.insert("eventversion".into(), json!("1.0"));
    assert_eq!(out.extensions, want);
}

#[event_handler(topic = "parcels-once", idempotency_key = "{parcel}-{carrier}")]
async fn on_parcel_once(p: ParcelSent, State(s): State<Parcels>) {
    s.seen.push(format!("once {} {}", p.parcel, p.carrier));
}

/// The key template is rendered over the event as the handler reads it: a v1 event, upcast, and
/// the same event published as v2 are one key.
#[tokio::test]
async fn key_templates_are_rendered_over_the_upcast_event() {
    let parcels = Parcels::default();
    let app = start_with(parcels.clone()).await;
    let v1 = ParcelSentV1 {
        parcel: 5,
        user_id: "u".into(),
    };
    app.publish("parcels-once", &v1).await.unwrap();
    app.wait_idle().await;
    let v2 = ParcelSent {
        parcel: 5,
        user_id: "u".into(),
        carrier: "upcast".into(),
    };
    app.publish("parcels-once", &v2).await.unwrap();
    app.wait_idle().await;
    assert_eq!(parcels.seen.all(), ["once 5 upcast"]);
    let outcomes: Vec<&str> = app
        .runs_of("on_parcel_once")
        .iter()
        .map(|r| r.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["success", "skipped"]);
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "metric.reported", version = "1.0", unkeyed)]
pub struct MetricReported {
    pub name: String,
    pub value: f64,
}

#[event_handler(topic = "metrics-raw", raw_payload, idempotent)]
async fn on_metric(m: MetricReported, State(seen): State<Seen>) {
    seen.push(format!("{} {}", m.name, m.value));
}

/// daprd gives each rawPayload delivery a new wrapper id; the key of a record that is no
/// CloudEvent is a digest of its bytes, so a redelivery is still a duplicate.
#[tokio::test]
async fn a_raw_payload_redelivered_under_a_new_wrapper_id_runs_once() {
    use base64::Engine as _;
    let (app, seen) = start().await;
    let record = br#"{"name":"cpu","value":0.5}"#;
    for wrapper_id in ["w-1", "w-2"] {
        let wrapper = json!({"id": wrapper_id, "specversion": "1.0", "datacontenttype": "application/octet-stream",
            "source": "Dapr", "type": "com.dapr.event.sent", "topic": "metrics-raw", "pubsubname": "kafka-pubsub",
            "data_base64": base64::engine::general_purpose::STANDARD.encode(record)});
        let (_, answer) = app
            .post("/_dispatch/kafka-pubsub/metrics-raw", wrapper.to_string())
            .await;
        assert_eq!(answer["status"], "SUCCESS");
    }
    assert_eq!(seen.all(), ["cpu 0.5"]);
    let outcomes: Vec<&str> = app
        .runs_of("on_metric")
        .iter()
        .map(|r| r.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["success", "skipped"]);
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "screen.refresh", version = "1.0")]
pub struct ScreenRefresh {
    pub user_id: String,
}

/// A handler of a per-pod (fan-out) component, where every pod gets every record.
#[event_handler(topic = "screens", pubsub = "kafka-fanout", retry = [1])]
async fn on_screen(_e: ScreenRefresh, Attempt(a): Attempt) -> anyhow::Result<()> {
    anyhow::ensure!(a > 1, "first attempt fails");
    Ok(())
}

/// Its retries go to the app's ladder on the default pubsub, whose consumer group the pods
/// share: one pod runs a retry, not every pod.
#[tokio::test(start_paused = true)]
async fn retries_of_a_fan_out_handler_go_to_the_shared_pubsub() {
    let (app, _) = start().await;
    let subs = all_handlers().subscriptions();
    let screens = subs.iter().find(|s| s.topic == "screens").unwrap();
    assert_eq!(screens.pubsubname, "kafka-fanout");
    for s in subs.iter().filter(|s| s.topic.contains(".retry.")) {
        assert_eq!(s.pubsubname, "kafka-pubsub", "{s:?}");
    }
    let e = ScreenRefresh {
        user_id: "u".into(),
    };
    app.publisher()
        .publish_to("kafka-fanout", "screens", &e)
        .await
        .unwrap();
    app.wait_idle().await;
    let runs: Vec<(u32, &str)> = app
        .runs_of("on_screen")
        .iter()
        .map(|r| (r.attempt, r.outcome.as_str()))
        .collect();
    assert_eq!(runs, [(1, "retry"), (2, "success")]);
    let retry = retry_topic(
        &event_runtime::config::Config::from_env().unwrap().app_id,
        1,
    );
    let published = app.published_to(&retry);
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].pubsub, "kafka-pubsub");
}

/// daprd drops a CloudEvent past its `expiration` (a publish with `ttlInSeconds`) before a
/// subscription without rawPayload sees it; with rawPayload the app does, into the DLQ.
#[tokio::test]
async fn an_expired_event_is_dead_lettered_not_run() {
    let (app, seen) = start().await;
    let expired = envelope(
        "o-expired",
        "order.placed",
        json!({"expiration": "2020-01-01T00:00:00Z"}),
        json!({"order": 12, "user_id": "u-12"}),
    );
    let fresh = envelope(
        "o-fresh",
        "order.placed",
        json!({"expiration": "2999-01-01T00:00:00Z"}),
        json!({"order": 13, "user_id": "u-12"}),
    );
    app.produce("orders", Some("u-12"), expired.clone())
        .await
        .unwrap();
    app.produce("orders", Some("u-12"), fresh).await.unwrap();
    app.wait_idle().await;
    assert_eq!(seen.all(), ["13 attempt 1"]);
    let letters = app.dead_letters("orders-dlq");
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.contains("expired"),
        "{}",
        letters[0].reason
    );
    assert_eq!(record_of(&letters[0]), expired);
}

/// A bad record delivered again (the same Kafka coordinates) gives a dead letter of the same id,
/// so a consumer of the DLQ that applies each id once counts it once; the same bytes at another
/// offset are another record, with another id.
#[tokio::test]
async fn a_redelivered_bad_record_keeps_its_dead_letter_id() {
    let (app, _) = start().await;
    let post = |offset: &'static str| {
        axum::http::Request::post("/_dispatch/kafka-pubsub/orders")
            .header("content-type", "application/cloudevents+json")
            .header("__topic", "orders")
            .header("__partition", "3")
            .header("__offset", offset)
            .body(axum::body::Body::from("\u{1} not an event"))
            .unwrap()
    };
    for offset in ["17", "17", "18"] {
        let (_, answer) = app.request(post(offset)).await;
        assert_eq!(answer["status"], "DROP");
    }
    let ids: Vec<String> = app
        .dead_letters("orders-dlq")
        .iter()
        .map(|l| l.event.id.clone())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], ids[1], "a redelivery: the same id");
    assert_ne!(ids[1], ids[2], "another record: another id");
}

/// A retry continues the trace of the delivery that failed: same trace id, a new span.
#[tokio::test(start_paused = true)]
async fn a_retry_continues_the_failed_deliverys_trace() {
    let (app, _) = start().await;
    let mut e = order(14, "u-14");
    e.fail_until = 2;
    app.publish("orders", &e).await.unwrap();
    app.wait_idle().await;
    let original = app.published_to("orders")[0].traceparent.clone().unwrap();
    let retry = retry_topic(
        &event_runtime::config::Config::from_env().unwrap().app_id,
        1,
    );
    let record = app.published_to(&retry)[0].record.clone().unwrap();
    let sealed: Value = serde_json::from_slice(&record).unwrap();
    let continued = sealed["traceparent"].as_str().unwrap();
    let trace_id = |tp: &str| tp.split('-').nth(1).unwrap().to_owned();
    assert_eq!(trace_id(continued), trace_id(&original));
    assert_ne!(continued, original, "a span of its own");
}

/// The version in the envelope's own `eventversion` extension is honoured, as the header is.
#[tokio::test]
async fn the_eventversion_extension_of_the_envelope_is_honoured() {
    let parcels = Parcels::default();
    let app = start_with(parcels.clone()).await;
    let record = envelope(
        "p-ext",
        "parcel.sent",
        json!({"eventversion": "1.0"}),
        json!({"parcel": 6, "user_id": "u"}),
    );
    app.produce("parcels", Some("u"), record).await.unwrap();
    app.wait_idle().await;
    assert_eq!(parcels.seen.all(), ["6 upcast attempt 1 p-ext"]);
}

/// A done key is kept for 7 days: a duplicate within them is skipped, one after them runs.
#[tokio::test(start_paused = true)]
async fn a_done_key_is_kept_for_seven_days() {
    let (app, seen) = start().await;
    let record = br#"{"name":"disk","value":0.9}"#;
    let day = std::time::Duration::from_secs(24 * 3600);
    app.produce("metrics-raw", None, record).await.unwrap();
    app.wait_idle().await;
    tokio::time::advance(6 * day).await;
    app.produce("metrics-raw", None, record).await.unwrap();
    app.wait_idle().await;
    assert_eq!(seen.all().len(), 1, "skipped within the 7 days");
    tokio::time::advance(2 * day).await;
    app.produce("metrics-raw", None, record).await.unwrap();
    app.wait_idle().await;
    assert_eq!(seen.all().len(), 2, "run again after them");
    let outcomes: Vec<&str> = app
        .runs_of("on_metric")
        .iter()
        .map(|r| r.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["success", "skipped", "success"]);
}
