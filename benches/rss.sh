#!/usr/bin/env bash
# Memory of the example service: RSS idle, then the peak (VmHWM) and the RSS after a bounded
# load of task creations (each publishes an event that two handlers consume in embedded mode).
#
#   benches/rss.sh                     # DURATION=10 CONNS=16 by default
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
OHA=${OHA:-$ROOT/target/bench-tools/bin/oha}
[[ -x $OHA ]] || cargo install oha --locked --root "$ROOT/target/bench-tools"

cargo build --release --quiet -p example-todo
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
APP_PORT=$PORT DATABASE_URL="sqlite://$WORK/todo.db" RUST_LOG=warn \
  "$CARGO_TARGET_DIR/release/example-todo" >"$WORK/app.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "127.0.0.1:$PORT/healthz" >/dev/null || { cat "$WORK/app.log"; exit 1; }

kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$PID/status"; }
idle=$(kb VmRSS)
"$OHA" -z "${DURATION}s" -c "$CONNS" --no-tui -m POST -H 'content-type: application/json' \
  -d '{"user_id":"u-load","title":"load test task"}' "http://127.0.0.1:$PORT/tasks" >"$WORK/oha.txt"
# Let the embedded broker drain what the load published before the last reading.
for _ in $(seq 600); do
  n=$(curl -s "127.0.0.1:$PORT/metrics" | awk '$1 == "event_deliveries_in_flight" {print $2}')
  [[ ${n:-1} == 0 ]] && break
  sleep 0.1
done
peak=$(kb VmHWM)
after=$(kb VmRSS)
rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/oha.txt")
echo "| idle RSS | peak RSS under load | RSS after load | task creations/s |"
echo "|---|---|---|---|"
echo "| $((idle / 1024)) MiB | $((peak / 1024)) MiB | $((after / 1024)) MiB | $rps |"
