//! The retry schedule: the delay before each attempt, and what follows a failed run (wait
//! inline, take the retry ladder, or give up).

use crate::handler::def::{HandlerDef, RetryMode};

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

/// What follows a failed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextStep {
    /// Dead-letter it: the error is permanent or the schedule is spent.
    GiveUp,
    /// Wait `secs` seconds in the delivery, then run again.
    Inline(u64),
    /// Publish it to the retry ladder, due in `secs` seconds.
    Delayed(u64),
}

/// The step after failed attempt `attempt` of the handler `def`: a permanent error or a spent
/// schedule gives up; otherwise the next delay, waited inline or on the ladder per its mode.
pub(crate) fn next_step(def: &HandlerDef, attempt: u32, permanent: bool) -> NextStep {
    let next_delay = if permanent {
        None
    } else {
        delay_after(def.retry, attempt)
    };
    match (next_delay, def.retry_mode) {
        (None, _) => NextStep::GiveUp,
        (Some(delay), RetryMode::Inline) => NextStep::Inline(delay),
        (Some(delay), RetryMode::Delayed) => NextStep::Delayed(delay),
    }
}

/// The seconds a retry whose hop is over is still due in, when that is another hop (at least
/// the shortest tier, a second); `None` when it runs now.
pub(crate) fn further_hop(due_ms: u64, now_ms: u64) -> Option<u64> {
    let remaining = due_ms.saturating_sub(now_ms);
    (remaining >= 1000).then_some(remaining / 1000)
}
