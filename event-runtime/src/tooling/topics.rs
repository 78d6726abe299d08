//! Topics declared once in code: partitions, retention and replicas, from which the Kafka topic
//! manifests are generated (see [`manifests()`](crate::tooling::manifests::manifests)).
//!
//! ```
//! use std::time::Duration;
//! use event_runtime::tooling::topics::Deployment;
//! use event_runtime::TopicSpec;
//!
//! // A `const`: an invalid topic name or zero partitions fails the build.
//! const TASK_EVENTS: TopicSpec = TopicSpec::new("task-events").partitions(12);
//!
//! assert_eq!(TASK_EVENTS.retention_for(Deployment::Local), Duration::from_secs(7 * 24 * 3600));
//! assert_eq!(TASK_EVENTS.retention_for(Deployment::Cloud), Duration::from_secs(30 * 24 * 3600));
//! assert_eq!(TASK_EVENTS.replicas_for(Deployment::Local), 1);
//! ```

use std::time::Duration;

pub use crate::config::Deployment;
pub use crate::wire::names::is_valid_topic_name;

const DAY: u64 = 24 * 3600;

/// A Kafka topic declared once in code.
///
/// Defaults follow the todo platform's deployment: 12 partitions (as many as the embedded broker
/// keeps), retention 7 days locally and 30 days in the cloud, 3 replicas in the cloud and 1
/// locally. Every builder method is `const`, so a spec can be a `const` item.
///
/// [`TopicSpec::retention`] sets the retention everywhere; [`TopicSpec::retention_cloud`] then
/// overrides it for [`Deployment::Cloud`] only.
///
/// ```
/// use std::time::Duration;
/// use event_runtime::tooling::topics::Deployment;
/// use event_runtime::TopicSpec;
///
/// const AUDIT: TopicSpec = TopicSpec::new("audit-events")
///     .partitions(6)
///     .retention(Duration::from_secs(3 * 24 * 3600))
///     .retention_cloud(Duration::from_secs(90 * 24 * 3600))
///     .replicas(3)
///     .config(&[("cleanup.policy", "delete")]);
///
/// assert_eq!(AUDIT.retention_ms(Deployment::Local), 3 * 24 * 3600 * 1000);
/// assert_eq!(AUDIT.retention_ms(Deployment::Cloud), 90 * 24 * 3600 * 1000);
/// assert_eq!(AUDIT.replicas_for(Deployment::Cloud), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic name.
    pub name: &'static str,
    /// Number of partitions.
    pub partitions: u32,
    /// Retention in a [`Deployment::Local`] cluster.
    pub retention: Duration,
    /// Retention in a [`Deployment::Cloud`] cluster.
    pub retention_cloud: Duration,
    /// Replicas in a [`Deployment::Cloud`] cluster (always 1 locally).
    pub replicas: u16,
    /// Further Kafka topic configs (`cleanup.policy`, `min.insync.replicas`, ...), as strings.
    pub config: &'static [(&'static str, &'static str)],
}

