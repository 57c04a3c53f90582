#!/usr/bin/env bash
# Migration speed: a 3-primary cluster holding KEYS keys of VALUE bytes grows to 4 primaries,
# moving a quarter of the slots, for ringcache (`ringcache cluster add-node`, live migration
# driven by the Raft leader) and Redis Cluster (`redis-cli --cluster add-node` then
# `redis-cli --cluster rebalance --cluster-use-empty-masters`, with the default pipeline of
# 10 keys per MIGRATE and with --cluster-pipeline 100). No replicas on either side; the same
# loader fills both (`ringcache bench --cluster --prefill`); every key is counted after.
#
#   bench/migration_speed.sh                            # 1M keys of 100 bytes
#   KEYS=10000 VALUE=100000 bench/migration_speed.sh    # 10k keys of 100 KB
#
# Prints one line per system with seconds, keys/s and MB/s for the keys that moved.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
KEYS="${KEYS:-1000000}"
VALUE="${VALUE:-100}"
RC="${RINGCACHE_BIN:-$ROOT/target/release/ringcache}"
WORK="$(mktemp -d)"
log() { printf '%s\n' "$*" >&2; }
if [[ -z "${RINGCACHE_BIN:-}" ]]; then
  log "building ringcache (release)"
  cargo build --release --locked -p ringcache >&2
fi
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; log "port $1 did not open"; exit 1; }
now() { date +%s.%N; }
dbsize_sum() { local t=0 n; for p in "$@"; do n=$(redis-cli -p "$p" dbsize); t=$((t + n)); done; echo "$t"; }
report() { # system seconds moved_keys
  python3 -c 'import sys
system, secs, moved, value = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print("%-44s %7.2f s  %9.0f keys/s  %7.1f MB/s  (%d keys moved)" % (system, secs, moved / secs, moved * value / secs / 1e6, moved))' "$@" "$VALUE"
}
MEM=$(( KEYS * (VALUE + 200) * 2 / 1048576 + 256 ))mb
# Large values are loaded gently: 8 connections x 64 requests of 100 KB in flight saturate
# this 2-core VM (see docs/scaling.md).
if ((VALUE > 10000)); then LOAD=(--connections 2 --pipeline 4); else LOAD=(--connections 8 --pipeline 64); fi

# ringcache: 7401-7403, then 7404 (bus +10000).
for port in 7401 7402 7403 7404; do
  "$RC" server --cluster-enabled --port "$port" --no-memcache --no-admin --maxmemory "$MEM" \
    --max-value-bytes 1mb --log warn --dir "$WORK/rc-$port" &
  PIDS+=($!)
done
for port in 7401 7402 7403 7404; do wait_port "$port"; done
"$RC" cluster create --replicas 0 127.0.0.1:7401 127.0.0.1:7402 127.0.0.1:7403 >/dev/null
log "ringcache: loading $KEYS keys of $VALUE bytes"
"$RC" bench --cluster --port 7401 --quiet --keys "$KEYS" --value-size "$VALUE" --prefill \
  --warmup 0 --requests 1 "${LOAD[@]}" >/dev/null
before=$(dbsize_sum 7401 7402 7403)
[[ "$before" == "$KEYS" ]] || { log "ringcache: loaded $before of $KEYS keys"; exit 1; }
t0=$(now)
"$RC" cluster add-node 127.0.0.1:7404 --to 127.0.0.1:7401 --replicas 0 >"$WORK/rc.out"
t1=$(now)
moved=$(redis-cli -p 7404 dbsize)
after=$(dbsize_sum 7401 7402 7403 7404)
[[ "$before" == "$after" ]] || { log "ringcache: $before keys before, $after after"; exit 1; }
RC_LINE=$(report "ringcache add-node" "$(echo "$t1 - $t0" | bc)" "$moved")

# Redis: a fresh 3-primary cluster per run, then a 4th primary.
redis_run() { # pipeline base-port
  local pipeline="$1" base="$2" ports=() pids=() port
  for i in 1 2 3 4; do
    port=$((base + i)); ports+=("$port")
    mkdir -p "$WORK/redis-$port"
    (cd "$WORK/redis-$port" && exec redis-server --port "$port" --cluster-enabled yes \
      --cluster-config-file nodes.conf --save '' --appendonly no --maxmemory "$MEM" \
      --loglevel warning --logfile "$WORK/redis-$port/redis.log") &
    pids+=($!); PIDS+=($!)
  done
  for port in "${ports[@]}"; do wait_port "$port"; done
  redis-cli --cluster create "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" \
    "127.0.0.1:${ports[2]}" --cluster-replicas 0 --cluster-yes >/dev/null
  for _ in $(seq 100); do
    redis-cli -p "${ports[0]}" cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1
  done
  log "redis (pipeline $pipeline): loading $KEYS keys of $VALUE bytes"
  "$RC" bench --cluster --port "${ports[0]}" --quiet --keys "$KEYS" --value-size "$VALUE" \
    --prefill --warmup 0 --requests 1 "${LOAD[@]}" >/dev/null
  local before after t0 t1 moved
  before=$(dbsize_sum "${ports[0]}" "${ports[1]}" "${ports[2]}")
  [[ "$before" == "$KEYS" ]] || { log "redis: loaded $before of $KEYS keys"; exit 1; }
  t0=$(now)
  redis-cli --cluster add-node "127.0.0.1:${ports[3]}" "127.0.0.1:${ports[0]}" >/dev/null
  # rebalance needs the new node to see the cluster up, and every node to know it.
  for _ in $(seq 400); do
    local ready=1
    redis-cli -p "${ports[3]}" cluster info | grep -q 'cluster_state:ok' || ready=0
    for port in "${ports[@]}"; do
      [[ "$(redis-cli -p "$port" cluster nodes | wc -l)" == 4 ]] || ready=0
    done
    ((ready)) && break
    sleep 0.05
  done
  redis-cli --cluster rebalance "127.0.0.1:${ports[0]}" --cluster-use-empty-masters \
    --cluster-pipeline "$pipeline" >/dev/null
  t1=$(now)
  moved=$(redis-cli -p "${ports[3]}" dbsize)
  after=$(dbsize_sum "${ports[@]}")
  [[ "$before" == "$after" ]] || { log "redis: $before keys before, $after after"; exit 1; }
  report "redis-cli --cluster rebalance, pipeline $pipeline" "$(echo "$t1 - $t0" | bc)" "$moved"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
REDIS_10=$(redis_run 10 7410)
REDIS_100=$(redis_run 100 7420)
echo "$RC_LINE"
echo "$REDIS_10"
echo "$REDIS_100"
