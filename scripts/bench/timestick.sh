#!/usr/bin/env bash
# The TimeStick part of `make bench` alone, against the release build: Redis, a 2-node
# cluster and a memory-mode node; `wrk` on node 1's /healthz, then `murmur-load
# timestick` closed loop on node 1 (cluster mode) and on the memory node, with the same
# parameters as scripts/bench.sh (full mode). Prints requests/s and server CPU µs per
# request for each.
# Usage: scripts/bench/timestick.sh [OUT_DIR]   (build first:
#   cargo build --release -p murmur-gateway -p murmur-loadtest --bin murmur --bin murmur-load)
# PERF=1: also records a perf profile of each node (and Redis, with cluster node 1)
# during a second, short run.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/bench-timestick}
mkdir -p "$OUT/logs"
: >"$OUT/commands.txt"; : >"$OUT/notes.txt"
LOGS=$OUT/logs
source scripts/bench/lib.sh
trap 'stop_all' EXIT
MURMUR=${MURMUR:-target/release/murmur}
LOAD=target/release/murmur-load
TS_SESSIONS=1000; TS_CONNS=32; WRK_D=8s; LONG=(--warmup 2s --duration 8s --drain 3s)
# TS_RATE=N: an open-loop rate of N POSTs/s instead of the closed loop (CPU per POST at
# one offered rate compares builds with less scheduling noise).
TS_RATE=${TS_RATE:-0}

REDIS_PORT=$(free_port)
start_bg "$LOGS/redis.log" -- redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
REDIS_PID=$BG_PID
wait_port "$REDIS_PORT"
declare -A PUB INT SINKP NODE_PID
start_node n1 "redis://127.0.0.1:$REDIS_PORT/"
start_node n2 "redis://127.0.0.1:$REDIS_PORT/"
start_node mem ""
tck=$(getconf CLK_TCK)

before=$(cpu_ticks "${NODE_PID[n1]}")
wrk -t1 -c"$TS_CONNS" -d"$WRK_D" "http://127.0.0.1:${INT[n1]}/healthz" >"$OUT/wrk.txt" 2>&1
after=$(cpu_ticks "${NODE_PID[n1]}")
wrk_rps=$(awk '/Requests\/sec/{print $2}' "$OUT/wrk.txt")
wrk_n=$(awk '/requests in/{print $1}' "$OUT/wrk.txt")
echo "wrk /healthz: $wrk_rps req/s, $(awk -v a="$before" -v b="$after" -v t="$tck" -v n="$wrk_n" \
  'BEGIN{printf "%.1f", (b-a)/t*1e6/n}') µs server CPU/req"

post() { # name url pid [more --watch args]
  local name=$1 url=$2 pid=$3
  shift 3
  "$LOAD" timestick --url "$url" --sessions "$TS_SESSIONS" --connections "$TS_CONNS" --rates "$TS_RATE" \
    "${LONG[@]}" --progress never --watch "node=$pid" "$@" --json "$OUT/$name.json" >"$OUT/$name.txt" 2>&1
  python3 - "$OUT/$name.json" "$wrk_rps" "$name" <<'PY'
import json, sys
st = json.load(open(sys.argv[1]))["steps"][0]
rate, wrk = st["events_per_s"], float(sys.argv[2])
cpu = dict(st["cpu"]["per_process"])
n = st["events_per_s"] * st["measure_s"]
per = ", ".join(f"{k} {v * 1e6 / n:.1f} µs" for k, v in cpu.items())
print(f"TimeStick POST {sys.argv[3]}: {rate:.0f} POSTs/s ({rate / wrk * 100:.0f}% of wrk), "
      f"CPU per POST: {per}; load tool {st['cpu']['tool_cpu_s'] * 1e6 / n:.1f} µs; errors {st['errors']}, "
      f"p50 {st['latency']['p50_ms']} ms, p99 {st['latency']['p99_ms']} ms")
PY
}
redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
post cluster "http://127.0.0.1:${PUB[n1]}" "${NODE_PID[n1]}" --watch "redis=$REDIS_PID"
redis-cli -p "$REDIS_PORT" INFO commandstats >"$OUT/redis-commandstats.txt"
post memory "http://127.0.0.1:${PUB[mem]}" "${NODE_PID[mem]}"
if [ "${PERF:-0}" = 1 ]; then
  for name in n1 mem; do
    url="http://127.0.0.1:${PUB[$name]}"
    "$LOAD" timestick --url "$url" --sessions "$TS_SESSIONS" --connections "$TS_CONNS" --rates 0 --warmup 1s --duration 9s --progress never >/dev/null 2>&1 &
    lp=$!
    sleep 3
    pids=${NODE_PID[$name]}
    [ "$name" = n1 ] && pids="$pids,$REDIS_PID"
    perf record -q -F 999 -g -p "$pids" -o "$OUT/perf-$name.data" -- sleep 5 2>/dev/null || true
    wait "$lp" || true
    perf report -i "$OUT/perf-$name.data" --no-children --sort comm,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | cut -c1-150 | head -60 >"$OUT/perf-$name.txt" || true
  done
fi
