#!/usr/bin/env bash
# shellcheck disable=SC2120,SC2119  # optional function arguments
# End-to-end test stack on loopback: Apache Kafka (KRaft, one node) + Redis +
# one or more real Dapr sidecars (daprd). Run scripts/provision.sh first.
#
# Use as a library (bash):
#   source scripts/stack.sh
#   stack_init                           # run dir, cleanup trap (EXIT/INT/TERM/HUP)
#   stack_start_kafka task-events:12     # + topics, exports KAFKA_BOOTSTRAP
#   stack_start_redis                    # exports REDIS_HOST, REDIS_PORT
#   stack_write_components               # exports DAPR_RESOURCES_DIR
#   APP_PORT=$(stack_free_port)
#   stack_daprd_prepare orders orders "$APP_PORT"   # ports only, before the app
#   ... start the app (stack_spawn NAME CMD...) with DAPR_HTTP_PORT ...
#   stack_daprd_launch orders            # start + wait for /v1.0/healthz/outbound
#   ... tests ...                        # the trap stops everything on exit
# or in one step: stack_start_daprd NAME APP_ID APP_PORT
#
# Or as a command: scripts/stack.sh up [topic:partitions ...]
#   starts kafka + redis, writes the components and an env file, prints the
#   variables and waits for Ctrl-C.
#
# Functions (all return non-zero on failure, after printing why):
#   stack_init [RUN_DIR]            stack_free_port
#   stack_start_kafka [T:P ...]     stack_create_topics T:P ...    stack_stop_kafka
#   stack_restart_kafka             (same port and data dir; stack_kafka_launch after a stop)
#   stack_start_redis               stack_stop_redis
#   stack_write_components [redis|in-memory]
#   stack_daprd_prepare NAME APP_ID APP_PORT    stack_daprd_launch NAME
#   stack_start_daprd NAME APP_ID APP_PORT      stack_stop_daprd NAME
#   stack_restart_daprd NAME        stack_daprd_port NAME http|grpc|metrics|internal
#   stack_wait_subscribed NAME PUBSUB TOPIC [SECS]
#   stack_spawn NAME CMD...         stack_stop NAME   (any extra process, e.g. the app)
#   stack_kill NAME                 (SIGKILL, e.g. `stack_kill kafka; stack_kafka_launch`)
#   stack_is_running NAME           stack_pid NAME
#   stack_wait_until SECS DESC CMD...   (poll CMD every 0.2 s until it succeeds)
#   stack_logs_tail [LINES]         stack_stop_all    stack_cleanup
#   stack_write_env [FILE]          (KEY=VALUE lines of everything exported)
#
# Exported: STACK_RUN_DIR, KAFKA_BOOTSTRAP, KAFKA_PORT, REDIS_HOST, REDIS_PORT,
#   DAPR_RESOURCES_DIR, STACK_STATE_STORE; per daprd NAME (upper-cased, - -> _):
#   DAPR_HTTP_PORT_<NAME>, DAPR_GRPC_PORT_<NAME>; DAPR_HTTP_PORT / DAPR_GRPC_PORT /
#   DAPR_METRICS_PORT / APP_ID / APP_PORT are those of the last prepared daprd.
#
# Settings (env, read when the function runs):
#   STACK_RUN_DIR       run dir (default: fresh mktemp -d under ${TMPDIR:-/tmp})
#   STACK_KEEP_RUN_DIR  1 = keep the run dir after a successful run (kept on failure)
#   STACK_NO_TRAP       1 = stack_init installs no trap (call stack_cleanup yourself)
#   STACK_STATE_STORE   redis (default) | in-memory
#   STACK_KAFKA_CONSUMER_GROUP (default e2e-group)   STACK_KAFKA_HEAP (default 512m)
#   STACK_DAPRD_LOG_LEVEL (default info)   STACK_DAPRD_EXTRA_ARGS (extra daprd flags)
#   STACK_READY_TIMEOUT seconds per readiness wait (default 90)
#   DAPRD_BIN, KAFKA_LIBS   override the provisioned binaries

