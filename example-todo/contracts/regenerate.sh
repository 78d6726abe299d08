#!/usr/bin/env bash
# The example's event contracts, regenerated from the producer's Pydantic models (models.py).
#
#   example-todo/contracts/regenerate.sh          check: fail if a committed schema differs
#   example-todo/contracts/regenerate.sh --write  update the committed schemas
#
# 1. A venv under target/tools/ (not committed) with a pinned pydantic v2 from PyPI.
# 2. Each model's model_json_schema() -> example-todo/contracts/*.schema.json, and the same
#    files under tests/ui/contracts/pydantic/ for the trybuild cases.
# 3. The drift case: models.py with `task_id` removed from TaskEvent, exported to
#    tests/ui/contracts/drift/task-event.schema.json, the contract of the trybuild case
#    tests/ui/derive_event/fail/contract_drift_removed_field.rs (a Rust type requiring `task_id` must fail
#    to compile, pointing at `task_id`).
# 4. `cargo check -p example-todo`: the example's types compile against these contracts
#    (skip with CONTRACTS_NO_CARGO=1).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYDANTIC_VERSION=2.10.6
here=example-todo/contracts
drift_fixture=tests/ui/contracts/drift/task-event.schema.json
venv="target/tools/pydantic-$PYDANTIC_VERSION"
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ beside models.py

write=0
case "${1:-}" in
  --write) write=1 ;;
  "") ;;
  *) echo "usage: $0 [--write]" >&2; exit 2 ;;
esac

if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "pydantic==$PYDANTIC_VERSION"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$venv/bin/python" "$here/export.py" "$tmp/schemas"

# The producer drops a field: TaskEvent without `task_id` (the first `task_id: int`, TaskEvent's).
mkdir -p "$tmp/drift-models"
awk '!done && /^    task_id: int$/ { done = 1; next } { print }' "$here/models.py" >"$tmp/drift-models/models.py"
"$venv/bin/python" "$here/export.py" "$tmp/drift" "$tmp/drift-models"

status=0
compare() { # generated committed
  if [[ $write == 1 ]]; then
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2"
  elif ! diff -u "$2" "$1"; then
    echo "$2 differs from what pydantic $PYDANTIC_VERSION exports from models.py; run $here/regenerate.sh --write" >&2
    status=1
  fi
}
for generated in "$tmp"/schemas/*.schema.json; do
  compare "$generated" "$here/$(basename "$generated")"
  compare "$generated" "tests/ui/contracts/pydantic/$(basename "$generated")"
done
compare "$tmp/drift/task-event.schema.json" "$drift_fixture"
[[ $status == 0 ]] || exit "$status"

if [[ ${CONTRACTS_NO_CARGO:-0} != 1 ]]; then
  cargo check --quiet -p example-todo
fi
echo "contracts: up to date with models.py (pydantic $PYDANTIC_VERSION)"
