#!/usr/bin/env bash
# The SQL outbox against a direct publish (BENCHMARKS.md, "Outbox"): runs the release
# `outbox-throughput` binary on SQLite and on a throwaway PostgreSQL (Debian's package, installed
# if missing, a fresh cluster in a temporary directory on a free loopback port, stopped and
# removed at the end), as example-todo/scripts/postgres-test.sh starts one.
#
#   benches/outbox-throughput.sh [--writes N] [--rounds R] [--writers W] [--backlog N]
#
# PG_FSYNC=off runs PostgreSQL without fsync (default: on, PostgreSQL's default);
# NO_POSTGRES=1 measures SQLite only. CARGO_TARGET_DIR defaults to target/bench.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/bench}"
cargo build --release -q -p event-bench --bin outbox-throughput
BINARY="$CARGO_TARGET_DIR/release/outbox-throughput"

if [[ -n "${NO_POSTGRES:-}" ]]; then
  exec "$BINARY" "$@"
fi

PG_USER=bench PG_DB=bench PG_FSYNC="${PG_FSYNC:-on}"
# shellcheck source=../scripts/lib/throwaway-postgres.sh
source scripts/lib/throwaway-postgres.sh
"$BINARY" --postgres "$PG_URL" "$@"
