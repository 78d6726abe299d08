//! What the delivery-guarantee tests share (`idempotency`, `retries`, `dead_letters`,
//! `answers`): a ledger of what handlers applied and when, the events that fail, and the answer
//! of an app without a sidecar.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use event_runtime::Event;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "acct.happened", version = "1.0")]
pub struct Happened {
    pub event_id: String,
    pub user_id: String,
    pub seq: u64,
}

/// What handlers applied, and when each run happened.
#[derive(Clone, Default)]
pub(crate) struct Ledger {
    pub(crate) applied: Arc<Mutex<BTreeMap<String, Vec<u64>>>>,
    pub(crate) times: Arc<Mutex<HashMap<String, Vec<tokio::time::Instant>>>>,
}

impl Ledger {
    pub(crate) fn apply(&self, e: &Happened) {
        self.applied
            .lock()
            .unwrap()
            .entry(e.user_id.clone())
            .or_default()
            .push(e.seq);
    }
    pub(crate) fn tick(&self, name: &str) {
        self.times
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .push(tokio::time::Instant::now());
    }
    /// When `name` ran, in milliseconds after its first run, on tokio's (paused) clock.
    pub(crate) fn times(&self, name: &str) -> Vec<u64> {
        let times = self.times.lock().unwrap();
        let runs = times.get(name).map(Vec::as_slice).unwrap_or_default();
        runs.iter()
            .map(|t| t.duration_since(runs[0]).as_millis() as u64)
            .collect()
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "always.fails", version = "1.0", unkeyed)]
pub struct Doomed {
    pub n: u32,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "flaky.once", version = "1.0")]
pub struct Flaky {
    pub user_id: String,
}

/// Posts `body` to `route` of `app` (the caller's handlers) when its sidecar cannot be reached;
/// the answer Dapr gets.
pub(crate) async fn answer_without_a_sidecar(
    app: event_runtime::App,
    route: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let app = app
        .with_state(Ledger::default())
        .with_signing_key("a secret of sixteen bytes or more")
        .with_dapr_client(event_runtime::dapr::DaprClient::new(
            "http://127.0.0.1:9",
            None,
        ));
    let req = axum::http::Request::post(route)
        .header("content-type", "application/cloudevents+json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.router(), req).await.unwrap();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}
