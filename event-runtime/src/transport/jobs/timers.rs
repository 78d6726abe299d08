//! The embedded broker's jobs: a task per job on tokio's clock (paused time in tests), which
//! publishes each firing into the broker when it is due.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::transport::embedded::Broker;
use crate::transport::jobs::Job;

/// The running jobs of one broker, by name.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
}

impl Timers {
    /// Starts `job` as `name` on `broker`, replacing a job of that name.
    pub(crate) fn start(&self, broker: &Arc<Broker>, name: &str, job: Job) {
        // Weak: the broker owns its timers, so a timer must not keep the broker alive.
        let broker = Arc::downgrade(broker);
        let task = tokio::spawn(fire(broker, job));
        if let Some(old) = self.lock().insert(name.to_owned(), task.abort_handle()) {
            old.abort();
        }
    }

    /// Stops the job `name`, if it runs.
    pub(crate) fn cancel(&self, name: &str) {
        if let Some(task) = self.lock().remove(name) {
            task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::task::AbortHandle>> {
        // One insert or remove at a time: a poisoned map is still consistent.
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Publishes each firing of `job` when it is due, until its last one or the broker is gone.
async fn fire(broker: Weak<Broker>, job: Job) {
    let mut due = job.first_ms;
    let mut fired = 0u32;
    loop {
        let wait = due.saturating_sub(crate::clock::now_ms());
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let Some(broker) = broker.upgrade() else {
            return;
        };
        if let Err(e) = broker.publish(job.firing(due)) {
            tracing::error!(error = %e, topic = %job.topic, "a scheduled event could not be published");
        }
        fired += 1;
        if job.times.is_some_and(|n| fired >= n) {
            return;
        }
        match job.next_after(due) {
            Some(next) => due = next,
            None => return,
        }
    }
}
