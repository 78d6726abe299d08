//! The relay: leases buckets, publishes their pending rows oldest first, marks them sent, and
//! deletes sent rows past their retention.
//!
//! Each round: a heartbeat (how many relays share the buckets), the leases renewed, extra
//! buckets released or free ones taken so each relay holds its share, then the oldest pending
//! rows of the held buckets, published bucket by bucket (buckets side by side, each in `seq`
//! order, stopping at its first failure). It runs again at once while rows remain, when this
//! process commits through [`Outbox::commit`], and every poll interval.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::outbox::store::{self, PendingRow};
use crate::outbox::{decode, Outbox};
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
}

/// What one round did.
#[derive(Debug, Default)]
struct Round {
    buckets: usize,
    published: u64,
    failed: u64,
    /// The batch was full: more rows may wait.
    full: bool,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn now() -> i64 {
    crate::clock::now_ms() as i64
}

impl Worker {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let settings = self.outbox.settings.clone();
        let mut migrated = false;
        let mut backoff = FIRST_BACKOFF;
        while !*stopped.borrow() {
            let mut listen = true;
            let wait = match self.step(&mut migrated).await {
                Ok(round) if round.failed == 0 => {
                    backoff = FIRST_BACKOFF;
                    if round.full {
                        continue;
                    }
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
                _ = self.outbox.wake.notified(), if listen => {}
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

    async fn step(&self, migrated: &mut bool) -> Result<Round, sqlx::Error> {
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
        self.housekeeping().instrument(span).await?;
        Ok(round)
    }

    /// Leases this relay's share of the buckets and publishes their oldest pending rows.
    async fn round(&self) -> Result<Round, sqlx::Error> {
        let pool = &self.outbox.pool;
        let settings = &self.outbox.settings;
        let lease = ms(settings.lease);
        let now = now();
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
        let mut round = Round {
            buckets: held.len(),
            ..Round::default()
        };
        if held.is_empty() {
            return Ok(round);
        }
        let limit = i64::from(settings.batch_size);
        let rows = store::pending_of(pool, &self.holder, now, limit).await?;
        round.full = rows.len() as i64 == limit;
        let mut by_bucket: BTreeMap<i64, Vec<PendingRow>> = BTreeMap::new();
        for row in rows {
            by_bucket.entry(row.bucket).or_default().push(row);
        }
        let results =
            futures::future::join_all(by_bucket.into_values().map(|rows| self.publish(rows))).await;
        for (published, failed) in results {
            round.published += published;
            round.failed += failed;
        }
        Ok(round)
    }

    /// Publishes one bucket's rows in order, stopping at the first that fails.
    async fn publish(&self, rows: Vec<PendingRow>) -> (u64, u64) {
        let pool = &self.outbox.pool;
        let keep = !self.outbox.settings.retention.is_zero();
        let mut published = 0;
        for row in rows {
            let result = match decode(&row, &self.publisher) {
                Ok(event) => {
                    let id = event.id.clone();
                    self.publisher
                        .send(event)
                        .await
                        .map_err(|e| format!("publishing event {id} to {}: {e}", row.topic))
                }
                Err(e) => Err(format!("outbox row {} is unreadable: {e}", row.seq)),
            };
            let marked = match &result {
                Ok(()) => store::mark_sent(pool, row.seq, now(), keep).await,
                Err(error) => store::mark_failed(pool, row.seq, error).await,
            };
            if let Err(error) = result {
                self.outbox.metrics.failed();
                tracing::warn!(%error, bucket = row.bucket, "outbox relay: bucket waits on a failed publish");
                return (published, 1);
            }
            self.outbox.metrics.published();
            published += 1;
            if let Err(e) = marked {
                // Published but not marked: it goes out again (same id) on the next round.
                tracing::warn!(error = %e, seq = row.seq, "outbox relay: cannot mark a row sent");
                return (published, 0);
            }
        }
        (published, 0)
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
        let (pending, _, oldest) = store::counts(pool).await?;
        self.outbox.metrics.table(pending, oldest);
        Ok(())
    }
}
