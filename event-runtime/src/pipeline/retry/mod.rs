//! Retries, a file per concern: [`policy`] decides (the schedule, inline or delayed, give up),
//! [`ladder`] carries a delayed retry (the tier topics, publishing a hop, holding until due), and
//! [`bookkeeping`] is what a retry message carries, signed.
#![doc = include_str!("../../../docs/retries.md")]

pub(crate) mod bookkeeping;
pub(crate) mod ladder;
pub(crate) mod policy;

pub(crate) use bookkeeping::{Failure, RetryState};
pub(crate) use ladder::{hold_until, publish_retry, schedule_retry, sleep_unless_shutdown};
pub(crate) use policy::{further_hop, next_step, NextStep};
