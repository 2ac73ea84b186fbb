#!/usr/bin/env bash
# ThreadSanitizer run of the engine, kernel, segment and team tests (the team test runs
# nested parallel regions inside the layers), and of the progress display's ticker thread
# beside the OpenMP workers that report evaluation windows to it (test_progress,
# test_eval) (clang + libomp).
# libomp itself is not TSan-instrumented; Archer (LLVM's OMPT tool, shipped
# with libomp) tells TSan about OpenMP's barriers, tasks and atomics, so the
# runtime's own synchronisation is not reported as races. Any remaining
# report must be explained in .ci/tsan.supp.
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=$(nproc)
archer=$(ls /usr/lib/llvm-*/lib/libarcher.so 2>/dev/null | sort -V | tail -1 || true)
[ -n "$archer" ] || { echo "tsan.sh: libarcher.so not found (package libomp-dev)" >&2; exit 1; }
rm -rf build-tsan
CC=clang cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLLM_SANITIZE=thread >/dev/null
cmake --build build-tsan -j"$jobs" --target test_kernels test_segments test_engine test_progress test_eval test_team
# Archer must really be active: verbose=1 makes it say so (on stdout, which is
# why the suite below runs without it: cllm's own output is checked there).
greeting=$(OMP_TOOL_LIBRARIES="$archer" ARCHER_OPTIONS="verbose=1" \
    TSAN_OPTIONS="ignore_noninstrumented_modules=1 suppressions=$PWD/.ci/tsan.supp" \
    build-tsan/test_engine 2>&1 || true) # its verdict comes from ctest below
grep "Archer detected OpenMP application with TSan" >/dev/null <<<"$greeting" ||
    { echo "tsan.sh: Archer did not attach to the OpenMP runtime" >&2; exit 1; }
OMP_TOOL_LIBRARIES="$archer" \
TSAN_OPTIONS="halt_on_error=1 ignore_noninstrumented_modules=1 suppressions=$PWD/.ci/tsan.supp" \
    ctest --test-dir build-tsan --output-on-failure -j"$jobs" -R 'test_(kernels|segments|engine|progress|eval|team)$'
