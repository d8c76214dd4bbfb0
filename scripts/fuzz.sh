#!/usr/bin/env bash
# make fuzz: runs each libFuzzer target (built in FUZZ_BUILD by cmake/fuzz.cmake) for a fixed number
# of executions, one after the other, and prints per target the executions done and libFuzzer's
# coverage figures (cov: code edges reached, ft: features, corpus: inputs kept). Fails when any
# target crashes, leaks, trips ASan/UBSan, times out (25 s per input) or exceeds 2 GB; the input
# is then in FUZZ_BUILD/fuzz/TARGET/crashes/: fix the reader and copy the input into
# tests/fuzz/regressions/TARGET/ so the fast suite replays it from then on.
#
#   scripts/fuzz.sh FUZZ_BUILD RUNS [TARGET...]      # default: every target
#   FUZZ_SECONDS=N scripts/fuzz.sh ...                # also stop each target after N seconds
#
# Each target starts from its seed corpus (tests/fuzz/corpus/TARGET; the config target also from
# examples/ and tests/pipeline/fixtures/) and its regression inputs; what it learns goes to
# FUZZ_BUILD/fuzz/TARGET/corpus, reused by the next run. The full log is FUZZ_BUILD/fuzz/TARGET/fuzz.log.
set -uo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "$1" && pwd)"
runs="$2"
shift 2
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(onnx sqz config idx csv npy hdf5)

status=0
for t in "${targets[@]}"; do
  exe="$build/fuzz_$t"
  if [ ! -x "$exe" ]; then
    echo "fuzz: $exe not built (valid targets: onnx sqz config idx csv npy hdf5)" >&2
    status=1
    continue
  fi
  work="$build/fuzz/$t"
  mkdir -p "$work/corpus" "$work/crashes"
  inputs=("$root/tests/fuzz/corpus/$t")
  [ "$t" = config ] && inputs+=("$root/examples" "$root/tests/pipeline/fixtures")
  [ -d "$root/tests/fuzz/regressions/$t" ] && inputs+=("$root/tests/fuzz/regressions/$t")
  cap=()
  [ -n "${FUZZ_SECONDS:-}" ] && cap=(-max_total_time="$FUZZ_SECONDS")
  start=$(date +%s)
  # Working folder: the target's own (the ONNX reader resolves external data against it).
  (cd "$work" && "$exe" -runs="$runs" -seed=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=25 \
     -print_final_stats=1 "${cap[@]}" -artifact_prefix="$work/crashes/" corpus "${inputs[@]}") >"$work/fuzz.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$work/fuzz.log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
  if [ $rc -eq 72 ] && grep -q 'libFuzzer: run interrupted' "$work/fuzz.log"; then
    status=1  # stopped by Ctrl-C (SIGINT): not a crash, but not the full run either
    printf 'fuzz %-6s interrupted after %s executions  cov %-6s ft %-6s corpus %s\n' \
      "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
  elif [ $rc -eq 0 ]; then
    note=ok
    [ "${execs:-0}" -lt "$runs" ] && note="ok (stopped by FUZZ_SECONDS=${FUZZ_SECONDS:-})"
    printf 'fuzz %-6s %9s executions in %5ss  cov %-6s ft %-6s corpus %-10s %s\n' \
      "$t" "${execs:-?}" "$secs" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$note"
  else
    status=1
    printf 'fuzz %-6s FAILED (exit %s) after %s executions; input in %s; log %s:\n' \
      "$t" "$rc" "${execs:-?}" "$work/crashes/" "$work/fuzz.log"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written|uncaught|what\(\)' "$work/fuzz.log" | head -8 | sed 's/^/  /'
  fi
done
exit $status
