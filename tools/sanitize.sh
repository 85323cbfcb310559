#!/usr/bin/env bash
# Build a copy of the tree with AddressSanitizer + UndefinedBehaviorSanitizer and run the kernel
# tests against it (any sanitizer report aborts the run). Needs Cython, setuptools and numpy in
# the active environment. The RSS-growth test is left out here only: ASan's quarantine holds
# freed memory on purpose, so resident memory is not a leak signal under it (the normal test run
# and tools/memcheck.py cover leaks). allocator_may_return_null: a huge allocation (the fuzz
# campaign asks for some) must be a MemoryError, as without ASan, not an ASan abort.
# FASTRNN_TEST_SANITIZED=1 tells the tests that repeat a call many times to catch a rare race
# (not a memory error) to repeat it fewer times here, where each call is several times slower.
# The tests run in worker processes (pyproject's -n auto), which inherit LD_PRELOAD.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z | xargs -0 -I{} cp --parents {} "$work"/
cd "$work"
FASTRNN_SANITIZE=1 python setup.py -q build_ext --inplace
libs="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
LD_PRELOAD="$libs" PYTHONPATH="$work/src" FASTRNN_TEST_SANITIZED=1 \
    python -m pytest -q -p no:cacheprovider tests/test_native.py tests/test_ops.py \
    tests/test_gemm.py tests/test_gemm_remainder.py tests/test_activations.py \
    tests/test_reliability.py \
    tests/test_streaming.py tests/test_bad_input.py tests/test_sizes.py tests/test_properties.py \
    tests/test_fuzz.py tests/test_threads.py tests/test_precision.py tests/test_lstm_proj.py \
    tests/test_prepack.py tests/test_team.py::test_shared_rows_give_the_teams_results \
    tests/test_team.py::test_reversed_rows_with_lengths_are_not_shared \
    --deselect tests/test_reliability.py::test_no_memory_growth
