# Sourced, not run: starts a throwaway PostgreSQL (Debian's package, installed if missing) in a
# fresh cluster in a temporary directory, on a free loopback port, and stops and removes it when
# the sourcing script exits.
#
#   PG_USER=todo PG_DB=todo PG_FSYNC=off source scripts/lib/throwaway-postgres.sh
#   # then: $PG_URL (postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB)

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [[ -z "$(pg_bin)" ]]; then
  echo "==> installing PostgreSQL (Debian package)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN="$(pg_bin)"

pg_free_port() {
  local p
  for p in $(seq 55432 55632); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port in 55432-55632" >&2; return 1
}
PG_PORT="$(pg_free_port)"
PG_DIR="$(mktemp -d /tmp/throwaway-pg.XXXXXX)"
# PostgreSQL refuses to run as root: as root, run it as the package's `postgres` user.
PG_AS=()
if [[ "$(id -u)" == 0 ]]; then
  chown postgres "$PG_DIR"
  PG_AS=(runuser -u postgres --)
fi
pg_stop() {
  "${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap pg_stop EXIT

PG_USER="${PG_USER:-postgres}" PG_DB="${PG_DB:-postgres}" PG_FSYNC="${PG_FSYNC:-on}"
echo "==> PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT, fsync=$PG_FSYNC ($PG_DIR)" >&2
"${PG_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_USER" -A trust --no-sync >/dev/null
"${PG_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w \
  -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=$PG_FSYNC" start >/dev/null
if [[ "$PG_DB" != postgres ]]; then
  "${PG_AS[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
fi
PG_URL="postgres://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"
