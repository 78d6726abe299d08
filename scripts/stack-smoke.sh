#!/usr/bin/env bash
# Smoke test of the end-to-end stack: provision, start Kafka + Redis + one
# daprd with a tiny inline Python app, publish through daprd and see the app
# receive it, exercise the state API (redis "statestore" and an extra
# in-memory "memstore"), and check GET /v1.0/metadata lists the subscription.
# Exits non-zero (printing the logs' tails) on any failure.
#
# Usage: scripts/stack-smoke.sh      (STACK_KEEP_RUN_DIR=1 keeps the run dir)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
T0=$(date +%s.%N)
elapsed() { awk -v s="$T0" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1fs", e-s}'; }

"$REPO_ROOT/scripts/provision.sh"

# shellcheck source=stack.sh disable=SC1091
source "$REPO_ROOT/scripts/stack.sh"
stack_init

fail() {
  echo "SMOKE FAIL: $*" >&2
  stack_logs_tail 80
  exit 1
}
pass() { echo "ok - $*"; }

stack_start_kafka task-events:12 || fail "kafka"
stack_start_redis || fail "redis"
stack_write_components redis || fail "components"
# An extra store, to compare first-write semantics of state.in-memory.
cat >"$DAPR_RESOURCES_DIR/memstore.yaml" <<'EOF'
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: memstore
spec:
  type: state.in-memory
  version: v1
  metadata: []
EOF

# ------------------------------------------------------------------ the app
APP="$STACK_RUN_DIR/smoke_app.py"
DELIVERIES="$STACK_RUN_DIR/deliveries.jsonl"
cat >"$APP" <<'EOF'
import json, os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OUT = sys.argv[2]
SUBS = [{"pubsubname": "kafka-pubsub", "topic": "task-events", "route": "/events"}]

class H(BaseHTTPRequestHandler):
    def _send(self, code, obj=None):
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(code)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.log_message("GET %s", self.path)
        if self.path == "/dapr/subscribe":
            self._send(200, SUBS)
        elif self.path == "/healthz":
            self._send(200, {})
        else:
            self._send(404, {})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        if self.path == "/events":
            rec = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": json.loads(raw or b"null")}
            with open(OUT, "a") as f:
                f.write(json.dumps(rec) + "\n")
            self._send(200, {"status": "SUCCESS"})
        else:
            self._send(404, {})

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF

APP_PORT="$(stack_free_port)"
stack_daprd_prepare smoke smoke-app "$APP_PORT"
stack_spawn app python3 -u "$APP" "$APP_PORT" "$DELIVERIES"
STACK_WAIT_PROC=app stack_wait_until 20 "app on 127.0.0.1:$APP_PORT" \
  curl -sf "http://127.0.0.1:$APP_PORT/healthz" || fail "app did not start"

T_DAPRD=$(date +%s.%N)
stack_daprd_launch smoke || fail "daprd did not become ready"
echo "daprd ready $(awk -v s="$T_DAPRD" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1fs", e-s}') after launch"
DAPR="http://127.0.0.1:$DAPR_HTTP_PORT"

# ------------------------------------------------------------- subscription
stack_wait_subscribed smoke kafka-pubsub task-events 60 || fail "no subscription in /v1.0/metadata"
curl -sf "$DAPR/v1.0/metadata" | python3 -c '
import json, sys
m = json.load(sys.stdin)
print("metadata: id=%s runtimeVersion=%s" % (m.get("id"), m.get("runtimeVersion")))
print("  components:", sorted((c["name"], c["type"]) for c in m.get("components", [])))
for s in m.get("subscriptions", []):
    print("  subscription:", json.dumps(s))
' || fail "metadata"
grep -c '"GET /dapr/subscribe ' "$STACK_RUN_DIR/logs/app.log" | sed 's/^/GET \/dapr\/subscribe calls so far: /'
pass "subscription listed in /v1.0/metadata"

# ------------------------------------------------------------------ publish
code="$(curl -s -o "$STACK_RUN_DIR/publish.out" -w '%{http_code}' -X POST \
  -H 'Content-Type: application/json' -d '{"taskId":"t-1","n":1}' \
  "$DAPR/v1.0/publish/kafka-pubsub/task-events?metadata.partitionKey=user-1")"
[[ "$code" == 204 ]] || fail "publish answered $code: $(cat "$STACK_RUN_DIR/publish.out")"
pass "publish -> 204"

stack_wait_until 60 "delivery of t-1 to the app" \
  grep -q '"taskId": "t-1"' "$DELIVERIES" || fail "the app did not receive the event"
