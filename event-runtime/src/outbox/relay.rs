//! The relay: leases buckets, publishes their pending rows oldest first, marks them sent, and
//! deletes sent rows past their retention.
//!
//! Each round: the lease work when due (a heartbeat, which tells how many relays share the
//! buckets; the leases renewed; extra buckets released or free ones taken so each relay holds
//! its share), then the oldest pending rows of each held bucket (at most the batch size of
//! each, so that a bucket's backlog never crowds another's out), published bucket by bucket
//! (buckets side by side, each in `seq` order, stopping at its first failure), then the rows
//! published marked sent, every bucket's in one statement. A row that cannot be read, or that
//! the sidecar refused for good a few rounds in a row, is set aside instead of stopping its
//! bucket (see `dead`); a transient failure only makes the relay back off. It runs again at
//! once while a bucket has rows left, when this process commits through [`Outbox::commit`],
//! and every poll interval. Woken by a commit right after a round that published rows, it
//! first waits out the batch window (20 ms from that round's start), so that under a stream of
//! commits one round carries the rows of many; woken after a round that found nothing, it goes
//! at once.
//!
//! The lease work and the housekeeping (deleting rows past their retention, the table's
//! gauges) are due once per poll interval (the lease work also every third of the lease, and
//! on every round while the relay holds no bucket), not on every round: under a stream of
//! commits a round runs every batch window, and those writes cost the app's own transactions
//! (every one a commit, on PostgreSQL a WAL flush). An idle relay still does both every round.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::outbox::body::decode;
use crate::outbox::dead::{Refusals, Verdict};
use crate::outbox::store::{self, PendingRow};
use crate::outbox::Outbox;
use crate::transport::publish::Publisher;

/// The shortest wait after a failed round; it doubles up to the poll interval.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// A running relay ([`Outbox::start_relay`]). Dropping it stops it too, without waiting.
///
/// ```no_run
/// # async fn run(outbox: event_runtime::Outbox, app: event_runtime::App) {
/// let relay = outbox.start_relay(app.publisher());
/// // ...
/// relay.stop().await; // finishes its round, then gives its buckets up
/// # }
/// ```
#[derive(Debug)]
pub struct OutboxRelay {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl OutboxRelay {
    pub(crate) fn start(outbox: Outbox, publisher: Publisher) -> Self {
        let (stop, stopped) = watch::channel(false);
        let worker = Worker {
            holder: uuid::Uuid::new_v4().to_string(),
            outbox,
            publisher,
            held: Vec::new(),
            leased_at: None,
            housekept_at: None,
            refusals: Mutex::default(),
        };
        OutboxRelay {
            stop,
            task: Some(tokio::spawn(worker.run(stopped))),
        }
    }

