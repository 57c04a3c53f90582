#!/usr/bin/env bash
# Compatibility tests, in four parts:
#  - Redis: tests/compat/diff_vs_redis.py compares ringcache's RESP replies with a real
#    redis-server's (deliberate differences are listed in tests/compat/known_differences.toml),
#    then checks ringcache through the redis-py client;
#  - memcached: tests/compat/diff_vs_memcached.py compares the replies of ringcache's memcached
#    port with a real memcached's (deliberate differences: tests/compat/
#    known_differences_memcached.toml), then checks ringcache through the pymemcache client;
#  - cluster: tests/compat/cluster_clients.py drives a `ringcache demo` cluster with redis-cli -c,
#    redis-benchmark --cluster, redis-py's RedisCluster, pymemcache and the forwarding port;
#  - random: tests/compat/diff_random.py sends seeded random command sequences (good and bad
#    input) to ringcache and to the reference and compares every reply and the final data:
#    a standalone node vs redis-server, the demo's cluster ports vs a cluster-mode
#    redis-server (which it starts), the demo's forwarding ports vs redis-server, and the
#    memcached ports of the standalone node and of the demo nodes vs memcached (deliberate
#    differences: tests/compat/known_differences_random.toml). A failure prints the seed and
#    the sequence; RANDOM_COMPAT_ARGS (split at spaces) goes to it, e.g. "--seed 42" to
#    replay a run or "--long" for 2,000 sequences per entry point.
#
#   RINGCACHE_BIN=target/release/ringcache scripts/compat.sh [diff_vs_redis.py options]
#
# RINGCACHE_BIN defaults to target/debug/ringcache (relative to the repository root; build it
# first). Installs redis-server and memcached with apt-get (as root) and the redis and
# pymemcache Python packages with pip when they are missing. Every server runs on free local
# ports (the memcached part on a ringcache node of its own) and is stopped on exit.
# Options go to diff_vs_redis.py; MEMCACHED_COMPAT_ARGS (split at spaces) to
# diff_vs_memcached.py; RANDOM_COMPAT_ARGS (split at spaces) to diff_random.py.
# The last line of the output is `N passed, M failed`, summed over the parts.
# Exit status: 0 = compatible, 1 = unexpected differences, 2 = could not run (the larger of
# the parts').
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

if ! command -v memcached >/dev/null 2>&1; then
  if [[ "$(id -u)" -eq 0 ]]; then
    step "installing memcached"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq memcached >/dev/null
  else
    echo "compat: memcached is not installed (apt-get install memcached)" >&2
    exit 2
  fi
fi

PYDEPS=""
PYPKGS=()
python3 -c 'import redis' >/dev/null 2>&1 || PYPKGS+=(redis)
python3 -c 'import pymemcache' >/dev/null 2>&1 || PYPKGS+=(pymemcache)
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
MC_PID=""
RC_MC_PID=""
DEMO_PIDS=""
cleanup() {
  local pid
  for pid in "$RC_PID" "$REDIS_PID" "$RC_MC_PID" "$MC_PID"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  # the demo's nodes, when a part was interrupted while they ran (DEMO_PIDS is "-INT <pids>")
  # shellcheck disable=SC2086  # one pid per word
  if [[ -n "$DEMO_PIDS" ]]; then kill $DEMO_PIDS 2>/dev/null || true; fi
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
"$RINGCACHE_BIN" server --port "$RC_PORT" --admin-port 0 --memcache-port 0 >"$WORK/ringcache.log" 2>&1 &
RC_PID=$!
wait_port redis-server "$REDIS_PORT" "$REDIS_PID" "$WORK/redis.log"
wait_port ringcache "$RC_PORT" "$RC_PID" "$WORK/ringcache.log"

# Runs a test, showing its output and keeping a copy; sets run_status to its exit status.
run_test() { # output-file command...
  local out="$1"
  shift
  set +e
  PYTHONUNBUFFERED=1 "$@" 2>&1 | tee "$out"
  run_status=${PIPESTATUS[0]}
  set -e
}

# Adds a part's `N passed, M failed` line to the totals (a part that printed none, or
# whose ringcache node died, counts one failure more).
passed=0
failed=0
tally() { # output-file extra-failures
  local line p=0 f=1
  line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1 || true)"
  if [[ -n "$line" ]]; then
    p="${line%% passed*}"
    f="${line#*, }"
    f="${f%% failed}"
  fi
  passed=$((passed + p))
  failed=$((failed + f + $2))
}

