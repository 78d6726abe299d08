#!/usr/bin/env bash
# Instructions per delivery under callgrind: a count that does not move with the load of a shared
# machine, so the ratios hold where wall-clock timings are noisy. Each mode runs twice (N1 and N2
# deliveries); (Ir(N2) - Ir(N1)) / (N2 - N1) removes start-up and router construction.
# Then the top inclusive costs of the framework's path (callgrind_annotate).
#
#   benches/profile.sh                       # every mode
#   MODES="baseline framework" benches/profile.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
MODES=${MODES:-baseline framework framework-10 framework-100 idempotent topic-1 topic-10 topic-100}
N1=${N1:-1000}
N2=${N2:-3000}
OUT=$CARGO_TARGET_DIR/prof
mkdir -p "$OUT"

cargo build --release --quiet -p event-bench --bin dispatch-profile
BIN=$CARGO_TARGET_DIR/release/dispatch-profile

ir() {
  valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.$1.$2" "$BIN" "$1" "$2" 2>&1 \
    | sed -n 's/.*Collected : //p'
}

echo "| mode | instructions per delivery | ratio to baseline |"
echo "|---|---|---|"
base=
for mode in $MODES; do
  a=$(ir "$mode" "$N1")
  b=$(ir "$mode" "$N2")
  per=$(((b - a) / (N2 - N1)))
  [[ $mode == baseline ]] && base=$per
  if [[ -n $base ]]; then
    echo "| $mode | $per | $(echo "scale=2; $per / $base" | bc -l)x |"
  else
    echo "| $mode | $per | |"
  fi
done

if [[ -f $OUT/cg.framework.$N2 ]]; then
  echo
  echo "Top inclusive costs, framework, $N2 deliveries (callgrind_annotate):"
  callgrind_annotate --inclusive=yes "$OUT/cg.framework.$N2" 2>/dev/null \
    | grep -E 'event_runtime|event_bench|serde_json::de::from|BTreeMap.*insert|malloc.c:(malloc|free)' \
    | head -25 | sed -E 's/ \[[^]]*\]$//'
fi
