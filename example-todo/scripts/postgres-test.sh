#!/usr/bin/env bash
# Runs the PostgreSQL tests (event-runtime's outbox, then example-todo) against a real, throwaway PostgreSQL: Debian's package
# (installed if missing), a fresh cluster in a temporary directory, on a free loopback port,
# stopped and removed at the end.
#
#   example-todo/scripts/postgres-test.sh            (extra arguments go to `cargo test`)
set -euo pipefail
cd "$(dirname "$0")/../.."

PG_USER=todo PG_DB=todo PG_FSYNC=off
# shellcheck source=../../scripts/lib/throwaway-postgres.sh
source scripts/lib/throwaway-postgres.sh

export TODO_TEST_POSTGRES_URL="$PG_URL"
echo "==> event-runtime's outbox on PostgreSQL"
cargo test -p event-runtime --features sqlx --test it outbox::postgres:: "$@" -- --ignored
echo "==> example-todo on PostgreSQL"
cargo test -p example-todo --test it postgres:: "$@" -- --ignored
