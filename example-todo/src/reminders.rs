//! Reminders, on scheduled events: each task with a `remind_at` has a job, `reminder-<id>`,
//! that publishes its `reminder.due` when the time comes (on Dapr, a job of Dapr's Jobs API,
//! which the scheduler service keeps across restarts; embedded, a timer of the broker's clock).
//!
//! The handlers of the task events keep the job in step with the task as it is in the
//! database ([`keep_in_step`]): the outbox guarantees those events, and the handlers' retries
//! mean a sidecar that is briefly down loses no reminder. A completed or deleted task, or one
//! whose reminder was sent, has no job.

use event_runtime::{Publisher, Schedule};

use crate::db::{Db, Task};
use crate::events::{ReminderDue, REMINDERS};

/// The name of the job that reminds of task `id`.
pub fn job_name(id: i64) -> String {
    format!("reminder-{id}")
}

/// Schedules, moves or cancels task `id`'s reminder so that it matches the task as the database
/// has it now. Safe to run again: scheduling replaces the job of the same name, and cancelling
/// a job that is gone is not an error.
pub async fn keep_in_step(db: &Db, publisher: &Publisher, id: i64) -> anyhow::Result<()> {
    let task = db.task(id).await?;
    schedule_for(publisher, id, task.as_ref()).await
}

/// [`keep_in_step`] for a task already read (`None`: it is gone).
pub async fn schedule_for(
    publisher: &Publisher,
    id: i64,
    task: Option<&Task>,
) -> anyhow::Result<()> {
    let pending = task.filter(|t| !t.completed && t.reminder_sent_at.is_none());
    match pending.and_then(|t| Some((t, t.remind_at?))) {
        Some((task, at)) => {
            let event = ReminderDue::of(task);
            let when = std::time::SystemTime::from(at);
            publisher
                .schedule(&job_name(id), REMINDERS, &event, Schedule::at(when))
                .await?;
            tracing::info!(task_id = id, remind_at = %at, "reminder scheduled");
        }
        None => publisher.cancel_schedule(&job_name(id)).await?,
    }
    Ok(())
}
