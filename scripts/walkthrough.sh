#!/usr/bin/env bash
# The README walkthrough as a test: every command in the ```sh blocks of README.md,
# example-todo/README.md and the manual (event-runtime/docs/*.md) runs, in order, against a
# running example-todo (the built binary on a free loopback port, embedded broker, a fresh SQLite
# database per file), and its output is
# checked. The commands are read from the READMEs, so editing a README changes what runs; a
# command that cannot run here must be on the allow-list below (SKIP), with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."

READMES=(README.md example-todo/README.md event-runtime/docs/*.md)
POLL_SECS=30 # how long a check that waits for an asynchronous handler may poll

# The caller's environment must not change the walkthrough's service (tokens, Dapr mode).
unset ADMIN_API_TOKEN APP_API_TOKEN DAPR_HTTP_PORT DAPR_HTTP_ENDPOINT DAPR_API_TOKEN EVENTS_MODE TODO_URL

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAIL: %s\n' "$*" >&2; exit 1; }

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

START=$SECONDS
step "build example-todo"
cargo build -q -p example-todo
TARGET_DIR=$(cargo metadata -q --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET_DIR/debug/example-todo"
[[ -x $BIN ]] || fail "no binary at $BIN"

step "cargo-expand, for the README's \`cargo expand\` (scripts/provision.sh, cached in target/tools/bin)"
scripts/provision.sh --only-cargo-expand
export PATH="$PWD/target/tools/bin:$PATH"
command -v cargo-expand >/dev/null || fail "no cargo-expand in target/tools/bin after scripts/provision.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_instance NAME [VAR=value...]: a fresh example-todo (own port, own database); sets PORT.
start_instance() {
  local name=$1; shift
  PORT=$(free_port)
  mkdir -p "$TMP/$name"
  env "$@" APP_PORT="$PORT" EVENTS_MODE=embedded DATABASE_URL="sqlite://$TMP/$name/todo.db" \
    RUST_LOG=warn "$BIN" >"$TMP/$name/log" 2>&1 </dev/null &
  PIDS+=($!)
  local pid=$! deadline=$((SECONDS + 60))
  until curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$TMP/$name/log" >&2; fail "instance $name exited at start"; }
    ((SECONDS < deadline)) || { cat "$TMP/$name/log" >&2; fail "instance $name: no /healthz in 60 s"; }
    sleep 0.1
  done
  echo "    instance $name: http://127.0.0.1:$PORT ($*)"
}

# What cannot or should not run here. The reason is printed when a command is skipped; a
# command that is neither here nor runnable fails the walkthrough.
skip_reason() {
  case "$1" in
    "cargo run -p example-todo") echo "starts the service: the walkthrough runs its own instance (the built binary, a fresh SQLite database)" ;;
    "scripts/test.sh") echo "that is CI itself (this walkthrough is one of its steps)" ;;
    "scripts/e2e.sh" | "cargo test --workspace") echo "run by scripts/test.sh" ;;
    "cargo test -p example-todo") echo "run by scripts/test.sh (cargo test --workspace)" ;;
    "cargo install --locked cargo-expand") echo "installs into ~/.cargo: the walkthrough uses the pinned copy scripts/provision.sh --only-cargo-expand installs into target/tools/bin" ;;
    "example-todo/scripts/postgres-test.sh" | "scripts/browser-test.sh") echo "a step of scripts/test.sh" ;;
    "dapr run "*) echo "no Dapr CLI here; scripts/e2e.sh runs the equivalent daprd command" ;;
    "daprd "*) echo "needs daprd, Kafka and Redis: scripts/e2e.sh runs this setup" ;;
    "EVENTS_MODE=dapr "*) echo "needs the daprd sidecar of the line above: scripts/e2e.sh runs this setup" ;;
    *) return 1 ;;
  esac
}

# The extractor: one record per command (line continuations joined), NUL-terminated, fields
# separated by \x1f: file, block's line, command's line, command as written, command without
# its trailing comment (normalised whitespace, for matching), the trailing comment.
mapfile -d '' RECORDS < <(python3 - "${READMES[@]}" <<'PY'
import sys

def split_comment(cmd):
    """(command, comment): a `#` after whitespace, outside quotes, starts a comment."""
    quote, i = None, 0
    while i < len(cmd):
        c = cmd[i]
        if quote:
            if c == quote: quote = None
            elif c == '\\' and quote == '"': i += 1
        elif c in "'\"": quote = c
        elif c == '\\': i += 1
        elif c == '#' and (i == 0 or cmd[i - 1].isspace()):
            return cmd[:i], cmd[i + 1:].strip()
        i += 1
    return cmd, ""

for path in sys.argv[1:]:
    block, cur, start = None, None, 0
    for n, line in enumerate(open(path, encoding="utf-8").read().split("\n"), 1):
        if block is None:
            if line.strip() == "```sh": block = n
            continue
        if line.strip() == "```":
            if cur is not None: sys.exit(f"{path}:{start}: a `\\` continuation runs past the block's end")
            block = None
            continue
        if cur is None:
            if not line.strip(): continue
            cur, start = line, n
        else:
            cur += "\n" + line
        if line.endswith("\\"): continue
        # Join the continuations, then split the comment of the last line off.
        joined = " ".join(part.rstrip("\\").strip() for part in cur.split("\n"))
        bare, comment = split_comment(joined)
        bare = " ".join(bare.split())
        sys.stdout.write("\x1f".join([path, str(block), str(start), cur, bare, comment]) + "\0")
        cur = None
    if block is not None: sys.exit(f"{path}:{block}: unterminated ```sh block")
PY
)
((${#RECORDS[@]} > 0)) || fail "no commands found in ${READMES[*]}"

# Every curl a README command runs also writes its HTTP status (a .curlrc of our own), so a
# 4xx/5xx answer fails even though the README's curl has no -f.
mkdir -p "$TMP/curl"
printf 'write-out = "\\n@@HTTP %%{http_code}\\n"\n' >"$TMP/curl/.curlrc"

# json_check NAME < body: the output checks that need JSON (python3; jq is not assumed).
json_check() {
  python3 -c '
import json, sys
name, arg = sys.argv[1], sys.argv[2]
try:
    v = json.loads(sys.stdin.read())
except ValueError as e:
    sys.exit(f"not JSON: {e}")
def need(ok, msg):
    if not ok: sys.exit(msg)
if name == "task":
    need(isinstance(v, dict) and isinstance(v.get("id"), int), "no task id in the answer")
    if arg: need(v["id"] == int(arg), "the task id is %s, the README assumes %s" % (v["id"], arg))
elif name == "recurs_from":
    need(isinstance(v, list) and any(t.get("recurs_from") is not None for t in v), "no task with recurs_from: the next occurrence is missing")
elif name == "nonempty_list":
    need(isinstance(v, list) and v, "an empty list")
elif name == "contains":
    need(arg in json.dumps(v, ensure_ascii=False), f"does not contain {arg!r}")
elif name == "empty_list":
    need(v == [], "not []")
elif name == "json":
    pass
else:
    sys.exit(f"unknown check {name}")
' "$1" "${2:-}"
}

# check NORM COMMENT OUT: the output of one command, as the README claims it. Prints why not.
check() {
  local norm=$1 comment=$2 out=$3 body status
  body=$(grep -v '^@@HTTP ' <<<"$out" || true)
  if [[ $norm == curl* ]]; then
    status=$(grep '^@@HTTP ' <<<"$out" | tail -n1 | cut -d' ' -f2)
    [[ -n $status ]] || { echo "curl got no HTTP answer"; return 1; }
    [[ $status == 2?? ]] || { echo "HTTP $status: $body"; return 1; }
    if [[ -z ${body//[[:space:]]/} ]]; then
      [[ $status == 204 ]] || { echo "empty answer (HTTP $status)"; return 1; }
      return 0
    fi
    grep -q '^[[:space:]]*{[[:space:]]*"error"' <<<"$body" && { echo "an error body: $body"; return 1; }
  fi
  case "$norm" in
    *"-XPOST "*"/tasks -H"*"call mum"*) json_check task <<<"$body" ;;
    *"-XPOST "*"/tasks -H"*"fail: audit me"*) json_check task 4 <<<"$body" ;; # the README's PUT /tasks/4
    *"-XPOST "*"/tasks -H"*) json_check task 1 <<<"$body" ;; # the README's /tasks/1/complete
    *"-XPOST "*"/tasks/"*"/complete") json_check contains '"completed": true' <<<"$body" ;;
    *"/tasks?user_id=u1'") json_check recurs_from <<<"$body" ;;
    *"-XPUT "*) json_check contains "$(sed -n 's/.*"title":"\([^"]*\)".*/\1/p' <<<"$norm")" <<<"$body" ;;
    *"/notifications?user_id=u1'") json_check contains "Reminder: call mum" <<<"$body" ;;
    *"/dlq?pending=true'") json_check empty_list <<<"$body" ;;
    *"/dlq -H"*) json_check json <<<"$body" ;;
    *"/dlq") json_check contains "fail: audit me" <<<"$body" ;;
    *"/audit")
      if [[ $comment == *"task.created of task 4"* ]]; then
        python3 -c 'import json,sys; v=json.load(sys.stdin); sys.exit(0 if any(e.get("event_type")=="task.created" and e.get("task_id")==4 for e in v) else "no task.created of task 4 in the audit log")' <<<"$body"
      else json_check nonempty_list <<<"$body"; fi ;;
    *"/dapr/subscribe") json_check nonempty_list <<<"$body" ;;
    *" subscriptions" | *" asyncapi") json_check json <<<"$body" ;;
    *" manifests") grep -q 'kind: Subscription' <<<"$body" || { echo "no Subscription manifest"; return 1; } ;;
    "cargo expand -p example-todo --lib handlers")
      # Every handler of example-todo/src/handlers.rs, as written, with the adapter and the
      # registration the macro adds beside it.
      local h
      for h in audit_log on_task_completed on_reminder_due on_task_sync on_dead_letter; do
        grep -q "pub async fn $h(" <<<"$body" || { echo "no handler $h"; return 1; }
        grep -q "fn __event_handler_$h(" <<<"$body" || { echo "no adapter __event_handler_$h"; return 1; }
        grep -q "__event_handler_$h,\$" <<<"$body" || { echo "$h: its adapter is not registered"; return 1; }
      done
      (($(grep -c 'HandlerDef::new(' <<<"$body") >= 5)) || { echo "fewer than 5 HandlerDef registrations"; return 1; } ;;
    *"dlq replay"*)
      # The README's own claim, when its comment states the summary.
      if [[ $comment =~ (matched\ [0-9]+,\ replayed\ [0-9]+,\ failed\ [0-9]+) ]]; then
        grep -qF "${BASH_REMATCH[1]}" <<<"$body" || { echo "not \"${BASH_REMATCH[1]}\""; return 1; }
      fi ;;
  esac
}

