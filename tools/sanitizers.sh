#!/usr/bin/env bash
# Runs the host test suite (the library, binaries and integration tests of every workspace
# member: the driver's code under the user-mode NDIS model, the tools) under AddressSanitizer and
# ThreadSanitizer, with the standard library rebuilt instrumented (-Zbuild-std), on nightly.
# Fails on any sanitizer report or failing test.
#   tools/sanitizers.sh [address|thread]...   (default: both)
#
# Notes:
# * std is rebuilt from the nightly's rust-src (installed here if missing), so that its locks and
#   atomics are visible to TSan (without that, every Mutex-protected access in the model is a
#   false report) and its allocations are checked by ASan.
# * The dev profile's `panic = "abort"` is overridden to unwind: the test harness needs unwinding,
#   and build-std cannot build one std for both strategies.
# * Doctests are left out (rustdoc would need the same flags; they hold no concurrency).
# * What TSan can see: data races on non-atomic memory. The driver's counters are atomics
#   (relaxed), which are never data races; their consistency under races is checked by
#   tests/stress.rs and the stats unit tests instead.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
sanitizers=${*:-address thread}
sysroot=$(rustc +nightly --print sysroot)
# What a sanitizer prints when it finds something (not the names of the canary tests).
report='^==[0-9]+==ERROR: [A-Za-z]+Sanitizer|^WARNING: ThreadSanitizer|^SUMMARY: [A-Za-z]+Sanitizer'
if [ ! -f "$sysroot/lib/rustlib/src/rust/library/std/src/lib.rs" ]; then
  rustup component add rust-src --toolchain nightly
fi
for s in $sanitizers; do
  echo "--- ${s} sanitizer: cargo +nightly test -Zbuild-std --workspace --lib --bins --tests"
  log=$(mktemp)
  # ASan's leak checker runs at exit of every test binary; TSan stops at the first report with a
  # failing status (halt_on_error), so nothing is missed in the middle of a long log.
  set +e
  ASAN_OPTIONS=detect_leaks=1 TSAN_OPTIONS=halt_on_error=1 CARGO_PROFILE_DEV_PANIC=unwind \
    RUSTFLAGS="-Zsanitizer=${s}" \
    cargo +nightly test -Zbuild-std --workspace --lib --bins --tests --target "$target" \
      --target-dir "target/san-${s}" >"$log" 2>&1
  status=$?
  set -e
  if grep -qE "$report" "$log" || [ "$status" -ne 0 ]; then
    grep -E -A40 'ERROR: |WARNING: ThreadSanitizer|panicked' "$log" | head -n 120 >&2 || true
    echo "${s} sanitizer run FAILED" >&2
    rm -f "$log"
    exit 1
  fi
  passed=$(grep -E '^test result' "$log" | awk '{p += $4} END {print p}')
  echo "${s} sanitizer: ${passed} tests passed, no report"
  # The canary: a deliberate defect this sanitizer must report (tests/sanitizer_canary.rs), so a
  # run that silently checks nothing cannot pass.
  case $s in
    address) canary=canary_heap_use_after_free; expect='AddressSanitizer: heap-use-after-free' ;;
    thread) canary=canary_data_race; expect='ThreadSanitizer: data race' ;;
    *) canary=""; expect="" ;;
  esac
  if [ -n "$canary" ]; then
    set +e
    TSAN_OPTIONS=halt_on_error=1 CARGO_PROFILE_DEV_PANIC=unwind RUSTFLAGS="-Zsanitizer=${s}" \
      cargo +nightly test -Zbuild-std -p nbshm --test sanitizer_canary --target "$target" \
        --target-dir "target/san-${s}" -- --ignored --exact "$canary" >"$log" 2>&1
    status=$?
    set -e
    if [ "$status" -eq 0 ] || ! grep -qE "$report" "$log" || ! grep -q "$expect" "$log"; then
      tail -n 40 "$log" >&2
      echo "${s} sanitizer canary: $canary was NOT reported: the run above proves nothing" >&2
      rm -f "$log"
      exit 1
    fi
    echo "${s} sanitizer canary: $canary reported ($expect), as it must be"
  fi
  rm -f "$log"
done
