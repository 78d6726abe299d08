#!/usr/bin/env bash
# The dispatch benchmark's medians as a table, each as a ratio to the hand-written axum handler
# of its form (`raw_*` to `raw_axum_baseline`, `ce_*` to `ce_axum_baseline`).
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
print("| variant | median µs | 95% CI of median µs | ratio to its form's axum_baseline |")
print("|---|---|---|---|")
for form in ("raw", "ce"):
    baseline = f"{form}_axum_baseline"
    ours = [n for n in names if n.startswith(form + "_") and n != baseline]
    if baseline not in names:
        continue
    base = est(baseline)[0]
    for n in [baseline] + ours:
        m, lo, hi = est(n)
        print(f"| {n} | {m/1e3:.2f} | {lo/1e3:.2f} – {hi/1e3:.2f} | {m/base:.2f}x |")
PY
