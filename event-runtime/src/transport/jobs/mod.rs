//! Scheduled events: an event published later, once or on a recurring schedule.
//!
//! On Dapr each schedule is a job of Dapr's Jobs API: the `scheduler` service keeps it (across
//! restarts of the app and of daprd) and daprd calls the app's `POST /job/{name}` when it is
//! due; the app then publishes the event. Embedded, the broker keeps a timer per job on tokio's
//! clock, so a test on paused time advances a week in milliseconds.
//!
//! A firing is an ordinary event: its partition key, its usual retries and dead letters, and a
//! stable id (the event's own for a one-off; the event's id and the firing's due time for a
//! recurring one), so a firing the scheduler sends twice is applied once by an idempotent
//! handler. What the app stores in a job is signed with its key, so a forged trigger publishes
//! nothing.

mod dapr;
pub(crate) mod timers;

use std::str::FromStr as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::event::Event;
use crate::transport::outgoing::{OutgoingEvent, PublishError};
use crate::transport::publish::{Backend, Publisher};
use crate::wire::cloudevent::EXT_VERSION;
use crate::wire::signing::SigningKey;

/// When a scheduled event is published: once, or again and again.
///
/// ```
/// use std::time::Duration;
/// use event_runtime::Schedule;
///
/// let in_an_hour = Schedule::after(Duration::from_secs(3600));
/// let daily = Schedule::every(Duration::from_secs(86_400)).times(30);
/// let at_nine = Schedule::cron("0 0 9 * * *").unwrap(); // Dapr's six fields, seconds first
/// # let _ = (in_an_hour, daily, at_nine);
/// ```
///
/// # Scheduled events
///
#[doc = include_str!("../../../docs/scheduling.md")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
    times: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    At(SystemTime),
    After(Duration),
    Every(Duration),
    Cron(String),
}

/// The shortest period of a recurring schedule: the scheduler's resolution.
const MIN_PERIOD: Duration = Duration::from_secs(1);

impl Schedule {
    /// Once, at `when` (at once if that has passed).
    pub fn at(when: impl Into<SystemTime>) -> Self {
        Schedule {
            kind: Kind::At(when.into()),
            times: None,
        }
    }

    /// Once, `delay` from now.
    pub fn after(delay: Duration) -> Self {
        Schedule {
            kind: Kind::After(delay),
            times: None,
        }
    }

    /// Every `period` (at least a second), the first one period from now.
    pub fn every(period: Duration) -> Self {
        Schedule {
            kind: Kind::Every(period.max(MIN_PERIOD)),
            times: None,
        }
    }

    /// On a cron schedule in Dapr's format: six fields, seconds first (`"0 30 9 * * MON-FRI"`).
    pub fn cron(expr: &str) -> Result<Self, PublishError> {
        cron::Schedule::from_str(expr)
            .map_err(|e| PublishError::Schedule(format!("`{expr}` is no cron schedule: {e}")))?;
        Ok(Schedule {
            kind: Kind::Cron(expr.to_owned()),
            times: None,
        })
    }

    /// At most `n` firings (at least one) of a recurring schedule.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n.max(1));
        self
    }

    /// The due time of the first firing, epoch ms, from `now_ms`.
    fn first_ms(&self, now_ms: u64) -> u64 {
        match &self.kind {
            Kind::At(when) => epoch_ms(*when).max(now_ms),
            Kind::After(delay) => now_ms + delay.as_millis() as u64,
            Kind::Every(period) => now_ms + period.as_millis() as u64,
            Kind::Cron(expr) => cron_after(expr, now_ms).unwrap_or(now_ms),
        }
    }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The first tick of `expr` after `ms`.
fn cron_after(expr: &str, ms: u64) -> Option<u64> {
    let schedule = cron::Schedule::from_str(expr).ok()?;
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64)?;
    let next = schedule.after(&at).next()?;
    Some(next.timestamp_millis() as u64)
}

/// The last tick of `expr` at or before `ms`.
fn cron_before(expr: &str, ms: u64) -> Option<u64> {
    let schedule = cron::Schedule::from_str(expr).ok()?;
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms as i64 + 1)?;
    let prev = schedule.after(&at).next_back()?;
    Some(prev.timestamp_millis() as u64)
}

/// What a job publishes, and when: what the app stores in the job (signed, see [`Signed`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Job {
    pub pubsub: String,
    pub topic: String,
    pub id: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub source: String,
    pub data: Value,
    pub partition_key: Option<String>,
    pub version: Option<String>,
    /// When the first firing is due, epoch ms.
    pub first_ms: u64,
    /// A recurring job's period.
    pub every_ms: Option<u64>,
    /// A recurring job's cron schedule.
    pub cron: Option<String>,
    /// At most this many firings.
    pub times: Option<u32>,
}