    /// Stops relaying: the round under way finishes, and the relay gives its leases up so
    /// another replica takes its buckets at once.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for OutboxRelay {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

struct Worker {
    holder: String,
    outbox: Outbox,
    publisher: Publisher,
    /// The buckets held since the last lease work.
    held: Vec<i64>,
    /// When the lease work last ran.
    leased_at: Option<Instant>,
    /// When the housekeeping last ran.
    housekept_at: Option<Instant>,
    /// The rows the sidecar refused for good, until they are set aside (buckets publish side
    /// by side, each locks it briefly, never across an await).
    refusals: Mutex<Refusals>,
}

/// Whether something last done at `last` is due again after `every`.
fn due(last: Option<Instant>, every: Duration) -> bool {
    last.is_none_or(|t| t.elapsed() >= every)
}

/// What one round did.
#[derive(Debug, Default)]
struct Round {
    buckets: usize,
    published: u64,
    /// Buckets stopped at a row that failed.
    failed: u64,
    /// A bucket published a full batch: more of its rows may wait.
    full: bool,
}

/// What publishing one bucket's rows did.
#[derive(Debug, Default)]
struct BucketRound {
    /// The rows published.
    sent: Vec<i64>,
    /// It stopped at a row that failed.
    stopped: bool,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn now() -> i64 {
    crate::clock::now_ms() as i64
}

impl Worker {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let settings = self.outbox.settings.clone();
        let mut migrated = false;
        let mut backoff = FIRST_BACKOFF;
        while !*stopped.borrow() {
            // Wakes from commits this round will see anyway: no second round for them.
            let _ = self.outbox.wake.notified().now_or_never();
            let started = Instant::now();
            let mut listen = true;
            let mut busy = false;
            let wait = match self.step(&mut migrated).await {
                Ok(round) if round.full => {
                    // More rows wait in a bucket that went well: go on at once. A bucket that
                    // failed is tried again with it, once per round, which each carries a
                    // full batch of another bucket's rows.
                    if round.failed == 0 {
                        backoff = FIRST_BACKOFF;
                    }
                    continue;
                }
                Ok(round) if round.failed == 0 => {
                    backoff = FIRST_BACKOFF;
                    busy = round.published > 0;
                    settings.poll_interval
                }
                Ok(_) => {
                    // A bucket is stuck on a row the publisher refused: do not retry on every
                    // commit; back off up to the poll interval.
                    listen = false;
                    let wait = backoff;
                    backoff = (backoff * 2).min(settings.poll_interval);
                    wait
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay: round failed");
                    listen = false;
                    let wait = backoff;
                    backoff = (backoff * 2).min(settings.poll_interval);
                    wait
                }
            };
            self.outbox.progress.notify_waiters();
            tokio::select! {
                _ = self.outbox.wake.notified(), if listen => {
                    // Under a stream of commits, let them gather: a round that published rows
                    // is followed by the next one no sooner than the batch window after it
                    // started. An idle relay (its last round found nothing) goes at once.
                    let gather = settings.batch_window.saturating_sub(started.elapsed());
                    if busy && !gather.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(gather) => {}
                            _ = stopped.changed() => {}
                        }
                    }
                }
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => {}
            }
        }
        if migrated {
            if let Err(e) = store::release_all(&self.outbox.pool, &self.holder).await {
                tracing::warn!(error = %e, "outbox relay: cannot give its leases up");
            }
        }
        self.outbox.metrics.buckets_held(0);
    }

    async fn step(&mut self, migrated: &mut bool) -> Result<Round, sqlx::Error> {
        if !*migrated {
            store::migrate(&self.outbox.pool, self.outbox.settings.buckets).await?;
            *migrated = true;
        }
        let span = tracing::info_span!(
            "outbox_relay",
            holder = %self.holder,
            buckets = tracing::field::Empty,
            published = tracing::field::Empty,
            failed = tracing::field::Empty,
        );
        let round = self.round().instrument(span.clone()).await?;
        span.record("buckets", round.buckets);
        span.record("published", round.published);
        span.record("failed", round.failed);
        if due(self.housekept_at, self.outbox.settings.poll_interval) {
            self.housekeeping().instrument(span).await?;
            self.housekept_at = Some(Instant::now());
        }
        Ok(round)
    }

    /// Leases this relay's share of the buckets (when due) and publishes their oldest pending
    /// rows.
    async fn round(&mut self) -> Result<Round, sqlx::Error> {
        let settings = self.outbox.settings.clone();
        let now = now();
        // Between lease works the leases stay valid: renewed for the whole lease at least every
        // third of it, and `pending_of` reads only buckets whose lease has not run out.
        let every = settings.poll_interval.min(settings.lease / 3);
        if self.held.is_empty() || due(self.leased_at, every) {
            self.held = self.lease(now).await?;
            self.leased_at = Some(Instant::now());
        }
        let pool = &self.outbox.pool;
        let mut round = Round {
            buckets: self.held.len(),
            ..Round::default()
        };
        if self.held.is_empty() {
            return Ok(round);
        }
        let limit = settings.batch_size as usize;
        let rows = store::pending_of(pool, &self.holder, now, limit as i64).await?;
        let mut by_bucket: BTreeMap<i64, Vec<PendingRow>> = BTreeMap::new();
        for row in rows {
            by_bucket.entry(row.bucket).or_default().push(row);
        }
        let results = futures::future::join_all(by_bucket.into_values().map(|rows| async {
            let read = rows.len();
            (read, self.publish(rows).await)
        }))
        .await;
        self.refusals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .end_round();
        let mut sent = Vec::new();
        for (read, bucket) in results {
            round.failed += u64::from(bucket.stopped);
            round.full |= read == limit && !bucket.stopped;
            sent.extend(bucket.sent);
        }
        round.published = sent.len() as u64;
        if !sent.is_empty() {
            self.outbox.metrics.batch();
            let keep = !settings.retention.is_zero();
            if let Err(e) = store::mark_sent(pool, &sent, now, keep).await {
                // Published but not marked: they go out again (same ids, same order) on the
                // next round.
                tracing::warn!(error = %e, rows = sent.len(), "outbox relay: cannot mark rows sent");
            }
        }
        Ok(round)
    }

