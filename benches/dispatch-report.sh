#!/usr/bin/env bash
# The dispatch benchmark's medians as a table, each as a ratio to the hand-written axum handler.
# Reads the last `cargo bench -p event-bench --bench dispatch` run (criterion's estimates.json).
#
#   cargo bench -p event-bench --bench dispatch -- --warm-up-time 1 --measurement-time 3
#   benches/dispatch-report.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}/criterion/dispatch
python3 - "$DIR" <<'PY'
import json, os, re, sys
d = sys.argv[1]
def est(name):
    e = json.load(open(os.path.join(d, name, "new", "estimates.json")))
    m = e["median"]
    return m["point_estimate"], m["confidence_interval"]["lower_bound"], m["confidence_interval"]["upper_bound"]
natural = lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]
names = sorted((n for n in os.listdir(d) if os.path.exists(os.path.join(d, n, "new", "estimates.json"))), key=natural)
order = ["axum_baseline"] + [n for n in names if n != "axum_baseline"]
base = est("axum_baseline")[0]
print("| variant | median µs | 95% CI of median µs | ratio to axum_baseline |")
print("|---|---|---|---|")
for n in order:
    m, lo, hi = est(n)
    print(f"| {n} | {m/1e3:.2f} | {lo/1e3:.2f} – {hi/1e3:.2f} | {m/base:.2f}x |")
PY
