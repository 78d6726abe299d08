#!/usr/bin/env bash
# Ready for crates.io: the publishable crates package and build on their own, their docs build
# with warnings denied, their examples run, and the README's Quick start works for a new user who
# depends on `event-runtime = "0.1"` (resolved to the packaged crates, as crates.io would serve
# them, through `[patch.crates-io]`).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

TARGET_DIR=$(cargo metadata -q --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
VERSION=$(cargo metadata -q --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "event-runtime"))')

TMP=$(mktemp -d)
PID=
cleanup() {
  if [[ -n $PID ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

step "cargo package: event-macros and event-runtime, each verified by a build from its .crate"
# A dirty tree is allowed so that the script also runs on a working copy; CI runs it on a clean clone.
cargo package -p event-macros -p event-runtime --allow-dirty
for crate in event-macros event-runtime; do
  [[ -f "$TARGET_DIR/package/$crate-$VERSION.crate" ]] || fail "no $crate-$VERSION.crate"
  listed=$(cargo package --list -p "$crate" --allow-dirty)
  for file in README.md LICENSE-MIT LICENSE-APACHE CHANGELOG.md; do
    grep -qx "$file" <<<"$listed" || fail "$crate's package lacks $file"
  done
done

step "docs with warnings denied (all features, as docs.rs builds them)"
RUSTDOCFLAGS="-D warnings" cargo doc -q -p event-macros -p event-runtime --no-deps --all-features

step "examples run"
# Built first, then run under a deadline: an example that hangs fails the check, saying which.
cargo build -q -p event-runtime --features cli --examples
example() {
  local name=$1 rc=0; shift
  RUST_LOG=${RUST_LOG:-info} timeout 120 "$TARGET_DIR/debug/examples/$name" "$@" 2>"$TMP/$name.log" || rc=$?
  if ((rc)); then
    tail -n 40 "$TMP/$name.log" >&2
    fail "the $name example failed or hung (exit $rc)"
  fi
}
out=$(example quickstart)
grep -q "task 7 of u1 completed" <<<"$out" || fail "the quickstart example did not handle its event: $out"
out=$(example cli subscriptions)
python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s[0]["topic"] == "reminders", s' "$out" \
  || fail "the cli example's subscriptions: $out"
example cli schemas check --help | grep -q -- "--snapshot" \
  || fail "the cli example's schemas check --help"

step "the README's Quick start, as a new crate depending on event-runtime = \"0.1\""
USER_CRATE="$TMP/quickstart"
mkdir -p "$USER_CRATE/src"
python3 - README.md "$USER_CRATE" "$TARGET_DIR/package" "$VERSION" <<'PY'
import pathlib, re, sys
readme, crate, packages, version = sys.argv[1:]
text = pathlib.Path(readme).read_text()
section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
code = re.search(r"```rust[^\n]*\n(.*?)```", section, re.S).group(1)
dep = re.search(r'^event-runtime = "([^"]+)"$', toml, re.M)
assert dep, "the Quick start must depend on a version of event-runtime, not a path:\n" + toml
crate = pathlib.Path(crate)
(crate / "Cargo.toml").write_text(
    '[package]\nname = "quickstart"\nversion = "0.0.0"\nedition = "2021"\npublish = false\n\n'
    + toml
    + "\n[patch.crates-io]\n"
    + f'event-runtime = {{ path = "{packages}/event-runtime-{version}" }}\n'
    + f'event-macros = {{ path = "{packages}/event-macros-{version}" }}\n'
    + "\n[workspace]\n"
)
(crate / "src" / "main.rs").write_text(code)
PY
# Its own target directory, cached between runs: a new user's build, not the workspace's.
CARGO_TARGET_DIR="$TARGET_DIR/quickstart-user" cargo build -q --manifest-path "$USER_CRATE/Cargo.toml"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
APP_PORT=$PORT "$TARGET_DIR/quickstart-user/debug/quickstart" >"$TMP/quickstart.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  subs=$(curl -sf "http://127.0.0.1:$PORT/dapr/subscribe" 2>/dev/null) && break
  kill -0 "$PID" 2>/dev/null || fail "the Quick start exited: $(cat "$TMP/quickstart.log")"
  sleep 0.1
done
python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s[0]["topic"] == "task-events", s' "${subs:-null}" \
  || fail "the Quick start's /dapr/subscribe: ${subs:-no answer}"
echo "package check passed"
