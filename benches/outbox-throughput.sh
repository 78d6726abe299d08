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

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [[ -z "$(pg_bin)" ]]; then
  echo "==> installing PostgreSQL (Debian package)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
BIN="$(pg_bin)"
free_port() {
  local p
  for p in $(seq 55432 55632); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port in 55432-55632" >&2; return 1
}
PORT="$(free_port)"
DIR="$(mktemp -d /tmp/outbox-bench-pg.XXXXXX)"
AS=()
if [[ "$(id -u)" == 0 ]]; then
  chown postgres "$DIR"
  AS=(runuser -u postgres --)
fi
stop() {
  "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap stop EXIT
echo "==> PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT, fsync=${PG_FSYNC:-on}" >&2
"${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U bench -A trust >/dev/null
"${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-on}" start >/dev/null
"${AS[@]}" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U bench bench
"$BINARY" --postgres "postgres://bench@127.0.0.1:$PORT/bench" "$@"
