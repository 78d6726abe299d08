//! The service's data: tasks and the audit log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// A task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Id.
    pub id: i64,
    /// Owner.
    pub user_id: String,
    /// Title.
    pub title: String,
    /// Whether it is done.
    pub completed: bool,
    /// `daily`, `weekly` or `monthly` for a recurring task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrence: Option<String>,
    /// The task this one recurs from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurs_from: Option<i64>,
}

/// One audit-log entry: a task event recorded once.
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
}

#[derive(Debug, Default)]
struct Data {
    next_id: i64,
    tasks: BTreeMap<i64, Task>,
    audit: Vec<AuditEntry>,
}

/// The tasks and audit log, shared by the API and the handlers.
#[derive(Debug, Clone, Default)]
pub struct Store(Arc<Mutex<Data>>);

impl Store {
    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a task.
    pub fn create(
        &self,
        user_id: &str,
        title: &str,
        recurrence: Option<String>,
        recurs_from: Option<i64>,
    ) -> Task {
        let mut d = self.data();
        d.next_id += 1;
        let task = Task {
            id: d.next_id,
            user_id: user_id.to_owned(),
            title: title.to_owned(),
            completed: false,
            recurrence,
            recurs_from,
        };
        d.tasks.insert(task.id, task.clone());
        task
    }

    /// A task by id.
    pub fn get(&self, id: i64) -> Option<Task> {
        self.data().tasks.get(&id).cloned()
    }

    /// Marks a task done; `None` when there is no such task.
    pub fn complete(&self, id: i64) -> Option<Task> {
        let mut d = self.data();
        let task = d.tasks.get_mut(&id)?;
        task.completed = true;
        Some(task.clone())
    }

    /// Deletes a task.
    pub fn delete(&self, id: i64) -> Option<Task> {
        self.data().tasks.remove(&id)
    }

    /// A user's tasks.
    pub fn list(&self, user_id: &str) -> Vec<Task> {
        self.data()
            .tasks
            .values()
            .filter(|t| t.user_id == user_id)
            .cloned()
            .collect()
    }

    /// The task that recurs from `id`, if it was created already.
    pub fn next_occurrence_of(&self, id: i64) -> Option<Task> {
        self.data()
            .tasks
            .values()
            .find(|t| t.recurs_from == Some(id))
            .cloned()
    }

    /// Creates the next occurrence of recurring task `from`, once: a second call returns the
    /// occurrence the first created (`false`), so a redelivered event creates nothing new.
    pub fn create_next_occurrence(&self, from: &Task) -> (Task, bool) {
        if let Some(existing) = self.next_occurrence_of(from.id) {
            return (existing, false);
        }
        let mut d = self.data();
        if let Some(existing) = d.tasks.values().find(|t| t.recurs_from == Some(from.id)) {
            return (existing.clone(), false);
        }
        d.next_id += 1;
        let task = Task {
            id: d.next_id,
            user_id: from.user_id.clone(),
            title: from.title.clone(),
            completed: false,
            recurrence: from.recurrence.clone(),
            recurs_from: Some(from.id),
        };
        d.tasks.insert(task.id, task.clone());
        (task, true)
    }

    /// Records an audit entry.
    pub fn audit(&self, entry: AuditEntry) {
        self.data().audit.push(entry);
    }

    /// The audit log.
    pub fn audit_log(&self) -> Vec<AuditEntry> {
        self.data().audit.clone()
    }
}
