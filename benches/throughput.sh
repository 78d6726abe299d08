#!/usr/bin/env bash
# Throughput over HTTP on loopback: the framework's router against the hand-written axum handler,
# each served by `bench-server` on 127.0.0.1:<free port>, driven by oha (or wrk) for DURATION
# seconds per round, ROUNDS rounds alternating, one table of medians at the end.
#
#   benches/throughput.sh                      # 3 rounds x 10 s each, 32 connections
#   DURATION=5 ROUNDS=2 CONNS=16 benches/throughput.sh
#
# oha: `cargo install oha --locked --root target/bench-tools` (used when present), else wrk
# (`apt-get install wrk`). Both servers are stopped when the script exits, however it exits.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
WORKERS=${WORKERS:-1}
OUT=$CARGO_TARGET_DIR/throughput
mkdir -p "$OUT"

OHA=$ROOT/target/bench-tools/bin/oha
if [[ -x $OHA ]]; then
  TOOL=oha
elif command -v wrk >/dev/null; then
  TOOL=wrk
else
  echo "neither $OHA nor wrk found: cargo install oha --locked --root target/bench-tools, or apt-get install wrk" >&2
  exit 1
fi

cargo build --release --quiet -p event-bench --bin bench-server
BIN=$CARGO_TARGET_DIR/release/bench-server
"$BIN" body >"$OUT/body.json"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT

# Starts a server; sets URL to its delivery URL.
start() {
  local mode=$1 max_secs=$(((DURATION + 10) * ROUNDS * 2 + 60))
  "$BIN" "$mode" --workers "$WORKERS" --max-secs "$max_secs" >"$OUT/$mode.url" &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    URL=$(sed -n 's/^listening //p' "$OUT/$mode.url")
    [[ -n $URL ]] && break
    sleep 0.1
  done
  [[ -n $URL ]] || { echo "$mode server did not start" >&2; exit 1; }
  # One delivery by hand: the server must answer SUCCESS before we load it.
  curl -sf -X POST -H 'content-type: application/cloudevents+json' --data-binary @"$OUT/body.json" "$URL" \
    | grep -q '"SUCCESS"' || { echo "$mode server did not answer SUCCESS" >&2; exit 1; }
}

declare -A URLS
for mode in framework baseline; do
  start "$mode"
  URLS[$mode]=$URL
done

if [[ $TOOL == wrk ]]; then
  cat >"$OUT/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/cloudevents+json"
wrk.headers["pubsubname"] = "kafka-pubsub"
local f = io.open("$OUT/body.json", "r")
wrk.body = f:read("*a"):gsub("%s+$", "")
f:close()
EOF
fi

load() {
  local mode=$1 round=$2 url=${URLS[$1]}
  local file="$OUT/$mode.$round.$TOOL"
  if [[ $TOOL == oha ]]; then
    "$OHA" -z "${DURATION}s" -c "$CONNS" -m POST --no-tui --output-format json \
      -H 'content-type: application/cloudevents+json' -H 'pubsubname: kafka-pubsub' \
      -D "$OUT/body.json" "$url" >"$file"
  else
    wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$OUT/post.lua" "$url" >"$file"
  fi
  echo "$file"
}

FILES=()
for round in $(seq 1 "$ROUNDS"); do
  # Alternate which goes first, so neither always runs on a warmer (or busier) machine.
  if ((round % 2)); then order=(framework baseline); else order=(baseline framework); fi
  for mode in "${order[@]}"; do
    echo "round $round: $mode ($TOOL, ${DURATION}s, $CONNS connections, $WORKERS server worker)" >&2
    FILES+=("$(load "$mode" "$round")")
  done
done

python3 - "$TOOL" "${FILES[@]}" <<'EOF'
import json, re, statistics, sys

tool, files = sys.argv[1], sys.argv[2:]

def wrk_ms(v, unit):
    return float(v) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

rows = {}
for f in files:
    mode = f.rsplit("/", 1)[1].split(".")[0]
    text = open(f).read()
    if tool == "oha":
        d = json.loads(text)
        rps = d["summary"]["requestsPerSec"]
        p50 = d["latencyPercentiles"]["p50"] * 1e3
        p99 = d["latencyPercentiles"]["p99"] * 1e3
        codes = d.get("statusCodeDistribution", {})
        bad = sum(n for c, n in codes.items() if c != "200")
    else:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
        lat = dict((p, wrk_ms(v, u)) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M))
        p50, p99 = lat["50"], lat["99"]
        m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
        bad = int(m.group(1)) if m else 0
    if bad:
        sys.exit(f"{f}: {bad} responses were not 200")
    rows.setdefault(mode, []).append((rps, p50, p99))

med = {m: tuple(statistics.median(x[i] for x in v) for i in range(3)) for m, v in rows.items()}
print(f"\n{tool}, {len(rows['framework'])} rounds each, alternating; medians\n")
print("| server | deliveries/s | p50 ms | p99 ms | rounds (deliveries/s) |")
print("|---|---|---|---|---|")
for m in ("baseline", "framework"):
    rps, p50, p99 = med[m]
    rounds = ", ".join(f"{x[0]:.0f}" for x in rows[m])
    print(f"| {m} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {rounds} |")
b, f = med["baseline"], med["framework"]
print(f"\nframework / baseline: throughput {f[0] / b[0]:.3f}x, p50 {f[1] / b[1]:.3f}x, p99 {f[2] / b[2]:.3f}x")
EOF
