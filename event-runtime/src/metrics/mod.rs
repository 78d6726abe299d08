//! Delivery metrics, rendered in the Prometheus text exposition format 0.0.4.
//!
//! One [`Metrics`] per app. Recording is a map look-up under a short lock plus a few atomic
//! adds; a [`HandlerMetrics`] handle, taken once per handler, skips the look-up entirely.
//!
//! ```
//! use std::time::Duration;
//! use event_runtime::{Metrics, OutcomeKind};
//!
//! let metrics = Metrics::new(["on_task_completed"]);
//! {
//!     let _in_flight = metrics.in_flight();
//!     metrics.delivery("on_task_completed", OutcomeKind::Success);
//!     metrics.handler_duration("on_task_completed", Duration::from_millis(12));
//! }
//! let text = metrics.render();
//! assert!(text.contains(r#"event_deliveries_total{handler="on_task_completed",outcome="success"} 1"#));
//! assert!(text.contains("event_deliveries_in_flight 0"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::event::outcome::OutcomeKind;
use crate::handler::def::RetryMode;

#[cfg(feature = "metrics")]
mod facade;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the handler duration histogram's buckets; handler timeouts
/// default to 60 s, so the last finite bucket is 60.
pub(crate) const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// `event_deliveries_total`: its name and help.
pub(crate) const DELIVERIES: (&str, &str) = (
    "event_deliveries_total",
    "Deliveries to each handler, by how they ended.",
);
/// `event_retries_total`: its name and help.
pub(crate) const RETRIES: (&str, &str) = (
    "event_retries_total",
    "Retries scheduled, by handler and retry mode.",
);
/// `event_dead_letters_total`: its name and help.
pub(crate) const DEAD_LETTERS: (&str, &str) = (
    "event_dead_letters_total",
    "Events published to a dead-letter topic, by handler (empty: no handler took the event).",
);
/// `event_idempotent_skips_total`: its name and help.
pub(crate) const SKIPS: (&str, &str) = (
    "event_idempotent_skips_total",
    "Duplicate events skipped by idempotent handlers.",
);
/// `event_order_parked_total`: its name and help.
pub(crate) const PARKED: (&str, &str) = (
    "event_order_parked_total",
    "Events parked behind an earlier event of their key on the retry ladder (per-key order).",
);
/// `event_order_released_total`: its name and help.
pub(crate) const RELEASED: (&str, &str) = (
    "event_order_released_total",
    "Parked events released to run, in their key's order.",
);
/// `event_handler_duration_seconds`: its name and help.
pub(crate) const DURATION: (&str, &str) = (
    "event_handler_duration_seconds",
    "Time each handler run took.",
);
/// `event_deliveries_in_flight`: its name and help.
pub(crate) const IN_FLIGHT: (&str, &str) = (
    "event_deliveries_in_flight",
    "Deliveries being processed now.",
);

fn mode_index(mode: RetryMode) -> usize {
    match mode {
        RetryMode::Delayed => 0,
        RetryMode::Inline => 1,
    }
}

const MODES: [&str; 2] = ["delayed", "inline"];

/// One of a handler's counters, picked out of its [`Series`].
type Counter = fn(&Series) -> &AtomicU64;

/// The counters of one handler.
#[derive(Debug, Default)]
struct Series {
    deliveries: [AtomicU64; 5],
    retries: [AtomicU64; 2],
    dead_letters: AtomicU64,
    skips: AtomicU64,
    parked: AtomicU64,
    released: AtomicU64,
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_nanos: AtomicU64,
}

/// What one handler records into: its counters, and (feature `metrics`) its handles in the
/// `metrics` facade.
#[derive(Debug)]
struct HandlerSeries {
    counters: Series,
    #[cfg(feature = "metrics")]
    facade: facade::Handles,
}

impl HandlerMetrics {
    fn named(_handler: &str) -> HandlerMetrics {
        HandlerMetrics(Arc::new(HandlerSeries {
            counters: Series::default(),
            #[cfg(feature = "metrics")]
            facade: facade::Handles::register(_handler),
        }))
    }
}

/// The metrics of one handler, cheap to clone: record through it on a hot path to skip the
/// registry's look-up.
#[derive(Debug, Clone)]
pub struct HandlerMetrics(Arc<HandlerSeries>);

impl HandlerMetrics {
    /// Counts one delivery that ended in `outcome`.
    pub fn delivery(&self, outcome: OutcomeKind) {
        self.0.counters.deliveries[outcome.index()].fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.0.facade.delivery(outcome);
    }

