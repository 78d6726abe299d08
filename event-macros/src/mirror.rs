//! The runtime's figures and rules that the macros check at compile time, copied here because a
//! proc-macro crate can export nothing but macros (so neither crate can import the other's).
//! This file has no imports: `tests/tests/macro_mirror.rs` includes it and fails when a copy
//! differs from the runtime's.

/// `event_runtime::INLINE_RETRY_LIMIT_SECS`: the most an inline schedule may wait in total.
pub(crate) const INLINE_RETRY_LIMIT_SECS: u64 = 60;

/// The longest Kafka topic name (`event_runtime::dapr::check_topic`).
pub(crate) const MAX_TOPIC_LEN: usize = 249;

/// Kafka's rule for topic names, as `event_runtime::dapr::check_topic` states it.
pub(crate) const TOPIC_RULE: &str =
    "Kafka topic names are 1 to 249 characters of `A-Z a-z 0-9 . _ -`, and not `.` or `..`";

/// `event_runtime::retry::exponential`: `attempts` delays starting at `initial` seconds, each
/// `factor` times the last, none above `cap`.
pub(crate) fn exponential(initial: u64, factor: u64, attempts: u64, cap: Option<u64>) -> Vec<u64> {
    let cap = cap.unwrap_or(u64::MAX);
    let mut delay = initial;
    (0..attempts)
        .map(|_| {
            let this = delay.min(cap);
            delay = delay.saturating_mul(factor);
            this
        })
        .collect()
}
