#!/usr/bin/env bash
# Fine-tuning from a Hugging Face GPT-2 folder (test/init_check.py, Debian
# python3-torch and python3-numpy, no transformers): small random GPT-2s
# written by PyTorch in F32, F16 and BF16, with and without the
# "transformer." prefix, lm_head.weight and the old mask buffers, load with
# logits matching PyTorch's, carry into the run bit for bit, fine-tune, and
# the run folder loads again; eval, sample and --resume work on it. ~10 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-build/cllm} # optional argument: the cllm binary to check
if [ ! -x "$bin" ]; then
    cmake -S . -B build-interop -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build-interop -j"$(nproc)" --target cllm
    bin=build-interop/cllm
fi
/usr/bin/python3 test/init_check.py "$bin" ../shared/data/tinyshakespeare.txt
