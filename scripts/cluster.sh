#!/usr/bin/env bash
# `make cluster`: a local 3-node Murmuration cluster in development mode.
# Uses MURMUR_REDIS_URL when given, else starts its own redis-server on port 6390.
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

NODES=${NODES:-3}
cargo build -q -p murmur-gateway --bin murmur
BIN=target/debug/murmur
LOGDIR=${LOGDIR:-target/cluster}
mkdir -p "$LOGDIR"
pids=()

cleanup() {
  echo
  echo "stopping cluster…"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

if [ -z "${MURMUR_REDIS_URL:-}" ]; then
  scripts/ensure-tools.sh 2>/dev/null
  REDIS_PORT=${REDIS_PORT:-6390}
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --logfile "$LOGDIR/redis.log" &
  pids+=($!)
  export MURMUR_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

export MURMUR_DEV=1 MURMUR_DRAIN_DELAY=${MURMUR_DRAIN_DELAY:-1s}
for i in $(seq 1 "$NODES"); do
  MURMUR_NODE_ID="node-$i" \
  MURMUR_LISTEN="127.0.0.1:$((8080 + i))" \
  MURMUR_INTERNAL_LISTEN="127.0.0.1:$((9090 + i))" \
  MURMUR_SINK_LISTEN="127.0.0.1:$((2020 + i))" \
    "$BIN" serve >"$LOGDIR/node-$i.log" 2>&1 &
  pids+=($!)
done

echo "Redis: $MURMUR_REDIS_URL"
for i in $(seq 1 "$NODES"); do
  echo "node-$i: public http://127.0.0.1:$((8080 + i))  internal http://127.0.0.1:$((9090 + i))  sink 127.0.0.1:$((2020 + i))  log $LOGDIR/node-$i.log"
done
echo "API key: murmur-dev-api-key   token: MURMUR_DEV=1 $BIN token --user alice"
echo "Ctrl-C to stop."
wait
