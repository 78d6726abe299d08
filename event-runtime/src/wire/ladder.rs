//! The retry ladder's names: its tiers and their topics. They sit in the wire layer because the
//! registry subscribes to them and the pipeline publishes to them
//! (`pipeline::retry::ladder`, which re-exports them).

/// The waits of the retry ladder, in seconds. Every app subscribes to one retry topic per tier,
/// whatever its handlers' schedules: a delay is waited out as a sum of tiers (30 s on the 30 s
/// tier, 45 s as 30 + 10 + 5), each hop held on its tier's topic. So the set of retry topics never
/// changes with a schedule, and a redeploy with another schedule, or without the handler, strands
/// no pending retry (as long as the app still has a handler with delayed retries: an app with
/// none subscribes no retry topic).
pub const RETRY_TIERS: [u64; 9] = [1, 5, 10, 30, 60, 300, 600, 1800, 3600];

/// `todo.retry.30s`: the retry topic of app `app_id` for the tier of `tier_secs`. It carries the
/// app id, so apps that share a topic, each with its own consumer group, never see each other's
/// retries.
pub fn retry_topic(app_id: &str, tier_secs: u64) -> String {
    format!("{}.retry.{tier_secs}s", topic_segment(app_id))
}

/// The tier a wait of `secs` takes first: the longest tier not longer than it.
pub fn retry_tier(secs: u64) -> u64 {
    RETRY_TIERS
        .iter()
        .copied()
        .take_while(|&t| t <= secs)
        .last()
        .unwrap_or(RETRY_TIERS[0])
}

/// An app id as a part of a Kafka topic name (`[a-zA-Z0-9._-]`; anything else becomes `_`).
fn topic_segment(app_id: &str) -> String {
    app_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::retry_tier;

    #[test]
    fn a_wait_takes_the_longest_tier_not_longer_than_it() {
        assert_eq!(retry_tier(30), 30);
        assert_eq!(retry_tier(45), 30);
        assert_eq!(retry_tier(86_400), 3600);
        assert_eq!(retry_tier(0), 1);
    }
}