# A command may be polled (rerun until its check passes) when rerunning it changes nothing:
# GETs, and a replay (which replays nothing once nothing is pending).
pollable() { [[ $1 == curl* && $1 != *-X* ]] || [[ $1 == *"dlq replay"* ]]; }

ran=0 skipped=0 file="" block="" next_poll=$POLL_SECS
for rec in "${RECORDS[@]}"; do
  IFS=$'\x1f' read -r -d '' f blk line raw norm comment < <(printf '%s\0' "$rec") || true
  where="$f:$line"
  if [[ $f != "$file" ]]; then
    file=$f block=""
    step "$f (a fresh instance, a fresh database)"
    start_instance "main-${f//\//-}"
    MAIN_PORT=$PORT
  fi
  if [[ $blk != "$block" ]]; then
    block=$blk PORT=$MAIN_PORT
    printf '\n--- %s:%s\n' "$f" "$blk"
  fi
  [[ -n $norm ]] || continue # a comment line
  if reason=$(skip_reason "$norm"); then
    printf 'SKIP %s: %s\n     (%s)\n' "$where" "$norm" "$reason"
    skipped=$((skipped + 1)); continue
  fi
  if [[ $norm =~ ^ADMIN_API_TOKEN=([^ ]+)\ cargo\ run\ -p\ example-todo$ ]]; then
    echo "HANDLED $where: $norm"
    echo "     (a second instance with ADMIN_API_TOKEN=${BASH_REMATCH[1]}; the rest of this block runs against it)"
    start_instance "admin-$line" ADMIN_API_TOKEN="${BASH_REMATCH[1]}"
    # The token is really required: without it the ops route answers 401.
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/dlq")
    [[ $code == 401 ]] || fail "$where: GET /dlq without the token answered $code, not 401"
    continue
  fi
  if [[ $norm =~ ^sleep\ ([0-9]+)$ ]]; then
    echo "POLL $where: $norm  (instead: the next command is polled, up to $((2 * BASH_REMATCH[1] + 10)) s, until its check passes)"
    next_poll=$((2 * BASH_REMATCH[1] + 10))
    continue
  fi
  cmd=${raw//localhost:8080/127.0.0.1:$PORT}
  cmd=${cmd//cargo run -q -p example-todo --/$BIN}
  cmd=${cmd//cargo run -p example-todo --/$BIN}
  [[ $cmd != *"cargo run"* ]] || fail "$where: a \`cargo run\` the walkthrough cannot map to the built binary: $norm
  (handle it in scripts/walkthrough.sh: map it, or add it to the allow-list with a reason)"
  echo "RUN  $where: $norm"
  deadline=$((SECONDS + next_poll)) next_poll=$POLL_SECS
  limit=120
  [[ $norm != "cargo expand "* ]] || limit=900 # checks every dependency on a cold target
  while :; do
    rc=0
    out=$(env TODO_URL="http://127.0.0.1:$PORT" CURL_HOME="$TMP/curl" \
      timeout "$limit" bash -c "$cmd" </dev/null 2>&1) || rc=$?
    if ((rc != 0)); then why="exit status $rc"; else why=$(check "$norm" "$comment" "$out" 2>&1) && break; fi
    if ((rc == 0)) && pollable "$norm" && ((SECONDS < deadline)); then sleep 0.2; continue; fi
    printf '%s\n' "$out" | sed 's/^/     | /' >&2
    fail "$where: \`$norm\`${comment:+  # $comment}
  $why"
  done
  printf '%s\n' "$out" | grep -v '^@@HTTP ' | sed -n '1,5p' | cut -c1-160 | sed 's/^/     | /'
  ran=$((ran + 1))
done

step "walkthrough passed: $ran commands ran and passed their checks, $skipped skipped, in $((SECONDS - START)) s"
