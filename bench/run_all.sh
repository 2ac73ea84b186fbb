#!/usr/bin/env bash
# Regenerates the measured tables of docs/PERFORMANCE.md: peak, matmul,
# reduce and step (S and M, against PyTorch). Takes several minutes; not CI.
# Usage: bench/run_all.sh [BUILD_DIR]   (default: build; builds it if needed)
# Writes raw outputs to BUILD_DIR/bench-results/ and prints the markdown tables; paste
# them into docs/PERFORMANCE.md (the prose there says what they mean).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if [ ! -x "$build/cllm" ]; then
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$build" -j"$(nproc)" >/dev/null
fi
cllm="$build/cllm"
out="$build/bench-results"
mkdir -p "$out"
repeats=${REPEATS:-7}

run() { # name, args...: the table to the terminal and to $out/name.txt
    local name=$1
    shift
    echo "== cllm bench $*" >&2
    "$cllm" bench "$@" | tee "$out/$name.txt"
}

{
    echo '## Machine'
    echo '```'
    "$cllm" info || true
    echo '```'
    echo
    echo '## Peak'
    echo '```'
    run peak peak
    echo '```'
    echo
    echo '## Matmul'
    echo '```'
    run matmul matmul --repeats "$repeats"
    echo '```'
    echo
    echo '## Reduce'
    echo '```'
    run reduce reduce || echo "(bench reduce failed)"
    echo '```'
    # MFU against the peak of the Peak table rather than the step bench's own
    # 50 ms probe, which a busy machine can pull down (inflating MFU).
    peak=$("$cllm" bench peak --json | sed -n 's/.*"peak_gflops_per_core":\([0-9.]*\).*/\1/p')
    for preset in S M; do
        echo
        echo "## Training step, preset $preset"
        echo '```'
        CLLM_PEAK_GFLOPS=${CLLM_PEAK_GFLOPS:-$peak} "$cllm" bench step --preset "$preset" --repeats "${STEP_REPEATS:-5}" --against-torch | tee "$out/step_$preset.txt"
        echo '```'
    done
    # bf16 (docs/BF16.md): the product and the step against fp32 and PyTorch
    # (on a CPU without AVX512_BF16 the matmul bench says there is nothing to time).
    echo
    echo '## bf16 matmul'
    echo '```'
    run matmul_bf16 matmul --precision bf16 --repeats "$repeats"
    echo '```'
    for preset in S M; do
        echo
        echo "## bf16 training step, preset $preset"
        echo '```'
        OMP_NUM_THREADS=1 CLLM_PEAK_GFLOPS=${CLLM_PEAK_GFLOPS:-$peak} "$cllm" bench step --preset "$preset" --precision bf16 --repeats "${STEP_REPEATS:-5}" --against-torch | tee "$out/step_bf16_$preset.txt"
        echo '```'
    done
} | tee "$out/all.md"
echo "bench/run_all.sh: outputs in $out/ (all.md: everything)" >&2
