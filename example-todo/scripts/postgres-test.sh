#!/usr/bin/env bash
# Runs the PostgreSQL tests (event-runtime's outbox, then example-todo) against a real, throwaway PostgreSQL: Debian's package
# (installed if missing), a fresh cluster in a temporary directory, on a free loopback port,
# stopped and removed at the end.
#
#   example-todo/scripts/postgres-test.sh            (extra arguments go to `cargo test`)
set -euo pipefail
cd "$(dirname "$0")/../.."

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [[ -z "$(pg_bin)" ]]; then
  echo "==> installing PostgreSQL (Debian package)"
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
DIR="$(mktemp -d /tmp/todo-pg.XXXXXX)"
# PostgreSQL refuses to run as root: as root, run it as the package's `postgres` user.
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

echo "==> PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT ($DIR)"
"${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U todo -A trust --no-sync >/dev/null
"${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
"${AS[@]}" "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U todo todo

export TODO_TEST_POSTGRES_URL="postgres://todo@127.0.0.1:$PORT/todo"
echo "==> event-runtime's outbox on PostgreSQL"
cargo test -p event-runtime --features sqlx --test outbox_postgres "$@" -- --ignored
echo "==> example-todo on PostgreSQL"
cargo test -p example-todo --test postgres "$@" -- --ignored
