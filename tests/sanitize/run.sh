#!/usr/bin/env bash
# make test-sanitize: runs ctest in a SQUEEZE_SANITIZE=ON build (ASan + UBSan, cmake/sanitize.cmake)
# with the runtime options below; extra arguments go to ctest (the Makefile passes -LE slow).
#
#   tests/sanitize/run.sh BUILD_DIR [CTEST_ARGS...]
#
# Options, and why:
#   ASAN detect_leaks=1              leaks are checked (LeakSanitizer), with lsan.supp
#   ASAN allocator_may_return_null=1 an impossible allocation (a refused 10^15-element tensor)
#                                    throws std::bad_alloc as it does without ASan, instead of
#                                    ASan aborting: squeeze's own handling of it is what is tested
#   ASAN detect_stack_use_after_return=0  (the default; stated because libtorch's autograd
#                                    threads and OpenBLAS's pthreads switch stacks)
#   ASAN check_initialization_order=1, strict_init_order=1: static-initialisation-order bugs
#   UBSAN print_stacktrace=1, halt_on_error=1: every report fails its test, with a stack
#   suppressions: only what the runtimes report from inside uninstrumented Debian libraries
#                                    (libtorch, OpenBLAS, protobuf, onnx, HDF5), each with its reason
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="$1"
shift
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:check_initialization_order=1:strict_init_order=1:suppressions=$here/asan.supp:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$here/ubsan.supp:${UBSAN_OPTIONS:-}"
cd "$build"
exec ctest --output-on-failure --timeout 3600 "$@"
