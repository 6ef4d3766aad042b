#!/usr/bin/env bash
# `make soak`: a long run under steady mixed load on a 3-node cluster, watching each
# node's memory (VmRSS) and open file descriptors for a slope, i.e. a leak.
#
# Builds release binaries, starts its own redis-server and three nodes (cluster mode,
# development secrets) on free ports, drives Helios fan-out, Helios RPC, chat, TimeStick
# and Sink load with murmur-load for SOAK_SECONDS, samples /proc/<pid>/status (VmRSS) and
# /proc/<pid>/fd of every node every SOAK_INTERVAL seconds, fits a least-squares line per
# node over the samples after the warm-up, prints a table and exits 1 when a slope is over
# its threshold, a node died, a load run failed or a load client was disconnected by the
# server. Not part of `make test`.
#
# Environment:
#   SOAK_SECONDS=600          how long the load runs
#   SOAK_INTERVAL=5           seconds between samples
#   SOAK_WARMUP=              seconds left out of the fit (default: a fifth of SOAK_SECONDS)
#   SOAK_MAX_RSS_SLOPE=1.0    MiB per minute, per node
#   SOAK_MAX_FD_SLOPE=0.5     descriptors per minute, per node
#   SOAK_RATE_SCALE=1         multiplies every load rate (integer)
#   SOAK_OUT=target/soak      samples.csv, summary.txt, the load tool's JSON results, logs/
#   SOAK_PROFILE=release      `debug` uses target/debug binaries (a quick check of the script)
# Documented in docs/operations.md ("Soak").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

SECS=${SOAK_SECONDS:-600}
INTERVAL=${SOAK_INTERVAL:-5}
WARMUP=${SOAK_WARMUP:-$((SECS / 5))}
MAX_RSS=${SOAK_MAX_RSS_SLOPE:-1.0}
MAX_FD=${SOAK_MAX_FD_SLOPE:-0.5}
SCALE=${SOAK_RATE_SCALE:-1}
OUT=${SOAK_OUT:-target/soak}
PROFILE=${SOAK_PROFILE:-release}
for v in SECS INTERVAL WARMUP SCALE; do
  case "${!v}" in '' | *[!0-9]*) echo "soak: $v must be a whole number, got '${!v}'" >&2; exit 2 ;; esac
done
if [ "$WARMUP" -ge "$SECS" ]; then
  echo "soak: SOAK_WARMUP ($WARMUP) must be shorter than SOAK_SECONDS ($SECS)" >&2
  exit 2
fi