    /// Counts one retry scheduled in `mode`.
    pub fn retry_scheduled(&self, mode: RetryMode) {
        self.0.counters.retries[mode_index(mode)].fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.0.facade.retry_scheduled(mode);
    }

    /// Counts one event published to a dead-letter topic.
    pub fn dead_letter(&self) {
        self.0.counters.dead_letters.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.0.facade.dead_letter();
    }

    /// Counts one duplicate skipped by idempotency.
    pub fn idempotent_skip(&self) {
        self.0.counters.skips.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.0.facade.idempotent_skip();
    }

    /// Counts one event parked behind an earlier event of its key.
    pub(crate) fn parked(&self) {
        self.0.counters.parked.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.0.facade.parked();
    }

    /// Counts one parked event released to run.
    pub(crate) fn released(&self) {
        self.0.counters.released.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.0.facade.released();
    }

    /// Observes one run of the handler that took `elapsed`.
    pub fn handler_duration(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        // Non-cumulative here; `render` accumulates.
        let series = &self.0.counters;
        if let Some(i) = DURATION_BUCKETS.iter().position(|&le| secs <= le) {
            series.buckets[i].fetch_add(1, Relaxed);
        }
        series.duration_count.fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        series.duration_sum_nanos.fetch_add(nanos, Relaxed);
        #[cfg(feature = "metrics")]
        self.0.facade.handler_duration(elapsed);
    }
}

/// Series kept beside the deliveries' (the outbox relay's, say), rendered after them.
#[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
pub(crate) trait MetricsSource: std::fmt::Debug + Send + Sync {
    /// Appends this source's families, in the text format, to `out`.
    fn render(&self, out: &mut String);
}

/// The app's metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {
    handlers: Mutex<BTreeMap<String, HandlerMetrics>>,
    in_flight: AtomicI64,
    sources: Mutex<Vec<Arc<dyn MetricsSource>>>,
    #[cfg(feature = "metrics")]
    in_flight_gauge: facade::InFlightGauge,
}

impl Metrics {
    /// A registry with `handlers` known up front, so their series are exported (at zero) before
    /// their first event.
    pub fn new<S: Into<String>>(handlers: impl IntoIterator<Item = S>) -> Self {
        let metrics = Metrics::default();
        {
            let mut map = metrics.lock();
            for h in handlers {
                let name = h.into();
                let metrics = HandlerMetrics::named(&name);
                map.entry(name).or_insert(metrics);
            }
        }
        metrics
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, HandlerMetrics>> {
        self.handlers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The metrics of `handler` (registered on first use). `""` stands for events no handler
    /// took.
    pub fn handler(&self, handler: &str) -> HandlerMetrics {
        let mut map = self.lock();
        if let Some(h) = map.get(handler) {
            return h.clone();
        }
        map.entry(handler.to_owned())
            .or_insert_with(|| HandlerMetrics::named(handler))
            .clone()
    }

    /// Counts one delivery to `handler` that ended in `outcome`.
    pub fn delivery(&self, handler: &str, outcome: OutcomeKind) {
        self.handler(handler).delivery(outcome);
    }

    /// Counts one retry of `handler` scheduled in `mode`.
    pub fn retry_scheduled(&self, handler: &str, mode: RetryMode) {
        self.handler(handler).retry_scheduled(mode);
    }

    /// Counts one dead-letter publish for `handler` (`""` for events no handler took).
    pub fn dead_letter(&self, handler: &str) {
        self.handler(handler).dead_letter();
    }

    /// Counts one duplicate `handler` skipped by idempotency.
    pub fn idempotent_skip(&self, handler: &str) {
        self.handler(handler).idempotent_skip();
    }

    /// Observes one run of `handler` that took `elapsed`.
    pub fn handler_duration(&self, handler: &str, elapsed: Duration) {
        self.handler(handler).handler_duration(elapsed);
    }

    /// Renders `source` after the deliveries' series (once: a source added twice renders once).
    #[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
    pub(crate) fn add_source(&self, source: Arc<dyn MetricsSource>) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if !sources.iter().any(|s| Arc::ptr_eq(s, &source)) {
            sources.push(source);
        }
    }

    /// Counts a delivery in flight until the returned guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.in_flight_gauge.increment();
        InFlight(self)
    }

    /// Deliveries in flight now.
    pub fn in_flight_now(&self) -> i64 {
        self.in_flight.load(Relaxed)
    }

    /// Every metric in the Prometheus text exposition format 0.0.4 (serve it with
    /// `Content-Type: text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        let handlers: Vec<(String, HandlerMetrics)> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = String::with_capacity(1024 + handlers.len() * 2048);

