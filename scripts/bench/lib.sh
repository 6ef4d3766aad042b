# Helpers for scripts/bench.sh (sourced). Every command that produces a figure goes
# through `run` or `start_bg`, which append it to $OUT/commands.txt verbatim, so
# BENCHMARKS.md can list the exact commands.

BG_PIDS=()

log() { printf '\n== %s\n' "$*" >&2; }

# Appends a command line to commands.txt (quoted so it can be pasted).
record() {
  local line="" a
  for a in "$@"; do line+="$(printf '%q' "$a") "; done
  printf '%s\n' "${line% }" >>"$OUT/commands.txt"
}

# Records and runs a command in the foreground.
run() {
  record "$@"
  "$@"
}

# Records an environment + command started in the background; sets BG_PID.
# Usage: start_bg LOGFILE ENV=VAL... -- CMD ARGS...
start_bg() {
  local logfile=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  record env "${envs[@]}" "$@" "&"
  env "${envs[@]}" "$@" >"$logfile" 2>&1 &
  BG_PID=$!
  BG_PIDS+=("$BG_PID")
}

note() { printf '%s\n' "* $*" >>"$OUT/notes.txt"; echo "note: $*" >&2; }

# A TCP port nobody listens on, below the kernel's ephemeral range (so no outgoing
# connection holds it either).
free_port() {
  local p lo
  lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$lo" -gt 12000 ] || lo=32768
  for _ in $(seq 200); do
    p=$((10000 + RANDOM % (lo - 10000)))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      if ! printf '%s\n' "${USED_PORTS[@]:-}" | grep -qx "$p"; then
        USED_PORTS+=("$p")
        echo "$p"
        return 0
      fi
    fi
  done
  echo "no free port found" >&2
  return 1
}
USED_PORTS=()

# Waits until `curl URL` answers 200 (at most $2 seconds, default 30); gives up early
# when the process $3 (optional) has exited.
wait_http() {
  local url=$1 limit=${2:-30} pid=${3:-} i
  for i in $(seq $((limit * 10))); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" = "200" ]; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      echo "process $pid exited before $url answered" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "timed out waiting for $url" >&2
  return 1
}

# Waits until a TCP port accepts connections.
wait_port() {
  local port=$1 limit=${2:-30} i
  for i in $(seq $((limit * 10))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for port $port" >&2
  return 1
}

# Stops one background process we started (TERM, then KILL after 5 s).
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Stops every background process we started, newest first.
stop_all() {
  local i
  for ((i = ${#BG_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${BG_PIDS[$i]}"; done
  BG_PIDS=()
}

# Waits (at most $1 seconds) until the machine is quiet: 1-minute load below
# $BENCH_MAX_LOAD (1.5) and no cargo/rustc process of someone else.
wait_quiet() {
  local limit=$1 waited=0 load busy
  while :; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    busy=$(pgrep -x cargo -d, 2>/dev/null || true)
    if awk -v l="$load" -v m="${BENCH_MAX_LOAD:-1.5}" 'BEGIN{exit !(l < m)}' && [ -z "$busy" ]; then
      return 0
    fi
    if [ "$waited" -ge "$limit" ]; then
      note "the machine was not quiet when the run started (load $load, cargo pids: ${busy:-none}); figures may be noisier than usual"
      return 0
    fi
    echo "waiting for a quiet machine (load $load, cargo: ${busy:-none})…" >&2
    sleep 10
    waited=$((waited + 10))
  done
}

# Writes machine.txt: what the figures were measured on.
describe_machine() {
  {
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cores (nproc): $(nproc)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "os: $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}")"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "redis: $(redis-server --version 2>/dev/null | awk '{print $3}' | sed 's/v=//')"
    echo "node: $(node --version 2>/dev/null || echo 'not installed')"
    echo "socket.io: $(node -p 'require("./loadtest/peers/socketio/node_modules/socket.io/package.json").version' 2>/dev/null || echo 'not installed')"
    echo "@socket.io/redis-adapter: $(node -p 'require("./loadtest/peers/socketio/node_modules/@socket.io/redis-adapter/package.json").version' 2>/dev/null || echo 'not installed')"
    echo "wrk: $(command -v wrk >/dev/null && (wrk --version 2>&1 | head -1) || echo 'not installed')"
    echo "git commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "open files limit: $(ulimit -n)"
    echo "bench mode: $MODE"
  } >"$OUT/machine.txt"
}

# utime + stime of a process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat).
cpu_ticks() {
  awk '{sub(/.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0
}
