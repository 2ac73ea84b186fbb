#!/usr/bin/env bash
# A build without cairo still compiles, trains, and `cllm plot` says what to
# install (exit 2, one line). Only the binary and test_plot are built.
set -euo pipefail
cd "$(dirname "$0")/../.."
rm -rf build-nocairo
cmake -S . -B build-nocairo -DCMAKE_BUILD_TYPE=Release -DCLLM_WITH_CAIRO=OFF >/dev/null
grep -q '#define CLLM_HAVE_CAIRO 0' build-nocairo/generated/cllm/base/build_config.h
cmake --build build-nocairo -j"$(nproc)" --target cllm test_plot
ctest --test-dir build-nocairo --output-on-failure -R '^test_plot$'
