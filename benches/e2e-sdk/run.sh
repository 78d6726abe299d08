#!/usr/bin/env bash
# End to end on the real stack (issue "Performance", part 4): sustained events/s from Kafka
# through daprd 1.16.5 into the app, for the same trivial handler written four ways, one after
# another on the same Kafka, daprd binary and machine:
#   ours    event-runtime, one #[event_handler(topic = "bench-events")] no-op  (ours/src/bin/ours.rs)
#   python  Dapr Python SDK + dapr-ext-fastapi, uvicorn, 1 worker            (python/app.py)
#   go      Dapr Go SDK HTTP service (github.com/dapr/go-sdk/service/http)   (go/main.go)
#   ours-stream  the same app, its deliveries over daprd's gRPC stream (EVENTS_TRANSPORT=grpc-stream)
#   go-stream    Dapr Go SDK streaming subscription, rawPayload (go/stream/main.go)
#   bare    bare axum route answering {"status":"SUCCESS"}, subscribed with rawPayload as ours is:
#           daprd's own ceiling for that form (ours/src/bin/bare.rs)
# and, for bulk subscriptions (APPS="ours ours-batch go go-bulk"):
#   ours-batch  event-runtime batch handler, `Vec<BenchEvent>` on bulk(100, 100 ms) (ours/src/bin/ours_batch.rs)
#   go-bulk     a Go bulk subscriber on net/http (go/bulk/main.go): the Go SDK v1.11.0 has none
#
# Method: N CloudEvents are published once, up front, to topic bench-events (12 partitions)
# through a publisher daprd's publish API. Then, per app and run, a fresh consumer group
# (= app id) with initialOffset=oldest consumes all N: the app counts deliveries and records the
# time of the first and the latest one; GET /count gives {"count","first","last"}.
# Rate = (N - 1) / (last - first): pure consume throughput, startup and group join excluded.
# Runs are interleaved (run 1 of every app, then run 2, ...); the median is reported.
#
#   benches/e2e-sdk/run.sh                 # N=50000, 5 runs
#   N=5000 RUNS=1 APPS="ours bare" benches/e2e-sdk/run.sh
# Env: N, RUNS, APPS, PUB_CONC (publisher concurrency, 32), DEADLINE (s per run, 240),
#      BENCH_TARGET (build dir, target/bench-e2e), REPORT and RAW (where the table and the raw rows
#      go). Writes benches/e2e-sdk/RESULTS.md (table, then caveats.md) and results-raw.tsv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/../.." && pwd)"
N=${N:-50000}
RUNS=${RUNS:-5}
APPS=${APPS:-"ours python go bare"}
PUB_CONC=${PUB_CONC:-32}
DEADLINE=${DEADLINE:-240}
BT=${BENCH_TARGET:-$REPO_ROOT/target/bench-e2e}
REPORT=${REPORT:-$HERE/RESULTS.md}
RAW=${RAW:-$HERE/results-raw.tsv}
export STACK_DAPRD_LOG_LEVEL=${STACK_DAPRD_LOG_LEVEL:-warn}
mkdir -p "$BT"

log() { echo "e2e-sdk: $*" >&2; }

# ------------------------------------------------------------------ provision + build
if [[ -x "$REPO_ROOT/target/tools/bin/daprd" ]]; then
  PROVISION_QUIET=1 "$REPO_ROOT/scripts/provision.sh" --skip-daprd
else
  PROVISION_QUIET=1 "$REPO_ROOT/scripts/provision.sh"
fi

log "building the Rust apps and publisher"
(cd "$HERE/ours" && CARGO_TARGET_DIR="$BT" cargo build --release --quiet)
log "building the Go app"
(cd "$HERE/go" && GOFLAGS=-mod=mod go build -o "$BT/go-app" . && go build -o "$BT/go-bulk-app" ./bulk \
  && GOFLAGS=-mod=mod go build -o "$BT/go-stream-app" ./stream)
if [[ " $APPS " == *" python "* && ! -x "$BT/venv/bin/uvicorn" ]]; then
  log "creating the Python venv"
  python3 -m venv "$BT/venv"
  "$BT/venv/bin/pip" install -q dapr-ext-fastapi uvicorn
fi

# ------------------------------------------------------------------ stack
# shellcheck source=../../scripts/stack.sh disable=SC1091
source "$REPO_ROOT/scripts/stack.sh"
stack_init
fail() { echo "e2e-sdk FAIL: $*" >&2; stack_logs_tail 30; exit 1; }

