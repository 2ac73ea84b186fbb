#!/usr/bin/env bash
# The crash-injection test (test/crash/kill_test.sh, a few minutes): once, on
# the README's Release build. CMakeLists.txt keeps it out of every plain
# `ctest` (CTest configuration "slow") and out of the sanitizer stage (label
# slow); -V shows its kill counts and time in the log even when it passes.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
ctest --test-dir build -C slow -L slow -V --no-tests=error
