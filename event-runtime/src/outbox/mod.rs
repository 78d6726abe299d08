//! The transactional outbox: an app writes its events in the same transaction as its change,
//! and a relay publishes them once committed, in order per partition key, at least once.
//!
//! Rows are spread over buckets by their partition key; relays lease buckets (time-limited
//! leases in `event_outbox_lease`), so with several replicas each bucket, hence each key, is
//! relayed by one replica at a time, oldest row first, and a bucket stops at its first row that
//! fails to publish. No row stops its bucket for good: `add` refuses what the relay could not
//! read or the broker would refuse for its size, and a row the sidecar refuses for good is set
//! aside in `event_outbox_dead` after a few tries, for an operator to list and replay
//! ([`Outbox::dead_rows`], [`Outbox::replay_dead`]). See [`Outbox`].

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, SqlitePool, Transaction};
use tokio::sync::Notify;

use crate::event::Event;
use crate::outbox::metrics::OutboxMetrics;
use crate::outbox::store::{NewRow, Pool};
use crate::transport::outgoing::{OutgoingEvent, PublishError};
use crate::transport::publish::Publisher;

mod body;
pub(crate) mod conn;
mod dead;
mod metrics;
mod relay;
pub(crate) mod store;

pub use conn::OutboxConnection;
pub use dead::OutboxDeadRow;
pub use relay::OutboxRelay;

#[doc = include_str!("../../docs/outbox.md")]
#[derive(Clone)]
pub struct Outbox {
    pool: Pool,
    settings: Settings,
    wake: Arc<Notify>,
    progress: Arc<Notify>,
    metrics: Arc<OutboxMetrics>,
}

/// How the outbox relays and keeps its rows.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub buckets: u32,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub batch_window: Duration,
    pub retention: Duration,
    pub inbox_retention: Duration,
    pub batch_size: u32,
    pub max_message_bytes: usize,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        };
        f.debug_struct("Outbox")
            .field("backend", &backend)
            .field("settings", &self.settings)
            .finish()
    }
}

/// Why an outbox operation failed.
///
/// ```no_run
/// # async fn run(outbox: event_runtime::Outbox) {
/// use event_runtime::OutboxError;
/// match outbox.migrate().await {
///     Ok(()) => {}
///     Err(OutboxError::Database { action, source }) => eprintln!("{action}: {source}"),
///     Err(other) => eprintln!("{other}"),
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// The event could not be described (serialized, or its names checked).
    #[error("cannot add an event for topic {topic} to the outbox: {source}")]
    Encode {
        /// The topic it was for.
        topic: String,
        /// Why.
        #[source]
        source: PublishError,
    },
    /// The event is larger than [`Outbox::with_max_message_bytes`]: nothing was written.
    #[error(
        "cannot add event {event_id} for topic {topic} to the outbox: it is {bytes} bytes, \
         more than the limit of {limit} (Outbox::with_max_message_bytes)"
    )]
    TooLarge {
        /// The event's id.
        event_id: String,
        /// The topic it was for.
        topic: String,
        /// Its size: its record's bytes, or else its stored JSON's.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The event, once stored, would not read back (its data nested deeper than the 128 levels
    /// serde_json reads, say), so the relay could never publish it: nothing was written.
    #[error(
        "cannot add event {event_id} for topic {topic} to the outbox: the relay could not read \
         it back ({source}); nest its data less than 128 levels deep"
    )]
    Unreadable {
        /// The event's id.
        event_id: String,
        /// The topic it was for.
        topic: String,
        /// Why it does not read back.
        #[source]
        source: serde_json::Error,
    },
    /// The database refused.
    #[error("outbox: {action} failed: {source}")]
    Database {
        /// What the outbox was doing (`adding an event for task-events`, `commit`, ...).
        action: String,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
}

fn db_error(action: impl Into<String>) -> impl FnOnce(sqlx::Error) -> OutboxError {
    let action = action.into();
    move |source| OutboxError::Database { action, source }
}

/// What the outbox table holds now ([`Outbox::stats`]).
///
/// ```no_run
/// # async fn run(outbox: event_runtime::Outbox) -> Result<(), event_runtime::OutboxError> {
/// let stats = outbox.stats().await?;
/// if stats.oldest_pending_age > Some(std::time::Duration::from_secs(60)) {
///     eprintln!("{} events wait for the sidecar", stats.pending);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxStats {
    /// Rows not yet published.
    pub pending: u64,
    /// Published rows kept until their retention ends.
    pub sent: u64,
    /// How long ago the oldest pending row was added.
    pub oldest_pending_age: Option<Duration>,
    /// Rows set aside, refused for good ([`Outbox::dead_rows`]).
    pub dead: u64,
}

