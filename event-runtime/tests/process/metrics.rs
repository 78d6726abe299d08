//! The delivery series through the `metrics` facade (feature `metrics`): a recorder the app
//! installed before building it sees what the built-in `/metrics` counts.
//!
//! `cargo test -p event-runtime --features metrics --test process metrics::`

#![cfg(feature = "metrics")]
#![allow(missing_docs)]

use event_runtime::testing::TestApp;
use event_runtime::{event_handler, Event};
use metrics_util::debugging::{DebugValue, Snapshot};
use metrics_util::CompositeKey;
use metrics_util::MetricKind;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
#[event(type = "mf.tick", version = "1.0")]
pub struct Tick {
    pub event_id: String,
    pub user_id: String,
}

#[event_handler(topic = "mf-ok")]
async fn mf_ok(_e: Tick) {}

#[event_handler(topic = "mf-fail", retry = [1], dlq = "mf-dlq")]
async fn mf_failing(_e: Tick) -> anyhow::Result<()> {
    anyhow::bail!("always fails")
}

fn tick(id: &str) -> Tick {
    Tick {
        event_id: id.into(),
        user_id: "u".into(),
    }
}

/// What the recorder holds, taken once (a snapshot drains the debugging recorder).
type Series = Vec<(CompositeKey, DebugValue)>;

fn series(snapshot: Snapshot) -> Series {
    snapshot
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect()
}

/// The value of the series `name` whose labels include each of `labels` (the handler label by
/// the end of its `module::name`).
fn value<'a>(
    all: &'a Series,
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> &'a DebugValue {
    let found: Vec<&DebugValue> = all
        .iter()
        .filter(|(key, _)| key.kind() == kind && key.key().name() == name)
        .filter(|(key, _)| {
            labels.iter().all(|(k, v)| {
                key.key().labels().any(|l| {
                    l.key() == *k && (l.value() == *v || l.value().ends_with(&format!("::{v}")))
                })
            })
        })
        .map(|(_, value)| value)
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0]
}

#[tokio::test(start_paused = true)]
// The guard is held across awaits on purpose: no other test of the binary builds an app meanwhile.
#[allow(clippy::await_holding_lock)]
async fn a_recorder_installed_before_the_app_sees_the_delivery_series() {
    let _alone = crate::env_lock();
    let snapshotter = crate::recorder();

    let app = TestApp::start(app!()).await;
    app.publish("mf-ok", &tick("a")).await.unwrap();
    app.publish("mf-ok", &tick("b")).await.unwrap();
    app.publish("mf-fail", &tick("c")).await.unwrap();
    app.wait_idle().await;
    let all = series(snapshotter.snapshot());

    let counter = |name, labels: &[(&str, &str)]| value(&all, MetricKind::Counter, name, labels);
    assert_eq!(
        counter(
            "event_deliveries_total",
            &[("handler", "mf_ok"), ("outcome", "success")]
        ),
        &DebugValue::Counter(2)
    );
    assert_eq!(
        counter(
            "event_deliveries_total",
            &[("handler", "mf_failing"), ("outcome", "retry")]
        ),
        &DebugValue::Counter(2)
    );
    assert_eq!(
        counter(
            "event_retries_total",
            &[("handler", "mf_failing"), ("mode", "delayed")]
        ),
        &DebugValue::Counter(1)
    );
    assert_eq!(
        counter("event_dead_letters_total", &[("handler", "mf_failing")]),
        &DebugValue::Counter(1)
    );
    match value(
        &all,
        MetricKind::Histogram,
        "event_handler_duration_seconds",
        &[("handler", "mf_ok")],
    ) {
        DebugValue::Histogram(runs) => assert_eq!(runs.len(), 2),
        other => panic!("not a histogram: {other:?}"),
    }
    assert_eq!(
        value(&all, MetricKind::Gauge, "event_deliveries_in_flight", &[]),
        &DebugValue::Gauge(0.0.into())
    );
}