# Combines the parts' exit statuses: the larger wins (2 = could not run, over 1).
combine() {
  if [[ $1 -gt $status ]]; then status=$1; fi
}

status=0

step "diff_vs_redis.py"
run_test "$WORK/redis.out" python3 "$ROOT/tests/compat/diff_vs_redis.py" \
  --redis-port "$REDIS_PORT" --rc-port "$RC_PORT" --require-redis-py "$@"
redis_status=$run_status
died=0
if ! kill -0 "$RC_PID" 2>/dev/null; then
  echo "compat: ringcache exited during the test; its log:" >&2
  tail -n 30 "$WORK/ringcache.log" >&2 || true
  [[ $redis_status -ne 0 ]] || redis_status=1
  died=1
fi
combine "$redis_status"
tally "$WORK/redis.out" "$died"

MC_PORT="$(free_port)"
RC_MC_RESP_PORT="$(free_port)"
RC_MC_PORT="$(free_port)"
while [[ "$RC_MC_RESP_PORT" == "$MC_PORT" ]]; do RC_MC_RESP_PORT="$(free_port)"; done
while [[ "$RC_MC_PORT" == "$MC_PORT" || "$RC_MC_PORT" == "$RC_MC_RESP_PORT" ]]; do
  RC_MC_PORT="$(free_port)"
done
MC_USER=()
# memcached refuses to run as root unless told which user to be
if [[ "$(id -u)" -eq 0 ]]; then MC_USER=(-u root); fi
step "starting $(memcached -V) on $MC_PORT and $RINGCACHE_BIN (memcached port $RC_MC_PORT)"
memcached -p "$MC_PORT" -U 0 -t 2 -m 1024 -l 127.0.0.1 ${MC_USER[@]+"${MC_USER[@]}"} >"$WORK/memcached.log" 2>&1 &
MC_PID=$!
"$RINGCACHE_BIN" server --port "$RC_MC_RESP_PORT" --admin-port 0 --memcache-port "$RC_MC_PORT" \
  >"$WORK/ringcache-mc.log" 2>&1 &
RC_MC_PID=$!
wait_port memcached "$MC_PORT" "$MC_PID" "$WORK/memcached.log"
wait_port ringcache "$RC_MC_PORT" "$RC_MC_PID" "$WORK/ringcache-mc.log"

step "diff_vs_memcached.py"
# shellcheck disable=SC2086  # MEMCACHED_COMPAT_ARGS is split at spaces on purpose
run_test "$WORK/memcached.out" python3 "$ROOT/tests/compat/diff_vs_memcached.py" \
  --mc-port "$MC_PORT" --rc-port "$RC_MC_PORT" --require-pymemcache ${MEMCACHED_COMPAT_ARGS:-}
mc_status=$run_status
died=0
if ! kill -0 "$RC_MC_PID" 2>/dev/null; then
  echo "compat: ringcache (memcached part) exited during the test; its log:" >&2
  tail -n 30 "$WORK/ringcache-mc.log" >&2 || true
  [[ $mc_status -ne 0 ]] || mc_status=1
  died=1
fi
combine "$mc_status"
tally "$WORK/memcached.out" "$died"