/// FNV-1a, 64 bits: a partition key's bucket, the same in every process and version.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Outbox {
    /// An outbox on a SQLite database.
    pub fn sqlite(pool: SqlitePool) -> Self {
        Self::on(Pool::Sqlite(pool))
    }

    /// An outbox on a PostgreSQL database.
    pub fn postgres(pool: PgPool) -> Self {
        Self::on(Pool::Postgres(pool))
    }

    fn on(pool: Pool) -> Self {
        Outbox {
            pool,
            settings: Settings {
                buckets: 16,
                lease: Duration::from_secs(30),
                poll_interval: Duration::from_secs(1),
                batch_window: Duration::from_millis(20),
                retention: Duration::from_secs(7 * 24 * 3600),
                inbox_retention: Duration::from_secs(7 * 24 * 3600),
                batch_size: 100,
                max_message_bytes: 1_048_576,
            },
            wake: Arc::default(),
            progress: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// How many buckets partition keys are spread over (16): the most relays that share the
    /// work. Every replica must use the same number.
    pub fn with_buckets(mut self, buckets: u32) -> Self {
        self.settings.buckets = buckets.max(1);
        self
    }

    /// How long a relay's lease on a bucket lasts unless renewed (30 s): how long a crashed
    /// replica's buckets wait before another takes them. Keep replicas' clocks within a small
    /// part of it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.settings.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// How often the relay looks for rows without being woken (1 s): rows other replicas
    /// committed, and retries after a failed publish (which back off up to this interval). Also
    /// how often it renews its leases (at least every third of the lease), rebalances buckets
    /// between relays, deletes rows past their retention and refreshes the table's gauges.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long the relay lets commits gather under a stream of them (20 ms): woken by a commit
    /// less than this after the start of a round that published rows, it waits out the rest
    /// before the next round, which then carries every row committed meanwhile. Woken while
    /// idle (its last round found nothing), it does not wait. Zero: a round per wake, the
    /// lowest latency and the most database work per event.
    pub fn with_batch_window(mut self, window: Duration) -> Self {
        self.settings.batch_window = window;
        self
    }

    /// How long published rows are kept (7 days); zero deletes each row once published.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.settings.retention = retention;
        self
    }

    /// How long inbox claims ([`Outbox::claim_inbox`]) are kept (7 days); keep it longer than
    /// an event may be redelivered (the topic's retention). Zero keeps them forever.
    pub fn with_inbox_retention(mut self, retention: Duration) -> Self {
        self.settings.inbox_retention = retention;
        self
    }

    /// How many rows the relay reads at once from each bucket it holds (100).
    pub fn with_batch_size(mut self, rows: u32) -> Self {
        self.settings.batch_size = rows.max(1);
        self
    }

    /// The largest event [`Outbox::add`] takes, in bytes (1 MiB, Kafka's default message
    /// limit): its record's bytes, or else its stored JSON (data and attributes). Set it to your
    /// broker's limit, so an event the broker would refuse for good is refused when it is added.
    ///
    /// ```
    /// # fn run(pool: sqlx::SqlitePool) {
    /// let outbox = event_runtime::Outbox::sqlite(pool).with_max_message_bytes(512 * 1024);
    /// # }
    /// ```
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_message_bytes = bytes;
        self
    }

    /// Creates the outbox's tables (`event_outbox`, `event_outbox_dead`, `event_outbox_lease`,
    /// `event_outbox_relay`, `event_inbox`) when missing; safe to run from every replica at
    /// once. The relay runs it too when it starts, but [`Outbox::add`] needs the tables:
    /// migrate before the first write.
    pub async fn migrate(&self) -> Result<(), OutboxError> {
        store::migrate(&self.pool, self.settings.buckets)
            .await
            .map_err(db_error("creating the outbox tables"))
    }

    /// Adds `event` for `topic` (on the publisher's default pubsub) on `conn`, your transaction:
    /// it is published once that commits, and never if it rolls back.
    ///
    /// On PostgreSQL it also locks the event's partition key until the transaction ends (a
    /// transaction-scoped advisory lock), so that transactions writing events of one key commit
    /// in the order their rows were added; a transaction that adds events of several keys
    /// should add them in a consistent order, as with row locks.
    ///
    /// An event the relay could not publish is refused and nothing is written: one larger
    /// than [`Outbox::with_max_message_bytes`] ([`OutboxError::TooLarge`]), or one that would
    /// not read back ([`OutboxError::Unreadable`]).
    pub async fn add<E: Event, C: OutboxConnection + ?Sized>(
        &self,
        conn: &mut C,
        topic: &str,
        event: &E,
    ) -> Result<(), OutboxError> {
        self.add_to(conn, "", topic, event).await
    }

    /// [`Outbox::add`] on `pubsub` (empty: the publisher's default).
    pub async fn add_to<E: Event, C: OutboxConnection + ?Sized>(
        &self,
        conn: &mut C,
        pubsub: &str,
        topic: &str,
        event: &E,
    ) -> Result<(), OutboxError> {
        let event = OutgoingEvent::from_event(pubsub, topic, "", event).map_err(|source| {
            OutboxError::Encode {
                topic: topic.to_owned(),
                source,
            }
        })?;
        self.add_event(conn, event.with_current_trace()).await
    }

    /// Adds a prepared event on `conn`; an empty `pubsub` or `source` takes the publisher's.
    pub async fn add_event<C: OutboxConnection + ?Sized>(
        &self,
        conn: &mut C,
        event: OutgoingEvent,
    ) -> Result<(), OutboxError> {
        let encode = |source| OutboxError::Encode {
            topic: event.topic.clone(),
            source,
        };
        if !event.pubsub.is_empty() {
            crate::wire::names::check_component("pubsub component", &event.pubsub)
                .map_err(|e| encode(PublishError::InvalidName(e)))?;
        }
        crate::wire::names::check_topic(&event.topic)
            .map_err(|e| encode(PublishError::InvalidName(e)))?;
        let key = event.partition_key.as_deref().unwrap_or(&event.id);
        let limit = self.settings.max_message_bytes;
        let body = body::encode(&event, limit).map_err(|refused| match refused {
            body::Refused::Encode(e) => encode(PublishError::Encode(e.to_string())),
            body::Refused::TooLarge { bytes } => OutboxError::TooLarge {
                event_id: event.id.clone(),
                topic: event.topic.clone(),
                bytes,
                limit,
            },
            body::Refused::Unreadable(source) => OutboxError::Unreadable {
                event_id: event.id.clone(),
                topic: event.topic.clone(),
                source,
            },
        })?;
        let row = NewRow {
            bucket: (fnv1a(key.as_bytes()) % u64::from(self.settings.buckets)) as i64,
            pubsub: &event.pubsub,
            topic: &event.topic,
            event_id: &event.id,
            partition_key: event.partition_key.as_deref(),
            body,
            created_ms: crate::clock::now_ms() as i64,
        };
        store::insert(conn.outbox_conn(), &row)
            .await
            .map_err(db_error(format!(
                "adding event {} for {} (is the outbox migrated?)",
                event.id, event.topic
            )))
    }

    /// Commits `tx` and wakes this process's relay, so what it added goes out at once.
    pub async fn commit<DB: sqlx::Database>(
        &self,
        tx: Transaction<'_, DB>,
    ) -> Result<(), OutboxError> {
        tx.commit().await.map_err(db_error("commit"))?;
        self.wake();
        Ok(())
    }

    /// Wakes this process's relay (after a commit that did not go through [`Outbox::commit`]);
    /// otherwise it finds the rows within its poll interval.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Records, on `conn` (the transaction of the handler's change), that `handler` processed
    /// the event `event_id`: `true` the first time, `false` when it had already, whose
    /// transaction committed. Checked and written in the change's transaction, it makes the
    /// handler's effect happen once however often the event is delivered.
    ///
    /// ```no_run
    /// # async fn run(pool: sqlx::PgPool, outbox: event_runtime::Outbox, event_id: &str) -> anyhow::Result<()> {
    /// let mut tx = pool.begin().await?;
    /// if !outbox.claim_inbox(&mut *tx, "on_task_completed", event_id).await? {
    ///     return Ok(()); // done before: nothing to do
    /// }
    /// // ... the change, and `outbox.add(&mut *tx, ...)` for its events ...
    /// outbox.commit(tx).await?;
    /// # Ok(()) }
    /// ```
    pub async fn claim_inbox<C: OutboxConnection + ?Sized>(
        &self,
        conn: &mut C,
        handler: &str,
        event_id: &str,
    ) -> Result<bool, OutboxError> {
        let now = crate::clock::now_ms() as i64;
        store::claim_inbox(conn.outbox_conn(), handler, event_id, now)
            .await
            .map_err(db_error(format!(
                "claiming event {event_id} for handler {handler} in the inbox"
            )))
    }

    /// What the outbox table holds now.
    pub async fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let counts = store::counts(&self.pool)
            .await
            .map_err(db_error("counting the outbox rows"))?;
        let now = crate::clock::now_ms() as i64;
        Ok(OutboxStats {
            pending: counts.pending.max(0) as u64,
            sent: counts.sent.max(0) as u64,
            oldest_pending_age: counts
                .oldest_pending_ms
                .map(|t| Duration::from_millis((now - t).max(0) as u64)),
            dead: counts.dead.max(0) as u64,
        })
    }

    /// Starts relaying through `publisher` in the background, until [`OutboxRelay::stop`] (or the
    /// [`OutboxRelay`] is dropped). [`App::with_outbox`](crate::App::with_outbox) does it for you.
    pub fn start_relay(&self, publisher: Publisher) -> OutboxRelay {
        OutboxRelay::start(self.clone(), publisher)
    }

    /// Waits until the relay of this process finished a round (or `timeout` passed).
    pub(crate) async fn progressed(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.progress.notified()).await;
    }

    pub(crate) fn metrics(&self) -> Arc<OutboxMetrics> {
        self.metrics.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable() {
        // Changing the hash would reorder keys across a deployment: these values are fixed.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
