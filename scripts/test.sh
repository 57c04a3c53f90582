#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/property/integration tests, docs, and a short
# fuzz run of each protocol parser, and the deployment files' validation. Installs what it
# needs (rustfmt, clippy, cargo-fuzz, iptables for the fault-injection tests, which need
# root, chromium for the dashboard test, and the validators deploy/check.sh uses).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"

step() { printf '\n==> %s\n' "$*"; }

step "toolchain components"
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
MISSING=""
# iptables: the fault-injection tests partition nodes with it. chromium: the dashboard test.
command -v iptables >/dev/null 2>&1 || MISSING="$MISSING iptables"
command -v chromium >/dev/null 2>&1 || MISSING="$MISSING chromium"
if [ -n "$MISSING" ]; then
  step "installing$MISSING"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $MISSING >/dev/null
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (with a ${RINGCACHE_AVAILABILITY_SECONDS:-300} s availability run under random faults)"
RINGCACHE_AVAILABILITY_SECONDS="${RINGCACHE_AVAILABILITY_SECONDS:-300}" cargo test --workspace --locked

step "cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "deployment files: compose, Kubernetes, Prometheus rules, Grafana dashboard"
./deploy/check.sh

step "compatibility: raw replies against redis-server, and the redis-py client"
cargo build --locked -p ringcache
RINGCACHE_BIN=target/debug/ringcache ./scripts/compat.sh

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
for target in resp:parse_request memcache:parse_request command:execute; do
  crate="${target%%:*}"
  name="${target#*:}"
  step "fuzz: $crate $name (${FUZZ_SECONDS}s)"
  (cd "crates/$crate/fuzz" && cargo fuzz run --sanitizer none --release "$name" -- \
    -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 6)
done

step "all checks passed"