    /// The lease work: a heartbeat, this relay's leases renewed, and buckets given up or taken
    /// so that it holds its share. Answers the buckets it holds.
    async fn lease(&self, now: i64) -> Result<Vec<i64>, sqlx::Error> {
        let pool = &self.outbox.pool;
        let settings = &self.outbox.settings;
        let lease = ms(settings.lease);
        let relays = store::heartbeat(pool, &self.holder, now, lease, lease * 10).await?;
        let share = settings.buckets.div_ceil(relays.clamp(1, i64::MAX) as u32) as usize;
        let mut held = store::renew(pool, &self.holder, now, now + lease).await?;
        held.sort_unstable();
        if held.len() > share {
            for bucket in held.split_off(share) {
                store::release(pool, &self.holder, bucket).await?;
            }
        } else if held.len() < share {
            let wanted = (share - held.len()) as i64;
            held.extend(store::take(pool, &self.holder, now, now + lease, wanted).await?);
        }
        self.outbox.metrics.buckets_held(held.len());
        Ok(held)
    }

    /// Publishes one bucket's rows in order, stopping at the first that fails unless that one
    /// is set aside (an unreadable row at once, a row the sidecar refused for good at its last
    /// refusal; see `dead`), when the bucket goes on. Answers the `seq`s published (the round
    /// marks every bucket's sent in one statement) and whether it stopped.
    async fn publish(&self, rows: Vec<PendingRow>) -> BucketRound {
        let mut bucket = BucketRound {
            sent: Vec::with_capacity(rows.len()),
            stopped: false,
        };
        for row in rows {
            let Err((error, verdict)) = self.publish_one(&row).await else {
                self.outbox.metrics.published();
                bucket.sent.push(row.seq);
                continue;
            };
            self.outbox.metrics.failed();
            if let Err(e) = store::mark_failed(&self.outbox.pool, row.seq, &error).await {
                tracing::warn!(error = %e, seq = row.seq, "outbox relay: cannot record a failed publish");
            }
            if verdict == Verdict::SetAside {
                match store::set_aside(&self.outbox.pool, row.seq, &error, now()).await {
                    Ok(moved) => {
                        if moved {
                            self.outbox.metrics.set_aside();
                        }
                        tracing::error!(
                            %error,
                            seq = row.seq,
                            bucket = row.bucket,
                            "outbox relay: row set aside, its bucket goes on (Outbox::dead_rows)"
                        );
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, seq = row.seq, "outbox relay: cannot set a row aside");
                    }
                }
            } else {
                tracing::warn!(%error, bucket = row.bucket, "outbox relay: bucket waits on a failed publish");
            }
            bucket.stopped = true;
            break;
        }
        bucket
    }

    /// Publishes one row; a failure says why and what to do with the row.
    async fn publish_one(&self, row: &PendingRow) -> Result<(), (String, Verdict)> {
        let event = decode(row, &self.publisher).map_err(|e| {
            let error = format!("outbox row {} is unreadable: {e}", row.seq);
            (error, Verdict::SetAside)
        })?;
        let id = event.id.clone();
        self.publisher.send(event).await.map_err(|e| {
            let verdict = self
                .refusals
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .failed(row.seq, &e);
            (
                format!("publishing event {id} to {}: {e}", row.topic),
                verdict,
            )
        })
    }

    /// Deletes sent rows and inbox claims past their retention, and refreshes the table's
    /// gauges.
    async fn housekeeping(&self) -> Result<(), sqlx::Error> {
        let pool = &self.outbox.pool;
        let settings = &self.outbox.settings;
        if !settings.retention.is_zero() {
            store::delete_sent(pool, now() - ms(settings.retention)).await?;
        }
        if !settings.inbox_retention.is_zero() {
            store::delete_inbox(pool, now() - ms(settings.inbox_retention)).await?;
        }
        let counts = store::counts(pool).await?;
        self.outbox
            .metrics
            .table(counts.pending, counts.oldest_pending_ms, counts.dead);
        Ok(())
    }
}
