//! [`OutboxConnection`]: the connections an event can be added on, the app's own transaction's.

use sqlx::{PgConnection, Postgres, Sqlite, SqliteConnection, Transaction};

/// A connection on one of the outbox's databases, as the outbox uses it. Not public API.
#[doc(hidden)]
#[derive(Debug)]
pub enum Conn<'a> {
    /// SQLite.
    Sqlite(&'a mut SqliteConnection),
    /// PostgreSQL.
    Postgres(&'a mut PgConnection),
}

mod sealed {
    pub trait Sealed {}
}

/// What [`Outbox::add`](crate::Outbox::add) and
/// [`Outbox::claim_inbox`](crate::Outbox::claim_inbox) write on: your transaction (`&mut tx`
/// or `&mut *tx`), or a plain connection, on PostgreSQL or SQLite. Sealed.
///
/// ```no_run
/// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, event_runtime::Event)]
/// # #[event(type = "task.created", version = "1.0")]
/// # pub struct TaskCreated { pub task_id: i64, pub user_id: String }
/// # async fn run(pool: sqlx::PgPool, outbox: event_runtime::Outbox) -> anyhow::Result<()> {
/// let event = TaskCreated { task_id: 1, user_id: "u-1".into() };
/// let mut tx = pool.begin().await?;
/// outbox.add(&mut *tx, "task-events", &event).await?; // the transaction's connection
/// outbox.add(&mut tx, "task-events", &event).await?; // the transaction itself
/// outbox.commit(tx).await?;
/// # Ok(()) }
/// ```
pub trait OutboxConnection: sealed::Sealed + Send {
    /// The connection, by backend. Not public API.
    #[doc(hidden)]
    fn outbox_conn(&mut self) -> Conn<'_>;
}

impl sealed::Sealed for SqliteConnection {}
impl OutboxConnection for SqliteConnection {
    fn outbox_conn(&mut self) -> Conn<'_> {
        Conn::Sqlite(self)
    }
}

impl sealed::Sealed for PgConnection {}
impl OutboxConnection for PgConnection {
    fn outbox_conn(&mut self) -> Conn<'_> {
        Conn::Postgres(self)
    }
}

impl sealed::Sealed for Transaction<'_, Sqlite> {}
impl OutboxConnection for Transaction<'_, Sqlite> {
    fn outbox_conn(&mut self) -> Conn<'_> {
        Conn::Sqlite(&mut *self)
    }
}

impl sealed::Sealed for Transaction<'_, Postgres> {}
impl OutboxConnection for Transaction<'_, Postgres> {
    fn outbox_conn(&mut self) -> Conn<'_> {
        Conn::Postgres(&mut *self)
    }
}
