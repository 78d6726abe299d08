//! The statements on `event_outbox_dead`, the rows the relay set aside: moving a row there,
//! listing them, and moving them back.

use super::{insert, NewRow, Pool};
use crate::outbox::conn::Conn;

/// A row set aside, as [`dead_rows`] reads it.
#[derive(Debug)]
pub(crate) struct DeadRow {
    pub seq: i64,
    pub bucket: i64,
    pub pubsub: String,
    pub topic: String,
    pub event_id: String,
    pub partition_key: Option<String>,
    pub body: String,
    pub reason: String,
    pub attempts: i64,
    pub dead_ms: i64,
}

/// Moves pending row `seq` to `event_outbox_dead` with `reason`, in one transaction; `false`
/// when it was no longer pending (sent, or set aside by another relay meanwhile).
pub(crate) async fn set_aside(
    pool: &Pool,
    seq: i64,
    reason: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    // `WHERE` before `ON CONFLICT`: SQLite needs it to read the upsert after a SELECT.
    const MOVE: &str = "INSERT INTO event_outbox_dead \
         (seq, bucket, pubsub, topic, event_id, partition_key, body, created_ms, attempts, reason, dead_ms) \
         SELECT seq, bucket, pubsub, topic, event_id, partition_key, body, created_ms, attempts, $2, $3 \
         FROM event_outbox WHERE seq = $1 AND sent_ms IS NULL \
         ON CONFLICT (seq) DO NOTHING";
    const DELETE: &str = "DELETE FROM event_outbox WHERE seq = $1 AND sent_ms IS NULL";
    on_pool!(pool, pool => {
        let mut tx = pool.begin().await?;
        let moved = sqlx::query(MOVE)
            .bind(seq).bind(reason).bind(now)
            .execute(&mut *tx).await?.rows_affected();
        sqlx::query(DELETE).bind(seq).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(moved == 1)
    })
}

/// Every row set aside, oldest first.
pub(crate) async fn dead_rows(pool: &Pool) -> Result<Vec<DeadRow>, sqlx::Error> {
    type Columns = (
        i64,
        i64,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        i64,
        i64,
    );
    let rows: Vec<Columns> = on_pool!(pool, pool => sqlx::query_as(
        "SELECT seq, bucket, pubsub, topic, event_id, partition_key, body, reason, attempts, dead_ms \
         FROM event_outbox_dead ORDER BY seq")
        .fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .map(
            |(
                seq,
                bucket,
                pubsub,
                topic,
                event_id,
                partition_key,
                body,
                reason,
                attempts,
                dead_ms,
            )| {
                DeadRow {
                    seq,
                    bucket,
                    pubsub,
                    topic,
                    event_id,
                    partition_key,
                    body,
                    reason,
                    attempts,
                    dead_ms,
                }
            },
        )
        .collect())
}

/// Moves the rows `seqs` set aside back to the pending rows, in `seq` order, in one
/// transaction; each gets a new `seq` (it goes out after every row pending now) and is added
/// as [`insert`] adds a row, at `now`, in the bucket `bucket_of` its partition key (or id).
/// Answers how many were moved.
pub(crate) async fn replay_dead(
    pool: &Pool,
    seqs: &[i64],
    now: i64,
    bucket_of: impl Fn(&str) -> i64,
) -> Result<u64, sqlx::Error> {
    // Deleted first: of two replays of one row at once, the second finds nothing to move.
    const TAKE: &str = "DELETE FROM event_outbox_dead WHERE seq = $1 \
         RETURNING pubsub, topic, event_id, partition_key, body";
    type Columns = (String, String, String, Option<String>, String);
    let mut seqs = seqs.to_vec();
    seqs.sort_unstable();
    seqs.dedup();
    let mut moved = 0;
    macro_rules! replay_on {
        ($pool:expr, $conn:path) => {{
            let mut tx = $pool.begin().await?;
            for seq in seqs {
                let taken: Option<Columns> = sqlx::query_as(TAKE)
                    .bind(seq)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((pubsub, topic, event_id, partition_key, body)) = taken else {
                    continue;
                };
                let row = NewRow {
                    bucket: bucket_of(partition_key.as_deref().unwrap_or(&event_id)),
                    pubsub: &pubsub,
                    topic: &topic,
                    event_id: &event_id,
                    partition_key: partition_key.as_deref(),
                    body,
                    created_ms: now,
                };
                insert($conn(&mut *tx), &row).await?;
                moved += 1;
            }
            tx.commit().await?;
        }};
    }
    match pool {
        Pool::Sqlite(pool) => replay_on!(pool, Conn::Sqlite),
        Pool::Postgres(pool) => replay_on!(pool, Conn::Postgres),
    }
    Ok(moved)
}
