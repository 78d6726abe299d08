//! What one replica knows without asking the store: which keys of a partition have no gate.
//!
//! A key's gate is created only by the delivery of one of its events on the topic, and Kafka
//! gives a partition to one consumer at a time, in offset order. So while this replica reads a
//! partition without a gap (each offset the one after the last), a key it found without a gate
//! stays without one, unless this replica gates it itself. A gap (a restart, a rebalance, a
//! redelivery) forgets what the partition's keys were: they are asked again, once each.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Past this many keys, a partition's known keys are forgotten (they are asked again).
const MAX_KNOWN: usize = 100_000;

/// One handler's view, by partition.
#[derive(Default)]
pub(crate) struct View {
    parts: Mutex<HashMap<u32, Part>>,
}

#[derive(Default)]
struct Part {
    /// The offset that follows the last one read, when reading has been continuous.
    next: Option<i64>,
    /// Keys known to have no gate.
    free: HashSet<String>,
}

impl View {
    /// Records that the delivery at `offset` of `partition` is being read; true when `key` is
    /// known to have no gate.
    pub(crate) fn vouches(&self, partition: u32, offset: i64, key: &str) -> bool {
        let mut parts = self.lock();
        let part = parts.entry(partition).or_default();
        if part.next != Some(offset) || part.free.len() >= MAX_KNOWN {
            part.free.clear();
        }
        part.next = offset.checked_add(1);
        part.free.contains(key)
    }

    /// `key` of `partition` was found without a gate.
    pub(crate) fn free(&self, partition: u32, key: &str) {
        if let Some(part) = self.lock().get_mut(&partition) {
            part.free.insert(key.to_owned());
        }
    }

    /// `key` of `partition` is being gated by this replica.
    pub(crate) fn gated(&self, partition: u32, key: &str) {
        if let Some(part) = self.lock().get_mut(&partition) {
            part.free.remove(key);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Part>> {
        // Every update leaves a consistent map; a poisoned one is still usable.
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_vouched_for_only_while_its_partition_is_read_without_a_gap() {
        let view = View::default();
        assert!(!view.vouches(0, 10, "u1"), "never asked");
        view.free(0, "u1");
        assert!(view.vouches(0, 11, "u1"));
        assert!(!view.vouches(1, 12, "u1"), "another partition");
        // A gap: another replica may have read offsets 12 to 19 and gated u1.
        assert!(!view.vouches(0, 20, "u1"));
        view.free(0, "u1");
        assert!(view.vouches(0, 21, "u1"));
        view.gated(0, "u1");
        assert!(!view.vouches(0, 22, "u1"));
        // A redelivery goes back: forgotten too.
        view.free(0, "u1");
        assert!(!view.vouches(0, 22, "u1"));
    }
}