stack_start_kafka bench-events:12 || fail kafka
stack_start_redis || fail redis
stack_write_components || fail components
BASE_RES="$DAPR_RESOURCES_DIR"

# resources_for ID: a copy of the components whose Kafka consumer group is ID.
resources_for() {
  local d="$STACK_RUN_DIR/res-$1"
  mkdir -p "$d"
  cp "$BASE_RES"/*.yaml "$d/"
  sed -i "/name: consumerGroup/{n;s/value: .*/value: \"$1\"/}" "$d/kafka-pubsub.yaml"
  sed -i "s/value: \"e2e-daprd\"/value: \"$1\"/" "$d/kafka-pubsub.yaml"
  echo "$d"
}

# ------------------------------------------------------------------ publish N events once
PUB_APP_PORT=$(stack_free_port)
mkdir -p "$STACK_RUN_DIR/empty"
# The publisher daprd's app: answers 404 to /dapr/subscribe, so it subscribes to nothing.
stack_spawn pub-app python3 -m http.server "$PUB_APP_PORT" --bind 127.0.0.1 --directory "$STACK_RUN_DIR/empty"
stack_wait_until 20 "publisher app" curl -s -o /dev/null "http://127.0.0.1:$PUB_APP_PORT/" || fail "pub app"
stack_daprd_prepare pub bench-publisher "$PUB_APP_PORT"
DAPRD_RESOURCES_DIR="$(resources_for bench-publisher)" stack_daprd_launch pub || fail "publisher daprd"
PUB_HTTP=$(stack_daprd_port pub http)
log "publishing $N events through daprd (concurrency $PUB_CONC)"
PUB_OUT=$("$BT/release/bench-publish" "$PUB_HTTP" "$N" "$PUB_CONC") || fail "publish: $PUB_OUT"
log "$PUB_OUT"
stack_stop_daprd pub
stack_stop pub-app

# ------------------------------------------------------------------ one run
app_cmd() { # APP PORT -> the command line
  case "$1" in
    ours) echo "$BT/release/ours-app" ;;
    ours-stream) echo "env EVENTS_TRANSPORT=grpc-stream $BT/release/ours-app" ;;
    go-stream) echo "$BT/go-stream-app" ;;
    ours-batch) echo "$BT/release/ours-batch-app" ;;
    go-bulk) echo "$BT/go-bulk-app" ;;
    bare) echo "$BT/release/bare-app" ;;
    go) echo "$BT/go-app" ;;
    python) echo "$BT/venv/bin/uvicorn app:app --app-dir $HERE/python --host 127.0.0.1 --port $2 --workers 1 --no-access-log --log-level warning" ;;
  esac
}

# cpu_secs NAME: user+system CPU seconds used so far by the process NAME (stack_spawn'ed).
cpu_secs() {
  local pid; pid=$(stack_pid "$1") || { echo 0; return; }
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$pid/stat" 2>/dev/null || echo 0
}

count_json() { curl -sf --max-time 2 "http://127.0.0.1:$1/count"; }

RESULTS_TSV="$STACK_RUN_DIR/results.tsv"
: >"$RESULTS_TSV"

# run_one APP RUN: prints nothing; appends "APP RUN RATE COUNT SECS" to results.tsv.
run_one() {
  local app=$1 run=$2 id port start c j
  id="bench-$app-r$run-$RANDOM"
  port=$(stack_free_port)
  stack_daprd_prepare "$id" "$id" "$port"
  local dhttp dgrpc; dhttp=$(stack_daprd_port "$id" http); dgrpc=$(stack_daprd_port "$id" grpc)
  # shellcheck disable=SC2046
  APP_PORT=$port APP_ID=$id EVENTS_MODE=dapr DAPR_HTTP_PORT=$dhttp DAPR_GRPC_PORT=$dgrpc PYTHONWARNINGS=ignore \
    stack_spawn "app-$id" $(app_cmd "$app" "$port")
  STACK_WAIT_PROC="app-$id" stack_wait_until 60 "$app app" count_json "$port" || return 1
  DAPRD_RESOURCES_DIR="$(resources_for "$id")" stack_daprd_launch "$id" || return 1
  stack_wait_subscribed "$id" kafka-pubsub bench-events 60 || return 1
  start=$(date +%s)
  while :; do
    j=$(count_json "$port" || echo '{"count":0}')
    c=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["count"])' "$j")
    ((c >= N)) && break
    if (($(date +%s) - start > DEADLINE)); then
      log "$app run $run: only $c of $N handled after ${DEADLINE}s"
      break
    fi
    sleep 0.5
  done
  sleep 1 # let redeliveries, if any, show in the count
  j=$(count_json "$port" || echo '{"count":0,"first":0,"last":0}')
  local app_cpu daprd_cpu
  app_cpu=$(cpu_secs "app-$id"); daprd_cpu=$(cpu_secs "daprd-$id")
  python3 -c 'import json,sys
