#!/usr/bin/env bash
# Side-by-side benchmark: ringcache against redis-server (RESP) and memcached (memcached text
# protocol), driven by the same load generator (`ringcache bench`), with repetitions
# interleaved so machine noise hits every server alike. Prints medians and ratios and writes
# every run to target/bench/results.jsonl (summarised by bench/summarize.py).
#
#   bench/compare.sh                 # the whole matrix, 5 repetitions
#   REPS=3 DURATION=5s bench/compare.sh
#   ROWS="resp-get90-p1 mc-set-p16" bench/compare.sh
#
# Each server is pinned to CPU 1 and the load generator to CPU 0 (when the machine has at
# least 2), so every server gets one core: the comparison is per core. Set PIN=0 to disable.
# Installs redis-server and memcached from the distribution's packages when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REPS="${REPS:-5}"
DURATION="${DURATION:-8s}"
WARMUP="${WARMUP:-2s}"
KEYS="${KEYS:-1000000}"
MAXMEM_MB="${MAXMEM_MB:-2048}"
CONNECTIONS="${CONNECTIONS:-50}"
PIN="${PIN:-1}"
OUT_DIR="$ROOT/target/bench"
RESULTS="$OUT_DIR/results.jsonl"
mkdir -p "$OUT_DIR"
: >"$RESULTS"

log() { printf '%s\n' "$*" >&2; }

if [[ "$PIN" == 1 && "$(nproc)" -ge 2 ]] && command -v taskset >/dev/null; then
  SERVER_CPU=(taskset -c 1)
  CLIENT_CPU=(taskset -c 0)
else
  SERVER_CPU=()
  CLIENT_CPU=()
