#!/usr/bin/env bash
# Hugging Face's own tokenizers library (the Rust one, npm package `tokenizers`)
# reads a cllm run's tokenizer.json and must give cllm's ids and decode them
# back (test/hf_tokenizers_node_check.js). CI may install npm packages: the
# package goes into a temporary folder, never into the repository. Without
# node/npm, or where the install fails, this says so and fails unless
# CI_ALLOW_NO_NPM=1 (a machine without the npm registry).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-build/cllm}
if [ ! -x "$bin" ]; then
    cmake -S . -B build-hf -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build build-hf -j"$(nproc)" --target cllm
    bin=build-hf/cllm
fi
give_up() {
    echo "hf_tokenizers: $*" >&2
    if [ "${CI_ALLOW_NO_NPM:-0}" = 1 ]; then echo "SKIP (CI_ALLOW_NO_NPM=1)"; exit 0; fi
    exit 1
}
command -v node >/dev/null && command -v npm >/dev/null || give_up "node and npm are needed (Debian nodejs, npm)"
dir=$(mktemp -d "${TMPDIR:-/tmp}/cllm-hfnode-XXXXXX")
trap 'rm -rf "$dir"' EXIT
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error tokenizers@0.23.2 >"$dir/npm.log" 2>&1 ||
    { tail -5 "$dir/npm.log" >&2; give_up "npm install tokenizers@0.23.2 failed"; }
NODE_PATH="$dir/node_modules" node test/hf_tokenizers_node_check.js "$bin"