m = json.loads(sys.argv[1]); n = int(sys.argv[4])
secs = m["last"] - m["first"]
rate = (min(m["count"], n) - 1) / secs if m["count"] >= n and secs > 0 else 0
print(sys.argv[2], sys.argv[3], "%.0f" % rate, m["count"], "%.3f" % secs, sys.argv[5], sys.argv[6], sys.argv[7])' "$j" "$app" "$run" "$N" "$(cut -d' ' -f1 /proc/loadavg)" "$app_cpu" "$daprd_cpu" >>"$RESULTS_TSV"
  log "$(tail -n 1 "$RESULTS_TSV") (app run events/s count seconds load1 app_cpu_s daprd_cpu_s)"
  stack_stop_daprd "$id"
  stack_stop "app-$id"
}

for ((r = 1; r <= RUNS; r++)); do
  for app in $APPS; do
    run_one "$app" "$r" || { log "$app run $r failed"; echo "$app $r 0 0 0 - 0 0" >>"$RESULTS_TSV"; stack_logs_tail 20; }
  done
done

# ------------------------------------------------------------------ report
cp "$RESULTS_TSV" "$RAW"
python3 - "$RESULTS_TSV" "$REPORT" "$N" "$RUNS" "$APPS" "$PUB_OUT" <<'EOF'
import statistics, subprocess, sys, platform
tsv, out, n, runs, apps, pub = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split(), sys.argv[6]
rows = [l.split() for l in open(tsv) if l.strip()]
by = {a: [float(r[2]) for r in rows if r[0] == a] for a in apps}
med = {a: statistics.median(v) if v else 0 for a, v in by.items()}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
names = {"ours": "event-runtime (ours)", "ours-batch": "event-runtime batch handler (`Vec<T>`, bulk 100 / 100 ms)",
         "go-bulk": "Go bulk subscriber, net/http without the SDK (bulk 100 / 100 ms)", "python": "Dapr Python SDK + dapr-ext-fastapi (uvicorn, 1 worker)",
         "go": "Dapr Go SDK, service/http", "bare": "bare axum route (daprd ceiling)",
         "ours-stream": "event-runtime over a gRPC stream (`EVENTS_TRANSPORT=grpc-stream`)",
         "go-stream": "Dapr Go SDK, streaming subscription (`SubscribeWithHandler`)"}
ours = med.get("ours") or 0
lines = ["# End-to-end SDK comparison: Kafka -> daprd -> app", "",
         f"Machine: {nproc} cores ({cpu}), {platform.system()} {platform.release()}; Kafka 4.1.1 (1 KRaft node), "
         "daprd 1.16.5 (target/tools/bin/daprd), everything on 127.0.0.1.", "",
         f"N = {n} events on topic `bench-events` (12 partitions), published once up front ({pub}); "
         f"{runs} run(s) per app, interleaved; each run a fresh consumer group from `oldest`.",
         "Rate = (N-1) / (time of last delivery - time of first delivery), measured inside the app.", "",
         "CPU columns: user+system CPU seconds per 10,000 events (median over runs), of the app process and of",
         "its daprd, each from process start to the end of the run (startup included).", "",
         "| app | events/s (median) | runs (events/s) | ratio to ours | app CPU s/10k | daprd CPU s/10k |",
         "|---|---:|---|---:|---:|---:|"]
for a in apps:
    ratio = f"{med[a] / ours:.2f}" if ours else "n/a"
    acpu = statistics.median([float(r[6]) for r in rows if r[0] == a] or [0]) * 10000 / n
    dcpu = statistics.median([float(r[7]) for r in rows if r[0] == a] or [0]) * 10000 / n
    lines.append(f"| {names.get(a, a)} | {med[a]:.0f} | {', '.join('%.0f' % x for x in by[a])} | {ratio} | {acpu:.2f} | {dcpu:.2f} |")
import os
cav = os.path.join(os.path.dirname(out), "caveats.md")
extra = open(cav).read() if os.path.exists(cav) else ""
open(out, "w").write("\n".join(lines) + "\n\n" + extra)
print("\n".join(lines))
EOF
log "written $REPORT (table + caveats.md)"
