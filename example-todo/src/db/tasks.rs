//! The task changes, each with its event in the same transaction (the outbox): a change is
//! committed with its event or not at all, and the event goes out once the relay publishes it.

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::{next_time, task, Db, Pool, Task, TaskFields, TaskRow};
use crate::events::{TaskChanged, TaskCompleted, TASK_EVENTS};

impl Db {
    /// Creates a task for `user_id`, and its `task.created` event.
    pub async fn create_task(&self, user_id: &str, fields: &TaskFields) -> anyhow::Result<Task> {
        let now = Utc::now();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: TaskRow = sqlx::query_as(concat!(
                "INSERT INTO tasks (user_id, title, completed, due_at, remind_at, recurrence, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ", task_columns!()))
                .bind(user_id)
                .bind(&fields.title)
                .bind(false)
                .bind(fields.due_at)
                .bind(fields.remind_at)
                .bind(&fields.recurrence)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
            let created = task(row);
            self.outbox.add(&mut *tx, TASK_EVENTS, &TaskChanged::created(&created)).await?;
            self.outbox.commit(tx).await?;
            Ok(created)
        })
    }

    /// Replaces a task's fields, with its `task.updated` event. A changed `remind_at` makes its
    /// reminder pending again.
    pub async fn update_task(&self, id: i64, fields: &TaskFields) -> anyhow::Result<Option<Task>> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<TaskRow> = sqlx::query_as(concat!(
                "UPDATE tasks SET title = $2, due_at = $3, \
                     reminder_sent_at = CASE WHEN remind_at IS NOT DISTINCT FROM $4 THEN reminder_sent_at ELSE NULL END, \
                     remind_at = $4, recurrence = $5, updated_at = $6 \
                 WHERE id = $1 RETURNING ", task_columns!()))
                .bind(id)
                .bind(&fields.title)
                .bind(fields.due_at)
                .bind(fields.remind_at)
                .bind(&fields.recurrence)
                .bind(Utc::now())
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else { return Ok(None) };
            let updated = task(row);
            self.outbox.add(&mut *tx, TASK_EVENTS, &TaskChanged::updated(&updated)).await?;
            self.outbox.commit(tx).await?;
            Ok(Some(updated))
        })
    }

    /// Marks a task done, with its `task.completed` event. `Some((task, true))` when this call
    /// completed it, `Some((task, false))` when it was done already (no event), `None` when there
    /// is no such task.
    pub async fn complete_task(&self, id: i64) -> anyhow::Result<Option<(Task, bool)>> {
        let done: Option<Task> = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<TaskRow> = sqlx::query_as(concat!(
                "UPDATE tasks SET completed = $2, updated_at = $3 WHERE id = $1 AND completed = $4 RETURNING ",
                task_columns!()))
                .bind(id)
                .bind(true)
                .bind(Utc::now())
                .bind(false)
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                Some(row) => {
                    let done = task(row);
                    self.outbox.add(&mut *tx, TASK_EVENTS, &TaskCompleted::of(&done)).await?;
                    self.outbox.commit(tx).await?;
                    Some(done)
                }
                None => None, // the transaction rolls back as it drops
            }
        });
        match done {
            Some(t) => Ok(Some((t, true))),
            None => Ok(self.task(id).await?.map(|t| (t, false))),
        }
    }

    /// Deletes a task, with its `task.deleted` event, answering it as it was.
    pub async fn delete_task(&self, id: i64) -> anyhow::Result<Option<Task>> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<TaskRow> = sqlx::query_as(
                concat!("DELETE FROM tasks WHERE id = $1 RETURNING ", task_columns!()))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else { return Ok(None) };
            let deleted = task(row);
            self.outbox.add(&mut *tx, TASK_EVENTS, &TaskChanged::deleted(&deleted)).await?;
            self.outbox.commit(tx).await?;
            Ok(Some(deleted))
        })
    }

    /// Creates the next occurrence of recurring task `from`, and its `task.created` event, once:
    /// the `UNIQUE (recurs_from)` constraint makes a second call (a redelivered event, a
    /// concurrent replica) create nothing and answer the existing occurrence with `false`.
    pub async fn create_next_occurrence(&self, from: &Task) -> anyhow::Result<(Task, bool)> {
        self.next_occurrence(from, None)
            .await?
            .context("no inbox claim, so always an answer")
    }

    /// [`Db::create_next_occurrence`] for `handler` processing the event `event_id`, claimed in
    /// the inbox in the same transaction: `None` when that handler processed that event
    /// already (its transaction committed), and then nothing is written.
    pub async fn create_next_occurrence_for(
        &self,
        from: &Task,
        handler: &str,
        event_id: &str,
    ) -> anyhow::Result<Option<(Task, bool)>> {
        self.next_occurrence(from, Some((handler, event_id))).await
    }

    async fn next_occurrence(
        &self,
        from: &Task,
        claim: Option<(&str, &str)>,
    ) -> anyhow::Result<Option<(Task, bool)>> {
        let step =
            |t: Option<DateTime<Utc>>| t.and_then(|t| next_time(t, from.recurrence.as_deref()));
        let now = Utc::now();
        let created: Option<Task> = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if let Some((handler, event_id)) = claim {
                if !self.outbox.claim_inbox(&mut *tx, handler, event_id).await? {
                    return Ok(None);
                }
            }
            let row: Option<TaskRow> = sqlx::query_as(concat!(
                "INSERT INTO tasks (user_id, title, completed, due_at, remind_at, recurrence, recurs_from, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (recurs_from) DO NOTHING RETURNING ",
                task_columns!()))
                .bind(&from.user_id)
                .bind(&from.title)
                .bind(false)
                .bind(step(from.due_at))
                .bind(step(from.remind_at))
                .bind(&from.recurrence)
                .bind(from.id)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let created = row.map(task);
            if let Some(next) = &created {
                // The id is derived from the occurrence: one event however often this runs.
                let mut announce = TaskChanged::created(next);
                announce.change_mut().event_id =
                    format!("task-{}-recurs-from-{}", next.id, from.id);
                self.outbox.add(&mut *tx, TASK_EVENTS, &announce).await?;
            }
            // Committed also when it existed already: the inbox claim is recorded.
            self.outbox.commit(tx).await?;
            created
        });
        match created {
            Some(next) => Ok(Some((next, true))),
            None => {
                let existing = self
                    .next_occurrence_of(from.id)
                    .await?
                    .context("the next occurrence exists but cannot be read")?;
                Ok(Some((existing, false)))
            }
        }
    }
}
