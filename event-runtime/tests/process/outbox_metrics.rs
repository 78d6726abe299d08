//! The outbox relay's series through the `metrics` facade (features `metrics` and `sqlx`): a
//! recorder installed before the outbox was built sees what `/metrics` shows.
//!
//! `cargo test -p event-runtime --features metrics,sqlx --test process outbox_metrics::`
#![cfg(all(feature = "metrics", feature = "sqlx"))]

use crate::outbox_support::{series, wait_accepted, wait_until, Db, Sidecar};
use metrics_util::debugging::DebugValue;
use metrics_util::MetricKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard is held across awaits on purpose: no other test of the binary builds an app meanwhile.
#[allow(clippy::await_holding_lock)]
async fn a_recorder_installed_first_sees_the_relays_series() {
    let _alone = crate::env_lock();
    let snapshotter = crate::recorder();

    let db = Db::sqlite().await;
    let sidecar = Sidecar::start().await;
    let outbox = db.outbox();
    outbox.migrate().await.unwrap();
    let app = sidecar.app(&outbox);
    let relay = outbox.start_relay(app.publisher());
    for n in 0..3 {
        db.write(&outbox, "ann", n, true).await;
    }
    wait_accepted(&sidecar, 3).await;
    // The facade's counters move with the built-in ones: wait until `/metrics` says 3.
    wait_until(
        std::time::Duration::from_secs(30),
        "3 published",
        || async {
            (series(&app.metrics().render(), "event_outbox_published_total") == 3).then_some(())
        },
    )
    .await;
    let rendered = app.metrics().render();
    relay.stop().await;

    let all: Vec<_> = snapshotter.snapshot().into_vec();
    let value = |kind: MetricKind, name: &str| {
        all.iter()
            .find(|(key, ..)| key.kind() == kind && key.key().name() == name)
            .map(|(.., value)| value)
            .unwrap_or_else(|| panic!("no {name} in the recorder"))
    };
    assert_eq!(
        value(MetricKind::Counter, "event_outbox_published_total"),
        &DebugValue::Counter(3)
    );
    let rounds = series(&rendered, "event_outbox_batches_total");
    assert!(rounds >= 1);
    assert_eq!(
        value(MetricKind::Counter, "event_outbox_batches_total"),
        &DebugValue::Counter(rounds)
    );
    for counter in [
        "event_outbox_publish_failures_total",
        "event_outbox_dead_total",
    ] {
        assert_eq!(
            value(MetricKind::Counter, counter),
            &DebugValue::Counter(0),
            "{counter}"
        );
    }
    // The relay gave its buckets up when it stopped.
    assert_eq!(
        value(MetricKind::Gauge, "event_outbox_buckets_held"),
        &DebugValue::Gauge(0.0.into())
    );
    for gauge in [
        "event_outbox_pending",
        "event_outbox_oldest_pending_age_seconds",
        "event_outbox_dead",
    ] {
        value(MetricKind::Gauge, gauge);
    }
}
