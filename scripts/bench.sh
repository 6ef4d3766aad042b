#!/usr/bin/env bash
# `make bench`: builds release binaries, starts Redis, a 2-node Murmuration cluster, a
# memory-mode node, a 2-process Socket.IO cluster and a 2-server NATS cluster, runs the
# standard scenarios with murmur-load, stops everything and writes BENCHMARKS.md
# (figures, machine, commands).
# `make bench-smoke` (BENCH_MODE=smoke): the same pipeline for a few seconds each, into
# target/bench-smoke/ (BENCHMARKS.md there), to check the harness itself.
#
# Environment:
#   BENCH_MODE=full|smoke   (full)
#   BENCH_OUT=DIR           results directory (full: loadtest/results, smoke: target/bench-smoke)
#   BENCH_REPORT=FILE       the Markdown report (full: BENCHMARKS.md)
#   BENCH_QUIET_WAIT=S      wait up to S seconds for a quiet machine first (full: 120, smoke: 0)
#   BENCH_SKIP_SOCKETIO=1   skip the Socket.IO side (no node/npm)
#   BENCH_SKIP_NATS=1       skip the NATS side
#   BENCH_NATS_SERVER=PATH  the nats-server binary (default: nats-server on PATH, else
#                           /usr/sbin/nats-server); never the system service on 4222:
#                           the script starts its own servers on free ports
# How to read the output: docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

MODE=${BENCH_MODE:-full}
case "$MODE" in
  full)  OUT=${BENCH_OUT:-loadtest/results}; REPORT=${BENCH_REPORT:-BENCHMARKS.md}; QUIET=${BENCH_QUIET_WAIT:-120} ;;
  smoke) OUT=${BENCH_OUT:-target/bench-smoke}; REPORT=${BENCH_REPORT:-$OUT/BENCHMARKS.md}; QUIET=${BENCH_QUIET_WAIT:-0} ;;
  *) echo "BENCH_MODE must be full or smoke" >&2; exit 2 ;;
