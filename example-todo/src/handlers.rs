//! The service's event handlers: plain async functions, registered by `#[event_handler]`.

use event_runtime::{event_handler, Attempt, EventId, Publisher, State};

use crate::events::{TaskChanged, TaskCompleted, TaskEvent, TASK_EVENTS};
use crate::store::{AuditEntry, Store};

/// Audit log: every created, updated and deleted task event, recorded once.
#[event_handler(
    topic = "task-events",
    retry = [1, 2, 4, 8, 16],
    idempotency_key = "{event_type}-{task_id}-{timestamp}"
)]
pub async fn audit_log(event: TaskChanged, State(store): State<Store>) -> anyhow::Result<()> {
    let (event_type, event_id, task_id, user_id) = match &event {
        TaskChanged::Created {
            event_id,
            task_id,
            user_id,
            ..
        } => ("task.created", event_id, task_id, user_id),
        TaskChanged::Updated {
            event_id,
            task_id,
            user_id,
            ..
        } => ("task.updated", event_id, task_id, user_id),
        TaskChanged::Deleted {
            event_id,
            task_id,
            user_id,
            ..
        } => ("task.deleted", event_id, task_id, user_id),
    };
    tracing::info!(event_type, task_id, user_id = %user_id, "audit: recorded");
    store.audit(AuditEntry {
        event_id: event_id.clone(),
        event_type: event_type.into(),
        task_id: *task_id,
        user_id: user_id.clone(),
    });
    Ok(())
}

/// Recurring tasks: completing a recurring task creates its next occurrence, once. The
/// completion is audited here too, so the audit log holds every task event.
#[event_handler(topic = "task-events", retry = [30, 300, 1800], dlq = "dlq", idempotent)]
pub async fn on_task_completed(
    event: TaskCompleted,
    State(store): State<Store>,
    publisher: Publisher,
    EventId(id): EventId,
    Attempt(attempt): Attempt,
) -> anyhow::Result<()> {
    tracing::info!(task_id = event.task_id, %id, attempt, "task completed");
    store.audit(AuditEntry {
        event_id: event.event_id.clone(),
        event_type: "task.completed".into(),
        task_id: event.task_id,
        user_id: event.user_id.clone(),
    });
    let Some(task) = store.get(event.task_id) else {
        return Ok(());
    };
    if task.recurrence.is_none() {
        return Ok(());
    }
    let (next, created) = store.create_next_occurrence(&task);
    if created {
        tracing::info!(
            task_id = next.id,
            from = task.id,
            "recurring: next occurrence created"
        );
        let payload = serde_json::to_value(&next)?;
        publisher
            .publish(
                TASK_EVENTS,
                &TaskEvent::new("created", next.id, &next.user_id, payload),
            )
            .await?;
    }
    Ok(())
}