fi

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v memcached >/dev/null || need+=(memcached)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v nc >/dev/null || need+=(netcat-openbsd)
if ((${#need[@]})); then
  log "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

log "building ringcache (release)"
cargo build --release --locked -p ringcache >&2
RC="$ROOT/target/release/ringcache"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RC_PORT=$(free_port); RC_MC_PORT=$(free_port); REDIS_PORT=$(free_port); MC_PORT=$(free_port)

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

start_servers() {
  # Equal memory limits: 2 GB by default, far above the data set, so no run evicts.
  "${SERVER_CPU[@]}" "$RC" server --port "$RC_PORT" --memcache-port "$RC_MC_PORT" --no-admin \
    --maxmemory "${MAXMEM_MB}mb" --threads 1 --log warn &
  PIDS+=($!); RC_PID=$!
  "${SERVER_CPU[@]}" redis-server --port "$REDIS_PORT" --save '' --appendonly no \
    --maxmemory "${MAXMEM_MB}mb" --maxmemory-policy allkeys-lru --loglevel warning &
  PIDS+=($!); REDIS_PID=$!
  "${SERVER_CPU[@]}" memcached -p "$MC_PORT" -U 0 -l 127.0.0.1 -t 2 -m "$MAXMEM_MB" -c 4096 -u root &
  PIDS+=($!); MC_PID=$!
  for port in "$RC_PORT" "$RC_MC_PORT" "$REDIS_PORT" "$MC_PORT"; do
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  done
}

# CPU seconds (user + system) a process has used so far.
cpu_secs() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

# run NAME SERVER PID PROTOCOL PORT [bench args...]: one measured run, appended to $RESULTS.
run() {
  local row="$1" server="$2" pid="$3" protocol="$4" port="$5"
  shift 5
  local before after json
  before=$(cpu_secs "$pid")
  json=$("${CLIENT_CPU[@]}" "$RC" bench --protocol "$protocol" --port "$port" --json --quiet \
    --connections "$CONNECTIONS" --keys "$KEYS" --warmup "$WARMUP" --duration "$DURATION" "$@")
  after=$(cpu_secs "$pid")
  python3 - "$row" "$server" "$before" "$after" "$json" >>"$RESULTS" <<'PY'
import json, sys
row, server, before, after, result = sys.argv[1:]
r = json.loads(result)
r.update(row=row, server=server, server_cpu_secs=float(after) - float(before))
print(json.dumps(r))
PY
  python3 -c 'import json, sys
r = json.loads(sys.argv[1])
print("  %s %s: %.0f ops/s p99 %s us errors %s" % (sys.argv[2], sys.argv[3], r["ops_per_sec"], r["latency_us"]["p99"], r["errors"]))' "$json" "$row" "$server" >&2
}

prefill() {
  local protocol="$1" port="$2"
  "${CLIENT_CPU[@]}" "$RC" bench --protocol "$protocol" --port "$port" --quiet --keys "$KEYS" \
    --prefill --warmup 0 --requests 1 --connections 8 --pipeline 64 >/dev/null
}

rss_kb() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }
used_memory() { redis-cli -p "$1" info memory | tr -d '\r' | awk -F: '/^used_memory:/ { print $2 }'; }
mc_bytes() { printf 'stats\r\nquit\r\n' | timeout 5 nc -q 2 127.0.0.1 "$1" | tr -d '\r' | awk '/STAT bytes / { print $3 }'; }

start_servers
declare -A RSS0=([ringcache]=$(rss_kb "$RC_PID") [redis]=$(rss_kb "$REDIS_PID") [memcached]=$(rss_kb "$MC_PID"))
USED0_RC=$(used_memory "$RC_PORT"); USED0_REDIS=$(used_memory "$REDIS_PORT")
log "prefilling $KEYS keys of 100 bytes on each server"
prefill resp "$RC_PORT"
prefill resp "$REDIS_PORT"
prefill memcache "$MC_PORT"
sleep 1 # let connections release their large buffers
# Memory per key, 1M keys of 100 bytes: the servers' own accounting and resident memory.
python3 - "$KEYS" "${RSS0[ringcache]}" "$(rss_kb "$RC_PID")" "${RSS0[redis]}" "$(rss_kb "$REDIS_PID")" \
  "${RSS0[memcached]}" "$(rss_kb "$MC_PID")" "$USED0_RC" "$(used_memory "$RC_PORT")" \
  "$USED0_REDIS" "$(used_memory "$REDIS_PORT")" "$(mc_bytes "$MC_PORT")" >>"$RESULTS" <<'PY'
import json, sys
keys, *v = sys.argv[1:]
keys = int(keys)
rc0, rc1, r0, r1, m0, m1, u0rc, u1rc, u0r, u1r, mcb = (int(x or 0) for x in v)
for server, rss, used in (("ringcache", rc1 - rc0, int(u1rc) - int(u0rc)),
                          ("redis", r1 - r0, int(u1r) - int(u0r)),
                          ("memcached", m1 - m0, int(mcb))):
    print(json.dumps({"row": "memory-1m-keys", "server": server,
                      "rss_bytes_per_key": rss * 1024 / keys,
                      "accounted_bytes_per_key": used / keys}))
PY

# name protocol ratio pipeline: the throughput matrix of issue #3.
ALL_ROWS="resp-get90-p1 resp-get90-p16 resp-set-p1 resp-set-p16 mc-get90-p1 mc-get90-p16 mc-set-p1 mc-set-p16"
ROWS="${ROWS:-$ALL_ROWS}"

for rep in $(seq "$REPS"); do
  log "repetition $rep of $REPS"
  for row in $ROWS; do
    case "$row" in
      resp-*) proto=resp; a=(ringcache "$RC_PID" "$RC_PORT"); b=(redis "$REDIS_PID" "$REDIS_PORT") ;;
      mc-*) proto=memcache; a=(ringcache "$RC_PID" "$RC_MC_PORT"); b=(memcached "$MC_PID" "$MC_PORT") ;;
    esac
    case "$row" in *get90*) ratio=9:1 ;; *set*) ratio=0:1 ;; esac
    pipeline="${row##*-p}"
    # Alternate which server goes first, so drift in machine load favours neither.
    if ((rep % 2)); then order=(a b); else order=(b a); fi
    for side in "${order[@]}"; do
      declare -n s="$side"
      run "$row" "${s[0]}" "${s[1]}" "$proto" "${s[2]}" --ratio "$ratio" --pipeline "$pipeline"
      unset -n s
    done
  done
done

# Latency at a fixed rate: half of redis-server's saturation throughput at pipeline 1.
if [[ " $ROWS " == *" resp-get90-p1 "* ]]; then
  RATE=$(python3 - "$RESULTS" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if '"resp-get90-p1"' in l and '"redis"' in l]
print(int(statistics.median(r["ops_per_sec"] for r in runs) / 2))
PY
)
  log "fixed-rate latency at $RATE ops/s (half of redis-server's saturation)"
  for rep in $(seq "$REPS"); do
    run "resp-rate-half-redis" ringcache "$RC_PID" resp "$RC_PORT" --ratio 9:1 --rate "$RATE"
    run "resp-rate-half-redis" redis "$REDIS_PID" resp "$REDIS_PORT" --ratio 9:1 --rate "$RATE"
  done
fi

