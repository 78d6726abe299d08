#!/usr/bin/env bash
# example-todo's browser test: its live page in headless Chromium (Debian's package, installed
# when missing), driven over the Chrome DevTools Protocol. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v "${CHROMIUM:-/usr/bin/chromium}" >/dev/null 2>&1; then
  echo "==> installing chromium (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
"${CHROMIUM:-/usr/bin/chromium}" --version
cargo test -p example-todo --test it browser:: "$@" -- --ignored