impl TopicSpec {
    /// Retention in a local cluster unless set: 7 days.
    pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * DAY);
    /// Retention in the cloud unless set: 30 days.
    pub const DEFAULT_RETENTION_CLOUD: Duration = Duration::from_secs(30 * DAY);
    /// Partitions unless set: 12.
    pub const DEFAULT_PARTITIONS: u32 = 12;
    /// Cloud replicas unless set: 3.
    pub const DEFAULT_REPLICAS: u16 = 3;

    /// A topic with every setting at its default. Panics (at compile time, in a `const`) when
    /// `name` is not a valid Kafka topic name: 1 to 249 characters of `a-z A-Z 0-9 . _ -`, and
    /// neither `.` nor `..`.
    ///
    /// ```compile_fail
    /// use event_runtime::TopicSpec;
    /// const BAD: TopicSpec = TopicSpec::new("task events"); // a space: does not compile
    /// ```
    pub const fn new(name: &'static str) -> Self {
        assert!(
            is_valid_topic_name(name),
            "invalid Kafka topic name: use 1 to 249 characters of a-z A-Z 0-9 . _ -"
        );
        TopicSpec {
            name,
            partitions: Self::DEFAULT_PARTITIONS,
            retention: Self::DEFAULT_RETENTION,
            retention_cloud: Self::DEFAULT_RETENTION_CLOUD,
            replicas: Self::DEFAULT_REPLICAS,
            config: &[],
        }
    }

    /// Sets the number of partitions (at least 1).
    pub const fn partitions(mut self, partitions: u32) -> Self {
        assert!(partitions > 0, "a topic needs at least one partition");
        self.partitions = partitions;
        self
    }

    /// Sets the retention, locally and in the cloud.
    pub const fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self.retention_cloud = retention;
        self
    }

    /// [`TopicSpec::retention`] in whole days.
    pub const fn retention_days(self, days: u64) -> Self {
        self.retention(Duration::from_secs(days * DAY))
    }

    /// [`TopicSpec::retention_cloud`] in whole days.
    pub const fn retention_cloud_days(self, days: u64) -> Self {
        self.retention_cloud(Duration::from_secs(days * DAY))
    }

    /// Sets the retention in the cloud only (call after [`TopicSpec::retention`]).
    pub const fn retention_cloud(mut self, retention: Duration) -> Self {
        self.retention_cloud = retention;
        self
    }

    /// Sets the replicas in the cloud (at least 1; a local cluster always gets 1).
    pub const fn replicas(mut self, replicas: u16) -> Self {
        assert!(replicas > 0, "a topic needs at least one replica");
        self.replicas = replicas;
        self
    }

    /// Sets further Kafka topic configs.
    pub const fn config(mut self, config: &'static [(&'static str, &'static str)]) -> Self {
        self.config = config;
        self
    }

    /// The retention for `deployment`.
    pub const fn retention_for(&self, deployment: Deployment) -> Duration {
        match deployment {
            Deployment::Local => self.retention,
            Deployment::Cloud => self.retention_cloud,
        }
    }

    /// Kafka's `retention.ms` for `deployment`.
    pub const fn retention_ms(&self, deployment: Deployment) -> u128 {
        self.retention_for(deployment).as_millis()
    }

    /// The replicas for `deployment`.
    pub const fn replicas_for(&self, deployment: Deployment) -> u16 {
        match deployment {
            Deployment::Local => 1,
            Deployment::Cloud => self.replicas,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: TopicSpec = TopicSpec::new("task-events")
        .partitions(3)
        .retention(Duration::from_secs(DAY));

    #[test]
    fn defaults_follow_the_reference() {
        let t = TopicSpec::new("reminders");
        assert_eq!(t.partitions, 12);
        assert_eq!(t.retention_ms(Deployment::Local), 604_800_000);
        assert_eq!(t.retention_ms(Deployment::Cloud), 2_592_000_000);
        assert_eq!(t.replicas_for(Deployment::Local), 1);
        assert_eq!(t.replicas_for(Deployment::Cloud), 3);
    }

    #[test]
    fn retention_sets_both_and_cloud_overrides() {
        assert_eq!(
            SPEC.retention_for(Deployment::Cloud),
            Duration::from_secs(DAY)
        );
        let t = SPEC.retention_cloud_days(2);
        assert_eq!(t, SPEC.retention_cloud(Duration::from_secs(2 * DAY)));
        assert_eq!(
            TopicSpec::new("x").retention_days(1),
            TopicSpec::new("x").retention(Duration::from_secs(DAY))
        );
        assert_eq!(t.retention_for(Deployment::Local), Duration::from_secs(DAY));
        assert_eq!(
            t.retention_for(Deployment::Cloud),
            Duration::from_secs(2 * DAY)
        );
    }

    #[test]
    fn topic_names() {
        assert!(is_valid_topic_name("a"));
        assert!(is_valid_topic_name(&"a".repeat(249)));
        assert!(!is_valid_topic_name(&"a".repeat(250)));
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name("."));
        assert!(is_valid_topic_name("..."));
        assert!(!is_valid_topic_name("a/b"));
        assert!(!is_valid_topic_name("é"));
    }

    #[test]
    #[should_panic(expected = "invalid Kafka topic name")]
    fn invalid_name_panics_at_run_time_too() {
        let name = String::from("a b").leak();
        let _ = TopicSpec::new(name);
    }

    #[test]
    #[should_panic(expected = "at least one partition")]
    fn zero_partitions_panics() {
        let _ = TopicSpec::new("x").partitions(0);
    }
}
