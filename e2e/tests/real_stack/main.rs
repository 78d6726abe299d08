//! The real-stack scenarios: Kafka + Redis + daprd + `e2e-app`. Run with `scripts/e2e.sh`.
//!
//! Each test uses its own topics (`sN-*`), app id and Kafka consumer group, its own ledger and
//! logs; it waits by condition with deadlines and fails (it never skips) when the stack is not
//! there.
//!
//! One module per feature; the tests keep their `sN_` names, which `scripts/e2e.sh` filters on.

mod support;

mod broker;
mod bulk;
mod discovery;
mod exactly_once;
mod lanes;
mod order;
mod outbox;
mod publishing;
mod records;
mod redis_streams;
mod retries;
mod scale;
mod scheduling;
mod security;
mod streaming;
mod tracing;
