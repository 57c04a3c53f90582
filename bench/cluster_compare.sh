#!/usr/bin/env bash
# A 3-shard ringcache cluster (no replicas) against a 3-primary Redis Cluster created with
# `redis-cli --cluster create`, both driven by the same cluster-aware load generator
# (`ringcache bench --cluster`), repetitions interleaved. Also measures ringcache's
# forwarding: the same load through one node's forwarding RESP port and memcached port, where
# 2 of 3 requests take one extra hop, next to the direct (cluster-aware) runs.
#
#   bench/cluster_compare.sh            # 5 repetitions
#   REPS=3 DURATION=5s bench/cluster_compare.sh
#
# All six server processes share CPU 1 and the load generator runs on CPU 0 (PIN=0 disables
# pinning), so both clusters get the same single core. Results go to
# target/bench/cluster.jsonl; medians and ratios are printed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REPS="${REPS:-5}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-2s}"
KEYS="${KEYS:-200000}"
CONNECTIONS="${CONNECTIONS:-50}"
PIN="${PIN:-1}"
OUT_DIR="$ROOT/target/bench"
RESULTS="$OUT_DIR/cluster.jsonl"
WORK="$(mktemp -d)"
mkdir -p "$OUT_DIR"
: >"$RESULTS"
log() { printf '%s\n' "$*" >&2; }

if [[ "$PIN" == 1 && "$(nproc)" -ge 2 ]] && command -v taskset >/dev/null; then
  SERVER_CPU=(taskset -c 1); CLIENT_CPU=(taskset -c 0)
else
  SERVER_CPU=(); CLIENT_CPU=()
fi
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
log "building ringcache (release)"
cargo build --release --locked -p ringcache >&2
RC="$ROOT/target/release/ringcache"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.05; done; log "port $1 did not open"; exit 1; }

# Ports: ringcache 7101-7103 (bus 17101-17103, forwarding 7201, memcached 7301), redis 7111-7113.
RC_NODES=(); RC_PIDS=()
for i in 1 2 3; do
  port=$((7100 + i))
  "${SERVER_CPU[@]}" "$RC" server --cluster-enabled --port "$port" --memcache-port $((7300 + i)) \
    --forward-port $((7200 + i)) --no-admin --threads 1 --maxmemory 1gb --log warn \
    --dir "$WORK/rc-$port" &
  PIDS+=($!); RC_PIDS+=($!); RC_NODES+=("127.0.0.1:$port")
done
REDIS_NODES=(); REDIS_PIDS=()
for i in 1 2 3; do
  port=$((7110 + i))
  mkdir -p "$WORK/redis-$port"
  (cd "$WORK/redis-$port" && exec "${SERVER_CPU[@]}" redis-server --port "$port" --cluster-enabled yes \
    --cluster-config-file nodes.conf --save '' --appendonly no --maxmemory 1gb \
    --maxmemory-policy allkeys-lru --loglevel warning) &
  PIDS+=($!); REDIS_PIDS+=($!); REDIS_NODES+=("127.0.0.1:$port")
done
for n in "${RC_NODES[@]}" "${REDIS_NODES[@]}"; do wait_port "${n##*:}"; done
log "creating both clusters"
"$RC" cluster create --replicas 0 "${RC_NODES[@]}" >&2
redis-cli --cluster create "${REDIS_NODES[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 100); do
  redis-cli -p 7111 cluster info | grep -q 'cluster_state:ok' && break; sleep 0.1
done

cpu_secs() { local t=0; for pid in "$@"; do t=$(awk -v hz="$(getconf CLK_TCK)" -v t="$t" '{ print t + ($14 + $15) / hz }' "/proc/$pid/stat"); done; echo "$t"; }

# run ROW SERVER PORT PIDS... -- [bench args]: one measured run appended to $RESULTS.
run() {
  local row="$1" server="$2" port="$3"; shift 3
  local pids=()
  while [[ "$1" != "--" ]]; do pids+=("$1"); shift; done
  shift
  local before after json
  before=$(cpu_secs "${pids[@]}")
  json=$("${CLIENT_CPU[@]}" "$RC" bench --port "$port" --json --quiet --connections "$CONNECTIONS" \
    --keys "$KEYS" --warmup "$WARMUP" --duration "$DURATION" "$@")
  after=$(cpu_secs "${pids[@]}")
  python3 - "$row" "$server" "$before" "$after" "$json" >>"$RESULTS" <<'PY'
import json, sys
row, server, before, after, result = sys.argv[1:]
r = json.loads(result)
r.update(row=row, server=server, server_cpu_secs=float(after) - float(before))
print(json.dumps(r))
PY
  python3 -c 'import json, sys
r = json.loads(sys.argv[1])
print("  %s %s: %.0f ops/s p50 %s p99 %s us errors %s redirects %s" % (sys.argv[2], sys.argv[3], r["ops_per_sec"], r["latency_us"]["p50"], r["latency_us"]["p99"], r["errors"], r["redirects"]))' "$json" "$row" "$server" >&2
}

log "prefilling $KEYS keys in each cluster"
for port in 7101 7111; do
  "${CLIENT_CPU[@]}" "$RC" bench --cluster --port "$port" --quiet --keys "$KEYS" --prefill \
    --warmup 0 --requests 1 --connections 8 --pipeline 64 >/dev/null
done

for rep in $(seq "$REPS"); do
  log "repetition $rep/$REPS"
  for spec in "get90-p1 9:1 1" "get90-p16 9:1 16" "set-p16 0:1 16"; do
    read -r name ratio pipeline <<<"$spec"
    run "cluster-$name" ringcache 7101 "${RC_PIDS[@]}" -- --cluster --ratio "$ratio" --pipeline "$pipeline"
    run "cluster-$name" redis 7111 "${REDIS_PIDS[@]}" -- --cluster --ratio "$ratio" --pipeline "$pipeline"
  done
  # Forwarding: the same get90-p1 load through one node, plain (not cluster-aware) clients.
  run "forward-get90-p1" ringcache-resp-forward 7201 "${RC_PIDS[@]}" -- --ratio 9:1 --pipeline 1
  run "forward-get90-p1" ringcache-memcached 7301 "${RC_PIDS[@]}" -- --protocol memcache --ratio 9:1 --pipeline 1
done

python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault(r["row"], {}).setdefault(r["server"], []).append(r)
def med(runs, f):
    return statistics.median(f(r) for r in runs)
print("| row | server | ops/s (median) | p50 us | p99 us | server CPU us/op | ratio vs redis |")
print("|---|---|---|---|---|---|---|")
for row, servers in rows.items():
    if row.startswith("forward"):
        base = rows["cluster-get90-p1"]["ringcache"]
    else:
        base = servers.get("redis") or servers["ringcache"]
    base_ops = med(base, lambda r: r["ops_per_sec"])
    for server, runs in servers.items():
        ops = med(runs, lambda r: r["ops_per_sec"])
        cpu = med(runs, lambda r: r["server_cpu_secs"] * 1e6 / max(r["ops"], 1))
        label = "vs direct" if row.startswith("forward") else ""
        print(f"| {row} | {server} | {ops:,.0f} | {med(runs, lambda r: r['latency_us']['p50']):.0f} | "
              f"{med(runs, lambda r: r['latency_us']['p99']):.0f} | {cpu:.1f} | {ops / base_ops:.2f}x {label}|")
PY
