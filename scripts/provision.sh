#!/usr/bin/env bash
# Provision the tools the end-to-end stack needs (idempotent, cached):
#   - redis-server            (Debian package, installed with apt-get if absent)
#   - postgresql              (Debian package: the state store the real-stack suite also runs)
#   - Java 17+ / Maven / curl (Debian packages, installed if absent)
#   - daprd                   built from tools/daprd (pinned github.com/dapr/dapr)
#                             into target/tools/bin/daprd
#   - scheduler               Dapr's scheduler service (the Jobs API), built from
#                             tools/scheduler (the same github.com/dapr/dapr) into
#                             target/tools/bin/scheduler
#   - Apache Kafka jars       copied by Maven from tools/kafka/pom.xml
#                             into target/tools/kafka/libs
#   - CloudEvents' Java SDK   (its Kafka binding and JSON format) copied by Maven from
#                             tools/cloudevents/pom.xml into target/tools/cloudevents/libs
#   - cargo-expand            `cargo install --locked` (pinned version, from crates.io)
#                             into target/tools/bin/cargo-expand (the README's
#                             `cargo expand -p example-todo --lib handlers`)
# Everything built or downloaded lives under <repo>/target/tools (gitignored).
# A second run only checks stamps and returns in about a second.
#
# Usage: scripts/provision.sh [--force-daprd] [--force-kafka] [--skip-daprd] [--skip-kafka]
#                             [--skip-cargo-expand] [--only-cargo-expand]
# Env:   DAPRD_FLAVOR=stablecomponents|allcomponents (default stablecomponents)
#        PROVISION_QUIET=1 (less output)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_OUT="$REPO_ROOT/target/tools"
BIN_DIR="$TOOLS_OUT/bin"
KAFKA_OUT="$TOOLS_OUT/kafka"

# Dapr version pinned in tools/daprd/go.mod; also stamped into the binary.
DAPR_VERSION="$(awk '$1=="github.com/dapr/dapr"{sub(/^v/,"",$2); print $2; exit}' "$REPO_ROOT/tools/daprd/go.mod")"
# stablecomponents: Dapr's own "stable components" sidecar flavour (same
# cmd/daprd, fewer component SDKs: ~2060 instead of ~2850 packages). It has
# pubsub.kafka, pubsub.in-memory, state.redis, state.in-memory.
DAPRD_FLAVOR="${DAPRD_FLAVOR:-stablecomponents}"

# cargo-expand, pinned; installed with the lock file it was published with.
CARGO_EXPAND_VERSION=1.0.127

force_daprd=0 force_kafka=0 skip_daprd=0 skip_kafka=0 skip_expand=0 only_expand=0
for arg in "$@"; do
  case "$arg" in
    --force-daprd) force_daprd=1 ;;
    --force-kafka) force_kafka=1 ;;
    --skip-daprd) skip_daprd=1 ;;
    --skip-kafka) skip_kafka=1 ;;
    --skip-cargo-expand) skip_expand=1 ;;
    --only-cargo-expand) only_expand=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "provision: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { [[ "${PROVISION_QUIET:-0}" == 1 ]] || echo "provision: $*" >&2; }
die() { echo "provision: ERROR: $*" >&2; exit 1; }

mkdir -p "$BIN_DIR" "$KAFKA_OUT"

# One provisioner at a time (parallel test runners share target/tools).
exec 9>"$TOOLS_OUT/.provision.lock"
flock 9

