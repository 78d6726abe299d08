//! Rows set aside: when the relay gives a row up so that its bucket moves on, and how an
//! operator lists and replays what it gave up.
//!
//! A row is set aside when it cannot be read (at once: reading it again changes nothing), or
//! when the sidecar refused it for good [`REFUSALS_BEFORE_SET_ASIDE`] times in a row (a 4xx,
//! a name or encoding it rejects, a message too large). A transient failure (an unreachable
//! sidecar, a 5xx) never sets a row aside: its bucket waits, as the row's order requires.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use crate::outbox::{db_error, fnv1a, store, Outbox, OutboxError};
use crate::transport::outgoing::PublishError;

/// How many refusals for good in a row set a row aside: one could be a sidecar's passing
/// misconfiguration, three in a row rarely are.
pub(crate) const REFUSALS_BEFORE_SET_ASIDE: u32 = 3;

/// Whether `error` refuses the row itself, so that trying it again as it is cannot succeed.
/// A stopped embedded broker is not transient either, but says nothing about the row.
pub(crate) fn refuses_the_row(error: &PublishError) -> bool {
    !error.is_transient() && !matches!(error, PublishError::Stopped { .. })
}

/// What the relay does with a row that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Try it again (its bucket waits).
    Retry,
    /// Set it aside (its bucket moves on).
    SetAside,
}

/// The refusals for good of each row since it last did anything else, counted by the relay
/// between its rounds (a relay that restarts, or a bucket that moves to another relay, counts
/// again from zero: a row is still set aside after a bounded number of tries).
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    /// Each failing row's refusals in a row, by `seq`.
    counts: HashMap<i64, u32>,
    /// The rows that failed in the round under way.
    seen: Vec<i64>,
}

impl Refusals {
    /// Row `seq` failed to publish with `error`: retried, or set aside at the last refusal.
    pub(crate) fn failed(&mut self, seq: i64, error: &PublishError) -> Verdict {
        self.seen.push(seq);
        if !refuses_the_row(error) {
            self.counts.remove(&seq);
            return Verdict::Retry;
        }
        let count = self.counts.entry(seq).or_insert(0);
        *count += 1;
        if *count >= REFUSALS_BEFORE_SET_ASIDE {
            Verdict::SetAside
        } else {
            Verdict::Retry
        }
    }

    /// The round is over: a row that did not fail in it (published, set aside, or in a bucket
    /// no longer held) starts again from zero.
    pub(crate) fn end_round(&mut self) {
        let seen = std::mem::take(&mut self.seen);
        self.counts.retain(|seq, _| seen.contains(seq));
    }
}

/// A row set aside ([`Outbox::dead_rows`]): an event the relay gave up on, and why.
///
/// ```no_run
/// # async fn run(outbox: event_runtime::Outbox) -> Result<(), event_runtime::OutboxError> {
/// for row in outbox.dead_rows().await? {
///     eprintln!("{} for {} set aside after {} tries: {}", row.event_id, row.topic, row.attempts, row.reason);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxDeadRow {
    /// Its place in the outbox when it was set aside (what [`Outbox::replay_dead`] takes).
    pub seq: i64,
    /// Its partition key's bucket.
    pub bucket: i64,
    /// The pubsub component it was for (empty: the publisher's default).
    pub pubsub: String,
    /// The topic it was for.
    pub topic: String,
    /// The event's id.
    pub event_id: String,
    /// The event's partition key.
    pub partition_key: Option<String>,
    /// The event as stored (JSON).
    pub body: String,
    /// Why it was set aside: the last error.
    pub reason: String,
    /// How often the relay tried it.
    pub attempts: u64,
    /// When it was set aside.
    pub set_aside_at: SystemTime,
}

