//! Retry schedules, and the bookkeeping a delayed retry carries in CloudEvent extensions.
#![doc = include_str!("../docs/retries.md")]

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cloudevent::CloudEvent;

/// Extension attribute: the attempt number of the run this message is for (2 = first retry).
pub const EXT_ATTEMPT: &str = "evrattempt";
/// Extension attribute: when the run is due, epoch milliseconds.
pub const EXT_DUE: &str = "evrdue";
/// Extension attribute: the handler the retry is for (`module::name`).
pub const EXT_HANDLER: &str = "evrhandler";
/// Extension attribute: the topic the event was first delivered on.
pub const EXT_TOPIC: &str = "evrtopic";
/// Extension attribute: the failures so far, a JSON array in a string.
pub const EXT_FAILURES: &str = "evrfailures";

/// One failed run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Which attempt failed (1 = the first delivery).
    pub attempt: u32,
    /// When it failed (RFC 3339).
    pub at: String,
    /// The error.
    pub error: String,
}

/// The delay before the attempt after `attempt`, or `None` when the schedule is exhausted.
///
/// ```
/// use event_runtime::retry::delay_after;
/// let schedule = [30, 300, 1800];
/// assert_eq!(delay_after(&schedule, 1), Some(30));
/// assert_eq!(delay_after(&schedule, 3), Some(1800));
/// assert_eq!(delay_after(&schedule, 4), None);
/// ```
pub fn delay_after(schedule: &[u64], attempt: u32) -> Option<u64> {
    schedule.get((attempt as usize).checked_sub(1)?).copied()
}

/// An exponential schedule: `attempts` delays starting at `initial` seconds, each `factor`
/// times the last, none above `cap`.
///
/// ```
/// use event_runtime::retry::exponential;
/// assert_eq!(exponential(1, 2, 10, Some(512)), [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
/// ```
pub fn exponential(initial: u64, factor: u64, attempts: u32, cap: Option<u64>) -> Vec<u64> {
    let mut out = Vec::with_capacity(attempts as usize);
    let mut d = initial;
    for _ in 0..attempts {
        out.push(cap.map_or(d, |c| d.min(c)));
        d = d.saturating_mul(factor);
    }
    out
}

/// The retry bookkeeping of a delivery: which attempt it is and what failed before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryState {
    /// The attempt about to run (1 for a first delivery).
    pub attempt: u32,
    /// When it is due (epoch ms), for delayed retries.
    pub due_ms: Option<u64>,
    /// The handler a retry message is for.
    pub handler: Option<String>,
    /// The topic the event was first delivered on.
    pub origin_topic: Option<String>,
    /// Earlier failures.
    pub failures: Vec<Failure>,
}

impl RetryState {
    /// Reads the bookkeeping from a CloudEvent (a first delivery has none).
    pub fn from_event(ce: &CloudEvent) -> RetryState {
        let num = |k: &str| match ce.extensions.get(k) {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        RetryState {
            attempt: num(EXT_ATTEMPT)
                .map(|a| a.clamp(1, u32::MAX as u64) as u32)
                .unwrap_or(1),
            due_ms: num(EXT_DUE),
            handler: ce.extension_str(EXT_HANDLER).map(str::to_owned),
            origin_topic: ce.extension_str(EXT_TOPIC).map(str::to_owned),
            failures: ce
                .extension_str(EXT_FAILURES)
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default(),
        }
    }

    /// The extension attributes of the retry message for the next attempt.
    pub fn to_extensions(&self) -> Map<String, Value> {
        let mut m = Map::new();
        // Strings: CloudEvents extension values are strings on every transport.
        m.insert(EXT_ATTEMPT.into(), Value::String(self.attempt.to_string()));
        if let Some(due) = self.due_ms {
            m.insert(EXT_DUE.into(), Value::String(due.to_string()));
        }
        if let Some(h) = &self.handler {
            m.insert(EXT_HANDLER.into(), Value::String(h.clone()));
        }
        if let Some(t) = &self.origin_topic {
            m.insert(EXT_TOPIC.into(), Value::String(t.clone()));
        }
        m.insert(
            EXT_FAILURES.into(),
            Value::String(serde_json::to_string(&self.failures).unwrap_or_else(|_| "[]".into())),
        );
        m
    }
}

/// Removes our bookkeeping from a set of extensions (what a replayed or dead-lettered event keeps).
pub fn strip(extensions: &mut Map<String, Value>) {
    for k in [EXT_ATTEMPT, EXT_DUE, EXT_HANDLER, EXT_TOPIC, EXT_FAILURES] {
        extensions.remove(k);
    }
}
