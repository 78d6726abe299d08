#!/usr/bin/env bash
# Instructions per delivery under callgrind: a count that does not move with the load of a shared
# machine, so the ratios hold where wall-clock timings are noisy. Each mode runs twice (N1 and N2
# deliveries); (Ir(N2) - Ir(N1)) / (N2 - N1) removes start-up and router construction. The runs
# are far apart (1,000 and 11,000), because what does not scale with them (glibc's heap state,
# hash seeds) still differs between two runs by some hundred thousand instructions. Building
# each request (the `setup` modes: the same requests, built and dropped) is then subtracted too,
# so the ratio compares the work behind the route only.
# Then the top inclusive costs of the framework's path (callgrind_annotate).
#
# Modes without a prefix send what daprd sends now (the rawPayload wrapper, to the topic's default
# route, with the Kafka headers); `ce-` modes what it sent before (the plain CloudEvent, to the
# handler's own route). Each is compared with the hand-written handler of its form (`baseline`,
# `ce-baseline`), which must run before it.
#
#   benches/profile.sh                       # the default modes
#   MODES="baseline framework ce-baseline ce-framework" benches/profile.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
MODES=${MODES:-baseline framework framework-10 framework-100 idempotent topic-1 topic-10 topic-100 ce-baseline ce-framework ce-framework-10 ce-framework-100}
N1=${N1:-1000}
N2=${N2:-11000}
OUT=$CARGO_TARGET_DIR/prof
mkdir -p "$OUT"

cargo build --release --quiet -p event-bench --bin dispatch-profile
BIN=$CARGO_TARGET_DIR/release/dispatch-profile

ir() {
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1.$2" "$BIN" "$1" "$2" 2>&1 \
    | sed -n 's/.*Collected : //p'
}

per_delivery() {
  local a b
  a=$(ir "$1" "$N1")
  b=$(ir "$1" "$N2")
  echo $(((b - a) / (N2 - N1)))
}

setup_raw=$(per_delivery setup)
setup_ce=$(per_delivery ce-setup)
echo "Building a request: $setup_raw instructions (rawPayload wrapper and headers), $setup_ce (plain CloudEvent)."
echo
echo "| mode | instructions per delivery | without building the request | ratio to its form's baseline |"
echo "|---|---|---|---|"
base_raw=
base_ce=
for mode in $MODES; do
  per=$(per_delivery "$mode")
  if [[ $mode == ce-* ]]; then net=$((per - setup_ce)); else net=$((per - setup_raw)); fi
  case $mode in
    baseline) base_raw=$net ;;
    ce-baseline) base_ce=$net ;;
  esac
  if [[ $mode == ce-* ]]; then base=$base_ce; else base=$base_raw; fi
  if [[ -n $base ]]; then
    echo "| $mode | $per | $net | $(echo "scale=3; $net / $base" | bc -l)x |"
  else
    echo "| $mode | $per | $net | |"
  fi
done

if [[ -f $OUT/cg.framework.$N2 ]]; then
  echo
  echo "Top inclusive costs, framework (rawPayload wrapper), $N2 deliveries (callgrind_annotate):"
  callgrind_annotate --inclusive=yes "$OUT/cg.framework.$N2" 2>/dev/null \
    | grep -E 'event_runtime|event_bench|serde_json::de::from|base64|BTreeMap.*insert|malloc.c:(malloc|free)' \
    | head -25 | sed -E 's/ \[[^]]*\]$//'
fi