impl Outbox {
    /// The rows the relay set aside, oldest first: events the sidecar refused for good
    /// (after a few tries) or that could not be read, which no longer hold their bucket up.
    /// Replay them with [`Outbox::replay_dead`] once the cause is fixed.
    pub async fn dead_rows(&self) -> Result<Vec<OutboxDeadRow>, OutboxError> {
        let rows = store::dead_rows(&self.pool)
            .await
            .map_err(db_error("listing the rows set aside"))?;
        Ok(rows
            .into_iter()
            .map(|row| OutboxDeadRow {
                seq: row.seq,
                bucket: row.bucket,
                pubsub: row.pubsub,
                topic: row.topic,
                event_id: row.event_id,
                partition_key: row.partition_key,
                body: row.body,
                reason: row.reason,
                attempts: row.attempts.max(0) as u64,
                set_aside_at: SystemTime::UNIX_EPOCH
                    + Duration::from_millis(row.dead_ms.max(0) as u64),
            })
            .collect())
    }

    /// Puts the rows `seqs` set aside back among the pending rows, in the order they were
    /// first added, in one transaction; answers how many (a `seq` not set aside is skipped).
    /// Each is added anew: it goes out after every row pending now, so after the events of
    /// its partition key published since it was set aside. Wakes this process's relay.
    ///
    /// ```no_run
    /// # async fn run(outbox: event_runtime::Outbox) -> Result<(), event_runtime::OutboxError> {
    /// let seqs: Vec<i64> = outbox.dead_rows().await?.iter().map(|row| row.seq).collect();
    /// let replayed = outbox.replay_dead(&seqs).await?;
    /// eprintln!("{replayed} events to publish again");
    /// # Ok(()) }
    /// ```
    pub async fn replay_dead(&self, seqs: &[i64]) -> Result<u64, OutboxError> {
        let buckets = u64::from(self.settings.buckets);
        let bucket_of = |key: &str| (fnv1a(key.as_bytes()) % buckets) as i64;
        let now = crate::clock::now_ms() as i64;
        let replayed = store::replay_dead(&self.pool, seqs, now, bucket_of)
            .await
            .map_err(db_error(format!("replaying the rows set aside {seqs:?}")))?;
        self.wake();
        Ok(replayed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16) -> PublishError {
        PublishError::Rejected {
            pubsub: "pubsub".into(),
            topic: "items".into(),
            status,
            error_code: String::new(),
            message: String::new(),
        }
    }

    #[test]
    fn a_row_refused_for_good_is_set_aside_at_the_last_refusal_in_a_row() {
        let mut refusals = Refusals::default();
        for _ in 1..REFUSALS_BEFORE_SET_ASIDE {
            assert_eq!(refusals.failed(7, &rejected(400)), Verdict::Retry);
            refusals.end_round();
        }
        assert_eq!(refusals.failed(7, &rejected(400)), Verdict::SetAside);
    }

    #[test]
    fn transient_failures_never_set_a_row_aside_and_break_the_run() {
        let mut refusals = Refusals::default();
        for _ in 0..10 {
            assert_eq!(refusals.failed(7, &rejected(503)), Verdict::Retry);
            refusals.end_round();
        }
        for _ in 1..REFUSALS_BEFORE_SET_ASIDE {
            refusals.failed(7, &rejected(400));
            refusals.end_round();
        }
        // A 5xx between refusals: they are no longer in a row.
        assert_eq!(refusals.failed(7, &rejected(503)), Verdict::Retry);
        refusals.end_round();
        assert_eq!(refusals.failed(7, &rejected(400)), Verdict::Retry);
    }

    #[test]
    fn a_row_that_did_not_fail_in_a_round_starts_again() {
        let mut refusals = Refusals::default();
        for _ in 1..REFUSALS_BEFORE_SET_ASIDE {
            refusals.failed(7, &rejected(404));
            refusals.end_round();
        }
        refusals.end_round(); // published, or its bucket went to another relay
        assert_eq!(refusals.failed(7, &rejected(404)), Verdict::Retry);
    }

    #[test]
    fn a_stopped_broker_is_not_the_rows_fault() {
        let stopped = PublishError::Stopped {
            pubsub: "pubsub".into(),
            topic: "items".into(),
        };
        assert!(!refuses_the_row(&stopped));
        assert!(refuses_the_row(&PublishError::Encode("bad".into())));
    }
}
