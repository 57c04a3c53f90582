#!/usr/bin/env bash
# Redis compatibility test: runs tests/compat/diff_vs_redis.py, which compares ringcache's
# replies with a real redis-server's (deliberate differences are listed in
# tests/compat/known_differences.toml), then checks ringcache through the redis-py client.
#
#   RINGCACHE_BIN=target/release/ringcache scripts/compat.sh [diff_vs_redis.py options]
#
# RINGCACHE_BIN defaults to target/debug/ringcache (relative to the repository root; build it
# first). Installs redis-server with apt-get (as root) and the redis Python package with pip
# when they are missing. Both servers run on free local ports and are stopped on exit.
# Exit status: the test's (0 = compatible, 1 = unexpected differences, 2 = could not run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RINGCACHE_BIN="${RINGCACHE_BIN:-target/debug/ringcache}"
case "$RINGCACHE_BIN" in
  /*) ;;
  *) RINGCACHE_BIN="$ROOT/$RINGCACHE_BIN" ;;
esac
if [[ ! -x "$RINGCACHE_BIN" ]]; then
  echo "compat: no ringcache binary at $RINGCACHE_BIN (cargo build, or set RINGCACHE_BIN)" >&2
  exit 2
fi

step() { printf '\n==> %s\n' "$*"; }

if ! command -v redis-server >/dev/null 2>&1; then
  if [[ "$(id -u)" -eq 0 ]]; then
    step "installing redis-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server >/dev/null
  else
    echo "compat: redis-server is not installed (apt-get install redis-server)" >&2
    exit 2
  fi
fi

PYDEPS=""
PYPKGS=()
python3 -c 'import redis' >/dev/null 2>&1 || PYPKGS+=(redis)
# the allowlist is TOML: tomllib is standard from Python 3.11, tomli before
python3 -c 'import tomllib' >/dev/null 2>&1 || python3 -c 'import tomli' >/dev/null 2>&1 || PYPKGS+=(tomli)
if [[ ${#PYPKGS[@]} -gt 0 ]]; then
  step "installing Python packages: ${PYPKGS[*]}"
  if ! python3 -m pip --version >/dev/null 2>&1 && [[ "$(id -u)" -eq 0 ]]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null
  fi
  # An "externally managed" system Python refuses a plain install: fall back to a private
  # directory that only this run uses.
  if ! python3 -m pip install --quiet --disable-pip-version-check "${PYPKGS[@]}" 2>/dev/null; then
    PYDEPS="$(mktemp -d)"
    python3 -m pip install --quiet --disable-pip-version-check --target "$PYDEPS" "${PYPKGS[@]}"
    export PYTHONPATH="$PYDEPS${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi

WORK="$(mktemp -d)"
REDIS_PID=""
RC_PID=""
cleanup() {
  local pid
  for pid in "$RC_PID" "$REDIS_PID"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
  if [[ -n "$PYDEPS" ]]; then rm -rf "$PYDEPS"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # name port pid logfile
  local i
  for i in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$3" 2>/dev/null; then
      break
    fi
    sleep 0.05
  done
  echo "compat: $1 did not start on port $2; its log:" >&2
  tail -n 30 "$4" >&2 || true
  exit 2
}

REDIS_PORT="$(free_port)"
RC_PORT="$(free_port)"
while [[ "$RC_PORT" == "$REDIS_PORT" ]]; do RC_PORT="$(free_port)"; done

step "starting redis-server ($(redis-server --version | awk '{print $3}')) on $REDIS_PORT and $RINGCACHE_BIN on $RC_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$WORK" --logfile "$WORK/redis.log" --daemonize no &
REDIS_PID=$!
"$RINGCACHE_BIN" server --port "$RC_PORT" --admin-port 0 >"$WORK/ringcache.log" 2>&1 &
RC_PID=$!
wait_port redis-server "$REDIS_PORT" "$REDIS_PID" "$WORK/redis.log"
wait_port ringcache "$RC_PORT" "$RC_PID" "$WORK/ringcache.log"

step "diff_vs_redis.py"
status=0
python3 "$ROOT/tests/compat/diff_vs_redis.py" --redis-port "$REDIS_PORT" --rc-port "$RC_PORT" \
  --require-redis-py "$@" || status=$?

if ! kill -0 "$RC_PID" 2>/dev/null; then
  echo "compat: ringcache exited during the test; its log:" >&2
  tail -n 30 "$WORK/ringcache.log" >&2 || true
  [[ $status -ne 0 ]] || status=1
fi
exit "$status"
