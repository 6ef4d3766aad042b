#!/usr/bin/env bash
# Samples one process with perf for a while and keeps the top of the report.
# Usage: scripts/bench/profile.sh PID SECONDS OUT.txt
# Run it while murmur-load drives the process (release builds keep their symbols).
set -euo pipefail
pid=$1 secs=${2:-10} out=${3:-profile-$1.txt}
if ! command -v perf >/dev/null 2>&1; then
  echo "perf is not installed (apt-get install linux-perf)" >&2
  exit 1
fi
data=$(mktemp /tmp/perf-XXXXXX.data)
trap 'rm -f "$data"' EXIT
perf record -q -F 499 -g -p "$pid" -o "$data" -- sleep "$secs" 2>/dev/null
{
  echo "# perf, pid $pid, $secs s, self time by symbol ([k] = kernel)"
  perf report -i "$data" --no-children --sort symbol --stdio 2>/dev/null \
    | grep -E '^ +[0-9]' | sed -e 's/ *- *- *$//' -e 's/  *$//' | cut -c1-160 | head -60 || true
} >"$out"
echo "wrote $out" >&2