# ---------------------------------------------------------------- cargo-expand
install_cargo_expand() {
  local stamp_want stamp_file="$BIN_DIR/cargo-expand.stamp"
  stamp_want="cargo-expand=$CARGO_EXPAND_VERSION rustc=$(rustc --version)"
  if [[ -x "$BIN_DIR/cargo-expand" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_want" ]]; then
    log "cargo-expand $CARGO_EXPAND_VERSION is up to date: $BIN_DIR/cargo-expand"
    return
  fi
  log "installing cargo-expand $CARGO_EXPAND_VERSION into $BIN_DIR (a few minutes; log: $TOOLS_OUT/cargo-expand-install.log)"
  # Its own throwaway target directory, whatever CARGO_TARGET_DIR the caller builds in.
  if ! env -u CARGO_TARGET_DIR nice -n 10 cargo install --locked --quiet \
        --version "=$CARGO_EXPAND_VERSION" --root "$TOOLS_OUT" cargo-expand \
        >"$TOOLS_OUT/cargo-expand-install.log" 2>&1; then
    tail -n 40 "$TOOLS_OUT/cargo-expand-install.log" >&2
    die "cargo install cargo-expand failed (see $TOOLS_OUT/cargo-expand-install.log)"
  fi
  echo "$stamp_want" >"$stamp_file"
  log "cargo-expand ready: $("$BIN_DIR/cargo-expand" --version 2>/dev/null || echo '?')"
}

if [[ $only_expand == 1 ]]; then
  install_cargo_expand
  log "done"
  exit 0
fi

# ---------------------------------------------------------------- apt packages
SUDO=""
if [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "need to install $* but apt-get is not available"
  if [[ $apt_updated == 0 ]]; then
    log "apt-get update"
    $SUDO apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install $*"
  # policy-rc.d style: never start services from package scripts.
  $SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || missing+=(postgresql)
if [[ $skip_kafka == 0 ]]; then
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
fi
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi

if [[ $skip_kafka == 0 ]]; then
  java_major="$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/{print $2}')"
  [[ "${java_major%%.*}" -ge 17 ]] 2>/dev/null || die "Kafka needs Java >= 17, found '${java_major}'"
fi

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# ----------------------------------------------------------------------- daprd
build_daprd() {
  command -v go >/dev/null 2>&1 || die "go is not installed (need Go >= 1.24 to build daprd)"
  local go_version stamp_want stamp_file="$BIN_DIR/daprd.stamp"
  go_version="$(go env GOVERSION)"
  stamp_want="dapr=$DAPR_VERSION flavor=$DAPRD_FLAVOR go=$go_version mod=$(hash_of "$REPO_ROOT/tools/daprd/go.mod" "$REPO_ROOT/tools/daprd/go.sum")"
  if [[ $force_daprd == 0 && -x "$BIN_DIR/daprd" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_want" ]]; then
    log "daprd $DAPR_VERSION ($DAPRD_FLAVOR) is up to date: $BIN_DIR/daprd"
    return
  fi
  log "building daprd $DAPR_VERSION ($DAPRD_FLAVOR) with $go_version; first build takes ~4-7 min on 2 cores, plus module downloads (log: $TOOLS_OUT/daprd-build.log)"
  local start end
  start=$(date +%s)
  if ! (cd "$REPO_ROOT/tools/daprd" &&
        GOWORK=off CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" nice -n 10 go build -trimpath \
          -tags "$DAPRD_FLAVOR" \
          -ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=$DAPR_VERSION" \
          -o "$BIN_DIR/daprd.tmp" github.com/dapr/dapr/cmd/daprd) >"$TOOLS_OUT/daprd-build.log" 2>&1; then
    tail -n 40 "$TOOLS_OUT/daprd-build.log" >&2
    die "daprd build failed (see $TOOLS_OUT/daprd-build.log)"
  fi
  mv -f "$BIN_DIR/daprd.tmp" "$BIN_DIR/daprd"
  echo "$stamp_want" >"$stamp_file"
  end=$(date +%s)
  log "built daprd in $((end - start))s: $("$BIN_DIR/daprd" --version 2>/dev/null || echo '?')"
}

# ------------------------------------------------------------------- scheduler
build_scheduler() {
  local go_version stamp_want stamp_file="$BIN_DIR/scheduler.stamp"
  go_version="$(go env GOVERSION)"
  stamp_want="dapr=$DAPR_VERSION go=$go_version mod=$(hash_of "$REPO_ROOT/tools/scheduler/go.mod" "$REPO_ROOT/tools/scheduler/go.sum")"
  if [[ $force_daprd == 0 && -x "$BIN_DIR/scheduler" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_want" ]]; then
    log "scheduler $DAPR_VERSION is up to date: $BIN_DIR/scheduler"
    return
  fi
  log "building Dapr's scheduler $DAPR_VERSION with $go_version; first build takes a few minutes (log: $TOOLS_OUT/scheduler-build.log)"
  local start
  start=$(date +%s)
  if ! (cd "$REPO_ROOT/tools/scheduler" &&
        GOWORK=off CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" nice -n 10 go build -trimpath \
          -ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=$DAPR_VERSION" \
          -o "$BIN_DIR/scheduler.tmp" github.com/dapr/dapr/cmd/scheduler) >"$TOOLS_OUT/scheduler-build.log" 2>&1; then
    tail -n 40 "$TOOLS_OUT/scheduler-build.log" >&2
    die "scheduler build failed (see $TOOLS_OUT/scheduler-build.log)"
  fi
  mv -f "$BIN_DIR/scheduler.tmp" "$BIN_DIR/scheduler"
  echo "$stamp_want" >"$stamp_file"
  log "built the scheduler in $(($(date +%s) - start))s"
}

# ------------------------------------------------------------------- jars
# fetch_jars NAME DIR: the jars of tools/NAME/pom.xml (and their dependencies), copied by Maven
# into target/tools/NAME/libs, unless the stamp says that pom's jars are there already; DIR/libs
# must then hold a jar matching GLOB.
fetch_jars() {
  local name="$1" glob="$2" out="$TOOLS_OUT/$1" pom="$REPO_ROOT/tools/$1/pom.xml"
  local stamp_want stamp_file="$TOOLS_OUT/$1/libs.stamp"
  stamp_want="pom=$(hash_of "$pom")"
  if [[ $force_kafka == 0 && -d "$out/libs" && -f "$stamp_file" && "$(cat "$stamp_file")" == "$stamp_want" ]]; then
    log "$name jars are up to date: $out/libs ($(ls "$out/libs" | wc -l) jars)"
    return
  fi
  log "copying $name jars with maven into $out/libs"
  mkdir -p "$out"
  rm -rf "$out/libs.tmp"
  if ! mvn -q -B -f "$pom" dependency:copy-dependencies \
        -DoutputDirectory="$out/libs.tmp" >"$TOOLS_OUT/$name-fetch.log" 2>&1; then
    tail -n 40 "$TOOLS_OUT/$name-fetch.log" >&2
    die "maven could not fetch the $name jars (see $TOOLS_OUT/$name-fetch.log)"
  fi
  compgen -G "$out/libs.tmp/$glob" >/dev/null || die "$glob missing after the maven run"
  rm -rf "$out/libs"
  mv "$out/libs.tmp" "$out/libs"
  echo "$stamp_want" >"$stamp_file"
  log "$name jars ready ($(ls "$out/libs" | wc -l) jars)"
}

# Apache Kafka (the broker, its tools and clients), and CloudEvents' own Java SDK (its Kafka
# binding and JSON format), whose records the real-stack suite produces and reads.
[[ $skip_kafka == 1 ]] || fetch_jars kafka 'kafka_2.13-*.jar'
[[ $skip_kafka == 1 ]] || fetch_jars cloudevents 'cloudevents-kafka-*.jar'
[[ $skip_daprd == 1 ]] || build_daprd
[[ $skip_daprd == 1 ]] || build_scheduler
[[ $skip_expand == 1 ]] || install_cargo_expand
log "done"
