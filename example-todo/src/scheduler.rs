//! The reminder scheduler: publishes `reminder.due` for every task whose `remind_at` has come.
//!
//! Each [`Scheduler::tick`] claims the due reminders in the database (a conditional update, so
//! that two replicas never both publish one), publishes them, and releases those whose publish
//! failed for the next tick. [`Scheduler::run`] ticks on an interval; tests call `tick(now)`
//! with the time they want.

use std::time::Duration;

use chrono::{DateTime, Utc};
use event_runtime::Publisher;

use crate::db::Db;
use crate::events::{ReminderDue, REMINDERS};

/// How often a served service looks for due reminders when `REMINDER_TICK_SECS` is unset (see
/// [`Settings`](crate::settings::Settings)).
pub const DEFAULT_TICK: Duration = Duration::from_secs(5);

/// Finds due reminders and publishes them, once.
#[derive(Clone, Debug)]
pub struct Scheduler {
    db: Db,
    publisher: Publisher,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// `reminder.due` events published.
    pub published: Vec<i64>,
    /// Reminders whose publish failed (pending again).
    pub failed: Vec<i64>,
}

impl Scheduler {
    /// A scheduler over `db`, publishing with `publisher`.
    pub fn new(db: Db, publisher: Publisher) -> Self {
        Scheduler { db, publisher }
    }

    /// Publishes every reminder due at `now` that was not published yet.
    pub async fn tick(&self, now: DateTime<Utc>) -> anyhow::Result<TickReport> {
        let mut report = TickReport::default();
        for task in self.db.claim_due_reminders(now).await? {
            let event = ReminderDue::of(&task);
            match self.publisher.publish(REMINDERS, &event).await {
                Ok(()) => {
                    tracing::info!(task_id = task.id, user_id = %task.user_id, "reminder.due published");
                    report.published.push(task.id);
                }
                Err(e) => {
                    tracing::warn!(task_id = task.id, error = %e, "reminder.due not published; retrying next tick");
                    self.db.release_reminder(task.id).await?;
                    report.failed.push(task.id);
                }
            }
        }
        Ok(report)
    }

    /// Ticks every `every` until the task is dropped (aborted).
    pub async fn run(self, every: Duration) {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = self.tick(Utc::now()).await {
                tracing::warn!(error = %e, "reminder scheduler tick failed");
            }
        }
    }
}