impl Job {
    fn new(event: OutgoingEvent, schedule: &Schedule, now_ms: u64) -> Self {
        let version = event
            .extensions
            .get(EXT_VERSION)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let (every_ms, cron) = match &schedule.kind {
            Kind::Every(period) => (Some(period.as_millis() as u64), None),
            Kind::Cron(expr) => (None, Some(expr.clone())),
            Kind::At(_) | Kind::After(_) => (None, None),
        };
        Job {
            pubsub: event.pubsub,
            topic: event.topic,
            id: event.id,
            ty: event.ty,
            source: event.source,
            data: event.data,
            partition_key: event.partition_key,
            version,
            first_ms: schedule.first_ms(now_ms),
            every_ms,
            cron,
            times: schedule.times,
        }
    }

    /// Whether it fires more than once.
    pub(crate) fn recurs(&self) -> bool {
        self.every_ms.is_some() || self.cron.is_some()
    }

    /// The due time of the firing that a trigger at `now_ms` is (the nearest tick of a period,
    /// the last tick of a cron schedule), so that a firing sent again is the same firing.
    pub(crate) fn tick(&self, now_ms: u64) -> u64 {
        match (self.every_ms, &self.cron) {
            (Some(every), _) if every > 0 && now_ms > self.first_ms => {
                let k = (now_ms - self.first_ms + every / 2) / every;
                self.first_ms + k * every
            }
            (_, Some(expr)) => cron_before(expr, now_ms).unwrap_or(self.first_ms),
            _ => self.first_ms,
        }
    }

    /// The due time of the firing after the one due at `tick`, when the job recurs.
    pub(crate) fn next_after(&self, tick: u64) -> Option<u64> {
        match (self.every_ms, &self.cron) {
            (Some(every), _) => Some(tick + every.max(1)),
            (_, Some(expr)) => cron_after(expr, tick),
            _ => None,
        }
    }

    /// The event of the firing due at `tick`: the job's event, with the event's own id for a
    /// one-off and the id and the due time for a recurring job.
    pub(crate) fn firing(&self, tick: u64) -> OutgoingEvent {
        let id = if self.recurs() {
            format!("{}@{}", self.id, crate::clock::rfc3339(tick))
        } else {
            self.id.clone()
        };
        let mut extensions = Map::new();
        if let Some(v) = &self.version {
            extensions.insert(EXT_VERSION.to_owned(), Value::String(v.clone()));
        }
        OutgoingEvent {
            pubsub: self.pubsub.clone(),
            topic: self.topic.clone(),
            id,
            ty: self.ty.clone(),
            source: self.source.clone(),
            data: self.data.clone(),
            partition_key: self.partition_key.clone(),
            extensions,
            traceparent: None,
            tracestate: None,
            record: None,
        }
    }
}

/// A job as it travels through the scheduler: the job's JSON as a string (numbers and key
/// order stay as written), and its signature over the job's name and that string.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Signed {
    pub job: String,
    pub mac: String,
}

impl Signed {
    pub(crate) fn seal(name: &str, job: &Job, key: &SigningKey) -> Self {
        let job = serde_json::to_string(job).unwrap_or_default();
        let mac = key.sign(&[b"job", name.as_bytes(), job.as_bytes()]);
        Signed { job, mac }
    }

    /// The job, when `key` signed it under `name`.
    pub(crate) fn open(&self, name: &str, key: &SigningKey) -> Result<Job, &'static str> {
        let parts: [&[u8]; 3] = [b"job", name.as_bytes(), self.job.as_bytes()];
        if !key.verify(&parts, &self.mac) {
            return Err("the job is not signed by this app");
        }
        serde_json::from_str(&self.job).map_err(|_| "the job's content is unreadable")
    }
}

/// The longest job name.
const MAX_NAME: usize = 200;

/// A job name: letters, digits, `-`, `_` and `.`, at most 200 bytes (it goes in URLs).
fn check_name(name: &str) -> Result<(), PublishError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(PublishError::Schedule(format!(
            "`{name}` is no job name: 1 to {MAX_NAME} letters, digits, `-`, `_` or `.`"
        )))
    }
}

impl Publisher {
    /// Publishes `event` to `topic` once, at `when`: on Dapr through its Jobs API (the job
    /// outlives the app and daprd), embedded on the broker's clock. Returns the job's name,
    /// which [`Publisher::cancel_schedule`] takes; the same event and topic give the same name,
    /// so scheduling it again replaces it.
    ///
    /// ```no_run
    /// # use event_runtime::{Event, Publisher};
    /// # #[derive(Debug, Clone, serde::Serialize, serde::Deserialize, Event)]
    /// # #[event(type = "reminder.due", version = "1.0")]
    /// # pub struct ReminderDue { pub task_id: i64, pub user_id: String }
    /// # async fn run(publisher: Publisher) -> Result<(), event_runtime::PublishError> {
    /// let due = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    /// let event = ReminderDue { task_id: 7, user_id: "u-1".into() };
    /// let job = publisher.publish_at("reminders", &event, due).await?;
    /// publisher.cancel_schedule(&job).await?; // the task was completed first
    /// # Ok(()) }
    /// ```
    pub async fn publish_at<E: Event>(
        &self,
        topic: &str,
        event: &E,
        when: impl Into<SystemTime>,
    ) -> Result<String, PublishError> {
        let out = OutgoingEvent::from_event(self.default_pubsub(), topic, self.source(), event)?;
        let name = {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(format!("{topic}\n{}", out.id).as_bytes());
            format!("at-{}", &crate::wire::signing::hex(&digest)[..32])
        };
        self.schedule_event(&name, out, &Schedule::at(when)).await?;
        Ok(name)
    }

