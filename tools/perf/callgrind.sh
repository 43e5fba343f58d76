#!/usr/bin/env bash
# Instructions per NET_BUFFER of the data path, counted by callgrind (deterministic: the same
# binary and inputs give the same counts, whatever else the machine does).
#
#   tools/perf/callgrind.sh            print the table
#   tools/perf/callgrind.sh --check    also fail if a figure exceeds its limit in tools/perf/limits.txt
#
# Counts only inside examples/hotpath.rs's measured_region (its loop of ITERATIONS runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
ITERATIONS=${ITERATIONS:-2000}
check=${1:-}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install -y valgrind)" >&2; exit 2; }
cargo build --release --example hotpath >&2
bin=target/release/examples/hotpath
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
declare -A ipnb
scenarios="c_walk rust_walker account account_passive account_light_session account_verbose_session receive_walk receive_no_walk send_walk send_no_walk receive_walk_1 receive_no_walk_1 receive_walk_16 receive_no_walk_16"
printf '%-20s %14s %10s\n' scenario instructions per_NB
for s in $scenarios; do
  valgrind --tool=callgrind --callgrind-out-file="$out/$s.cg" --toggle-collect='*measured_region*' \
    "$bin" "$s" "$ITERATIONS" >/dev/null 2>"$out/$s.log" || { cat "$out/$s.log" >&2; exit 1; }
  total=$(callgrind_annotate "$out/$s.cg" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}')
  case $s in *_1) nbs=1 ;; *_16) nbs=16 ;; *) nbs=64 ;; esac
  per=$(awk -v t="$total" -v i="$ITERATIONS" -v n="$nbs" 'BEGIN { printf "%.1f", t / (i * n) }')
  ipnb[$s]=$per
  printf '%-20s %14s %10s\n' "$s" "$total" "$per"
done
ratio() { awk -v a="${ipnb[$1]}" -v b="${ipnb[$2]}" 'BEGIN { printf "%.3f", a / b }'; }
echo
echo "rust_walker / c_walk                 $(ratio rust_walker c_walk)   (target <= 1.05)"
echo "account / c_walk                     $(ratio account c_walk)"
echo "account_light_session / account      $(ratio account_light_session account)   (an idle or light session: one check per call)"
echo "receive_walk / receive_no_walk (64)  $(ratio receive_walk receive_no_walk)   (target <= 1.10)"
echo "send_walk / send_no_walk (64)        $(ratio send_walk send_no_walk)   (target <= 1.10)"
if [ "$check" = "--check" ]; then
  fail=0
  while read -r name limit; do
    case $name in ''|'#'*) continue ;; esac
    got=${ipnb[$name]:-}
    [ -n "$got" ] || { echo "limits.txt names unknown scenario $name" >&2; fail=1; continue; }
    if awk -v g="$got" -v l="$limit" 'BEGIN { exit !(g > l) }'; then
      echo "REGRESSION: $name takes $got instructions per NET_BUFFER, limit $limit" >&2
      fail=1
    fi
  done < tools/perf/limits.txt
  [ $fail -eq 0 ] && echo "all instruction counts within tools/perf/limits.txt"
  exit $fail
fi