# 1 MB values over a 500-key space: GET and SET.
if [[ "${BIG:-1}" == 1 ]]; then
  for port in "$RC_PORT" "$REDIS_PORT"; do
    "${CLIENT_CPU[@]}" "$RC" bench --port "$port" --quiet --keys 500 --value-size 1048576 --prefill \
      --warmup 0 --requests 1 --connections 4 >/dev/null
  done
  for rep in $(seq "$REPS"); do
    for ratio in 1:0 0:1; do
      row="resp-1mb-$([[ $ratio == 1:0 ]] && echo get || echo set)"
      CONNECTIONS=10 KEYS=500 run "$row" ringcache "$RC_PID" resp "$RC_PORT" --ratio "$ratio" --value-size 1048576
      CONNECTIONS=10 KEYS=500 run "$row" redis "$REDIS_PID" resp "$REDIS_PORT" --ratio "$ratio" --value-size 1048576
    done
  done
fi

# Cross-check with redis-benchmark, so ringcache's own load generator is not the only judge.
if [[ "${CROSSCHECK:-1}" == 1 ]]; then
  log "cross-check with redis-benchmark (GET and SET, 100-byte values, 50 connections, pipeline 16)"
  for rep in $(seq "$REPS"); do
    for side in "ringcache $RC_PORT" "redis $REDIS_PORT"; do
      read -r name port <<<"$side"
      line=$("${CLIENT_CPU[@]}" redis-benchmark -p "$port" -t set,get -n 1000000 -r "$KEYS" -d 100 \
        -c 50 -P 16 -q 2>/dev/null | tr '\r' '\n' | grep 'requests per second' | tr '\n' ' ')
      python3 - "$name" "$line" >>"$RESULTS" <<'PY'
import json, re, sys
name, line = sys.argv[1:]
for cmd, rps in re.findall(r"(SET|GET): ([0-9.]+) requests per second", line):
    print(json.dumps({"row": f"redis-benchmark-{cmd.lower()}-p16", "server": name, "rps": float(rps)}))
PY
      log "  redis-benchmark $name: $line"
    done
  done
fi

# Hit ratio: zipf (0.99) GETs over 1M keys, cache-aside (a miss is followed by a SET), with a
# memory limit that holds about a tenth of the keys; the same limit for both servers.
if [[ "${HITRATIO:-1}" == 1 ]]; then
  HR_MB="${HR_MB:-20}"
  HR_RC=$(free_port); HR_REDIS=$(free_port)
  "${SERVER_CPU[@]}" "$RC" server --port "$HR_RC" --no-memcache --no-admin --threads 1 --log warn \
    --maxmemory "${HR_MB}mb" &
  PIDS+=($!); HR_RC_PID=$!
  "${SERVER_CPU[@]}" redis-server --port "$HR_REDIS" --save '' --appendonly no \
    --maxmemory "${HR_MB}mb" --maxmemory-policy allkeys-lru --loglevel warning &
  PIDS+=($!); HR_REDIS_PID=$!
  sleep 0.5
  for rep in $(seq "$REPS"); do
    for side in "ringcache $HR_RC_PID $HR_RC" "redis $HR_REDIS_PID $HR_REDIS"; do
      read -r name pid port <<<"$side"
      WARMUP=10s run "hit-ratio-zipf-${HR_MB}mb" "$name" "$pid" resp "$port" --ratio 1:0 \
        --set-on-miss --distribution zipf --zipf-s 0.99 --seed "$rep"
    done
  done
  kill "$HR_RC_PID" "$HR_REDIS_PID"
fi

# Churn far beyond maxmemory: resident memory must stay near the budget.
if [[ "${CHURN:-1}" == 1 ]]; then
  CH_MB=256
  CH_RC=$(free_port)
  "${SERVER_CPU[@]}" "$RC" server --port "$CH_RC" --no-memcache --no-admin --threads 1 --log warn \
    --maxmemory "${CH_MB}mb" &
  PIDS+=($!); CH_PID=$!
  sleep 0.5
  base_kb=$(rss_kb "$CH_PID")
  KEYS=10000000 WARMUP=0 DURATION=30s run "churn-256mb" ringcache "$CH_PID" resp "$CH_RC" \
    --ratio 0:1 --value-size 64-1024
  python3 - "$CH_MB" "$base_kb" "$(rss_kb "$CH_PID")" "$(used_memory "$CH_RC")" >>"$RESULTS" <<'PY'
import json, sys
mb, base_kb, rss_kb, used = (int(x) for x in sys.argv[1:])
print(json.dumps({"row": "memory-churn", "server": "ringcache", "maxmemory_bytes": mb << 20,
                  "baseline_rss_bytes": base_kb * 1024, "rss_bytes": rss_kb * 1024,
                  "used_memory": used,
                  "rss_over_budget": (rss_kb - base_kb) * 1024 / (mb << 20)}))
PY
  kill "$CH_PID"
fi

python3 "$ROOT/bench/summarize.py" "$RESULTS"