esac
source scripts/bench/lib.sh

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.svg "$OUT"/*.txt "$OUT"/*.log
: >"$OUT/commands.txt"
: >"$OUT/notes.txt"
LOGS="$OUT/logs"
mkdir -p "$LOGS"
rm -f "$LOGS"/*.log "$LOGS"/*.conf

trap 'stop_all' EXIT
trap 'exit 130' INT TERM
START_TS=$(date +%s)

# ---- parameters -------------------------------------------------------------------------
if [ "$MODE" = full ]; then
  STEP=(--warmup 2s --duration 5s --drain 3s)
  FAN_SUBS=100; FAN_PUBS=2
  SIO_RATES=200,400,800,1600,2400,3200,4800
  MUR_RATES=200,400,800,1600,2400,3200,4800,6400,8000,9600,12800
  CROSS_SUBS=20; CROSS_RATE=1000
  RPC_RATES=2000,8000,16000; RPC_LOCAL_RATES=8000,16000
  # Chat group fan-out: rates in messages/s = deliveries/s (20k, 40k, 80k, 160k, 320k)
  # / receivers of the group. Murmuration caps a group at 256 participants, so its
  # large group is GROUP_LARGE/GROUP_DEVICES members with GROUP_DEVICES devices each.
  GROUP_SMALL=200; GROUP_LARGE=2000; GROUP_DEVICES=10; GROUP_SENDERS=20
  GROUP_SMALL_RATES=100,200,400,800,1600; GROUP_LARGE_RATES=10,20,40,80,160
  TS_SESSIONS=1000; TS_CONNS=32; TS_POLL_SESSIONS=200; TS_POLL_RATE=2000
  SINK_DEVICES=100; SINK_WINDOW=32
  IDLE_CONNS=10000; IDLE_HOLD=5s; INBOX_SESSIONS=1000
  RB_N=200000; RB_NP=1000000; WRK_D=8s; LONG=(--warmup 2s --duration 8s --drain 3s)
else
  STEP=(--warmup 500ms --duration 1s --drain 2s)
  FAN_SUBS=10; FAN_PUBS=2
  SIO_RATES=50,100
  MUR_RATES=50,100
  CROSS_SUBS=4; CROSS_RATE=100
  RPC_RATES=100; RPC_LOCAL_RATES=100
  GROUP_SMALL=20; GROUP_LARGE=100; GROUP_DEVICES=2; GROUP_SENDERS=4
  GROUP_SMALL_RATES=50,100; GROUP_LARGE_RATES=20
  TS_SESSIONS=500; TS_CONNS=4; TS_POLL_SESSIONS=5; TS_POLL_RATE=50
  SINK_DEVICES=5; SINK_WINDOW=8
  IDLE_CONNS=200; IDLE_HOLD=1s; INBOX_SESSIONS=50
  RB_N=10000; RB_NP=20000; WRK_D=1s; LONG=("${STEP[@]}")
fi

# ---- tools --------------------------------------------------------------------------------
log "tools"
scripts/ensure-tools.sh
if ! command -v wrk >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "wrk missing: installing it with apt-get" >&2
    (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null) \
      || note "wrk could not be installed: the HTTP ceiling was not measured"
  else
    note "wrk is not installed (apt-get install wrk): the HTTP ceiling was not measured"
  fi
fi
SIO=1
if [ "${BENCH_SKIP_SOCKETIO:-0}" = 1 ]; then
  SIO=0; note "Socket.IO skipped (BENCH_SKIP_SOCKETIO=1)"
elif ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  SIO=0; note "node/npm are not installed: the Socket.IO side was not measured"
else
  log "npm ci (loadtest/peers/socketio)"
  record npm ci --prefix loadtest/peers/socketio --no-audit --no-fund
  if ! npm ci --prefix loadtest/peers/socketio --no-audit --no-fund --loglevel=error >"$LOGS/npm.log" 2>&1; then
    SIO=0; note "npm ci failed (see $LOGS/npm.log): the Socket.IO side was not measured"
  fi
fi

NATS=1
NATS_BIN=${BENCH_NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
NATS_TOKEN=murmur-bench
NATS_VERSION=$("$NATS_BIN" --version 2>/dev/null | awk '{print $2}' | sed 's/^v//' || true)
if [ "${BENCH_SKIP_NATS:-0}" = 1 ]; then
  NATS=0; note "NATS skipped (BENCH_SKIP_NATS=1)"
elif [ ! -x "$NATS_BIN" ]; then
  NATS=0; note "nats-server is not installed (apt-get install nats-server): the NATS side was not measured"
fi

# Descriptors: 10k connections on each side of a socket, plus slack.
HARD=$(ulimit -Hn)
ulimit -n "$HARD" || true
NEED=$((IDLE_CONNS + 500))
if [ "$(ulimit -n)" -lt "$NEED" ]; then
  IDLE_CONNS=$(( $(ulimit -n) - 500 ))
  note "open-files limit is $(ulimit -n): the idle-connection test holds $IDLE_CONNS connections instead"
fi

log "release build"
run cargo build --release -p murmur-gateway -p murmur-loadtest --bin murmur --bin murmur-load
MURMUR=$ROOT/target/release/murmur
LOAD=$ROOT/target/release/murmur-load

wait_quiet "$QUIET"
describe_machine

# ---- servers ------------------------------------------------------------------------------
log "servers"
REDIS_PORT=$(free_port)
start_bg "$LOGS/redis.log" -- redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
REDIS_PID=$BG_PID
wait_port "$REDIS_PORT"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"

declare -A PUB INT SINKP NODE_PID
start_node n1 "$REDIS_URL"
start_node n2 "$REDIS_URL"
start_node mem ""
N1=http://127.0.0.1:${PUB[n1]}
N2=http://127.0.0.1:${PUB[n2]}
MUR_WATCH=(--watch "node1=${NODE_PID[n1]}" --watch "node2=${NODE_PID[n2]}" --watch "redis=$REDIS_PID")

if [ "$SIO" = 1 ]; then
  SIO_REDIS_PORT=$(free_port)
  start_bg "$LOGS/redis-sio.log" -- redis-server --port "$SIO_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
  SIO_REDIS_PID=$BG_PID
  wait_port "$SIO_REDIS_PORT"
  S1_PORT=$(free_port); S2_PORT=$(free_port)
  start_bg "$LOGS/sio1.log" PORT="$S1_PORT" REDIS_URL="redis://127.0.0.1:$SIO_REDIS_PORT" -- node loadtest/peers/socketio/server.js
  S1_PID=$BG_PID
  start_bg "$LOGS/sio2.log" PORT="$S2_PORT" REDIS_URL="redis://127.0.0.1:$SIO_REDIS_PORT" -- node loadtest/peers/socketio/server.js
  S2_PID=$BG_PID
  wait_http "http://127.0.0.1:$S1_PORT/healthz" && wait_http "http://127.0.0.1:$S2_PORT/healthz"
  S1=http://127.0.0.1:$S1_PORT
  S2=http://127.0.0.1:$S2_PORT
  SIO_WATCH=(--watch "sio1=$S1_PID" --watch "sio2=$S2_PID" --watch "redis=$SIO_REDIS_PID")
fi

# NATS: two servers of one cluster (routes to each other), each with a WebSocket
# listener, token authentication; their configs are generated under $LOGS.
if [ "$NATS" = 1 ]; then
  if start_nats_cluster nats1 nats2; then
    NA1=ws://127.0.0.1:${NATS_WS[nats1]}
    NA2=ws://127.0.0.1:${NATS_WS[nats2]}
    NATS_WATCH=(--watch "nats1=${NATS_PID[nats1]}" --watch "nats2=${NATS_PID[nats2]}")
  else
    NATS=0; note "the NATS cluster did not start (see $LOGS/nats1.log, $LOGS/nats2.log): the NATS side was not measured"
  fi
fi

# A scenario failing must not stop the others: its absence is reported.
scenario() { # name args...
  local name=$1; shift
  log "$name"
  local rc=0
  run "$LOAD" "$@" --json "$OUT/$name.json" --svg "$OUT/$name.svg" || rc=$?
  if [ "$rc" != 0 ]; then
    note "scenario $name failed (exit $rc); see the output of make bench"
    rm -f "$OUT/$name.json"
  fi
}

# ---- the Redis ceiling --------------------------------------------------------------------
log "redis-benchmark"
run redis-benchmark -p "$REDIS_PORT" -n "$RB_N" -c 50 -q PUBLISH bench-ch hello >"$OUT/redis-benchmark-publish.txt" 2>&1 || true
run redis-benchmark -p "$REDIS_PORT" -n "$RB_NP" -c 50 -P 16 -q PUBLISH bench-ch hello >"$OUT/redis-benchmark-publish-p16.txt" 2>&1 || true
scenario redis-probe redis-probe --redis "127.0.0.1:$REDIS_PORT" --subscribers 1 --rates "$CROSS_RATE" "${STEP[@]}" \
  --watch "redis=$REDIS_PID" --label "raw Redis PUBLISH→SUBSCRIBE"

# ---- fan-out, side by side ----------------------------------------------------------------
if [ "$SIO" = 1 ]; then
  scenario fanout-socketio fanout --system socketio --url "$S1,$S2" --subscribers "$FAN_SUBS" --publishers "$FAN_PUBS" \
    --rates "$SIO_RATES" "${STEP[@]}" --stop-after-failures 1 "${SIO_WATCH[@]}" --label "room fan-out (Socket.IO 4.8, 2 processes + Redis)"
fi
scenario fanout-murmuration fanout --system helios --url "$N1,$N2" --subscribers "$FAN_SUBS" --publishers "$FAN_PUBS" \
  --rates "$MUR_RATES" "${STEP[@]}" --stop-after-failures 1 "${MUR_WATCH[@]}" --label "channel fan-out (Murmuration, 2 nodes + Redis)"
if [ "$NATS" = 1 ]; then
  scenario fanout-nats fanout --system nats --url "$NA1,$NA2" --nats-token "$NATS_TOKEN" --subscribers "$FAN_SUBS" \
    --publishers "$FAN_PUBS" --rates "$MUR_RATES" "${STEP[@]}" --stop-after-failures 1 "${NATS_WATCH[@]}" \
    --label "subject fan-out (NATS $NATS_VERSION, 2 clustered servers)"
fi

# ---- chat group fan-out, three systems ---------------------------------------------------
# One group; every member (senders included) receives every message. group-small-* and
# group-large-* are compared step by step in BENCHMARKS.md.
group_runs() { # small|large members rates
  local which=$1 members=$2 rates=$3 common
  common=(--senders "$GROUP_SENDERS" --rates "$rates" "${STEP[@]}" --stop-after-failures 1)
  local what="chat group fan-out, $members members over 2 servers, $GROUP_SENDERS senders"
  if [ "$which" = large ]; then
    scenario "group-$which-murmuration" chat --system murmuration --url "$N1,$N2" \
      --members $((members / GROUP_DEVICES)) --devices "$GROUP_DEVICES" --group-size $((members / GROUP_DEVICES)) \
      "${common[@]}" "${MUR_WATCH[@]}" \
      --label "$what (Murmuration /chat, 2 nodes + Redis; $((members / GROUP_DEVICES)) participants × $GROUP_DEVICES devices)"
  else
    scenario "group-$which-murmuration" chat --system murmuration --url "$N1,$N2" --members "$members" \
      --group-size "$members" "${common[@]}" "${MUR_WATCH[@]}" --label "$what (Murmuration /chat, 2 nodes + Redis)"
  fi
  if [ "$NATS" = 1 ]; then
    scenario "group-$which-nats" chat --system nats --url "$NA1,$NA2" --nats-token "$NATS_TOKEN" --members "$members" \
      --group-size "$members" "${common[@]}" "${NATS_WATCH[@]}" --label "$what (NATS $NATS_VERSION, 2 clustered servers, a subject)"
  fi
  if [ "$SIO" = 1 ]; then
    scenario "group-$which-socketio" chat --system socketio --url "$S1,$S2" --members "$members" \
      --group-size "$members" "${common[@]}" "${SIO_WATCH[@]}" --label "$what (Socket.IO 4.8, 2 processes + Redis, a room)"
  fi
}
group_runs small "$GROUP_SMALL" "$GROUP_SMALL_RATES"
group_runs large "$GROUP_LARGE" "$GROUP_LARGE_RATES"

# ---- cross-node, RPC ----------------------------------------------------------------------
scenario cross-node fanout --system helios --pub-url "$N1" --sub-url "$N2" --subscribers "$CROSS_SUBS" --publishers 1 \
  --rates "$CROSS_RATE" "${STEP[@]}" "${MUR_WATCH[@]}" --label "cross-node fan-out (publish on node 1, subscribers on node 2)"
scenario rpc rpc --caller-url "$N1" --provider-url "$N2" --providers 4 --callers 8 --rates "$RPC_RATES" "${STEP[@]}" \
  "${MUR_WATCH[@]}" --label "Helios RPC across nodes (8 callers on node 1, 4 providers on node 2)"
scenario rpc-local rpc --url "$N1" --providers 4 --callers 8 --rates "$RPC_LOCAL_RATES" "${STEP[@]}" \
  "${MUR_WATCH[@]}" --label "Helios RPC on one node (8 callers, 4 providers, all on node 1)"

# ---- Sink (first on the memory node: later TimeStick traffic leaves history behind) ---------
scenario sink-memory sink --addr "127.0.0.1:${SINKP[mem]}" --devices "$SINK_DEVICES" --window "$SINK_WINDOW" --rates 0 \
  "${LONG[@]}" --watch "node=${NODE_PID[mem]}" --label "Sink PUBLISH→ACK, memory mode, $SINK_DEVICES devices, window $SINK_WINDOW"

# ---- TimeStick and the HTTP ceiling -------------------------------------------------------
if command -v wrk >/dev/null 2>&1; then
  log "wrk /healthz"
  before=$(cpu_ticks "${NODE_PID[n1]}")
  run wrk -t1 -c"$TS_CONNS" -d"$WRK_D" "http://127.0.0.1:${INT[n1]}/healthz" >"$OUT/wrk-healthz.txt" 2>&1 || true
  after=$(cpu_ticks "${NODE_PID[n1]}")
  echo "server_cpu_s: $(awk -v a="$before" -v b="$after" -v t="$(getconf CLK_TCK)" 'BEGIN{printf "%.3f", (b-a)/t}')" \
    >"$OUT/wrk-healthz-cpu.txt"
fi
scenario timestick-post timestick --url "$N1" --sessions "$TS_SESSIONS" --connections "$TS_CONNS" --rates 0 "${LONG[@]}" \
  "${MUR_WATCH[@]}" --label "TimeStick POST, closed loop over $TS_CONNS connections (node 1, cluster mode)"
scenario timestick-post-memory timestick --url "http://127.0.0.1:${PUB[mem]}" --sessions "$TS_SESSIONS" --connections "$TS_CONNS" \
  --rates 0 "${LONG[@]}" --watch "node=${NODE_PID[mem]}" --label "TimeStick POST, closed loop over $TS_CONNS connections (memory mode)"
scenario timestick-poll timestick --url "$N1" --sessions "$TS_POLL_SESSIONS" --pollers "$TS_POLL_SESSIONS" --connections 16 \
  --rates "$TS_POLL_RATE" "${STEP[@]}" "${MUR_WATCH[@]}" --label "TimeStick POST → long-poll delivery (node 1, cluster mode)"

# ---- chat: the inbox of a user in many sessions -------------------------------------------
scenario inbox-memory inbox --url "http://127.0.0.1:${PUB[mem]}" --sessions "$INBOX_SESSIONS" --connections 4 --rates 0 \
  "${STEP[@]}" --watch "node=${NODE_PID[mem]}" --label "Chat inbox, first page of 20, a user in $INBOX_SESSIONS sessions (memory mode)"
scenario inbox-cluster inbox --url "$N1" --sessions "$INBOX_SESSIONS" --connections 4 --rates 0 \
  "${STEP[@]}" "${MUR_WATCH[@]}" --label "Chat inbox, first page of 20, a user in $INBOX_SESSIONS sessions (node 1, cluster mode)"

# ---- profiles (full mode, when perf is there): where the server's time goes ---------------
# Separate short runs, so the sampling does not disturb the measured figures above.
profile_during() { # name pid seconds -- murmur-load args...
  local name=$1 pid=$2 secs=$3; shift 4
  log "profile: $name"
  record "$LOAD" "$@" "&"
  "$LOAD" "$@" --progress never >"$LOGS/profile-$name.log" 2>&1 &
  local lp=$!
  sleep 3
  record scripts/bench/profile.sh "$pid" "$secs" "$OUT/profile-$name.txt"
  scripts/bench/profile.sh "$pid" "$secs" "$OUT/profile-$name.txt" || note "profile $name failed"
  wait "$lp" || true
}
if [ "$MODE" = full ] && command -v perf >/dev/null 2>&1; then
  profile_during fanout-node1 "${NODE_PID[n1]}" 8 -- fanout --url "$N1,$N2" --subscribers "$FAN_SUBS" \
    --publishers "$FAN_PUBS" --rates 1600 --warmup 1s --duration 11s
  profile_during timestick-memory "${NODE_PID[mem]}" 8 -- timestick --url "http://127.0.0.1:${PUB[mem]}" \
    --sessions "$TS_SESSIONS" --connections "$TS_CONNS" --rates 0 --warmup 1s --duration 11s
  profile_during sink-memory-after-timestick "${NODE_PID[mem]}" 8 -- sink --addr "127.0.0.1:${SINKP[mem]}" --devices "$SINK_DEVICES" \
    --window "$SINK_WINDOW" --rates 0 --warmup 1s --duration 11s
fi

# ---- connection ramp and memory per idle connection ---------------------------------------
log "idle connections"
stop_pid "${NODE_PID[mem]}"
start_node idle ""
scenario idle-murmuration idle --system helios --url "http://127.0.0.1:${PUB[idle]}" --connections "$IDLE_CONNS" \
  --hold "$IDLE_HOLD" --source-ips 127.0.0.1-127.0.0.4 --connect-concurrency 100 --watch "node=${NODE_PID[idle]}" \
  --label "$IDLE_CONNS idle Helios sessions on one node (memory mode)"
stop_pid "${NODE_PID[idle]}"
if [ "$SIO" = 1 ]; then
  scenario idle-socketio idle --system socketio --url "$S1" --connections "$IDLE_CONNS" --hold "$IDLE_HOLD" \
    --source-ips 127.0.0.1-127.0.0.4 --connect-concurrency 100 --watch "sio1=$S1_PID" \
    --label "$IDLE_CONNS idle Socket.IO connections on one process"
fi
if [ "$NATS" = 1 ]; then
  # A fresh server of its own (like the Murmuration node above): the cluster's servers
  # have grown and shrunk their heaps during the load scenarios.
  if start_nats_server nats-idle; then
    scenario idle-nats idle --system nats --url "ws://127.0.0.1:${NATS_WS[nats-idle]}" --nats-token "$NATS_TOKEN" \
      --connections "$IDLE_CONNS" --hold "$IDLE_HOLD" --source-ips 127.0.0.1-127.0.0.4 --connect-concurrency 100 \
      --watch "nats=${NATS_PID[nats-idle]}" --label "$IDLE_CONNS idle NATS WebSocket connections (token auth) on one server"
    stop_pid "${NATS_PID[nats-idle]}"
  else
    note "the NATS server for the idle test did not start (see $LOGS/nats-idle.log)"
  fi
fi

# Chat devices, each its own user: presence kept cluster-wide in Redis (a fresh node on
# the cluster's Redis, so its RSS is its own).
start_node idle-chat "redis://127.0.0.1:$REDIS_PORT/"
scenario idle-chat idle --system helios --chat --url "http://127.0.0.1:${PUB[idle-chat]}" --connections "$IDLE_CONNS" \
  --hold "$IDLE_HOLD" --source-ips 127.0.0.1-127.0.0.4 --connect-concurrency 100 \
  --watch "node=${NODE_PID[idle-chat]}" --watch "redis=$REDIS_PID" \
  --label "$IDLE_CONNS connected chat users (presence in Redis) on one node (cluster mode)"
stop_pid "${NODE_PID[idle-chat]}"

# ---- report -------------------------------------------------------------------------------
stop_all
ELAPSED=$(( $(date +%s) - START_TS ))
echo "total time of the run (build included): ${ELAPSED} s" >>"$OUT/machine.txt"
log "report"
record "$LOAD" report --dir "$OUT" --out "$REPORT"
"$LOAD" report --dir "$OUT" --out "$REPORT"
echo "wrote $REPORT (results in $OUT, logs in $LOGS) in ${ELAPSED} s" >&2
