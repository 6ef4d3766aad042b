#!/usr/bin/env bash
# `make fuzz-smoke`: builds the cargo-fuzz targets of fuzz/ once (nightly toolchain) and
# runs every target for a few seconds, starting from its committed corpus
# (fuzz/corpus/<target>) and its past findings (fuzz/regressions/<target>, every input
# that once crashed it), with its dictionary (fuzz/dict/<target>.dict). New inputs go to
# a scratch directory, so the tree is left untouched. Exits non-zero when any target crashes, panics, times out or runs out of
# memory; the crashing input is saved under fuzz/artifacts/<target>/.
#
# `make fuzz` runs the same loop for long (FUZZ_KEEP=1): new inputs are merged into the
# committed corpus, which is then minimised like `cargo fuzz cmin` (libFuzzer
# -set_cover_merge=1 over edges only, -use_counters=0: a few hundred small files).
#
# Environment:
#   FUZZ_TIME=S          seconds per target (3)
#   FUZZ_TARGETS="a b"   only these targets (all of `cargo fuzz list`)
#   FUZZ_KEEP=1          grow and minimise fuzz/corpus/<target> instead of a scratch copy
#   FUZZ_SANITIZER=X     address|none|... (none: the code under test is safe Rust, and
#                        without ASan the fuzzer runs about twice as fast)
#   FUZZ_ARGS="..."      extra libFuzzer flags (e.g. -runs=1000000)
# How to read the output: docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

TIME=${FUZZ_TIME:-3}
KEEP=${FUZZ_KEEP:-0}
SANITIZER=${FUZZ_SANITIZER:-none}
EXTRA=${FUZZ_ARGS:-}
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')

# ---- tools: a nightly toolchain and cargo-fuzz ----------------------------------------
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz-smoke: installing the nightly toolchain (minimal profile)"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# ---- build every target once ----------------------------------------------------------
START=$(date +%s)
echo "fuzz-smoke: building the fuzz targets (nightly, sanitizer: $SANITIZER)"
cargo +nightly fuzz build --sanitizer "$SANITIZER"
BIN="$ROOT/fuzz/target/$TRIPLE/release"
BUILT=$(date +%s)

if [ -n "${FUZZ_TARGETS:-}" ]; then
  TARGETS=$FUZZ_TARGETS
else
  TARGETS=$(cargo +nightly fuzz list)
fi

LOGS="$ROOT/fuzz/target/fuzz-smoke"
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$LOGS"

passed=0
failed=0
failures=""
printf '%-18s %-6s %12s %8s %8s %7s\n' target result executions cov ft corpus
for t in $TARGETS; do
  corpus="$ROOT/fuzz/corpus/$t"
  mkdir -p "$corpus" "$ROOT/fuzz/artifacts/$t"
  dict=()
  [ -f "$ROOT/fuzz/dict/$t.dict" ] && dict=(-dict="$ROOT/fuzz/dict/$t.dict")
  if [ "$KEEP" = 1 ]; then
    dirs=("$corpus")
  else
    mkdir -p "$SCRATCH/$t"
    dirs=("$SCRATCH/$t" "$corpus")
  fi
  [ -d "$ROOT/fuzz/regressions/$t" ] && dirs+=("$ROOT/fuzz/regressions/$t")
  log="$LOGS/$t.log"
  status=0
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  "$BIN/$t" -max_total_time="$TIME" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$ROOT/fuzz/artifacts/$t/" "${dict[@]}" $EXTRA \
    "${dirs[@]}" >"$log" 2>&1 || status=$?
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  if [ "$KEEP" = 1 ] && [ "$status" = 0 ]; then
    # Minimise the grown corpus into a fresh directory, then swap it in.
    mkdir -p "$SCRATCH/min-$t"
    "$BIN/$t" -set_cover_merge=1 -use_counters=0 -timeout=10 -rss_limit_mb=2048 "$SCRATCH/min-$t" "$corpus" \
      >>"$log" 2>&1 || status=$?
    if [ "$status" = 0 ]; then
      rm -rf "$corpus" && mv "$SCRATCH/min-$t" "$corpus"
    fi
  fi
  files=$(find "$corpus" -type f | wc -l)
  if [ "$status" = 0 ]; then
    passed=$((passed + 1))
    printf '%-18s %-6s %12s %8s %8s %7s\n' "$t" ok "${runs:-?}" "${cov:-?}" "${ft:-?}" "$files"
  else
    failed=$((failed + 1))
    failures="$failures $t"
    printf '%-18s %-6s (exit %s) log: %s\n' "$t" FAILED "$status" "${log#"$ROOT"/}"
    grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Test unit written|^assertion|left:|right:" \
      "$log" | head -12 | sed 's/^/    /' || true
  fi
done

END=$(date +%s)
echo "fuzz-smoke: build $((BUILT - START))s, runs $((END - BUILT))s, logs in ${LOGS#"$ROOT"/}"
[ -n "$failures" ] && echo "fuzz-smoke: failed:$failures (reproduce: cargo +nightly fuzz run -s $SANITIZER <target> <artifact>)"
echo "fuzz-smoke: $passed passed, $failed failed"
[ "$failed" = 0 ]
