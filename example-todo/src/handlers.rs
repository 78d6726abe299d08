//! The service's event handlers: plain async functions, registered by `#[event_handler]`.
//!
//! | handler | topic | types | retries |
//! |---|---|---|---|
//! | [`audit_log`] | `task-events` | created, updated, deleted | `[1, 2, 4, 8, 16]` (the reference's `task.updated`) |
//! | [`on_task_completed`] | `task-events` | completed | `[30, 300, 1800]` (the reference's `task.completed`) |
//! | [`on_reminder_due`] | `reminders` | `reminder.due` | exponential 1 s … 512 s, 10 retries (the reference's `reminder.due`) |
//!
//! The first two also keep each task's reminder job in step with the task
//! ([`reminders::keep_in_step`](crate::reminders::keep_in_step)): a created or updated task's
//! reminder is scheduled or moved, a completed or deleted task's is cancelled, and a recurring
//! task's next occurrence gets its own.
//! | [`on_task_sync`] | `task-updates` | `task.sync` | none: a missed push is caught up by the client |
//! | [`on_dead_letter`] | `dlq` | dead letters | `[1, 5, 30]` |

use anyhow::Context as _;
use event_runtime::dlq::{self, DeadLetter};
use event_runtime::{event_handler, Attempt, Event as _, EventId, Permanent, Publisher, State};

use crate::db::{AuditEntry, Db, Notification};
use crate::events::{
    SyncAction, TaskChanged, TaskCompleted, TaskSync, FANOUT_PUBSUB, TASK_UPDATES,
};
use crate::Updates;

/// Titles starting with this make the audit log fail permanently: the way to watch an event go
/// to the DLQ (`GET /dlq`) and come back (`POST /dlq/replay`) once the title is fixed.
pub const FAIL_MARKER: &str = "fail:";

/// Audit log: every created, updated and deleted task event, recorded once (the table is
/// unique on `event_id`, and the handler is idempotent on the reference's key). First, the
/// task's reminder job is put in step with the task.
///
/// A task whose title, as it is now in the database, starts with [`FAIL_MARKER`] makes it fail
/// with a [`Permanent`] error: no retries, straight to the DLQ. Rename the task and replay.
#[event_handler(
    topic = "task-events",
    retry = [1, 2, 4, 8, 16],
    idempotency_key = "{event_type}-{task_id}-{timestamp}"
)]
pub async fn audit_log(
    event: TaskChanged,
    State(db): State<Db>,
    publisher: Publisher,
    EventId(ce_id): EventId,
) -> anyhow::Result<()> {
    let (event_type, e) = (event.event_type(), event.change());
    crate::reminders::keep_in_step(&db, &publisher, e.task_id)
        .await
        .context("keeping the task's reminder in step")?;
    let title = match db.task(e.task_id).await? {
        Some(task) => task.title,
        None => e.payload["title"].as_str().unwrap_or_default().to_owned(),
    };
    if title.starts_with(FAIL_MARKER) {
        return Err(Permanent::new(format!(
            "task {} is titled {title:?}: the audit log refuses titles starting with {FAIL_MARKER:?} (rename it, then replay)",
            e.task_id
        ))
        .into());
    }
    let entry = AuditEntry {
        event_id: non_empty(&e.event_id, &ce_id),
        event_type: event_type.into(),
        task_id: e.task_id,
        user_id: e.user_id.clone(),
        occurred_at: e.timestamp.clone(),
    };
    let new = db.audit(&entry).await?;
    tracing::info!(
        event_type,
        task_id = e.task_id,
        user_id = %e.user_id,
        new,
        "audit: recorded"
    );
    Ok(())
}

/// Recurring tasks: completing a recurring task creates its next occurrence, once. The
/// occurrence, its `task.created` event (through the outbox) and the inbox claim of this event
/// are one transaction, so the effect happens once however often the event is delivered (the
/// handler's idempotency claim in the state store skips most duplicates before they get here;
/// the inbox covers a crash between the commit and that claim's completion). The completion is
/// audited here too, so the audit log holds every task event.
#[event_handler(topic = "task-events", retry = [30, 300, 1800], dlq = "dlq", idempotent)]
pub async fn on_task_completed(
    event: TaskCompleted,
    State(db): State<Db>,
    publisher: Publisher,
    EventId(ce_id): EventId,
    Attempt(attempt): Attempt,
) -> anyhow::Result<()> {
    let event = event.change;
    tracing::info!(task_id = event.task_id, %ce_id, attempt, "task completed");
    let event_id = non_empty(&event.event_id, &ce_id);
    db.audit(&AuditEntry {
        event_id: event_id.clone(),
        event_type: "task.completed".into(),
        task_id: event.task_id,
        user_id: event.user_id.clone(),
        occurred_at: event.timestamp.clone(),
    })
    .await?;
    let task = db.task(event.task_id).await?;
    // A completed task is reminded of no more.
    crate::reminders::schedule_for(&publisher, event.task_id, task.as_ref())
        .await
        .context("cancelling the completed task's reminder")?;
    let Some(task) = task else {
        return Ok(()); // deleted since: nothing recurs
    };
    if task.recurrence.is_none() {
        return Ok(());
    }
    let Some((next, created)) = db
        .create_next_occurrence_for(&task, "on_task_completed", &event_id)
        .await
        .context("creating the next occurrence")?
    else {
        tracing::info!(
            task_id = task.id,
            "recurring: this completion was processed already"
        );
        return Ok(());
    };
    if created {
        tracing::info!(
            task_id = next.id,
            from = task.id,
            "recurring: next occurrence created"
        );
        sync(&publisher, SyncAction::Created, &next).await;
    }
    // The next occurrence's own reminder (again on a redelivery: scheduling it replaces it).
    crate::reminders::schedule_for(&publisher, next.id, Some(&next))
        .await
        .context("scheduling the next occurrence's reminder")?;
    Ok(())
}