mkdir -p "$OUT/logs"
rm -f "$OUT"/*.json "$OUT"/samples.csv "$OUT"/summary.txt "$OUT"/logs/*.log
: >"$OUT/commands.txt"
# free_port, start_bg, wait_http, wait_port, stop_pid, stop_all, log, run: shared with
# `make bench`. Everything started here is stopped on exit, newest first.
source scripts/bench/lib.sh
note() { echo "note: $*" >&2; }
trap 'stop_all' EXIT
trap 'exit 130' INT TERM

scripts/ensure-tools.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [ "$PROFILE" = release ]; then
  log "release build"
  run cargo build --release -p murmur-gateway -p murmur-loadtest --bin murmur --bin murmur-load
else
  log "debug build"
  run cargo build -p murmur-gateway -p murmur-loadtest --bin murmur --bin murmur-load
fi
MURMUR=$ROOT/target/$PROFILE/murmur
LOAD=$ROOT/target/$PROFILE/murmur-load

# ---- servers ------------------------------------------------------------------------------
log "redis and three nodes"
REDIS_PORT=$(free_port)
start_bg "$OUT/logs/redis.log" -- redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
wait_port "$REDIS_PORT"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"

NAMES=(node-1 node-2 node-3)
declare -A PUB INT SINKP PID
start_node() { # name
  local name=$1 attempt
  for attempt in 1 2 3; do
    PUB[$name]=$(free_port); INT[$name]=$(free_port); SINKP[$name]=$(free_port)
    start_bg "$OUT/logs/$name.log" MURMUR_DEV=1 MURMUR_NODE_ID="soak-$name" MURMUR_REDIS_URL="$REDIS_URL" \
      MURMUR_LISTEN="127.0.0.1:${PUB[$name]}" MURMUR_INTERNAL_LISTEN="127.0.0.1:${INT[$name]}" \
      MURMUR_SINK_LISTEN="127.0.0.1:${SINKP[$name]}" MURMUR_LOG=warn MURMUR_DRAIN_DELAY=0s -- "$MURMUR" serve
    PID[$name]=$BG_PID
    if wait_http "http://127.0.0.1:${INT[$name]}/readyz" 30 "$BG_PID"; then return 0; fi
    echo "node $name did not start (attempt $attempt; log $OUT/logs/$name.log)" >&2
    stop_pid "$BG_PID"
  done
  return 1
}
for n in "${NAMES[@]}"; do start_node "$n"; done
URLS="http://127.0.0.1:${PUB[node-1]},http://127.0.0.1:${PUB[node-2]},http://127.0.0.1:${PUB[node-3]}"

# ---- load ---------------------------------------------------------------------------------
# One step of SOAK_SECONDS per scenario, all at once, at modest rates: the point is a
# steady state to watch, not a ceiling. --min-events 1: a scenario that delivers nothing
# fails the soak.
log "load for ${SECS} s"
COMMON=(--warmup 0s --duration "${SECS}s" --drain 3s --progress never --workers 1 --min-events 1)
declare -A LOAD_PID
load() { # name args...
  local name=$1; shift
  start_bg "$OUT/logs/load-$name.log" -- "$LOAD" "$@" "${COMMON[@]}" --json "$OUT/$name.json" --label "soak: $name"
  LOAD_PID[$name]=$BG_PID
}
load fanout fanout --system helios --url "$URLS" --subscribers 30 --publishers 3 --rates $((200 * SCALE))
load rpc rpc --caller-url "http://127.0.0.1:${PUB[node-1]}" --provider-url "http://127.0.0.1:${PUB[node-2]}" \
  --providers 2 --callers 4 --rates $((100 * SCALE))
load chat chat --url "$URLS" --members 30 --senders 3 --rates $((20 * SCALE))
load timestick timestick --url "http://127.0.0.1:${PUB[node-3]}" --sessions 20 --pollers 10 --connections 8 \
  --rates $((100 * SCALE))
for n in "${NAMES[@]}"; do
  load "sink-$n" sink --addr "127.0.0.1:${SINKP[$n]}" --devices 10 --window 4 --rates $((50 * SCALE))
done

# ---- sampling -----------------------------------------------------------------------------
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
echo "t_s,node,rss_kib,fds" >"$OUT/samples.csv"
START=$(date +%s)
DEAD=()
next_report=60
while :; do
  t=$(( $(date +%s) - START ))
  for n in "${NAMES[@]}"; do
    r=$(rss_kib "${PID[$n]}")
    if [ -z "$r" ]; then
      DEAD+=("$n (gone after ${t} s; log $OUT/logs/$n.log)")
      continue
    fi
    echo "$t,$n,$r,$(fds "${PID[$n]}")" >>"$OUT/samples.csv"
  done
  [ "${#DEAD[@]}" -eq 0 ] || break
  if [ "$t" -ge "$next_report" ]; then
    echo "soak: ${t}/${SECS} s: $(tail -n ${#NAMES[@]} "$OUT/samples.csv" |
      awk -F, '{printf "%s %.1f MiB %d fds  ", $2, $3 / 1024, $4}')" >&2
    next_report=$((next_report + 60))
  fi
  # The last sample comes one interval before the load runs end (they started just
  # before START and stop SOAK_SECONDS after their own setup).
  [ $((t + 2 * INTERVAL)) -le "$SECS" ] || break
  sleep "$INTERVAL"
done

# ---- the load runs' outcome -----------------------------------------------------------------
FAILED=()
for name in "${!LOAD_PID[@]}"; do
  rc=0
  wait "${LOAD_PID[$name]}" || rc=$?
  if [ "$rc" != 0 ]; then
    FAILED+=("load $name exited $rc (log $OUT/logs/load-$name.log)")
  fi
  # The step's summary line: rate, loss, latency, errors, disconnects.
  grep -h "^soak: $name: " "$OUT/logs/load-$name.log" 2>/dev/null | tail -1 | sed 's/^/  /' >&2 || true
  disc=$(grep -o '"disconnects": *[0-9]*' "$OUT/$name.json" 2>/dev/null | head -1 | grep -o '[0-9]*$' || true)
  if [ "${disc:-0}" -gt 0 ]; then
    FAILED+=("load $name: $disc client(s) disconnected by the server (\"errors\" in $OUT/$name.json)")
  fi
done

# ---- fit and verdict ------------------------------------------------------------------------
log "slopes over t >= ${WARMUP} s (least squares)"
awk -F, -v warm="$WARMUP" -v max_rss="$MAX_RSS" -v max_fd="$MAX_FD" '
  NR == 1 { next }
  {
    node = $2; t = $1; r = $3 / 1024; f = $4
    if (!(node in first_r)) { first_r[node] = r; first_f[node] = f; order[++nodes] = node }
    last_r[node] = r; last_f[node] = f
    if (r > max_r[node]) max_r[node] = r
    if (t < warm) next
    n[node]++; st[node] += t; stt[node] += t * t
    sr[node] += r; str[node] += t * r; sf[node] += f; stf[node] += t * f
  }
  function slope(k, sy, sty,   d) {
    d = n[k] * stt[k] - st[k] * st[k]
    return d == 0 ? 0 : 60 * (n[k] * sty - st[k] * sy) / d
  }
  END {
    printf "%-8s %7s %10s %10s %10s %12s %9s %7s %8s  %s\n", "node", "samples", "RSS start", "RSS end",
      "RSS max", "RSS MiB/min", "fds start", "fds end", "fds/min", "verdict"
    bad = 0
    for (i = 1; i <= nodes; i++) {
      k = order[i]
      if (n[k] < 3) { printf "%-8s too few samples after the warm-up (%d)\n", k, n[k]; bad = 1; continue }
      rs = slope(k, sr[k], str[k]); fs = slope(k, sf[k], stf[k])
      verdict = "ok"
      if (rs > max_rss) { verdict = "RSS slope over " max_rss " MiB/min"; bad = 1 }
      if (fs > max_fd) { verdict = (verdict == "ok" ? "" : verdict "; ") "fd slope over " max_fd "/min"; bad = 1 }
      printf "%-8s %7d %8.1f M %8.1f M %8.1f M %12.3f %9d %7d %8.3f  %s\n", k, n[k], first_r[k], last_r[k],
        max_r[k], rs, first_f[k], last_f[k], fs, verdict
    }
    exit bad
  }' "$OUT/samples.csv" | tee "$OUT/summary.txt" || FAILED+=("a slope is over its threshold (see above)")

for d in "${DEAD[@]}"; do FAILED+=("node $d"); done
if [ "${#FAILED[@]}" -gt 0 ]; then
  printf 'soak FAILED:\n' >&2
  printf '  %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "soak passed: ${SECS} s, samples in $OUT/samples.csv, table in $OUT/summary.txt" >&2
