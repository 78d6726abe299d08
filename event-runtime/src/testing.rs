#![doc = include_str!("../docs/testing.md")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::event::Event;
use crate::pipeline::dead_letter::DeadLetter;
use crate::pipeline::Run;
use crate::transport::idempotency::MemoryStore;
use crate::transport::outgoing::{OutgoingEvent, PublishError};
use crate::transport::publish::Publisher;
use crate::App;

pub use crate::pipeline::Run as HandlerRun;
/// The embedded broker the app runs on without a sidecar, which [`TestApp`] drives.
pub use crate::transport::embedded::{Broker, DEFAULT_PARTITIONS, LOG_CAPACITY};

/// How many published events a test app remembers (every one a test is likely to publish).
pub const TEST_LOG_CAPACITY: usize = 1_000_000;

/// How long [`TestApp::wait_idle`] waits before it fails the test (in the test's clock).
pub const IDLE_DEADLINE: Duration = Duration::from_secs(3600 * 24);

/// An app running on the embedded broker, with every handler run recorded.
pub struct TestApp {
    broker: Arc<Broker>,
    store: MemoryStore,
    journal: Arc<Mutex<Vec<Run>>>,
    router: Router,
    publisher: Publisher,
    /// The app's outbox and its relay, which runs as long as the test app.
    #[cfg(feature = "sqlx")]
    outbox: Option<(crate::outbox::Outbox, crate::outbox::OutboxRelay)>,
}

