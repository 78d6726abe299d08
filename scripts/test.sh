#!/usr/bin/env bash
# The whole test suite, as CI runs it: lint, the event contracts against their Pydantic models, unit + integration + UI tests, the example on
# PostgreSQL and in a browser, the READMEs' commands (scripts/walkthrough.sh), benchmarks build, the packaged crates
# (scripts/package-check.sh), then the real-stack suite (daprd + Kafka + Redis, provisioned and started by scripts/e2e.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says how long the run has taken so far, so a slow or stuck step shows in CI's log.
START=$SECONDS
step() { printf '\n==> [%dm%02ds] %s\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$*"; }

# A clean clone gains nothing from incremental caches, and they double target/'s size.
export CARGO_INCREMENTAL=0
# The real-stack suite builds into the same target directory as the tests, so its dependencies
# are compiled once (scripts/e2e.sh uses target/e2e on its own, to run beside a cargo test).
export E2E_TARGET_DIR="${E2E_TARGET_DIR:-$PWD/target}"

step "toolchain"
cargo --version
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "event contracts: the example's Pydantic models, exported (example-todo/contracts/regenerate.sh)"
example-todo/contracts/regenerate.sh

step "cargo test --workspace (unit, integration, doc, trybuild UI)"
cargo test --workspace

step "event-runtime's optional features: OpenTelemetry and the metrics facade"
cargo clippy -p event-runtime --all-targets --all-features -- -D warnings
cargo test -p event-runtime --features otel,metrics
cargo test -p event-runtime --features otel,sqlx --test it trace_context::
cargo test -p event-runtime --features metrics,sqlx --test process outbox_metrics::

step "example-todo on a real PostgreSQL"
example-todo/scripts/postgres-test.sh

step "example-todo's live page in headless Chromium"
scripts/browser-test.sh

step "README walkthrough against the running example"
scripts/walkthrough.sh

step "benchmarks build"
cargo bench -p event-bench --no-run

step "ready for crates.io: cargo package, docs with -D warnings, examples, the Quick start as a new crate"
scripts/package-check.sh

step "real stack: daprd + Kafka + Redis"
scripts/e2e.sh

step "done"