if [[ -n "${_STACK_SH_LOADED:-}" ]]; then return 0 2>/dev/null || exit 0; fi
_STACK_SH_LOADED=1

STACK_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${DAPRD_BIN:=$STACK_REPO_ROOT/target/tools/bin/daprd}"
: "${KAFKA_LIBS:=$STACK_REPO_ROOT/target/tools/kafka/libs}"
STACK_KAFKA_LOG4J="$STACK_REPO_ROOT/tools/kafka/log4j2.properties"

# Names of started processes, in start order (for ordered shutdown).
_STACK_PROCS=()

_stack_log() { echo "stack: $*" >&2; }
_stack_err() { echo "stack: ERROR: $*" >&2; }
_stack_now() { date +%s.%N; }
_stack_upper() { local s="${1^^}"; echo "${s//[^A-Z0-9]/_}"; }

# stack_free_port: print a TCP port on 127.0.0.1 that is free right now.
stack_free_port() {
  python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# stack_wait_until SECS DESCRIPTION CMD...: run CMD every 0.2 s until it
# succeeds or SECS pass. Fails early if the optional process named in
# STACK_WAIT_PROC died.
stack_wait_until() {
  local secs="$1" desc="$2"; shift 2
  local start; start=$(_stack_now)
  local deadline; deadline=$(awk -v s="$start" -v d="$secs" 'BEGIN{printf "%.3f", s+d}')
  while :; do
    if "$@" >/dev/null 2>&1; then
      _stack_log "$desc: ready after $(awk -v s="$start" -v e="$(_stack_now)" 'BEGIN{printf "%.1f", e-s}')s"
      return 0
    fi
    if [[ -n "${STACK_WAIT_PROC:-}" ]] && ! stack_is_running "$STACK_WAIT_PROC"; then
      _stack_err "$desc: process '$STACK_WAIT_PROC' exited while waiting"
      return 1
    fi
    if awk -v n="$(_stack_now)" -v d="$deadline" 'BEGIN{exit !(n>d)}'; then
      _stack_err "$desc: not ready after ${secs}s"
      return 1
    fi
    sleep 0.2
  done
}

# ------------------------------------------------------------------ lifecycle
stack_init() {
  if [[ -n "${1:-}" ]]; then STACK_RUN_DIR="$1"; fi
  if [[ -z "${STACK_RUN_DIR:-}" ]]; then
    STACK_RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/e2e-stack.XXXXXX")"
  fi
  mkdir -p "$STACK_RUN_DIR"/{logs,pids}
  export STACK_RUN_DIR
  if [[ ! -x "$DAPRD_BIN" || ! -d "$KAFKA_LIBS" ]]; then
    _stack_err "tools missing ($DAPRD_BIN, $KAFKA_LIBS): run scripts/provision.sh"
    return 1
  fi
  if [[ "${STACK_NO_TRAP:-0}" != 1 ]]; then
    trap '_stack_on_exit' EXIT
    trap '_stack_on_signal 130' INT
    trap '_stack_on_signal 143' TERM
    trap '_stack_on_signal 129' HUP
  fi
  _stack_log "run dir $STACK_RUN_DIR"
}

_stack_on_signal() {
  _stack_log "interrupted, cleaning up"
  trap - INT TERM HUP
  # In `stack.sh up`, a signal is the normal way to stop: exit 0 (run dir removed).
  if [[ "${_STACK_UP_MODE:-0}" == 1 ]]; then exit 0; fi
  exit "$1"   # runs the EXIT trap
}

_stack_on_exit() {
  local rc=$?
  trap - EXIT INT TERM HUP
  stack_cleanup "$rc"
  exit "$rc"
}

# stack_cleanup [RC]: stop everything started; remove the run dir when RC is 0
# (unless STACK_KEEP_RUN_DIR=1), keep it otherwise.
stack_cleanup() {
  local rc="${1:-0}"
  # A script that sourced this library may define stack_pre_cleanup_hook to stop its own
  # processes (those not started with stack_spawn) before the stack goes down.
  if declare -F stack_pre_cleanup_hook >/dev/null; then stack_pre_cleanup_hook || true; fi
  stack_stop_all
  if [[ -n "${STACK_RUN_DIR:-}" && -d "$STACK_RUN_DIR" ]]; then
    if [[ "$rc" == 0 && "${STACK_KEEP_RUN_DIR:-0}" != 1 ]]; then
      rm -rf "$STACK_RUN_DIR"
    else
      _stack_log "run dir kept: $STACK_RUN_DIR"
    fi
  fi
}

# stack_spawn NAME CMD...: start CMD in the background, stdout+stderr to
# $STACK_RUN_DIR/logs/NAME.log (appended), tracked for stop/cleanup.
stack_spawn() {
  local name="$1"; shift
  if stack_is_running "$name"; then _stack_err "$name is already running"; return 1; fi
  local logf="$STACK_RUN_DIR/logs/$name.log"
  echo "===== $(date -u +%FT%TZ) start: $*" >>"$logf"
  "$@" >>"$logf" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$STACK_RUN_DIR/pids/$name.pid"
  local p found=0
  for p in "${_STACK_PROCS[@]}"; do [[ "$p" == "$name" ]] && found=1; done
  [[ $found == 1 ]] || _STACK_PROCS+=("$name")
  return 0
}

stack_pid() { cat "$STACK_RUN_DIR/pids/$1.pid" 2>/dev/null; }

stack_is_running() {
  local pid; pid="$(stack_pid "$1")" || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# stack_stop NAME [GRACE_SECS]: SIGTERM, wait up to GRACE_SECS (default 15),
# then SIGKILL. Only the recorded pid is signalled.
stack_stop() {
  local name="$1" grace="${2:-15}" pid i
  pid="$(stack_pid "$name")" || return 0
  rm -f "$STACK_RUN_DIR/pids/$name.pid"
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      _stack_log "$name (pid $pid) did not stop in ${grace}s, killing"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  echo "===== $(date -u +%FT%TZ) stopped" >>"$STACK_RUN_DIR/logs/$name.log"
  _stack_log "stopped $name"
}

# stack_kill NAME: SIGKILL the process NAME (crash tests), e.g.
#   stack_kill kafka && stack_kafka_launch
stack_kill() {
  local pid; pid="$(stack_pid "$1")" || return 0
  rm -f "$STACK_RUN_DIR/pids/$1.pid"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "===== $(date -u +%FT%TZ) killed" >>"$STACK_RUN_DIR/logs/$1.log"
  _stack_log "killed $1"
}

# stack_stop_all: stop every started process, newest first.
stack_stop_all() {
  local i
  [[ -n "${STACK_RUN_DIR:-}" ]] || return 0
  for ((i = ${#_STACK_PROCS[@]} - 1; i >= 0; i--)); do
    stack_stop "${_STACK_PROCS[$i]}"
  done
}

# stack_logs_tail [LINES]: print the last LINES (default 60) of every log.
stack_logs_tail() {
  local n="${1:-60}" f
  [[ -n "${STACK_RUN_DIR:-}" ]] || return 0
  for f in "$STACK_RUN_DIR"/logs/*.log; do
    [[ -f "$f" ]] || continue
    echo "----- tail -n $n $f" >&2
    tail -n "$n" "$f" >&2
  done
}

# ---------------------------------------------------------------------- kafka
_stack_java_kafka() {
  java -Xms128m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$STACK_KAFKA_LOG4J" -Dkafka.root.loglevel=WARN \
    -cp "$KAFKA_LIBS/*" "$@"
}

# stack_start_kafka [TOPIC:PARTITIONS ...]: single KRaft node (broker +
# controller) on 127.0.0.1, storage in $STACK_RUN_DIR/kafka/data.
stack_start_kafka() {
  local kdir="$STACK_RUN_DIR/kafka"
  mkdir -p "$kdir/data"
  KAFKA_PORT="${KAFKA_PORT:-$(stack_free_port)}"
  KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$(stack_free_port)}"
  KAFKA_BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
  export KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_BOOTSTRAP
  cat >"$kdir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$kdir/data
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=24
EOF
  if [[ ! -f "$kdir/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(python3 -c 'import uuid, base64; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
    if ! _stack_java_kafka kafka.tools.StorageTool format -t "$cluster_id" \
          -c "$kdir/server.properties" >"$STACK_RUN_DIR/logs/kafka-format.log" 2>&1; then
      _stack_err "kafka storage format failed"; cat "$STACK_RUN_DIR/logs/kafka-format.log" >&2; return 1
    fi
  fi
  stack_kafka_launch || return 1
  if (($#)); then stack_create_topics "$@" || return 1; fi
}

_stack_kafka_ready() {
  # Port accepts connections and the server logged its start since launch.
  python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$KAFKA_PORT" &&
    tail -c +"$_STACK_KAFKA_LOG_OFFSET" "$STACK_RUN_DIR/logs/kafka.log" | grep -q 'Kafka Server started'
}

# stack_kafka_launch: start the (already configured and formatted) broker and
# wait until it serves. Used by stack_start_kafka and stack_restart_kafka.
stack_kafka_launch() {
  local kdir="$STACK_RUN_DIR/kafka" logf="$STACK_RUN_DIR/logs/kafka.log"
  _STACK_KAFKA_LOG_OFFSET=$(( $( [[ -f "$logf" ]] && stat -c %s "$logf" || echo 0) + 1 ))
  stack_spawn kafka java -Xms256m -Xmx"${STACK_KAFKA_HEAP:-512m}" -XX:+UseG1GC \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$STACK_KAFKA_LOG4J" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$kdir/server.properties" || return 1
  STACK_WAIT_PROC=kafka stack_wait_until "${STACK_READY_TIMEOUT:-90}" "kafka on $KAFKA_BOOTSTRAP" _stack_kafka_ready
}

stack_stop_kafka() { stack_stop kafka 30; }

# stack_restart_kafka: stop and start the broker with the same port and data.
stack_restart_kafka() { stack_stop_kafka && stack_kafka_launch; }

# stack_create_topics NAME:PARTITIONS ...: create topics (replication 1), idempotent.
stack_create_topics() {
  local spec name parts
  for spec in "$@"; do
    name="${spec%%:*}"; parts="${spec#*:}"
    [[ "$spec" == *:* ]] || parts=1
    if ! _stack_java_kafka org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" \
          --create --if-not-exists --topic "$name" --partitions "$parts" --replication-factor 1 \
          >>"$STACK_RUN_DIR/logs/kafka-topics.log" 2>&1; then
      _stack_err "could not create topic $name"; tail -n 20 "$STACK_RUN_DIR/logs/kafka-topics.log" >&2; return 1
    fi
    _stack_log "topic $name ($parts partitions)"
  done
}

# ---------------------------------------------------------------------- redis
stack_start_redis() {
  mkdir -p "$STACK_RUN_DIR/redis"
  REDIS_HOST=127.0.0.1
  REDIS_PORT="${REDIS_PORT:-$(stack_free_port)}"
  export REDIS_HOST REDIS_PORT
  stack_spawn redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
    --save '' --appendonly no --dir "$STACK_RUN_DIR/redis" --daemonize no --loglevel notice || return 1
  STACK_WAIT_PROC=redis stack_wait_until "${STACK_READY_TIMEOUT:-90}" "redis on 127.0.0.1:$REDIS_PORT" \
    bash -c '[[ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" == PONG ]]' _ "$REDIS_PORT"
}

stack_stop_redis() { stack_stop redis; }

# ------------------------------------------------------------------ scheduler
# stack_start_scheduler: Dapr's scheduler service (the Jobs API's store; embedded etcd, data in
# the run dir) on 127.0.0.1; exports SCHEDULER_ADDRESS (host:port, daprd's
# --scheduler-host-address).
stack_start_scheduler() {
  local bin="${SCHEDULER_BIN:-$STACK_REPO_ROOT/target/tools/bin/scheduler}" port health metrics client peer
  [[ -x "$bin" ]] || { _stack_err "no scheduler at $bin: run scripts/provision.sh"; return 1; }
  port=$(stack_free_port) health=$(stack_free_port) metrics=$(stack_free_port)
  client=$(stack_free_port) peer=$(stack_free_port)
  mkdir -p "$STACK_RUN_DIR/scheduler"
  SCHEDULER_ADDRESS="127.0.0.1:$port"
  export SCHEDULER_ADDRESS
  stack_spawn scheduler "$bin" --mode standalone --port "$port" --listen-address 127.0.0.1 \
    --healthz-port "$health" --healthz-listen-address 127.0.0.1 \
    --metrics-port "$metrics" --metrics-listen-address 127.0.0.1 \
    --etcd-data-dir "$STACK_RUN_DIR/scheduler/data" \
    --etcd-client-port "$client" --etcd-client-listen-address 127.0.0.1 \
    --etcd-initial-cluster "dapr-scheduler-server-0=http://127.0.0.1:$peer" || return 1
  STACK_WAIT_PROC=scheduler stack_wait_until "${STACK_READY_TIMEOUT:-90}" "scheduler on $SCHEDULER_ADDRESS" \
    curl -sf -o /dev/null "http://127.0.0.1:$health/healthz"
}

stack_stop_scheduler() { stack_stop scheduler; }

# ------------------------------------------------------------------- postgres
# stack_start_postgres: a throwaway PostgreSQL cluster on 127.0.0.1 (user `dapr`, trust auth,
# database `postgres`), data in the run dir; exports POSTGRES_PORT. As root it runs as the
# package's `postgres` user (PostgreSQL refuses root).
stack_start_postgres() {
  local bin dir as=()
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [[ -n "$bin" ]] || { _stack_err "PostgreSQL is not installed: run scripts/provision.sh"; return 1; }
  dir="$STACK_RUN_DIR/postgres"
  mkdir -p "$dir"
  if [[ "$(id -u)" == 0 ]]; then
    chown postgres "$dir"
    chmod o+x "$STACK_RUN_DIR"   # traverse only, to reach its own directory
    as=(setpriv --reuid=postgres --regid=postgres --init-groups)
  fi
  POSTGRES_PORT="${POSTGRES_PORT:-$(stack_free_port)}"
  export POSTGRES_PORT
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U dapr -A trust --no-sync \
    >"$STACK_RUN_DIR/logs/postgres-initdb.log" 2>&1 || {
    _stack_err "initdb failed"; cat "$STACK_RUN_DIR/logs/postgres-initdb.log" >&2; return 1; }
  stack_spawn postgres "${as[@]}" "$bin/postgres" -D "$dir/data" -p "$POSTGRES_PORT" \
    -h 127.0.0.1 -k "$dir" -c fsync=off || return 1
  STACK_WAIT_PROC=postgres stack_wait_until "${STACK_READY_TIMEOUT:-90}" "postgres on 127.0.0.1:$POSTGRES_PORT" \
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"
}

stack_stop_postgres() { stack_stop postgres; }

# ----------------------------------------------------------------- components
# stack_write_components [redis|in-memory]: write the Dapr resources into
# $STACK_RUN_DIR/resources (kafka-pubsub + statestore). Add more YAML files
# (resiliency, declarative subscriptions, ...) to $DAPR_RESOURCES_DIR before
# launching daprd if a test needs them.
stack_write_components() {
  STACK_STATE_STORE="${1:-${STACK_STATE_STORE:-redis}}"
  DAPR_RESOURCES_DIR="$STACK_RUN_DIR/resources"
  export STACK_STATE_STORE DAPR_RESOURCES_DIR
  mkdir -p "$DAPR_RESOURCES_DIR"
  [[ -n "${KAFKA_BOOTSTRAP:-}" ]] || { _stack_err "start kafka before writing components"; return 1; }
  sed -e "s|@BROKERS@|$KAFKA_BOOTSTRAP|" \
    -e "s|@CONSUMER_GROUP@|${STACK_KAFKA_CONSUMER_GROUP:-e2e-group}|" \
    -e "s|@CLIENT_ID@|e2e-daprd|" \
    "$STACK_REPO_ROOT/tools/dapr/kafka-pubsub.yaml" >"$DAPR_RESOURCES_DIR/kafka-pubsub.yaml"
  case "$STACK_STATE_STORE" in
    redis)
      [[ -n "${REDIS_PORT:-}" ]] || { _stack_err "start redis before writing a redis state store"; return 1; }
      cat >"$DAPR_RESOURCES_DIR/statestore.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
    - name: redisHost
      value: "127.0.0.1:$REDIS_PORT"
    - name: redisPassword
      value: ""
EOF
      ;;
    in-memory)
      cat >"$DAPR_RESOURCES_DIR/statestore.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
  metadata: []
EOF
      ;;
    *) _stack_err "unknown state store '$STACK_STATE_STORE' (redis|in-memory)"; return 1 ;;
  esac
  _stack_log "components in $DAPR_RESOURCES_DIR (state: $STACK_STATE_STORE)"
}

# ---------------------------------------------------------------------- daprd
# stack_daprd_prepare NAME APP_ID APP_PORT: choose the sidecar's ports and
# export them (so the app can be started first with DAPR_HTTP_PORT).
stack_daprd_prepare() {
  local name="$1" app_id="$2" app_port="$3" u
  u="$(_stack_upper "$name")"
  local h g m i
  h="$(stack_free_port)"; g="$(stack_free_port)"; m="$(stack_free_port)"; i="$(stack_free_port)"
  cat >"$STACK_RUN_DIR/daprd-$name.env" <<EOF
APP_ID=$app_id
APP_PORT=$app_port
DAPR_HTTP_PORT=$h
DAPR_GRPC_PORT=$g
DAPR_METRICS_PORT=$m
DAPR_INTERNAL_GRPC_PORT=$i
EOF
  export "DAPR_HTTP_PORT_$u=$h" "DAPR_GRPC_PORT_$u=$g"
  export APP_ID="$app_id" APP_PORT="$app_port" DAPR_HTTP_PORT="$h" DAPR_GRPC_PORT="$g" DAPR_METRICS_PORT="$m"
}

# stack_daprd_port NAME http|grpc|metrics|internal|app
stack_daprd_port() {
  local key
  case "$2" in
    http) key=DAPR_HTTP_PORT ;; grpc) key=DAPR_GRPC_PORT ;; metrics) key=DAPR_METRICS_PORT ;;
    internal) key=DAPR_INTERNAL_GRPC_PORT ;; app) key=APP_PORT ;;
    *) _stack_err "stack_daprd_port: unknown port kind $2"; return 1 ;;
  esac
  awk -F= -v k="$key" '$1==k{print $2}' "$STACK_RUN_DIR/daprd-$1.env"
}

_stack_daprd_healthy() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/v1.0/healthz/outbound")"
  [[ "$code" == 204 ]]
}

# stack_daprd_launch NAME: start the prepared sidecar NAME (process name
# daprd-NAME) and wait until GET /v1.0/healthz/outbound answers 204.
stack_daprd_launch() {
  local name="$1" envf="$STACK_RUN_DIR/daprd-$1.env"
  [[ -f "$envf" ]] || { _stack_err "daprd $name not prepared (stack_daprd_prepare)"; return 1; }
  local APP_ID APP_PORT DAPR_HTTP_PORT DAPR_GRPC_PORT DAPR_METRICS_PORT DAPR_INTERNAL_GRPC_PORT
  # shellcheck disable=SC1090
  source "$envf"
  local resources="${DAPRD_RESOURCES_DIR:-$DAPR_RESOURCES_DIR}"
  [[ -d "$resources" ]] || { _stack_err "no resources dir (stack_write_components)"; return 1; }
  local extra=()
  # shellcheck disable=SC2206
  [[ -n "${STACK_DAPRD_EXTRA_ARGS:-}" ]] && extra=($STACK_DAPRD_EXTRA_ARGS)
  # No --placement-host-address / --scheduler-host-address: with neither,
  # standalone daprd runs without actors, workflows, reminders or jobs and
  # does not try to reach those services. Every listener is on loopback.
  DAPR_HOST_IP=127.0.0.1 \
  stack_spawn "daprd-$name" "$DAPRD_BIN" \
    --mode standalone \
    --app-id "$APP_ID" --app-port "$APP_PORT" --app-protocol http \
    --app-channel-address 127.0.0.1 \
    --dapr-http-port "$DAPR_HTTP_PORT" --dapr-grpc-port "$DAPR_GRPC_PORT" \
    --dapr-listen-addresses 127.0.0.1 \
    --dapr-internal-grpc-port "$DAPR_INTERNAL_GRPC_PORT" --dapr-internal-grpc-listen-address 127.0.0.1 \
    --metrics-port "$DAPR_METRICS_PORT" --metrics-listen-address 127.0.0.1 \
    --resources-path "$resources" \
    --log-level "${STACK_DAPRD_LOG_LEVEL:-info}" \
    --dapr-graceful-shutdown-seconds 2 \
    "${extra[@]}" || return 1
  STACK_WAIT_PROC="daprd-$name" stack_wait_until "${STACK_READY_TIMEOUT:-90}" \
    "daprd $name (app $APP_ID:$APP_PORT) on http 127.0.0.1:$DAPR_HTTP_PORT" _stack_daprd_healthy "$DAPR_HTTP_PORT"
}

# stack_start_daprd NAME APP_ID APP_PORT: prepare + launch.
stack_start_daprd() { stack_daprd_prepare "$@" && stack_daprd_launch "$1"; }
stack_stop_daprd() { stack_stop "daprd-$1" 20; }
stack_restart_daprd() { stack_stop_daprd "$1" && stack_daprd_launch "$1"; }

_stack_has_subscription() {
  curl -sf --max-time 2 "http://127.0.0.1:$1/v1.0/metadata" |
    python3 -c 'import json,sys
m = json.load(sys.stdin)
ok = any(s.get("pubsubname") == sys.argv[1] and s.get("topic") == sys.argv[2] for s in m.get("subscriptions") or [])
sys.exit(0 if ok else 1)' "$2" "$3"
}

# stack_wait_subscribed NAME PUBSUB TOPIC [SECS]: wait until daprd NAME lists
# a subscription to PUBSUB/TOPIC in GET /v1.0/metadata.
stack_wait_subscribed() {
  local port; port="$(stack_daprd_port "$1" http)" || return 1
  STACK_WAIT_PROC="daprd-$1" stack_wait_until "${4:-${STACK_READY_TIMEOUT:-90}}" \
    "daprd $1 subscribed to $2/$3" _stack_has_subscription "$port" "$2" "$3"
}

# stack_write_env [FILE]: write the exported stack variables as KEY=VALUE
# (default $STACK_RUN_DIR/stack.env) and print the file name.
stack_write_env() {
  local f="${1:-$STACK_RUN_DIR/stack.env}"
  env | grep -E '^(STACK_RUN_DIR|STACK_STATE_STORE|KAFKA_BOOTSTRAP|KAFKA_PORT|REDIS_HOST|REDIS_PORT|DAPR_RESOURCES_DIR|DAPR_HTTP_PORT|DAPR_GRPC_PORT|DAPR_METRICS_PORT|APP_ID|APP_PORT)(_[A-Z0-9_]+)?=' | sort >"$f"
  echo "$f"
}

# -------------------------------------------------------------------- command
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -uo pipefail
  case "${1:-}" in
    up)
      shift
      _STACK_UP_MODE=1
      stack_init || exit 1
      { stack_start_kafka "$@" && stack_start_redis && stack_write_components; } || { stack_logs_tail; exit 1; }
      f="$(stack_write_env)"
      cat "$f"
      _stack_log "env file $f; components in $DAPR_RESOURCES_DIR; Ctrl-C to stop"
      while :; do sleep 3600 & wait $!; done
      ;;
    *)
      sed -n '2,50p' "$0"
      [[ "${1:-}" == -h || "${1:-}" == --help ]] && exit 0 || exit 2
      ;;
  esac
fi
