//! The transactional outbox: the same scenarios on SQLite and on PostgreSQL (`#[ignore]`d; run
//! by `example-todo/scripts/postgres-test.sh`).

mod postgres;
mod sqlite;
mod support;

use support::*;
