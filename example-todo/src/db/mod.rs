//! The service's data, in SQLite (a local file by default) or PostgreSQL (`DATABASE_URL=postgres://...`).
//!
//! Both backends run the same queries; the schema differs only where SQL does
//! (`migrations/sqlite`, `migrations/postgres`). Migrations are embedded in the binary and run
//! by [`Db::connect`], with sqlx's migration table and locking.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use event_runtime::dlq::DeadLetter;
use event_runtime::Outbox;
use serde::{Deserialize, Serialize};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// Where the data lives when `DATABASE_URL` is not set: `todo.db` in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://todo.db";

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Task {
    /// Id.
    pub id: i64,
    /// Owner (the partition key of its events).
    pub user_id: String,
    /// Title.
    pub title: String,
    /// Whether it is done.
    pub completed: bool,
    /// When it is due.
    pub due_at: Option<DateTime<Utc>>,
    /// When to remind the owner (a `reminder.due` event is published then).
    pub remind_at: Option<DateTime<Utc>>,
    /// When the reminder was published; `None` while it is pending.
    pub reminder_sent_at: Option<DateTime<Utc>>,
    /// `daily`, `weekly` or `monthly` for a recurring task.
    pub recurrence: Option<String>,
    /// The task this one is the next occurrence of.
    pub recurs_from: Option<i64>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// The fields of a task that its owner sets (`POST /tasks`, `PUT /tasks/{id}`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFields {
    /// Title.
    pub title: String,
    /// Due time.
    pub due_at: Option<DateTime<Utc>>,
    /// Reminder time.
    pub remind_at: Option<DateTime<Utc>>,
    /// `daily`, `weekly` or `monthly`.
    pub recurrence: Option<String>,
}

/// One audit-log entry: a task event, recorded once (unique on `event_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The event's id.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The task.
    pub task_id: i64,
    /// The owner.
    pub user_id: String,
    /// The event's own timestamp, as it came.
    pub occurred_at: String,
}

/// A reminder delivered to its user (once per `reminder.due` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The `reminder.due` event it came from.
    pub event_id: String,
    /// The task.
    pub task_id: i64,
    /// The owner.
    pub user_id: String,
    /// What the user is told.
    pub message: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
}

/// A dead letter as stored from the `dlq` topic, with its replay state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDeadLetter {
    /// `dlq:<handler>:<event id>`: one row per event and handler, for letters this app signed;
    /// a letter that did not verify when it came has a row of its own,
    /// `dlq:<handler>:<event id>:unverified:<sha256 of the letter>`.
    pub id: String,
    /// How often this event was dead-lettered by this handler (replays that failed again count).
    pub times_dead_lettered: i64,
    /// When the latest record arrived.
    pub received_at: DateTime<Utc>,
    /// Whether it was replayed since it was last dead-lettered (or a replay holds it now).
    pub replayed: bool,
    /// When it was last re-published by a replay.
    pub replayed_at: Option<DateTime<Utc>>,
    /// The record: the original event, the handler, every failure, the reason.
    #[serde(flatten)]
    pub letter: DeadLetter,
}

#[derive(Clone, Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database: a connection pool to SQLite or PostgreSQL. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: Pool,
    /// Where the task events are written, in the transaction of their change.
    outbox: Outbox,
}

/// Runs `$body` with `$pool` bound to the concrete pool: the same query text and code serve both
/// backends, each with its own native types.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match &$db.pool {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}

macro_rules! task_columns {
    () => {
        "id, user_id, title, completed, due_at, remind_at, reminder_sent_at, recurrence, \
         recurs_from, created_at, updated_at"
    };
}

mod tasks;

type TaskRow = (
    i64,
    String,
    String,
    bool,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<i64>,
    DateTime<Utc>,
    DateTime<Utc>,
);

fn task(row: TaskRow) -> Task {
    let (
        id,
        user_id,
        title,
        completed,
        due_at,
        remind_at,
        reminder_sent_at,
        recurrence,
        recurs_from,
        created_at,
        updated_at,
    ) = row;
    Task {
        id,
        user_id,
        title,
        completed,
        due_at,
        remind_at,
        reminder_sent_at,
        recurrence,
        recurs_from,
        created_at,
        updated_at,
    }
}

