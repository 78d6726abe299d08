#!/usr/bin/env bash
# Real-stack end-to-end suite: Kafka 4.1.1 (KRaft) + Redis + PostgreSQL + daprd 1.16.5 and its
# scheduler (Jobs API) + the e2e crate's
# app (e2e/src/bin/e2e-app.rs), driven by the ignored tests of e2e/tests/real_stack/.
#
# Usage: scripts/e2e.sh [TEST_FILTER...] [-- extra libtest args]
#   scripts/e2e.sh                      every scenario
#   scripts/e2e.sh s4_ s6_              only tests whose names contain s4_ or s6_
# Env:   E2E_TARGET_DIR   cargo target dir (default <repo>/target/e2e)
#        E2E_TEST_THREADS parallel scenarios (default 1)
#        STACK_KEEP_RUN_DIR=1  keep the run dir (logs, ledgers) after a passing run
# Exit status: 0 when every scenario passed. On failure the logs' tails are printed and the
# run dir is kept. Everything started is stopped on exit, also on Ctrl-C.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
T0=$(date +%s)
export CARGO_TARGET_DIR="${E2E_TARGET_DIR:-$REPO_ROOT/target/e2e}"

filters=() extra=()
while (($#)); do
  if [[ "$1" == -- ]]; then shift; extra=("$@"); break; fi
  filters+=("$1"); shift
done

"$REPO_ROOT/scripts/provision.sh"

# shellcheck source=stack.sh disable=SC1091
source "$REPO_ROOT/scripts/stack.sh"
stack_init

fail() {
  echo "E2E FAIL: $*" >&2
  stack_logs_tail 60
  exit 1
}

# Build first (no stack running while compiling), then list the topics the app subscribes to.
echo "e2e: building (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)" >&2
(cd "$REPO_ROOT" && cargo build -q -p e2e --bins) || fail "build"
# The test binary is run directly (not through `cargo test`) so that an interrupt can stop it.
TEST_BIN="$(cd "$REPO_ROOT" && cargo test -q -p e2e --test real_stack --no-run --message-format=json |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "real_stack":
        print(m["executable"])')" || fail "build tests"
[[ -x "$TEST_BIN" ]] || fail "no test binary"
APP_BIN="$CARGO_TARGET_DIR/debug/e2e-app"
mapfile -t TOPICS < <("$APP_BIN" --topics)
((${#TOPICS[@]})) || fail "the app lists no topics"

stack_start_kafka || fail "kafka"
stack_start_redis || fail "redis"
stack_start_postgres || fail "postgres"
stack_start_scheduler || fail "scheduler"

# Create every topic (main, retry, dead-letter) in one JVM, before any daprd subscribes:
# a topic auto-created after a consumer group joined is only picked up at its next rebalance.
CREATE_JAVA="$STACK_RUN_DIR/CreateTopics.java"
cat >"$CREATE_JAVA" <<'EOF'
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.errors.TopicExistsException;

public class CreateTopics {
  public static void main(String[] args) throws Exception {
    Properties p = new Properties();
    p.put("bootstrap.servers", args[0]);
    try (Admin admin = Admin.create(p)) {
      List<NewTopic> topics = new ArrayList<>();
      for (int i = 1; i < args.length; i++) {
        String[] tp = args[i].split(":");
        topics.add(new NewTopic(tp[0], Integer.parseInt(tp[1]), (short) 1));
      }
      CreateTopicsResult r = admin.createTopics(topics);
      for (Map.Entry<String, org.apache.kafka.common.KafkaFuture<Void>> e : r.values().entrySet()) {
        try { e.getValue().get(); System.out.println("created " + e.getKey()); }
        catch (ExecutionException ex) {
          if (!(ex.getCause() instanceof TopicExistsException)) throw ex;
          System.out.println("exists " + e.getKey());
        }
      }
      // Wait until every partition has a leader: a producer that sees a topic before that
      // gets "not the leader for some partition" errors.
      Set<String> names = r.values().keySet();
      for (int attempt = 0; ; attempt++) {
        boolean ready = true;
        for (TopicDescription d : admin.describeTopics(names).allTopicNames().get().values())
          for (org.apache.kafka.common.TopicPartitionInfo pi : d.partitions())
            if (pi.leader() == null || pi.leader().isEmpty()) ready = false;
        if (ready) { System.out.println("leaders ready"); break; }
        if (attempt > 300) throw new IllegalStateException("partitions without a leader after 30 s");
        Thread.sleep(100);
      }
    }
  }
}
EOF
_stack_java_kafka "$CREATE_JAVA" "$KAFKA_BOOTSTRAP" task-events:12 "${TOPICS[@]}" \
  >"$STACK_RUN_DIR/logs/create-topics.log" 2>&1 || { cat "$STACK_RUN_DIR/logs/create-topics.log" >&2; fail "topics"; }
echo "e2e: $(grep -c '^created' "$STACK_RUN_DIR/logs/create-topics.log") topics created" >&2

export POSTGRES_PORT SCHEDULER_ADDRESS KAFKA_LIBS DAPRD_BIN E2E_APP_BIN="$APP_BIN" E2E_REPO_ROOT="$REPO_ROOT" E2E_RUN_DIR="$STACK_RUN_DIR/scenarios"
mkdir -p "$E2E_RUN_DIR"

# On exit or interrupt, before the stack goes down: stop the test binary, then every app and
# daprd it started (their pids are in $E2E_RUN_DIR/pids; a killed test cannot clean up).
stack_pre_cleanup_hook() {
  local f pid i E2E_RUN_DIR="${E2E_RUN_DIR:-/nonexistent}"
  if [[ -n "${TEST_PID:-}" ]] && kill -0 "$TEST_PID" 2>/dev/null; then
    kill -TERM "$TEST_PID" 2>/dev/null || true
    wait "$TEST_PID" 2>/dev/null || true
  fi
  for f in "$E2E_RUN_DIR"/pids/*.pid; do
    [[ -f "$f" ]] || continue
    pid="$(cat "$f")"
    if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  for ((i = 0; i < 50; i++)); do
    local alive=0
    for f in "$E2E_RUN_DIR"/pids/*.pid; do
      [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null && alive=1
    done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for f in "$E2E_RUN_DIR"/pids/*.pid; do
    [[ -f "$f" ]] || continue
    kill -KILL "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

args=(--ignored --test-threads="${E2E_TEST_THREADS:-1}" --nocapture)
((${#filters[@]})) && args=("${filters[@]}" "${args[@]}")
set +e
# In the background + `wait`, so that a signal is handled at once (the trap stops everything).
(cd "$REPO_ROOT/e2e" && exec "$TEST_BIN" "${args[@]}" "${extra[@]}") \
  > >(tee "$STACK_RUN_DIR/test-output.log") 2>&1 &
TEST_PID=$!
wait "$TEST_PID"
rc=$?
TEST_PID=""
set -e
echo "e2e: suite finished in $(( $(date +%s) - T0 ))s with status $rc (run dir $STACK_RUN_DIR)" >&2
if [[ $rc != 0 ]]; then
  # The scenarios printed their own logs; these are the shared services'.
  stack_logs_tail 15
  exit "$rc"
fi
