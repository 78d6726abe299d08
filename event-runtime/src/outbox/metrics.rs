//! The relay's series, rendered at `/metrics` after the deliveries' ones.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::metrics::{format_float, header, MetricsSource};

/// Each series' name and help, for `/metrics` and for the `metrics` facade alike.
const PENDING: (&str, &str) = (
    "event_outbox_pending",
    "Outbox rows not yet published (as the relay last counted).",
);
const OLDEST_AGE: (&str, &str) = (
    "event_outbox_oldest_pending_age_seconds",
    "Age of the oldest outbox row not yet published (0 when none is).",
);
const PUBLISHED: (&str, &str) = (
    "event_outbox_published_total",
    "Outbox rows this replica's relay published.",
);
const BATCHES: (&str, &str) = (
    "event_outbox_batches_total",
    "Relay rounds that published outbox rows (published_total / this: rows per round).",
);
const FAILURES: (&str, &str) = (
    "event_outbox_publish_failures_total",
    "Publishes of outbox rows that failed (the row stays pending and its bucket waits, unless it is set aside).",
);
const DEAD_TOTAL: (&str, &str) = (
    "event_outbox_dead_total",
    "Outbox rows this replica's relay set aside: unreadable, or refused for good by the sidecar.",
);
const DEAD: (&str, &str) = (
    "event_outbox_dead",
    "Outbox rows set aside, waiting for an operator to replay them (as the relay last counted).",
);
const BUCKETS: (&str, &str) = (
    "event_outbox_buckets_held",
    "Outbox buckets whose lease this replica's relay holds.",
);

/// What the relay counts, and what it last saw of the table.
#[derive(Debug)]
pub(crate) struct OutboxMetrics {
    published: AtomicU64,
    /// Rounds that published rows.
    batches: AtomicU64,
    failures: AtomicU64,
    /// Rows set aside.
    set_aside: AtomicU64,
    pending: AtomicI64,
    /// Rows set aside now, in the table.
    dead: AtomicI64,
    /// When the oldest pending row was added (epoch ms), or -1 when none is pending.
    oldest_pending_ms: AtomicI64,
    buckets_held: AtomicI64,
    /// The same series, to the recorder the app installed (feature `metrics`).
    #[cfg(feature = "metrics")]
    facade: Facade,
}

impl Default for OutboxMetrics {
    fn default() -> Self {
        OutboxMetrics {
            published: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            set_aside: AtomicU64::new(0),
            pending: AtomicI64::new(0),
            dead: AtomicI64::new(0),
            oldest_pending_ms: AtomicI64::new(-1),
            buckets_held: AtomicI64::new(0),
            #[cfg(feature = "metrics")]
            facade: Facade::default(),
        }
    }
}

impl OutboxMetrics {
    pub(crate) fn published(&self) {
        self.published.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.published.increment(1);
    }

    pub(crate) fn batch(&self) {
        self.batches.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.batches.increment(1);
    }

    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.failures.increment(1);
    }

    pub(crate) fn set_aside(&self) {
        self.set_aside.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.set_aside.increment(1);
    }

    pub(crate) fn buckets_held(&self, n: usize) {
        self.buckets_held.store(n as i64, Relaxed);
        #[cfg(feature = "metrics")]
        self.facade.buckets.set(n as f64);
    }

    /// What the tables hold now: `pending` rows, the oldest added at `oldest_ms`, and `dead`
    /// rows set aside.
    pub(crate) fn table(&self, pending: i64, oldest_ms: Option<i64>, dead: i64) {
        self.pending.store(pending, Relaxed);
        self.oldest_pending_ms
            .store(oldest_ms.unwrap_or(-1), Relaxed);
        self.dead.store(dead, Relaxed);
        #[cfg(feature = "metrics")]
        {
            self.facade.pending.set(pending as f64);
            self.facade.oldest_age.set(self.oldest_age_secs());
            self.facade.dead.set(dead as f64);
        }
    }

    /// The oldest pending row's age now, in seconds (0 when none is pending).
    fn oldest_age_secs(&self) -> f64 {
        let oldest = self.oldest_pending_ms.load(Relaxed);
        if oldest < 0 {
            0.0
        } else {
            (crate::clock::now_ms() as i64 - oldest).max(0) as f64 / 1000.0
        }
    }
}

impl MetricsSource for OutboxMetrics {
    fn render(&self, out: &mut String) {
        let gauges = [
            (PENDING, self.pending.load(Relaxed).to_string()),
            (OLDEST_AGE, format_float(self.oldest_age_secs())),
            (DEAD, self.dead.load(Relaxed).to_string()),
        ];
        let counters = [
            (PUBLISHED, self.published.load(Relaxed)),
            (BATCHES, self.batches.load(Relaxed)),
            (FAILURES, self.failures.load(Relaxed)),
            (DEAD_TOTAL, self.set_aside.load(Relaxed)),
        ];
        for ((name, help), value) in gauges {
            header(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {value}");
        }
        for ((name, help), value) in counters {
            header(out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
        let (name, help) = BUCKETS;
        header(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {}", self.buckets_held.load(Relaxed));
    }
}

/// The relay's handles in the recorder installed when the outbox was built: as for the
/// deliveries' series, install the recorder first.
#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Facade {
    published: metrics::Counter,
    batches: metrics::Counter,
    failures: metrics::Counter,
    set_aside: metrics::Counter,
    pending: metrics::Gauge,
    dead: metrics::Gauge,
    oldest_age: metrics::Gauge,
    buckets: metrics::Gauge,
}

#[cfg(feature = "metrics")]
impl Default for Facade {
    fn default() -> Self {
        for (name, help) in [PUBLISHED, BATCHES, FAILURES, DEAD_TOTAL] {
            metrics::describe_counter!(name, help);
        }
        for (name, help) in [PENDING, BUCKETS, DEAD] {
            metrics::describe_gauge!(name, help);
        }
        metrics::describe_gauge!(OLDEST_AGE.0, metrics::Unit::Seconds, OLDEST_AGE.1);
        Facade {
            published: metrics::counter!(PUBLISHED.0),
            batches: metrics::counter!(BATCHES.0),
            failures: metrics::counter!(FAILURES.0),
            set_aside: metrics::counter!(DEAD_TOTAL.0),
            pending: metrics::gauge!(PENDING.0),
            dead: metrics::gauge!(DEAD.0),
            oldest_age: metrics::gauge!(OLDEST_AGE.0),
            buckets: metrics::gauge!(BUCKETS.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series() {
        let m = OutboxMetrics::default();
        m.published();
        m.batch();
        m.failed();
        m.set_aside();
        m.table(3, Some(crate::clock::now_ms() as i64 - 2_000), 4);
        let mut text = String::new();
        m.render(&mut text);
        for line in [
            "event_outbox_pending 3",
            "event_outbox_published_total 1",
            "event_outbox_batches_total 1",
            "event_outbox_publish_failures_total 1",
            "event_outbox_dead_total 1",
            "event_outbox_dead 4",
            "event_outbox_buckets_held 0",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(
            text.contains("event_outbox_oldest_pending_age_seconds 2"),
            "{text}"
        );
    }
}