/// Reminders: records the notification for the user (once per event), marks the task's
/// reminder sent, and pushes it to their open pages. Retried on the reference's schedule for
/// `reminder.due`.
#[event_handler(
    topic = "reminders",
    retry = exponential(initial = 1, factor = 2, attempts = 10, cap = 512),
    idempotent
)]
pub async fn on_reminder_due(
    event: crate::events::ReminderDue,
    State(db): State<Db>,
    publisher: Publisher,
) -> anyhow::Result<()> {
    let message = match &event.due_at {
        Some(due) => format!("Reminder: {} (due {due})", event.title),
        None => format!("Reminder: {}", event.title),
    };
    let new = db
        .record_notification(&Notification {
            event_id: event.event_id.clone(),
            task_id: event.task_id,
            user_id: event.user_id.clone(),
            message,
            created_at: chrono::Utc::now(),
        })
        .await?;
    tracing::info!(task_id = event.task_id, user_id = %event.user_id, new, "reminder: notified");
    if let Some(task) = db.task(event.task_id).await? {
        // Marked only when this is the reminder the task has now (not one it has moved from).
        let current = crate::events::ReminderDue::of(&task).remind_at == event.remind_at;
        if let (true, Some(remind_at)) = (current, task.remind_at) {
            db.mark_reminder_sent(task.id, remind_at, chrono::Utc::now())
                .await?;
        }
        sync(&publisher, SyncAction::Reminder, &task).await;
    }
    Ok(())
}

/// Real-time sync: hands each update to this replica's connected clients (`GET /tasks/stream`
/// filters them by user). Never fails: with no client connected the update goes nowhere, and a
/// client that missed some reloads the list when it reconnects.
#[event_handler(topic = "task-updates", pubsub = "kafka-fanout")]
pub async fn on_task_sync(update: TaskSync, State(updates): State<Updates>) {
    let clients = updates.send(update);
    tracing::debug!(clients, "task update pushed");
}

/// The DLQ: stores every dead letter (`GET /dlq` lists them, `POST /dlq/replay` replays them).
///
/// A letter this app signed (`dlq::verify`) takes the row of its event and handler: a replayed
/// event that failed again updates it and makes it pending again. Anything else on the topic
/// (another app's letter, an unsigned or changed one) is kept apart, under its own row marked
/// unverified, so that it never replaces a stored letter.
#[event_handler(topic = "dlq", retry = [1, 5, 30])]
pub async fn on_dead_letter(
    letter: DeadLetter,
    State(db): State<Db>,
    publisher: Publisher,
) -> anyhow::Result<()> {
    let handler = letter.handler.as_deref().unwrap_or("-");
    match dlq::verify(&publisher, &letter) {
        Ok(()) => {
            tracing::warn!(
                event_id = %letter.event.id,
                event_type = %letter.event.ty,
                handler,
                reason = %letter.reason,
                "dead letter stored"
            );
            db.store_dead_letter(&letter).await
        }
        Err(why) => {
            let new = db.store_unverified_dead_letter(&letter).await?;
            tracing::warn!(
                event_id = %letter.event.id,
                event_type = %letter.event.ty,
                handler,
                %why,
                new,
                "dead letter that does not verify stored apart: it replaces no stored letter"
            );
            Ok(())
        }
    }
}

/// Publishes a `task.sync` for `task`. Best effort: the change is already stored and its
/// `task-events` event is in the outbox; a client that misses a push catches up when it reloads.
pub async fn sync(publisher: &Publisher, action: SyncAction, task: &crate::db::Task) {
    let update = TaskSync::new(action, task);
    if let Err(e) = publisher
        .publish_to(FANOUT_PUBSUB, TASK_UPDATES, &update)
        .await
    {
        tracing::warn!(error = %e, task_id = task.id, "task update not published");
    }
}

fn non_empty(id: &str, fallback: &str) -> String {
    if id.is_empty() { fallback } else { id }.to_owned()
}
