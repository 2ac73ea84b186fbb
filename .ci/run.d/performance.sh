#!/usr/bin/env bash
# Smoke run of the benchmarks (tiny sizes, a few seconds): they must run and
# reject bad input. No timing is asserted: benchmarks are not tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
cllm=${BENCH_BIN:-build/cllm}
"$cllm" bench peak --seconds 0.02 --mib 8 --repeats 1 --json | grep -q '"peak_gflops_per_core"'
"$cllm" bench matmul --preset S --rows 32 --repeats 1 >/dev/null
CLLM_SIMD=scalar "$cllm" bench matmul --preset S --rows 8 --repeats 1 --json | grep -q '"simd":"scalar"'
rc=0; "$cllm" bench matmul --preset X 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || { echo "bench matmul --preset X: exit $rc, want 2" >&2; exit 1; }
rc=0; "$cllm" bench step --preset Q 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || { echo "bench step --preset Q: exit $rc, want 2" >&2; exit 1; }
echo "performance smoke: ok"
