//! A handler's lanes (`concurrency = N`): at most N of its deliveries run at once, each in the
//! lane its partition key hashes to, so the events of one key run one after another, in the
//! order they arrived, while other keys run beside them.
//!
//! Backpressure: a delivery whose lane is busy waits for it, first come first served (tokio's
//! `Mutex` is fair), and Dapr's answer waits with it. The wait is bounded by the handler's run
//! timeout: past it the delivery answers RETRY, so the broker keeps the event and nothing is
//! dropped. daprd's `app-max-concurrency` (see the manifests) keeps the queue short before that.

use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// The lanes of one handler.
pub(crate) struct Lanes {
    lanes: Box<[Arc<Mutex<()>>]>,
    /// The longest a delivery waits for its lane.
    wait: Duration,
}

/// A delivery's hold on its lane, released when dropped.
pub(crate) type LaneGuard = OwnedMutexGuard<()>;

impl Lanes {
    /// `n` lanes (at least one), each waited on for at most `wait`.
    pub(crate) fn new(n: u32, wait: Duration) -> Self {
        let lanes = (0..n.max(1)).map(|_| Arc::new(Mutex::new(()))).collect();
        Lanes { lanes, wait }
    }

    /// The lane of `key`; an event without a key has no order to keep, and is spread by its id.
    pub(crate) fn lane_of(&self, key: Option<&str>, event_id: &str) -> usize {
        // SipHash with fixed keys: the same key takes the same lane in every process.
        let mut hasher = std::hash::DefaultHasher::new();
        key.unwrap_or(event_id).hash(&mut hasher);
        (hasher.finish() % self.lanes.len() as u64) as usize
    }

    /// Waits for the lane of `key`: its guard, or `None` once the wait is over the bound.
    pub(crate) async fn enter(&self, key: Option<&str>, event_id: &str) -> Option<LaneGuard> {
        let lane = self.lanes[self.lane_of(key, event_id)].clone();
        tokio::time::timeout(self.wait, lane.lock_owned())
            .await
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_always_takes_one_lane_and_keys_spread() {
        let lanes = Lanes::new(4, Duration::from_secs(1));
        let a = lanes.lane_of(Some("user-1"), "e1");
        assert_eq!(a, lanes.lane_of(Some("user-1"), "e2"));
        let used: std::collections::HashSet<usize> = (0..64)
            .map(|i| lanes.lane_of(Some(&format!("user-{i}")), "e"))
            .collect();
        assert_eq!(used.len(), 4, "64 keys use every one of 4 lanes");
        assert!(used.iter().all(|&l| l < 4));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_lane_is_waited_for_up_to_the_bound() {
        let lanes = Lanes::new(1, Duration::from_secs(5));
        let held = lanes.enter(Some("k"), "e1").await.expect("a free lane");
        assert!(lanes.enter(Some("k"), "e2").await.is_none(), "bounded wait");
        drop(held);
        assert!(lanes.enter(Some("k"), "e3").await.is_some());
    }
}
