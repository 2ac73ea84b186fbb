#!/usr/bin/env bash
# libFuzzer targets of every loader and parser (test/fuzz, docs/RELIABILITY.md
# "Fuzzing"): built with clang and -fsanitize=fuzzer,address,undefined, each
# run from the committed seeds for 30 s (CI_LONG=1: 10 minutes each), as many
# at once as there are cores. Any crash, hang, leak or sanitizer report fails
# the stage and leaves the input in build-fuzz/fuzz-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../.."
jobs=$(nproc)
if ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
    echo "fuzz.sh: clang's libFuzzer runtime is missing (Debian package libclang-rt-14-dev for clang 14)" >&2
    exit 1
fi
seconds=30
[ "${CI_LONG:-0}" = 1 ] && seconds=600
rm -rf build-fuzz
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCLLM_FUZZ=ON -DCLLM_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$jobs" --target fuzz
test/fuzz/run.sh build-fuzz "$seconds"
