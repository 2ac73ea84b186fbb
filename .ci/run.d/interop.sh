#!/usr/bin/env bash
# PyTorch interop: a freshly trained run folder's model.safetensors + config.json
# load into a plain-PyTorch GPT-2 (test/interop_check.py, Debian python3-torch and
# python3-numpy, no transformers) whose logits match cllm's within 1e-4; and
# weights written by PyTorch load into cllm with the same result.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-build/cllm} # optional argument: the cllm binary to check
if [ ! -x "$bin" ]; then
    cmake -S . -B build-interop -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build-interop -j"$(nproc)" --target cllm
    bin=build-interop/cllm
fi
run=$(mktemp -d "${TMPDIR:-/tmp}/cllm-interop-XXXXXX")
trap 'rm -rf "$run"' EXIT
"$bin" train --preset tiny --steps 2 --sample-tokens 0 --quiet --out "$run/run"
/usr/bin/python3 test/interop_check.py "$bin" "$run/run"