    /// Publishes `event` to `topic` on `schedule`, as the job `name` (letters, digits, `-`, `_`,
    /// `.`), replacing any job of that name.
    pub async fn schedule<E: Event>(
        &self,
        name: &str,
        topic: &str,
        event: &E,
        schedule: Schedule,
    ) -> Result<(), PublishError> {
        check_name(name)?;
        let out = OutgoingEvent::from_event(self.default_pubsub(), topic, self.source(), event)?;
        self.schedule_event(name, out, &schedule).await
    }

    /// Cancels the job `name`: nothing more of it is published. Cancelling a job that does not
    /// exist (any more) is not an error.
    pub async fn cancel_schedule(&self, name: &str) -> Result<(), PublishError> {
        check_name(name)?;
        match self.backend() {
            Backend::Embedded(broker) => {
                broker.timers.cancel(name);
                Ok(())
            }
            Backend::Dapr(client) => client.delete_job(name).await,
        }
    }

    async fn schedule_event(
        &self,
        name: &str,
        out: OutgoingEvent,
        schedule: &Schedule,
    ) -> Result<(), PublishError> {
        out.check_size(out.value_len(), self.max_message_bytes())?;
        let job = Job::new(out, schedule, crate::clock::now_ms());
        match self.backend() {
            Backend::Embedded(broker) => {
                broker.timers.start(broker, name, job);
                Ok(())
            }
            Backend::Dapr(client) => {
                // The app that runs the trigger must check it with a key that outlives this
                // process: one it was given, the same in every replica.
                let key = self
                    .app()
                    .filter(|app| app.stable_key)
                    .map(|app| &app.key)
                    .ok_or_else(|| {
                        PublishError::Schedule(
                            "scheduling on Dapr needs the app's publisher (App::publisher) and \
                             EVENTS_SIGNING_KEY, so that every replica can check the job"
                                .into(),
                        )
                    })?;
                let signed = Signed::seal(name, &job, key);
                client.put_job(name, &job, &signed).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(every_ms: Option<u64>, cron: Option<&str>) -> Job {
        Job {
            pubsub: "p".into(),
            topic: "t".into(),
            id: "e-1".into(),
            ty: "reminder.due".into(),
            source: "s".into(),
            data: Value::Null,
            partition_key: Some("u1".into()),
            version: Some("1.0".into()),
            first_ms: 60_000,
            every_ms,
            cron: cron.map(str::to_owned),
            times: None,
        }
    }

    #[test]
    fn a_firing_sent_again_is_the_same_firing() {
        let once = job(None, None);
        assert_eq!(once.firing(once.tick(61_000)).id, "e-1");
        let every = job(Some(10_000), None);
        assert_eq!(every.tick(60_400), 60_000);
        assert_eq!(every.tick(70_900), 70_000, "late by 900 ms");
        assert_eq!(every.tick(69_500), 70_000, "early by 500 ms");
        let a = every.firing(every.tick(70_100)).id;
        assert_eq!(a, every.firing(every.tick(71_000)).id);
        assert_ne!(a, every.firing(every.tick(80_000)).id);
        let cron = job(None, Some("0 * * * * *"));
        assert_eq!(cron.tick(120_500), 120_000);
        assert_eq!(cron.next_after(120_000), Some(180_000));
        assert_eq!(cron.firing(120_000).id, "e-1@1970-01-01T00:02:00.000Z");
    }

    #[test]
    fn a_job_opens_only_under_its_name_and_key() {
        let key = SigningKey::new("k");
        let signed = Signed::seal("n", &job(None, None), &key);
        assert_eq!(signed.open("n", &key).unwrap(), job(None, None));
        assert!(signed.open("other", &key).is_err());
        assert!(signed.open("n", &SigningKey::new("x")).is_err());
        let forged = Signed {
            job: signed.job.replace("\"t\"", "\"other-topic\""),
            mac: signed.mac.clone(),
        };
        assert!(forged.open("n", &key).is_err());
    }

    #[test]
    fn schedules_and_names_are_checked() {
        assert!(Schedule::cron("not cron").is_err());
        assert!(Schedule::cron("0 0 9 * * MON-FRI").is_ok());
        assert_eq!(Schedule::every(Duration::ZERO), Schedule::every(MIN_PERIOD));
        assert!(check_name("reminder-7").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(201)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