impl std::fmt::Debug for TestApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestApp")
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl TestApp {
    /// Starts `app` on its embedded broker (so publishers taken from the app before, say by your
    /// REST routes, publish into it) with a fresh in-memory idempotency store.
    pub async fn start(app: App) -> Self {
        let broker = app.broker();
        broker.keep_published(TEST_LOG_CAPACITY);
        Self::start_on(app, broker, MemoryStore::new(), Arc::default()).await
    }

    async fn start_on(
        app: App,
        broker: Arc<Broker>,
        store: MemoryStore,
        journal: Arc<Mutex<Vec<Run>>>,
    ) -> Self {
        let app = app
            .with_broker(broker.clone())
            .with_idempotency_store(store.clone())
            .with_journal(journal.clone());
        let router = app.router();
        let publisher = app.publisher();
        #[cfg(feature = "sqlx")]
        let outbox = app
            .outbox()
            .map(|o| (o.clone(), o.start_relay(publisher.clone())));
        broker
            .start(router.clone(), app.app_api_token())
            .await
            .unwrap_or_else(|e| panic!("cannot start the embedded broker: {e}"));
        TestApp {
            broker,
            store,
            journal,
            router,
            publisher,
            #[cfg(feature = "sqlx")]
            outbox,
        }
    }

    /// Stops this app and starts `app` in its place on the same broker and idempotency store,
    /// as a redeployed service finds its topics and state store as they were. Events in flight
    /// are delivered again.
    pub async fn restart(self, app: App) -> Self {
        #[cfg(feature = "sqlx")]
        if let Some((_, relay)) = self.outbox {
            relay.stop().await;
        }
        self.broker.stop();
        Self::start_on(app, self.broker, self.store, self.journal).await
    }

    /// Stops delivering (the app is down); [`TestApp::restart`] brings it back.
    pub fn stop(&self) {
        self.broker.stop();
    }

    /// The app's router (to send requests as the sidecar would).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The broker.
    pub fn broker(&self) -> Arc<Broker> {
        self.broker.clone()
    }

    /// The app's publisher.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Publishes `event` to `topic` on the default pubsub.
    pub async fn publish<E: Event>(&self, topic: &str, event: &E) -> Result<(), PublishError> {
        self.publisher.publish(topic, event).await
    }

    /// Publishes a prepared event (a raw JSON payload as another service would send, say).
    pub async fn send(&self, event: OutgoingEvent) -> Result<(), PublishError> {
        self.publisher.send(event).await
    }

    /// Puts a record of exactly `bytes` on `topic` (default pubsub), keyed by `key`, as a plain
    /// Kafka producer would: no envelope, nothing checked. For testing what arrives from outside.
    ///
    /// ```
    /// use event_runtime::{testing::TestApp, App};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let app = TestApp::start(App::with_handlers([]).unwrap()).await;
    /// app.produce("task-events", Some("u-1"), b"\xff not JSON").await.unwrap();
    /// # }
    /// ```
    pub async fn produce(
        &self,
        topic: &str,
        key: Option<&str>,
        bytes: impl AsRef<[u8]>,
    ) -> Result<(), PublishError> {
        let bytes = axum::body::Bytes::copy_from_slice(bytes.as_ref());
        let id = crate::wire::cloudevent::record_digest(&bytes);
        let pubsub = self.publisher.default_pubsub().to_owned();
        let record =
            OutgoingEvent::record(&pubsub, topic, &id, "", key.map(str::to_owned), None, bytes);
        self.publisher.send(record).await
    }

    /// Waits until every published event is handled (retries included), in the test's clock,
    /// and the app's outbox (see `App::with_outbox`, feature `sqlx`) has no pending row.
    /// Panics if that does not happen by [`IDLE_DEADLINE`].
    pub async fn wait_idle(&self) {
        self.wait_idle_for(IDLE_DEADLINE).await
    }

    /// [`TestApp::wait_idle`] with another deadline.
    pub async fn wait_idle_for(&self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if !self.broker.wait_idle(left).await {
                panic!(
                    "the app is not idle after {deadline:?}: {} events pending",
                    self.broker.pending()
                );
            }
            #[cfg(feature = "sqlx")]
            if let Some((outbox, _)) = &self.outbox {
                // Rows a handler or a request committed: published only once the relay ran.
                let stats = outbox.stats().await.unwrap_or_else(|e| panic!("{e}"));
                if stats.pending > 0 {
                    assert!(
                        tokio::time::Instant::now() < until,
                        "the app is not idle after {deadline:?}: {} outbox rows pending",
                        stats.pending
                    );
                    outbox.wake();
                    outbox.progressed(Duration::from_millis(50)).await;
                    continue;
                }
            }
            if self.broker.pending() == 0 {
                return;
            }
        }
    }

    /// The app's outbox, if it has one ([`App::with_outbox`]).
    #[cfg(feature = "sqlx")]
    pub fn outbox(&self) -> Option<&crate::outbox::Outbox> {
        self.outbox.as_ref().map(|(o, _)| o)
    }

    /// Every handler run so far.
    pub fn runs(&self) -> Vec<Run> {
        self.journal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The runs of the handler named `name` (the function's name).
    pub fn runs_of(&self, name: &str) -> Vec<Run> {
        self.runs()
            .into_iter()
            .filter(|r| r.handler == name)
            .collect()
    }

    /// Every event published to `topic`, by anyone (the app, its handlers, the test).
    pub fn published_to(&self, topic: &str) -> Vec<OutgoingEvent> {
        self.broker
            .published()
            .into_iter()
            .filter(|e| e.topic == topic)
            .collect()
    }

    /// The dead letters published to `topic` (the app-wide DLQ is `dlq`).
    ///
    /// Panics on a record of `topic` that is no dead letter, rather than leave it out.
    pub fn dead_letters(&self, topic: &str) -> Vec<DeadLetter> {
        self.published_to(topic)
            .into_iter()
            .map(|e| {
                serde_json::from_value(e.data.clone()).unwrap_or_else(|err| {
                    panic!("a record on {topic} is no dead letter ({err}): {e:?}")
                })
            })
            .collect()
    }

    /// The idempotency store.
    pub fn store(&self) -> MemoryStore {
        self.store.clone()
    }

    /// Sends `body` to `path` as the sidecar would (`application/cloudevents+json`), returning
    /// the status and the JSON answer.
    pub async fn post(&self, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        self.request(
            Request::post(path)
                .header("content-type", "application/cloudevents+json")
                .body(body.into())
                .expect("valid request"),
        )
        .await
    }

    /// Sends any request to the app.
    pub async fn request(&self, req: Request<Body>) -> (StatusCode, Value) {
        let Ok(resp) = self.router.clone().oneshot(req).await;
        let status = resp.status();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}
