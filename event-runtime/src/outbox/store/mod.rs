//! The outbox's tables and every statement on them, for SQLite and PostgreSQL alike.
//!
//! `event_outbox` holds the events (`seq` orders them, `bucket` is their partition key's
//! bucket, `sent_ms` is set once published); `event_outbox_dead` the rows set aside, refused
//! for good, with why (the same columns, and the row's original `seq`); `event_outbox_lease`
//! holds one row per bucket and the relay that leases it until when; `event_outbox_relay` holds
//! each running relay's heartbeat (how many share the buckets); `event_inbox` holds the events
//! handlers processed.

use sqlx::{PgPool, SqlitePool};

use crate::outbox::conn::Conn;

/// The outbox's database.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the concrete pool (the same SQL serves both).
macro_rules! on_pool {
    ($pool_enum:expr, $pool:ident => $body:expr) => {
        match $pool_enum {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

// After `on_pool!`, which it uses.
mod set_aside;
pub(crate) use set_aside::{dead_rows, replay_dead, set_aside};

/// The outbox's tables, the same on both backends but for the type of `seq` (its commit order).
fn schema(seq: &str) -> [String; 7] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS event_outbox (seq {seq}, \
             bucket BIGINT NOT NULL, pubsub TEXT NOT NULL, topic TEXT NOT NULL, event_id TEXT NOT NULL, \
             partition_key TEXT, body TEXT NOT NULL, created_ms BIGINT NOT NULL, sent_ms BIGINT, \
             attempts BIGINT NOT NULL DEFAULT 0, last_error TEXT)"
        ),
        "CREATE INDEX IF NOT EXISTS event_outbox_pending ON event_outbox (bucket, seq) WHERE sent_ms IS NULL".into(),
        "CREATE INDEX IF NOT EXISTS event_outbox_sent ON event_outbox (sent_ms) WHERE sent_ms IS NOT NULL".into(),
        "CREATE TABLE IF NOT EXISTS event_outbox_dead (seq BIGINT PRIMARY KEY, \
         bucket BIGINT NOT NULL, pubsub TEXT NOT NULL, topic TEXT NOT NULL, event_id TEXT NOT NULL, \
         partition_key TEXT, body TEXT NOT NULL, created_ms BIGINT NOT NULL, \
         attempts BIGINT NOT NULL, reason TEXT NOT NULL, dead_ms BIGINT NOT NULL)"
            .into(),
        "CREATE TABLE IF NOT EXISTS event_outbox_lease (bucket BIGINT PRIMARY KEY, \
         holder TEXT NOT NULL DEFAULT '', until_ms BIGINT NOT NULL DEFAULT 0)"
            .into(),
        "CREATE TABLE IF NOT EXISTS event_outbox_relay (holder TEXT PRIMARY KEY, seen_ms BIGINT NOT NULL)".into(),
        "CREATE TABLE IF NOT EXISTS event_inbox (handler TEXT NOT NULL, event_id TEXT NOT NULL, \
         processed_ms BIGINT NOT NULL, PRIMARY KEY (handler, event_id))"
            .into(),
    ]
}

/// Serializes concurrent migrations on PostgreSQL (two replicas starting together); its DDL is
/// transactional.
const POSTGRES_MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7036504620371255040)";

const INSERT_LEASE: &str =
    "INSERT INTO event_outbox_lease (bucket) VALUES ($1) ON CONFLICT (bucket) DO NOTHING";

/// A row to add.
#[derive(Debug)]
pub(crate) struct NewRow<'a> {
    pub bucket: i64,
    pub pubsub: &'a str,
    pub topic: &'a str,
    pub event_id: &'a str,
    pub partition_key: Option<&'a str>,
    pub body: String,
    pub created_ms: i64,
}

/// A pending row, as the relay reads it.
#[derive(Debug, Clone)]
pub(crate) struct PendingRow {
    pub seq: i64,
    pub bucket: i64,
    pub pubsub: String,
    pub topic: String,
    pub body: String,
}