python3 - "$DELIVERIES" <<'EOF' || fail "delivery has unexpected shape"
import json, sys
rec = [json.loads(l) for l in open(sys.argv[1])][0]
b, h = rec["body"], rec["headers"]
print("delivery headers:", {k: v for k, v in sorted(h.items()) if k.startswith("__") or k in ("content-type", "pubsubname", "partitionkey", "traceparent")})
print("delivery body:", json.dumps(b))
assert h.get("content-type", "").startswith("application/cloudevents+json"), h.get("content-type")
assert b["data"] == {"taskId": "t-1", "n": 1}, b["data"]
assert b["datacontenttype"] == "application/json", b["datacontenttype"]
assert b["topic"] == "task-events" and b["pubsubname"] == "kafka-pubsub"
assert h.get("__key") == "user-1", h.get("__key")
EOF
pass "app received the CloudEvent (data parsed, __key=user-1)"

# -------------------------------------------------------------------- state
# http CODE of a state save; body $1 to store $2
save() { curl -s -o "$STACK_RUN_DIR/save.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  -d "$2" "$DAPR/v1.0/state/$1"; }
etag_of() { curl -s -D - -o /dev/null "$DAPR/v1.0/state/$1/$2" | awk -F': ' 'tolower($1)=="etag"{gsub("\r","",$2); print $2}'; }

declare -A FW
for store in statestore memstore; do
  c="$(save "$store" '[{"key":"k1","value":{"v":1}}]')"
  [[ "$c" == 204 ]] || fail "$store save answered $c: $(cat "$STACK_RUN_DIR/save.out")"
  got="$(curl -sf "$DAPR/v1.0/state/$store/k1")" || fail "$store get"
  [[ "$got" == '{"v":1}' ]] || fail "$store get returned $got"
  e1="$(etag_of "$store" k1)"
  absent="$(curl -s -o /dev/null -w '%{http_code}' "$DAPR/v1.0/state/$store/nope")"
  [[ "$absent" == 204 ]] || fail "$store get of an absent key answered $absent"
  pass "$store: save 204, get back, ETag=$e1, absent key 204"

  # first-write, no ETag, key exists (written with last-write)
  FW[$store.lw_noetag]="$(save "$store" '[{"key":"k1","value":{"v":2},"options":{"concurrency":"first-write"}}]') $(cat "$STACK_RUN_DIR/save.out") -> now $(curl -s "$DAPR/v1.0/state/$store/k1")"
  # first-write with a wrong ETag
  FW[$store.badetag]="$(save "$store" '[{"key":"k1","value":{"v":3},"etag":"999999","options":{"concurrency":"first-write"}}]') $(cat "$STACK_RUN_DIR/save.out") -> now $(curl -s "$DAPR/v1.0/state/$store/k1")"
  # first-write with the current ETag
  e2="$(etag_of "$store" k1)"
  FW[$store.goodetag]="$(save "$store" "[{\"key\":\"k1\",\"value\":{\"v\":4},\"etag\":\"$e2\",\"options\":{\"concurrency\":\"first-write\"}}]") $(cat "$STACK_RUN_DIR/save.out") -> now $(curl -s "$DAPR/v1.0/state/$store/k1") etag $e2 -> $(etag_of "$store" k1)"
  # first-write, no ETag, absent key; then again on the key it created
  FW[$store.new]="$(save "$store" '[{"key":"k2","value":{"v":1},"options":{"concurrency":"first-write"}}]') $(cat "$STACK_RUN_DIR/save.out")"
  FW[$store.fw_noetag]="$(save "$store" '[{"key":"k2","value":{"v":2},"options":{"concurrency":"first-write"}}]') $(cat "$STACK_RUN_DIR/save.out") -> now $(curl -s "$DAPR/v1.0/state/$store/k2")"
  # last-write with a wrong ETag
  FW[$store.lw_badetag]="$(save "$store" '[{"key":"k2","value":{"v":3},"etag":"999999"}]') $(cat "$STACK_RUN_DIR/save.out") -> now $(curl -s "$DAPR/v1.0/state/$store/k2")"
done
echo "state semantics observed through daprd (HTTP code, body, value after):"
for k in $(printf '%s\n' "${!FW[@]}" | sort); do printf '  %-22s %s\n' "$k" "${FW[$k]}"; done
[[ "${FW[memstore.goodetag]}" == 204* && "${FW[statestore.goodetag]}" == 204* ]] || fail "first-write with the current ETag must succeed"
[[ "${FW[memstore.badetag]}" == 409* ]] || fail "in-memory first-write with a wrong ETag should be 409"
pass "state semantics recorded"

echo "SMOKE PASSED in $(elapsed)"