type DeadLetterRow = (
    String,
    i64,
    DateTime<Utc>,
    bool,
    Option<DateTime<Utc>>,
    String,
);

fn dead_letter(row: DeadLetterRow) -> anyhow::Result<StoredDeadLetter> {
    let (id, times_dead_lettered, received_at, replayed, replayed_at, record) = row;
    Ok(StoredDeadLetter {
        letter: serde_json::from_str(&record)
            .with_context(|| format!("dead letter {id} is not a DeadLetter record"))?,
        id,
        times_dead_lettered,
        received_at,
        replayed,
        replayed_at,
    })
}

/// The migrations, embedded at compile time.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

const SQLITE_MIGRATIONS: Embedded = Embedded(&[(
    1,
    "init",
    include_str!("../../migrations/sqlite/0001_init.sql"),
)]);
const POSTGRES_MIGRATIONS: Embedded = Embedded(&[(
    1,
    "init",
    include_str!("../../migrations/postgres/0001_init.sql"),
)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> futures::future::BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        let migrations = self
            .0
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// Whether `url` names an in-memory SQLite database (each connection would get its own).
fn in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

impl Db {
    /// The database the service's [`Settings`](crate::settings::Settings) name (`DATABASE_URL`,
    /// else [`DEFAULT_DATABASE_URL`]).
    pub async fn from_settings(settings: &crate::settings::Settings) -> anyhow::Result<Db> {
        Db::connect(&settings.database_url).await
    }

    /// Connects to `url` (`sqlite://path`, `sqlite::memory:`, `postgres://...`) and runs the
    /// migrations. A SQLite file is created when missing.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
            Migrator::new(POSTGRES_MIGRATIONS)
                .await?
                .run(&pool)
                .await
                .context("PostgreSQL migrations failed")?;
            Pool::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("invalid SQLite URL {url}"))?
                .create_if_missing(true)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = if in_memory(url) {
                // One connection, kept forever: the database lives as long as it does.
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(options)
                    .await
            } else {
                SqlitePoolOptions::new()
                    .max_connections(5)
                    .connect_with(options.journal_mode(SqliteJournalMode::Wal))
                    .await
            }
            .with_context(|| format!("cannot open SQLite database {url}"))?;
            Migrator::new(SQLITE_MIGRATIONS)
                .await?
                .run(&pool)
                .await
                .context("SQLite migrations failed")?;
            Pool::Sqlite(pool)
        } else {
            anyhow::bail!(
                "DATABASE_URL must start with sqlite: or postgres://, not `{}`",
                redact(url)
            );
        };
        let outbox = match &pool {
            Pool::Sqlite(pool) => Outbox::sqlite(pool.clone()),
            Pool::Postgres(pool) => Outbox::postgres(pool.clone()),
        };
        outbox
            .migrate()
            .await
            .context("creating the outbox tables")?;
        Ok(Db { pool, outbox })
    }

    /// The outbox the task events are written to (the app relays it: `App::with_outbox`).
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// A task by id.
    pub async fn task(&self, id: i64) -> anyhow::Result<Option<Task>> {
        let row: Option<TaskRow> = on_pool!(self, pool => sqlx::query_as(
            concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(task))
    }

    /// A user's tasks, oldest first.
    pub async fn tasks_of(&self, user_id: &str) -> anyhow::Result<Vec<Task>> {
        let rows: Vec<TaskRow> = on_pool!(self, pool => sqlx::query_as(
            concat!("SELECT ", task_columns!(), " FROM tasks WHERE user_id = $1 ORDER BY id"))
            .bind(user_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows.into_iter().map(task).collect())
    }

    /// The task created as the next occurrence of `id`, if any.
    pub async fn next_occurrence_of(&self, id: i64) -> anyhow::Result<Option<Task>> {
        let row: Option<TaskRow> = on_pool!(self, pool => sqlx::query_as(
            concat!("SELECT ", task_columns!(), " FROM tasks WHERE recurs_from = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(task))
    }

    /// Records an audit entry; `false` when its event was recorded already.
    pub async fn audit(&self, entry: &AuditEntry) -> anyhow::Result<bool> {
        let done = on_pool!(self, pool => sqlx::query(
            "INSERT INTO audit_log (event_id, event_type, task_id, user_id, occurred_at, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING")
            .bind(&entry.event_id)
            .bind(&entry.event_type)
            .bind(entry.task_id)
            .bind(&entry.user_id)
            .bind(&entry.occurred_at)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// The audit log, in the order it was recorded.
    pub async fn audit_log(&self) -> anyhow::Result<Vec<AuditEntry>> {
        let rows: Vec<(String, String, i64, String, String)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT event_id, event_type, task_id, user_id, occurred_at FROM audit_log ORDER BY recorded_at, event_id")
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(
                |(event_id, event_type, task_id, user_id, occurred_at)| AuditEntry {
                    event_id,
                    event_type,
                    task_id,
                    user_id,
                    occurred_at,
                },
            )
            .collect())
    }

    /// Marks task `id`'s reminder for `remind_at` sent at `now`; false when the task's
    /// reminder has moved to another time (or the task is gone) since, or was marked already.
    pub async fn mark_reminder_sent(
        &self,
        id: i64,
        remind_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let marked = on_pool!(self, pool => sqlx::query(
            "UPDATE tasks SET reminder_sent_at = $2 WHERE id = $1 AND remind_at = $3 AND reminder_sent_at IS NULL")
            .bind(id)
            .bind(now)
            .bind(remind_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(marked == 1)
    }

    /// Records a notification; `false` when its event was recorded already.
    pub async fn record_notification(&self, n: &Notification) -> anyhow::Result<bool> {
        let done = on_pool!(self, pool => sqlx::query(
            "INSERT INTO notifications (event_id, task_id, user_id, message, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING")
            .bind(&n.event_id)
            .bind(n.task_id)
            .bind(&n.user_id)
            .bind(&n.message)
            .bind(n.created_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// A user's notifications, oldest first.
    pub async fn notifications_of(&self, user_id: &str) -> anyhow::Result<Vec<Notification>> {
        let rows: Vec<(String, i64, String, String, DateTime<Utc>)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT event_id, task_id, user_id, message, created_at FROM notifications \
             WHERE user_id = $1 ORDER BY created_at, event_id")
            .bind(user_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(
                |(event_id, task_id, user_id, message, created_at)| Notification {
                    event_id,
                    task_id,
                    user_id,
                    message,
                    created_at,
                },
            )
            .collect())
    }

    /// Stores a dead letter this app signed (`dlq::verify` passed). The same event
    /// dead-lettered again by the same handler (a replay that failed again) updates its row and
    /// makes it pending again.
    pub async fn store_dead_letter(&self, letter: &DeadLetter) -> anyhow::Result<()> {
        use event_runtime::Event as _;
        let id = letter.event_id().unwrap_or_else(|| letter.event.id.clone());
        let again = "DO UPDATE SET reason = excluded.reason, \
             last_failure_at = excluded.last_failure_at, record = excluded.record, \
             received_at = excluded.received_at, replayed = false, \
             times_dead_lettered = dead_letters.times_dead_lettered + 1";
        self.insert_dead_letter(&id, letter, again).await?;
        Ok(())
    }

    /// Stores a dead letter that did not verify (another app's, unsigned, or changed) under a
    /// row of its own, keyed by its id and a digest of its content: it never replaces a stored
    /// letter, and the same letter received twice is one row. Answers whether it was new.
    pub async fn store_unverified_dead_letter(&self, letter: &DeadLetter) -> anyhow::Result<bool> {
        use event_runtime::Event as _;
        use sha2::Digest as _;
        let digest: String = sha2::Sha256::digest(serde_json::to_string(letter)?.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let id = format!(
            "{}:unverified:{digest}",
            letter.event_id().unwrap_or_else(|| letter.event.id.clone())
        );
        Ok(self.insert_dead_letter(&id, letter, "DO NOTHING").await? == 1)
    }

    /// Inserts `letter` as row `id`; `on_conflict` says what a row of that id already there
    /// becomes. Answers how many rows changed.
    async fn insert_dead_letter(
        &self,
        id: &str,
        letter: &DeadLetter,
        on_conflict: &str,
    ) -> anyhow::Result<u64> {
        let record = serde_json::to_string(letter)?;
        let sql = format!(
            "INSERT INTO dead_letters \
             (id, event_id, event_type, handler, reason, last_failure_at, record, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) {on_conflict}"
        );
        let changed = on_pool!(self, pool => sqlx::query(&sql)
            .bind(id)
            .bind(&letter.event.id)
            .bind(&letter.event.ty)
            .bind(&letter.handler)
            .bind(&letter.reason)
            .bind(&letter.last_failure_at)
            .bind(record)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(changed)
    }

    /// Every stored dead letter, newest first; only those not replayed yet with `pending_only`.
    pub async fn dead_letters(&self, pending_only: bool) -> anyhow::Result<Vec<StoredDeadLetter>> {
        let rows: Vec<DeadLetterRow> = on_pool!(self, pool => sqlx::query_as(
            "SELECT id, times_dead_lettered, received_at, replayed, replayed_at, record FROM dead_letters \
             WHERE replayed = $1 OR $2 ORDER BY received_at DESC, id")
            .bind(false)
            .bind(!pending_only)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(dead_letter).collect()
    }

    /// Claims the pending dead letters among `ids` for a replay: marks them replayed by a
    /// conditional update (`... AND replayed = false`) and answers them as they are now. Of two
    /// replays at once, each letter goes to one of them; one that is not pending any more (the
    /// other replay claimed it) is left out.
    pub async fn claim_for_replay(&self, ids: &[String]) -> anyhow::Result<Vec<StoredDeadLetter>> {
        let mut claimed = Vec::new();
        for id in ids {
            let row: Option<DeadLetterRow> = on_pool!(self, pool => sqlx::query_as(
                "UPDATE dead_letters SET replayed = $2 WHERE id = $1 AND replayed = $3 \
                 RETURNING id, times_dead_lettered, received_at, replayed, replayed_at, record")
                .bind(id)
                .bind(true)
                .bind(false)
                .fetch_optional(pool)
                .await)?;
            if let Some(row) = row {
                claimed.push(dead_letter(row)?);
            }
        }
        Ok(claimed)
    }

    /// Records that a replay re-published these claimed dead letters now.
    pub async fn replayed_now(&self, ids: &[String]) -> anyhow::Result<()> {
        let at = Utc::now();
        for id in ids {
            on_pool!(self, pool => sqlx::query("UPDATE dead_letters SET replayed_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(pool)
                .await
                .map(|_| ()))?;
        }
        Ok(())
    }

    /// Makes claimed dead letters pending again (their replay did not publish them).
    pub async fn release_replay(&self, ids: &[String]) -> anyhow::Result<()> {
        for id in ids {
            on_pool!(self, pool => sqlx::query("UPDATE dead_letters SET replayed = $2 WHERE id = $1")
                .bind(id)
                .bind(false)
                .execute(pool)
                .await
                .map(|_| ()))?;
        }
        Ok(())
    }
}

/// The next time after `t` for a recurrence (`None` for an unknown one).
pub fn next_time(t: DateTime<Utc>, recurrence: Option<&str>) -> Option<DateTime<Utc>> {
    match recurrence? {
        "daily" => t.checked_add_signed(chrono::Duration::days(1)),
        "weekly" => t.checked_add_signed(chrono::Duration::weeks(1)),
        "monthly" => t.checked_add_months(chrono::Months::new(1)),
        _ => None,
    }
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recurrences_step_forward() {
        let t: DateTime<Utc> = "2026-01-31T09:00:00Z".parse().unwrap();
        assert_eq!(
            next_time(t, Some("daily")).unwrap().to_rfc3339(),
            "2026-02-01T09:00:00+00:00"
        );
        assert_eq!(
            next_time(t, Some("weekly")).unwrap().to_rfc3339(),
            "2026-02-07T09:00:00+00:00"
        );
        assert_eq!(
            next_time(t, Some("monthly")).unwrap().to_rfc3339(),
            "2026-02-28T09:00:00+00:00"
        );
        assert_eq!(next_time(t, None), None);
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://todo:s3cret@db:5432/todo"),
            "postgres://todo:***@db:5432/todo"
        );
        assert_eq!(redact("sqlite://todo.db"), "sqlite://todo.db");
    }
}