        header(&mut out, DELIVERIES.0, "counter", DELIVERIES.1);
        for (name, h) in &handlers {
            for o in OutcomeKind::ALL {
                let v = h.0.counters.deliveries[o.index()].load(Relaxed);
                let _ = writeln!(
                    out,
                    "event_deliveries_total{{handler=\"{}\",outcome=\"{}\"}} {v}",
                    escape_label(name),
                    o.as_str()
                );
            }
        }

        header(&mut out, RETRIES.0, "counter", RETRIES.1);
        for (name, h) in &handlers {
            for (i, mode) in MODES.iter().enumerate() {
                let v = h.0.counters.retries[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "event_retries_total{{handler=\"{}\",mode=\"{mode}\"}} {v}",
                    escape_label(name)
                );
            }
        }

        // The counters with no label but the handler's.
        let per_handler: [(_, Counter); 4] = [
            (DEAD_LETTERS, |c| &c.dead_letters),
            (SKIPS, |c| &c.skips),
            (PARKED, |c| &c.parked),
            (RELEASED, |c| &c.released),
        ];
        for ((family, help), counter) in per_handler {
            header(&mut out, family, "counter", help);
            for (name, h) in &handlers {
                let v = counter(&h.0.counters).load(Relaxed);
                let _ = writeln!(out, "{family}{{handler=\"{}\"}} {v}", escape_label(name));
            }
        }

        header(&mut out, DURATION.0, "histogram", DURATION.1);
        for (name, h) in &handlers {
            let label = escape_label(name);
            // Read the count first: buckets observed after it are never more than the count.
            let count = h.0.counters.duration_count.load(Relaxed);
            let mut cumulative = 0;
            for (i, le) in DURATION_BUCKETS.iter().enumerate() {
                cumulative += h.0.counters.buckets[i].load(Relaxed);
                let _ = writeln!(
                    out,
                    "event_handler_duration_seconds_bucket{{handler=\"{label}\",le=\"{}\"}} {}",
                    format_float(*le),
                    cumulative.min(count)
                );
            }
            let sum = h.0.counters.duration_sum_nanos.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "event_handler_duration_seconds_bucket{{handler=\"{label}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "event_handler_duration_seconds_sum{{handler=\"{label}\"}} {}",
                format_float(sum)
            );
            let _ = writeln!(
                out,
                "event_handler_duration_seconds_count{{handler=\"{label}\"}} {count}"
            );
        }

        header(&mut out, IN_FLIGHT.0, "gauge", IN_FLIGHT.1);
        let _ = writeln!(out, "event_deliveries_in_flight {}", self.in_flight_now());
        let sources = self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for source in sources {
            source.render(&mut out);
        }
        out
    }
}

/// A delivery in flight: decrements `event_deliveries_in_flight` when dropped.
#[derive(Debug)]
#[must_use = "the delivery counts as in flight only while the guard lives"]
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
        #[cfg(feature = "metrics")]
        self.0.in_flight_gauge.decrement();
    }
}

pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped for the text format: `\` → `\\`, `"` → `\"`, newline → `\n`.
///
pub(crate) fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float as Go's `strconv.FormatFloat(f, 'g', -1, 64)` would mostly write it: `0.005`, `1`,
/// `60`, `+Inf`.
pub(crate) fn format_float(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if f.is_nan() {
        return "NaN".to_owned();
    }
    format!("{f}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix}\n{text}"))
    }

    fn value(text: &str, series: &str) -> f64 {
        let l = line(text, &format!("{series} "));
        l[series.len() + 1..].parse().unwrap()
    }

    #[test]
    fn renders_every_family_after_records() {
        let m = Metrics::new(["on_a", "on_b"]);
        m.delivery("on_a", OutcomeKind::Success);
        m.delivery("on_a", OutcomeKind::Success);
        m.delivery("on_a", OutcomeKind::Retry);
        m.retry_scheduled("on_a", RetryMode::Delayed);
        m.delivery("on_b", OutcomeKind::DeadLetter);
        m.dead_letter("on_b");
        m.dead_letter("");
        m.idempotent_skip("on_a");
        m.delivery("on_a", OutcomeKind::Skipped);
        m.handler_duration("on_a", Duration::from_millis(3));
        m.handler_duration("on_a", Duration::from_millis(200));
        m.handler_duration("on_a", Duration::from_secs(120));
        let guard = m.in_flight();
        let _second = m.in_flight();
        drop(guard);

        let t = m.render();
        for family in [
            ("event_deliveries_total", "counter"),
            ("event_retries_total", "counter"),
            ("event_dead_letters_total", "counter"),
            ("event_idempotent_skips_total", "counter"),
            ("event_handler_duration_seconds", "histogram"),
            ("event_deliveries_in_flight", "gauge"),
        ] {
            assert!(t.contains(&format!("# HELP {} ", family.0)), "{t}");
            assert!(
                t.contains(&format!("# TYPE {} {}\n", family.0, family.1)),
                "{t}"
            );
        }
        let v = |s: &str| value(&t, s);
        assert_eq!(
            v(r#"event_deliveries_total{handler="on_a",outcome="success"}"#),
            2.0
        );
        assert_eq!(
            v(r#"event_deliveries_total{handler="on_a",outcome="retry"}"#),
            1.0
        );
        assert_eq!(
            v(r#"event_deliveries_total{handler="on_a",outcome="skipped"}"#),
            1.0
        );
        assert_eq!(
            v(r#"event_deliveries_total{handler="on_a",outcome="drop"}"#),
            0.0
        );
        assert_eq!(
            v(r#"event_deliveries_total{handler="on_b",outcome="dead_letter"}"#),
            1.0
        );
        assert_eq!(
            v(r#"event_retries_total{handler="on_a",mode="delayed"}"#),
            1.0
        );
        assert_eq!(
            v(r#"event_retries_total{handler="on_a",mode="inline"}"#),
            0.0
        );
        assert_eq!(v(r#"event_dead_letters_total{handler=""}"#), 1.0);
        assert_eq!(v(r#"event_dead_letters_total{handler="on_b"}"#), 1.0);
        assert_eq!(v(r#"event_idempotent_skips_total{handler="on_a"}"#), 1.0);
        let b = |le: &str| {
            v(&format!(
                r#"event_handler_duration_seconds_bucket{{handler="on_a",le="{le}"}}"#
            ))
        };
        assert_eq!(b("0.001"), 0.0);
        assert_eq!(b("0.005"), 1.0);
        assert_eq!(b("0.25"), 2.0);
        assert_eq!(b("60"), 2.0);
        assert_eq!(b("+Inf"), 3.0);
        assert_eq!(
            v(r#"event_handler_duration_seconds_count{handler="on_a"}"#),
            3.0
        );
        let sum = v(r#"event_handler_duration_seconds_sum{handler="on_a"}"#);
        assert!((sum - 120.203).abs() < 1e-9, "{sum}");
        assert_eq!(
            v(r#"event_handler_duration_seconds_count{handler="on_b"}"#),
            0.0
        );
        assert_eq!(v("event_deliveries_in_flight"), 1.0);
        assert!(t.ends_with('\n'));
    }

    #[test]
    fn every_sample_line_is_well_formed() {
        let m = Metrics::new(["we\"ird\\name\nx"]);
        m.delivery("we\"ird\\name\nx", OutcomeKind::Drop);
        let t = m.render();
        assert!(
            t.contains(r#"handler="we\"ird\\name\nx",outcome="drop"} 1"#),
            "{t}"
        );
        for l in t.lines() {
            if l.starts_with('#') {
                assert!(l.starts_with("# HELP ") || l.starts_with("# TYPE "), "{l}");
                continue;
            }
            let (series, val) = l.rsplit_once(' ').unwrap();
            assert!(val.parse::<f64>().is_ok(), "{l}");
            let name_end = series.find('{').unwrap_or(series.len());
            let name = &series[..name_end];
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{l}"
            );
        }
        // The TYPE line of each family comes before its samples, once.
        assert_eq!(t.matches("# TYPE event_deliveries_total").count(), 1);
    }

    #[test]
    fn handles_skip_the_lookup_and_share_counters() {
        let m = Metrics::default();
        let h = m.handler("x");
        h.delivery(OutcomeKind::Success);
        m.delivery("x", OutcomeKind::Success);
        assert!(m
            .render()
            .contains(r#"event_deliveries_total{handler="x",outcome="success"} 2"#));
        assert_eq!(
            OutcomeKind::ALL.map(OutcomeKind::as_str),
            ["success", "retry", "dead_letter", "drop", "skipped"]
        );
    }

    #[test]
    fn concurrent_recording_adds_up() {
        let m = Arc::new(Metrics::new(["h"]));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        let _g = m.in_flight();
                        m.delivery("h", OutcomeKind::Success);
                        m.handler_duration("h", Duration::from_micros(50));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = m.render();
        assert_eq!(
            value(
                &t,
                r#"event_deliveries_total{handler="h",outcome="success"}"#
            ),
            4000.0
        );
        assert_eq!(
            value(&t, r#"event_handler_duration_seconds_count{handler="h"}"#),
            4000.0
        );
        assert_eq!(value(&t, "event_deliveries_in_flight"), 0.0);
    }
}
