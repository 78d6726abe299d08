//! The relay's series, rendered at `/metrics` after the deliveries' ones.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::pipeline::metrics::{format_float, header, MetricsSource};

/// What the relay counts, and what it last saw of the table.
#[derive(Debug)]
pub(crate) struct OutboxMetrics {
    published: AtomicU64,
    /// Rounds that published rows.
    batches: AtomicU64,
    failures: AtomicU64,
    pending: AtomicI64,
    /// When the oldest pending row was added (epoch ms), or -1 when none is pending.
    oldest_pending_ms: AtomicI64,
    buckets_held: AtomicI64,
}

impl Default for OutboxMetrics {
    fn default() -> Self {
        OutboxMetrics {
            published: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            pending: AtomicI64::new(0),
            oldest_pending_ms: AtomicI64::new(-1),
            buckets_held: AtomicI64::new(0),
        }
    }
}

impl OutboxMetrics {
    pub(crate) fn published(&self) {
        self.published.fetch_add(1, Relaxed);
    }

    pub(crate) fn batch(&self) {
        self.batches.fetch_add(1, Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Relaxed);
    }

    pub(crate) fn buckets_held(&self, n: usize) {
        self.buckets_held.store(n as i64, Relaxed);
    }

    /// What the table holds now: `pending` rows, the oldest added at `oldest_ms`.
    pub(crate) fn table(&self, pending: i64, oldest_ms: Option<i64>) {
        self.pending.store(pending, Relaxed);
        self.oldest_pending_ms
            .store(oldest_ms.unwrap_or(-1), Relaxed);
    }
}

impl MetricsSource for OutboxMetrics {
    fn render(&self, out: &mut String) {
        header(
            out,
            "event_outbox_pending",
            "gauge",
            "Outbox rows not yet published (as the relay last counted).",
        );
        let _ = writeln!(out, "event_outbox_pending {}", self.pending.load(Relaxed));
        header(
            out,
            "event_outbox_oldest_pending_age_seconds",
            "gauge",
            "Age of the oldest outbox row not yet published (0 when none is).",
        );
        let oldest = self.oldest_pending_ms.load(Relaxed);
        let age = if oldest < 0 {
            0.0
        } else {
            (crate::clock::now_ms() as i64 - oldest).max(0) as f64 / 1000.0
        };
        let _ = writeln!(
            out,
            "event_outbox_oldest_pending_age_seconds {}",
            format_float(age)
        );
        header(
            out,
            "event_outbox_published_total",
            "counter",
            "Outbox rows this replica's relay published.",
        );
        let _ = writeln!(
            out,
            "event_outbox_published_total {}",
            self.published.load(Relaxed)
        );
        header(
            out,
            "event_outbox_batches_total",
            "counter",
            "Relay rounds that published outbox rows (published_total / this: rows per round).",
        );
        let _ = writeln!(
            out,
            "event_outbox_batches_total {}",
            self.batches.load(Relaxed)
        );
        header(
            out,
            "event_outbox_publish_failures_total",
            "counter",
            "Publishes of outbox rows that failed (the row stays pending; its bucket waits).",
        );
        let _ = writeln!(
            out,
            "event_outbox_publish_failures_total {}",
            self.failures.load(Relaxed)
        );
        header(
            out,
            "event_outbox_buckets_held",
            "gauge",
            "Outbox buckets whose lease this replica's relay holds.",
        );
        let _ = writeln!(
            out,
            "event_outbox_buckets_held {}",
            self.buckets_held.load(Relaxed)
        );
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
        m.table(3, Some(crate::clock::now_ms() as i64 - 2_000));
        let mut text = String::new();
        m.render(&mut text);
        for line in [
            "event_outbox_pending 3",
            "event_outbox_published_total 1",
            "event_outbox_batches_total 1",
            "event_outbox_publish_failures_total 1",
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
