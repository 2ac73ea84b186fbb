#!/usr/bin/env bash
# Seed corpora for the fuzz targets, made from a tiny real run so every seed
# is a file cllm itself writes (plus the inputs of past defects).
#   test/fuzz/make_seeds.sh [CLLM_BINARY [OUT_DIR]]
# defaults: build/cllm and test/fuzz/seeds. The committed seeds were made
# with these defaults; rerun it after a file format changes.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cllm=${1:-$here/../../build/cllm}
out=${2:-$here/seeds}
[ -x "$cllm" ] || { echo "make_seeds.sh: no cllm binary at $cllm (build first)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A model small enough that its files make small seeds (about 14 KB): the
# tiny preset narrowed further. fuzz_safetensors.c's config matches it.
"$cllm" train --preset tiny --steps 3 --layers 1 --heads 2 --embd 8 --seq 8 --vocab 300 \
    --eval-every 2 --out "$work/run" --quiet >/dev/null
run=$work/run
head -c 3000 "$here/../../data/tinyshakespeare.txt" >"$work/text.txt"
"$cllm" tokenizer train "$work/text.txt" --vocab 270 -o "$work/small.bin" >/dev/null
"$cllm" tokenizer train "$work/text.txt" --vocab 270 --pretokenize cllm -o "$work/small_v1.bin" >/dev/null

rm -rf "$out"
for t in safetensors checkpoint tokenizer_file tokenizer_roundtrip tokenizer_train hf_tokenizer token_cache json config metrics plot; do
    mkdir -p "$out/$t"
done
split=$'\n--cllm-fuzz-part--\n' # FUZZ_SPLIT in fuzz_support.h

cp "$run/model.safetensors" "$out/safetensors/model"
cp "$run/optimizer.safetensors" "$out/safetensors/optimizer"

{ cat "$run/config.json"; printf '%s' "$split"; cat "$run/model.safetensors"; printf '%s' "$split"
  cat "$run/tokenizer.bin"; } >"$out/checkpoint/run"

# The same run as another Hugging Face GPT-2 saver could write it (the layouts --init reads):
# F16 tensors named without "transformer.", lm_head.weight beside wte, the old mask buffers.
/usr/bin/python3 - "$run/model.safetensors" "$work/hf.safetensors" <<'PY'
import json, struct, sys
import numpy as np
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
header.pop("__metadata__", None)
out = {}
for name, info in header.items():
    b, e = info["data_offsets"]
    t = np.frombuffer(data[8 + n + b:8 + n + e], dtype="<f4").reshape(info["shape"]).astype("<f2")
    out[name[len("transformer."):]] = t
out["lm_head.weight"] = out["wte.weight"]
out["h.0.attn.bias"] = np.tril(np.ones((8, 8), dtype="<f2")).reshape(1, 1, 8, 8)
hdr, blobs, off = {}, [], 0
for name in sorted(out):
    raw = np.ascontiguousarray(out[name]).tobytes()
    hdr[name] = {"dtype": "F16", "shape": list(out[name].shape), "data_offsets": [off, off + len(raw)]}
    off += len(raw)
    blobs.append(raw)
text = json.dumps(hdr).encode()
open(sys.argv[2], "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
PY
{ cat "$run/config.json"; printf '%s' "$split"; cat "$work/hf.safetensors"; printf '%s' "$split"
  cat "$run/tokenizer.bin"; } >"$out/checkpoint/hugging_face_f16"

cp "$run/tokenizer.bin" "$out/tokenizer_file/run"

# token_cache: the tokens.bin of a run on two small files (vocabulary 300, as fuzz_token_cache.c expects)
mkdir -p "$work/two"
head -c 1500 "$work/text.txt" >"$work/two/a.txt"
tail -c 1500 "$work/text.txt" >"$work/two/b.txt"
"$cllm" train "$work/two" --preset tiny --steps 1 --layers 1 --heads 2 --embd 8 --seq 8 --vocab 300 \
    --val-fraction 0 --sample-tokens 0 --out "$work/small-run" --quiet >/dev/null
cp "$work/small-run/tokens.bin" "$out/token_cache/run"
head -c 128 "$work/small-run/tokens.bin" >"$out/token_cache/header"
cp "$work/small.bin" "$out/tokenizer_file/small"
cp "$work/small_v1.bin" "$out/tokenizer_file/small_v1"

# Hugging Face files (the run's tokenizer uses GPT-2 pre-tokenization: a build with libutf8proc).
cp "$run/tokenizer.json" "$out/hf_tokenizer/tokenizer_json"
{ cat "$run/vocab.json"; printf '%s' "$split"; cat "$run/merges.txt"; } >"$out/hf_tokenizer/vocab_merges"

head -c 400 "$work/text.txt" >"$out/tokenizer_roundtrip/text"
printf 'caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n\t\r\x00\x01\xff\xfe  end' >"$out/tokenizer_roundtrip/bytes"
head -c 600 "$run/tokenizer.bin" >"$out/tokenizer_roundtrip/binary"

# First two bytes: the vocabulary size minus 257, little-endian (here 300).
{ printf '\x2b\x00'; head -c 1500 "$work/text.txt"; } >"$out/tokenizer_train/text"
{ printf '\xff\x03'; printf 'aaaaaaaaaaaaaaaaaaaabababababababab\x00\x00\x00\xff\xff'; } >"$out/tokenizer_train/repeats"

# The safetensors header is JSON too: its length is the file's first u64.
header_len=$(od -An -tu8 -N8 "$run/model.safetensors" | tr -d ' ')
tail -c +9 "$run/model.safetensors" | head -c "$header_len" >"$out/json/safetensors_header"
cp "$run/config.json" "$out/json/config"
cp "$run/run.json" "$out/json/run"
cp "$run/config.json" "$out/config/config"
cp "$run/run.json" "$out/config/run"

# Timings in metrics.jsonl differ per run; keep the keys the reader uses.
cp "$run/metrics.jsonl" "$out/metrics/run"
printf '{"tokens":1,"loss":3}\n{"tokens":2,"loss":3.0000000000000004}\n' >"$out/metrics/tiny_range"
printf '{"tokens":-9999999999999998,"loss":3}\n' >"$out/metrics/huge_tokens"
cp "$out/metrics/"* "$out/plot/"
# Inputs the fuzzers found that cllm's own files cannot make (kept in
# test/fuzz/regressions/<target>, copied into the seeds).
for d in "$here"/regressions/*/; do
    cp "$d"* "$out/$(basename "$d")/"
done
du -sh "$out"
