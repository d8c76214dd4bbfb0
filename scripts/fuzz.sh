#!/usr/bin/env bash
# make fuzz: runs each libFuzzer target (built in FUZZ_BUILD by cmake/fuzz.cmake) for a fixed number
# of executions, one after the other, and prints per target the executions done and libFuzzer's
# coverage figures (cov: code edges reached, ft: features, corpus: inputs kept). Fails when any
# target crashes, leaks, trips ASan/UBSan, times out (25 s per input) or exceeds 2 GB in squeeze's
# code; the input is then in FUZZ_BUILD/fuzz/TARGET/crashes/: fix the reader and copy the input
# into tests/fuzz/regressions/TARGET/ so the fast suite replays it from then on.
#
#   scripts/fuzz.sh FUZZ_BUILD RUNS [TARGET...]      # default: every target
#   FUZZ_SECONDS=N scripts/fuzz.sh ...                # also stop each target after N seconds
#   SQUEEZE=build/squeeze scripts/fuzz.sh ...         # the production squeeze (default: build/)
#
# Each target starts from its seed corpus (tests/fuzz/corpus/TARGET; the config target also from
# examples/ and tests/pipeline/fixtures/) and its regression inputs; what it learns goes to
# FUZZ_BUILD/fuzz/TARGET/corpus, reused by the next run. The full log is FUZZ_BUILD/fuzz/TARGET/fuzz.log.
#
# hdf5: Debian's libhdf5 1.10 itself crashes on some damaged files. The target parses in process
# (coverage), so it runs under -fork=1 -ignore_crashes=1 (also -ignore_ooms, -ignore_timeouts):
# libFuzzer restarts a fuzzing process after each crash and goes on. Every failing input of the
# run is then sorted by scripts/fuzz_triage.py by its stack: inside libhdf5 (contained in
# production by read_hdf5's child process: each such input is replayed through `squeeze eval` and
# must give exit code 2 naming the file) or in squeeze (a bug: the run fails). The other targets
# stop at their first failure, which is sorted the same way.
#
# Sanitizer options: an impossible allocation returns null (std::bad_alloc, as without ASan)
# instead of aborting; leaks are checked with tests/sanitize/lsan.supp (libhdf5's own, named there).
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

export ASAN_OPTIONS="allocator_may_return_null=1:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$root/tests/sanitize/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
squeeze="${SQUEEZE:-$root/build/squeeze}"
# Targets whose reader isolates a library that may crash (see above).
isolated=" hdf5 "

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
  fork=()
  if [[ "$isolated" == *" $t "* ]]; then
    # -detect_leaks=0: libFuzzer's per-input leak check (a full heap scan after every input that
    # leaves blocks in libhdf5's free lists, i.e. nearly every input, again in each restarted
    # process) held this target to a few inputs a second. LeakSanitizer still checks each
    # fuzzing process at its exit (libhdf5's own leaks suppressed): a report there fails the run.
    fork=(-fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 -detect_leaks=0)
    if [ ! -x "$squeeze" ]; then
      echo "fuzz: $t needs the production squeeze to replay libhdf5 crashes: $squeeze not built (set SQUEEZE)" >&2
      status=1
      continue
    fi
  fi
  stamp="$work/.started"
  touch "$stamp"
  start=$(date +%s)
  # Working folder: the target's own (the ONNX reader resolves external data against it).
  (cd "$work" && "$exe" -runs="$runs" -seed=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=25 \
     -print_final_stats=1 "${fork[@]}" "${cap[@]}" -artifact_prefix="$work/crashes/" corpus "${inputs[@]}") \
     >"$work/fuzz.log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  # This run's failing inputs (libFuzzer names them crash-, leak-, oom-, timeout-, slow-unit-).
  found=()
  while IFS= read -r f; do found+=("$f"); done < <(find "$work/crashes" -maxdepth 1 -type f \
      \( -name 'crash-*' -o -name 'leak-*' -o -name 'oom-*' -o -name 'timeout-*' \) -newer "$stamp" | sort)
  if [ ${#fork[@]} -gt 0 ]; then
    # Fork mode: the parent prints "#N: cov: C ft: F corp: K exec/s E oom/timeout/crash: a/b/c ...".
    last=$(grep -E '^#[0-9]+: cov:' "$work/fuzz.log" | tail -1)
    execs=$(sed -n 's/^#\([0-9]*\):.*/\1/p' <<<"$last")
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    otc=$(sed -n 's|.* oom/timeout/crash: \([0-9/]*\).*|\1|p' <<<"$last")
    interrupted=$(grep -c 'a child was interrupted' "$work/fuzz.log")
    leaks=$(grep -c 'ERROR: LeakSanitizer' "$work/fuzz.log")
  else
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/fuzz.log" | tail -1)
    last=$(grep -E '^#[0-9]+' "$work/fuzz.log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
    interrupted=0
    leaks=0
    [ $rc -eq 72 ] && grep -q 'libFuzzer: run interrupted' "$work/fuzz.log" && interrupted=1
  fi
  triage=0
  if [ ${#found[@]} -gt 0 ]; then
    "$root/scripts/fuzz_triage.py" "$exe" "$t" "$squeeze" "${found[@]}" >"$work/triage.log" 2>&1
    triage=$?
  fi
  if [ "$interrupted" -gt 0 ]; then
    status=1  # stopped by Ctrl-C (SIGINT): not a crash, but not the full run either
    printf 'fuzz %-6s interrupted after %s executions  cov %-6s ft %-6s corpus %s\n' \
      "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
  elif [ ${#fork[@]} -gt 0 ]; then
    note=ok
    [ "${execs:-0}" -lt "$runs" ] && note="ok (stopped by FUZZ_SECONDS=${FUZZ_SECONDS:-})"
    [ -z "$execs" ] && note="FAILED (no fuzzing statistics; see $work/fuzz.log)" && status=1
    [ $triage -ne 0 ] && note="FAILED (see the triage below)" && status=1
    [ "${leaks:-0}" -gt 0 ] && note="FAILED ($leaks fuzzing processes leaked at exit; see $work/fuzz.log)" && status=1
    printf 'fuzz %-6s %9s executions in %5ss  cov %-6s ft %-6s corpus %-10s oom/timeout/crash %s  %s\n' \
      "$t" "${execs:-?}" "$secs" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${otc:-?}" "$note"
    [ ${#found[@]} -gt 0 ] && sed 's/^/  /' "$work/triage.log"
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
    [ ${#found[@]} -gt 0 ] && sed 's/^/  /' "$work/triage.log"
  fi
done
exit $status
