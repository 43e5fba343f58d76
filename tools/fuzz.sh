#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each) from the seed corpus in
# fuzz/corpus/<target>, writing new inputs to a scratch directory (the repository is not
# touched). Fails on any crash, timeout, leak or sanitizer report (cargo-fuzz builds with ASan).
# Prints the executions each target reached.
#   tools/fuzz.sh [seconds] [target...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
targets=${*:-$(cargo +nightly fuzz list)}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cargo +nightly fuzz build >&2
for t in $targets; do
  mkdir -p "$scratch/$t"
  echo "--- fuzz target $t (${secs}s)"
  if ! cargo +nightly fuzz run "$t" "$scratch/$t" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$scratch/$t.log" 2>&1; then
    tail -n 60 "$scratch/$t.log" >&2
    echo "fuzz target $t FAILED (the crashing input is in fuzz/artifacts/$t)" >&2
    exit 1
  fi
  execs=$(grep -m1 'stat::number_of_executed_units' "$scratch/$t.log" | awk '{print $2}')
  echo "fuzz target $t: $execs executions in ${secs}s, no crash"
done