# Cluster clients against `ringcache demo`: redis-cli -c, redis-benchmark --cluster, redis-py's
# RedisCluster, pymemcache through every node, the forwarding port.
DEMO_BASE="${DEMO_BASE:-17400}"
step "ringcache demo on $DEMO_BASE-$((DEMO_BASE + 5)): cluster_clients.py"
demo_status=0
if "$RINGCACHE_BIN" demo --detach --dir "$WORK/demo" --base-port "$DEMO_BASE"   --memcache-base-port $((DEMO_BASE + 100)) --forward-base-port $((DEMO_BASE + 200))   --admin-base-port $((DEMO_BASE + 300)) --maxmemory 64mb >"$WORK/demo.out" 2>&1; then
  DEMO_PIDS="$(sed -n 's/^Detached. Stop the nodes with: kill //p' "$WORK/demo.out")"
  run_test "$WORK/cluster.out" python3 "$ROOT/tests/compat/cluster_clients.py" --port "$DEMO_BASE" \
    --memcache-port $((DEMO_BASE + 100)) --forward-port $((DEMO_BASE + 200)) --nodes 6
  demo_status=$run_status
  tally "$WORK/cluster.out" 0
  RANDOM_DEMO_ARGS=(--demo-base-port "$DEMO_BASE" --demo-memcache-base-port $((DEMO_BASE + 100))
    --demo-forward-base-port $((DEMO_BASE + 200)) --demo-nodes 6)
else
  echo "compat: ringcache demo did not start:" >&2
  cat "$WORK/demo.out" >&2
  demo_status=2
  failed=$((failed + 1))
  DEMO_PIDS=""
  RANDOM_DEMO_ARGS=(--entry standalone,memcached)
fi
combine "$demo_status"

# Random sequences, compared with the reference servers: the standalone node of the memcached
# part (RESP and memcached ports), the demo (cluster, forwarding and memcached ports), and a
# cluster-mode redis-server that diff_random.py starts itself.
step "diff_random.py"
# shellcheck disable=SC2086  # RANDOM_COMPAT_ARGS is split at spaces on purpose
run_test "$WORK/random.out" python3 "$ROOT/tests/compat/diff_random.py" \
  --redis-port "$REDIS_PORT" --memcached-port "$MC_PORT" \
  --rc-port "$RC_MC_RESP_PORT" --rc-mc-port "$RC_MC_PORT" "${RANDOM_DEMO_ARGS[@]}" ${RANDOM_COMPAT_ARGS:-}
random_status=$run_status
died=0
if ! kill -0 "$RC_MC_PID" 2>/dev/null; then
  echo "compat: ringcache (standalone node) exited during the random part; its log:" >&2
  tail -n 30 "$WORK/ringcache-mc.log" >&2 || true
  [[ $random_status -ne 0 ]] || random_status=1
  died=1
fi
for pid in $DEMO_PIDS; do
  if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
    echo "compat: a demo node (pid $pid) exited during the tests; the logs are in $WORK/demo" >&2
    [[ $random_status -ne 0 ]] || random_status=1
    died=1
    break
  fi
done
combine "$random_status"
tally "$WORK/random.out" "$died"
# shellcheck disable=SC2086  # one pid per word
[[ -z "$DEMO_PIDS" ]] || kill $DEMO_PIDS 2>/dev/null || true
DEMO_PIDS=""

# A panic in any ringcache node is a bug, whatever the replies were.
panics="$(grep -l 'panicked at' "$WORK"/ringcache*.log "$WORK"/demo/*.log 2>/dev/null || true)"
if [[ -n "$panics" ]]; then
  echo "compat: a ringcache node panicked; see:" >&2
  for log in $panics; do grep -A2 'panicked at' "$log" >&2; done
  failed=$((failed + 1))
  combine 1
fi

step "summary: redis part exit $redis_status, memcached part exit $mc_status, cluster part exit $demo_status, random part exit $random_status"
echo "$passed passed, $failed failed"
exit "$status"