const INSERT_ROW: &str = "INSERT INTO event_outbox \
     (bucket, pubsub, topic, event_id, partition_key, body, created_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

const INSERT_INBOX: &str = "INSERT INTO event_inbox (handler, event_id, processed_ms) \
     VALUES ($1, $2, $3) ON CONFLICT (handler, event_id) DO NOTHING";

/// Creates the tables and the `buckets` lease rows, when missing. On PostgreSQL in one
/// transaction under an advisory lock; on SQLite statement by statement (each idempotent), so
/// that each waits for a writer elsewhere instead of failing to upgrade a read transaction.
pub(crate) async fn migrate(pool: &Pool, buckets: u32) -> Result<(), sqlx::Error> {
    match pool {
        Pool::Sqlite(pool) => {
            for statement in schema("INTEGER PRIMARY KEY AUTOINCREMENT") {
                sqlx::query(&statement).execute(pool).await?;
            }
            for bucket in 0..i64::from(buckets) {
                sqlx::query(INSERT_LEASE).bind(bucket).execute(pool).await?;
            }
            Ok(())
        }
        Pool::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            sqlx::query(POSTGRES_MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
            for statement in schema("BIGSERIAL PRIMARY KEY") {
                sqlx::query(&statement).execute(&mut *tx).await?;
            }
            for bucket in 0..i64::from(buckets) {
                sqlx::query(INSERT_LEASE)
                    .bind(bucket)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        }
    }
}

/// The same on PostgreSQL for a row with a partition key, in one round trip: the key's
/// transaction-scoped advisory lock is taken first (the materialized CTE is read before the row
/// is formed), then the row gets its `seq`.
const INSERT_ROW_LOCKED: &str = "WITH l AS MATERIALIZED (SELECT pg_advisory_xact_lock($8)) \
     INSERT INTO event_outbox \
     (bucket, pubsub, topic, event_id, partition_key, body, created_ms) \
     SELECT $1, $2, $3, $4, $5, $6, $7 FROM l";

/// Adds `row` on `conn`. On PostgreSQL it first takes a transaction-scoped advisory lock on the
/// partition key, so two transactions writing one key commit in the order of their `seq`.
pub(crate) async fn insert(conn: Conn<'_>, row: &NewRow<'_>) -> Result<(), sqlx::Error> {
    macro_rules! insert_on {
        ($sql:expr) => {
            sqlx::query($sql)
                .bind(row.bucket)
                .bind(row.pubsub)
                .bind(row.topic)
                .bind(row.event_id)
                .bind(row.partition_key)
                .bind(&row.body)
                .bind(row.created_ms)
        };
    }
    match conn {
        Conn::Sqlite(c) => insert_on!(INSERT_ROW).execute(&mut *c).await.map(drop),
        Conn::Postgres(c) => match row.partition_key {
            Some(key) => insert_on!(INSERT_ROW_LOCKED)
                .bind(key_lock(key))
                .execute(&mut *c)
                .await
                .map(drop),
            None => insert_on!(INSERT_ROW).execute(&mut *c).await.map(drop),
        },
    }
}

/// The advisory lock of a partition key.
fn key_lock(key: &str) -> i64 {
    (crate::outbox::fnv1a(key.as_bytes()) ^ 0x6f75_7462_6f78_0000) as i64
}

/// Records that `handler` processed `event_id`; `false` when it had already.
pub(crate) async fn claim_inbox(
    conn: Conn<'_>,
    handler: &str,
    event_id: &str,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let affected = match conn {
        Conn::Sqlite(c) => sqlx::query(INSERT_INBOX)
            .bind(handler)
            .bind(event_id)
            .bind(now_ms)
            .execute(&mut *c)
            .await?
            .rows_affected(),
        Conn::Postgres(c) => sqlx::query(INSERT_INBOX)
            .bind(handler)
            .bind(event_id)
            .bind(now_ms)
            .execute(&mut *c)
            .await?
            .rows_affected(),
    };
    Ok(affected == 1)
}

/// Records this relay's heartbeat, forgets relays silent for `forget_ms`, and answers how many
/// relays (this one included) were seen within `live_ms`.
pub(crate) async fn heartbeat(
    pool: &Pool,
    holder: &str,
    now: i64,
    live_ms: i64,
    forget_ms: i64,
) -> Result<i64, sqlx::Error> {
    on_pool!(pool, pool => {
        sqlx::query("INSERT INTO event_outbox_relay (holder, seen_ms) VALUES ($1, $2) \
                     ON CONFLICT (holder) DO UPDATE SET seen_ms = excluded.seen_ms")
            .bind(holder).bind(now).execute(pool).await?;
        sqlx::query("DELETE FROM event_outbox_relay WHERE seen_ms < $1")
            .bind(now - forget_ms).execute(pool).await?;
        sqlx::query_scalar("SELECT COUNT(*) FROM event_outbox_relay WHERE seen_ms > $1")
            .bind(now - live_ms).fetch_one(pool).await
    })
}

/// Extends this relay's unexpired leases to `until`; answers their buckets.
pub(crate) async fn renew(
    pool: &Pool,
    holder: &str,
    now: i64,
    until: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    on_pool!(pool, pool => sqlx::query_scalar(
        "UPDATE event_outbox_lease SET until_ms = $3 WHERE holder = $1 AND until_ms > $2 RETURNING bucket")
        .bind(holder).bind(now).bind(until).fetch_all(pool).await)
}

/// Leases up to `count` buckets whose lease expired (or was released) to `holder`.
pub(crate) async fn take(
    pool: &Pool,
    holder: &str,
    now: i64,
    until: i64,
    count: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    // The outer `until_ms <= $2` is checked again on a row another relay took meanwhile, so
    // one bucket never goes to two relays; PostgreSQL also skips rows locked by such a taker.
    const SQLITE: &str = "UPDATE event_outbox_lease SET holder = $1, until_ms = $3 \
        WHERE until_ms <= $2 AND bucket IN \
        (SELECT bucket FROM event_outbox_lease WHERE until_ms <= $2 ORDER BY bucket LIMIT $4) \
        RETURNING bucket";
    const POSTGRES: &str = "UPDATE event_outbox_lease SET holder = $1, until_ms = $3 \
        WHERE until_ms <= $2 AND bucket IN \
        (SELECT bucket FROM event_outbox_lease WHERE until_ms <= $2 ORDER BY bucket LIMIT $4 \
         FOR UPDATE SKIP LOCKED) \
        RETURNING bucket";
    match pool {
        Pool::Sqlite(pool) => {
            sqlx::query_scalar(SQLITE)
                .bind(holder)
                .bind(now)
                .bind(until)
                .bind(count)
                .fetch_all(pool)
                .await
        }
        Pool::Postgres(pool) => {
            sqlx::query_scalar(POSTGRES)
                .bind(holder)
                .bind(now)
                .bind(until)
                .bind(count)
                .fetch_all(pool)
                .await
        }
    }
}

/// Gives `bucket` up, when `holder` holds it.
pub(crate) async fn release(pool: &Pool, holder: &str, bucket: i64) -> Result<(), sqlx::Error> {
    on_pool!(pool, pool => sqlx::query(
        "UPDATE event_outbox_lease SET holder = '', until_ms = 0 WHERE bucket = $1 AND holder = $2")
        .bind(bucket).bind(holder).execute(pool).await.map(drop))
}

/// Gives every lease of `holder` up and forgets its heartbeat (a relay that stops).
pub(crate) async fn release_all(pool: &Pool, holder: &str) -> Result<(), sqlx::Error> {
    on_pool!(pool, pool => {
        sqlx::query("UPDATE event_outbox_lease SET holder = '', until_ms = 0 WHERE holder = $1")
            .bind(holder).execute(pool).await?;
        sqlx::query("DELETE FROM event_outbox_relay WHERE holder = $1")
            .bind(holder).execute(pool).await.map(drop)
    })
}

/// The oldest `limit` pending rows of each bucket `holder` leases now, in `seq` order: a bucket
/// with a long backlog (or stuck on a row) takes no room from the others.
pub(crate) async fn pending_of(
    pool: &Pool,
    holder: &str,
    now: i64,
    limit: i64,
) -> Result<Vec<PendingRow>, sqlx::Error> {
    // SQLite has no LATERAL: each held bucket's rows up to its `limit`-th pending `seq`, which
    // the planner computes once per bucket and uses as the bound of a range on the pending index.
    const SQLITE: &str = "SELECT o.seq, o.bucket, o.pubsub, o.topic, o.body \
         FROM event_outbox_lease l JOIN event_outbox o ON o.bucket = l.bucket \
         WHERE l.holder = $1 AND l.until_ms > $2 AND o.sent_ms IS NULL \
         AND o.seq <= COALESCE((SELECT i.seq FROM event_outbox i \
             WHERE i.bucket = l.bucket AND i.sent_ms IS NULL ORDER BY i.seq LIMIT 1 OFFSET $3 - 1), \
             9223372036854775807) \
         ORDER BY o.seq";
    const POSTGRES: &str = "SELECT p.seq, p.bucket, p.pubsub, p.topic, p.body \
         FROM event_outbox_lease l CROSS JOIN LATERAL \
         (SELECT o.seq, o.bucket, o.pubsub, o.topic, o.body FROM event_outbox o \
          WHERE o.bucket = l.bucket AND o.sent_ms IS NULL ORDER BY o.seq LIMIT $3) p \
         WHERE l.holder = $1 AND l.until_ms > $2 \
         ORDER BY p.seq";
    // Not a prepared statement the connection keeps (see `mark_sent`).
    let rows: Vec<(i64, i64, String, String, String)> = match pool {
        Pool::Sqlite(pool) => {
            sqlx::query_as(SQLITE)
                .bind(holder)
                .bind(now)
                .bind(limit)
                .persistent(false)
                .fetch_all(pool)
                .await?
        }
        Pool::Postgres(pool) => {
            // Read through the pending index in order, never with a bitmap scan (nor the
            // whole table): a row marked sent leaves its entry in that index until a vacuum,
            // and an index scan marks such entries dead once it met them, so that later rounds
            // skip them, where a bitmap scan (PostgreSQL's choice whenever it believes many
            // rows pending, after a backlog say) visits every row sent since the last vacuum
            // again, on every round. `set_config(.., true)`: for this transaction only. No JIT:
            // the lease table's sequential scan, left without a cheaper path, is costed above
            // `jit_above_cost`, and compiling would take some 60 ms of a sub-ms query.
            let mut tx = pool.begin().await?;
            sqlx::query(
                "SELECT set_config('enable_bitmapscan', 'off', true), \
                        set_config('enable_seqscan', 'off', true), \
                        set_config('jit', 'off', true)",
            )
            .execute(&mut *tx)
            .await?;
            let rows = sqlx::query_as(POSTGRES)
                .bind(holder)
                .bind(now)
                .bind(limit)
                .persistent(false)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            rows
        }
    };
    Ok(rows
        .into_iter()
        .map(|(seq, bucket, pubsub, topic, body)| PendingRow {
            seq,
            bucket,
            pubsub,
            topic,
            body,
        })
        .collect())
}

/// Marks the rows `seqs` sent at `now`, or deletes them when sent rows are not kept; one
/// statement.
///
/// It and `pending_of`, the relay's statements on every round, are planned on each run
/// (`persistent(false)`), not kept prepared on the connection: PostgreSQL would settle on a
/// generic plan after five runs, and one made while the table was nearly empty (a new
/// deployment, a drained outbox) is a sequential scan, kept as long as the connection lives
/// while the table grows.
pub(crate) async fn mark_sent(
    pool: &Pool,
    seqs: &[i64],
    now: i64,
    keep: bool,
) -> Result<(), sqlx::Error> {
    match pool {
        Pool::Sqlite(pool) => {
            // The seqs as a JSON array, read back by `json_each`: one statement for any number.
            let list = serde_json::to_string(seqs).unwrap_or_else(|_| "[]".to_owned());
            let sql = if keep {
                "UPDATE event_outbox SET sent_ms = $2, attempts = attempts + 1 \
                 WHERE seq IN (SELECT value FROM json_each($1))"
            } else {
                "DELETE FROM event_outbox WHERE seq IN (SELECT value FROM json_each($1)) AND $2 >= 0"
            };
            sqlx::query(sql)
                .bind(list)
                .bind(now)
                .persistent(false)
                .execute(pool)
                .await
                .map(drop)
        }
        Pool::Postgres(pool) => {
            // Committed without waiting for the WAL flush (`synchronous_commit` off for this
            // statement's transaction only): a mark lost in a crash of the server only has its
            // rows published again, with the same ids, in the same order; and any later commit
            // that waits for its flush (the app's next one) makes it durable too.
            let sql = if keep {
                "WITH nosync AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) \
                 UPDATE event_outbox SET sent_ms = $2, attempts = attempts + 1 \
                 FROM nosync WHERE seq = ANY($1)"
            } else {
                "WITH nosync AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) \
                 DELETE FROM event_outbox USING nosync WHERE seq = ANY($1) AND $2 >= 0"
            };
            sqlx::query(sql)
                .bind(seqs)
                .bind(now)
                .persistent(false)
                .execute(pool)
                .await
                .map(drop)
        }
    }
}

/// Records a failed publish of row `seq`.
pub(crate) async fn mark_failed(pool: &Pool, seq: i64, error: &str) -> Result<(), sqlx::Error> {
    on_pool!(pool, pool => sqlx::query(
        "UPDATE event_outbox SET attempts = attempts + 1, last_error = $2 WHERE seq = $1")
        .bind(seq).bind(error).execute(pool).await.map(drop))
}

/// Deletes the rows sent at or before `before`; answers how many.
pub(crate) async fn delete_sent(pool: &Pool, before: i64) -> Result<u64, sqlx::Error> {
    on_pool!(pool, pool => sqlx::query(
        "DELETE FROM event_outbox WHERE sent_ms IS NOT NULL AND sent_ms <= $1")
        .bind(before).execute(pool).await.map(|r| r.rows_affected()))
}

/// Forgets the inbox claims recorded at or before `before`; answers how many.
pub(crate) async fn delete_inbox(pool: &Pool, before: i64) -> Result<u64, sqlx::Error> {
    on_pool!(pool, pool => sqlx::query("DELETE FROM event_inbox WHERE processed_ms <= $1")
        .bind(before).execute(pool).await.map(|r| r.rows_affected()))
}

/// What the outbox's tables hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counts {
    pub pending: i64,
    /// Sent rows kept.
    pub sent: i64,
    /// When the oldest pending row was added.
    pub oldest_pending_ms: Option<i64>,
    /// Rows set aside.
    pub dead: i64,
}

/// How many rows are pending, sent and kept, and set aside, and when the oldest pending one
/// was added; one statement.
pub(crate) async fn counts(pool: &Pool) -> Result<Counts, sqlx::Error> {
    let (pending, sent, oldest_pending_ms, dead) = on_pool!(pool, pool => sqlx::query_as(
        "SELECT COUNT(*) - COUNT(sent_ms), COUNT(sent_ms), \
                MIN(CASE WHEN sent_ms IS NULL THEN created_ms END), \
                (SELECT COUNT(*) FROM event_outbox_dead) FROM event_outbox")
        .fetch_one(pool).await)?;
    Ok(Counts {
        pending,
        sent,
        oldest_pending_ms,
        dead,
    })
}
