//! The delivery series through the `metrics` facade (feature `metrics`), to whatever recorder the
//! app installed (`metrics-exporter-prometheus`, say), beside the built-in `/metrics`.
//!
//! Each handler's handles are registered once, when its metrics are made (with the app's
//! router), so recording costs what the recorder's handles cost and no look-up: the recorder must
//! be installed before the app is built.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};

use super::{
    mode_index, DEAD_LETTERS, DELIVERIES, DURATION, IN_FLIGHT, MODES, PARKED, RELEASED, RETRIES,
    SKIPS,
};
use crate::event::outcome::OutcomeKind;
use crate::handler::def::RetryMode;

/// One handler's handles.
#[derive(Debug)]
pub(super) struct Handles {
    deliveries: [Counter; 5],
    retries: [Counter; 2],
    dead_letters: Counter,
    skips: Counter,
    parked: Counter,
    released: Counter,
    duration: Histogram,
}

impl Handles {
    /// The handles of `handler`'s series, in the recorder installed now.
    pub(super) fn register(handler: &str) -> Handles {
        let label = || ("handler", handler.to_owned());
        Handles {
            deliveries: OutcomeKind::ALL.map(|o| {
                metrics::counter!(DELIVERIES.0, &[label(), ("outcome", o.as_str().to_owned())])
            }),
            retries: MODES
                .map(|m| metrics::counter!(RETRIES.0, &[label(), ("mode", m.to_owned())])),
            dead_letters: metrics::counter!(DEAD_LETTERS.0, &[label()]),
            skips: metrics::counter!(SKIPS.0, &[label()]),
            parked: metrics::counter!(PARKED.0, &[label()]),
            released: metrics::counter!(RELEASED.0, &[label()]),
            duration: metrics::histogram!(DURATION.0, &[label()]),
        }
    }

    pub(super) fn delivery(&self, outcome: OutcomeKind) {
        self.deliveries[outcome.index()].increment(1);
    }

    pub(super) fn retry_scheduled(&self, mode: RetryMode) {
        self.retries[mode_index(mode)].increment(1);
    }

    pub(super) fn dead_letter(&self) {
        self.dead_letters.increment(1);
    }

    pub(super) fn idempotent_skip(&self) {
        self.skips.increment(1);
    }

    pub(super) fn parked(&self) {
        self.parked.increment(1);
    }

    pub(super) fn released(&self) {
        self.released.increment(1);
    }

    pub(super) fn handler_duration(&self, elapsed: Duration) {
        self.duration.record(elapsed.as_secs_f64());
    }
}

/// The app-wide gauge of deliveries in flight; describes every family to the recorder.
#[derive(Debug)]
pub(super) struct InFlightGauge(Gauge);

impl Default for InFlightGauge {
    fn default() -> Self {
        for (name, help) in [DELIVERIES, RETRIES, DEAD_LETTERS, SKIPS, PARKED, RELEASED] {
            metrics::describe_counter!(name, help);
        }
        metrics::describe_histogram!(DURATION.0, Unit::Seconds, DURATION.1);
        metrics::describe_gauge!(IN_FLIGHT.0, IN_FLIGHT.1);
        InFlightGauge(metrics::gauge!(IN_FLIGHT.0))
    }
}

impl InFlightGauge {
    pub(super) fn increment(&self) {
        self.0.increment(1.0);
    }

    pub(super) fn decrement(&self) {
        self.0.decrement(1.0);
    }
}
