#!/usr/bin/python3
"""GGUF check: `cllm export RUN --gguf FILE` read back by a reader written from
the spec (ggml's docs/gguf.md, version 3), not by ggml or gguf-py.

For each of --dtype f32 and f16 it:
  1. parses the whole file: magic "GGUF", version 3, every metadata value of
     every type the spec lists (arrays nested), keys lower_snake_case
     segments and unique, then the tensor infos; checks general.alignment,
     that the data section starts aligned, that tensor i lies at the sum of
     the padded sizes before it (what ggml's reader requires), that the file
     ends with the last tensor's padding, and every byte of padding is zero;
  2. checks the metadata llama.cpp's GPT-2 loader reads, with their types
     (u32 hyper-parameters, f32 epsilon, string arrays, i32 token types);
  3. checks the tensor names, ggml dims and types against llama.cpp's GPT-2
     (llama-model.cpp: token_embd {C, V}, attn_qkv {C, 3C}, ffn_down {4C, C},
     ...; output tied, absent); with f16, that 2-D weights except
     position_embd are F16 and bitwise numpy's float16 of the f32 file's;
  4. checks the tokenizer: every byte has a token, its GPT-2 byte-to-unicode
     character; every merge is "A B" with A, B and AB tokens; end-of-text is
     "<|endoftext|>" of type 3 (the others 1), bos = eos = its id; the texts
     are distinct (llama.cpp aborts otherwise); and cllm's decoding of every
     other id in order (`cllm tokenizer decode`) is the tokens' texts mapped
     back to bytes;
  5. maps the tensors back to Hugging Face GPT-2 names (the Conv1D weights
     transposed back) and runs test/interop_check.py's plain-PyTorch GPT-2 in
     float64 on them, against the logits cllm computes for the run
     (`cllm eval RUN --dump-logits`): max |cllm - torch| <= 1e-4 x max(1,
     max |torch|) for F32, and 1e-2 x max(1, max |torch|) for F16 (binary16
     keeps 11 significant bits: a weight moves by up to 2^-11 of itself).

usage: /usr/bin/python3 test/gguf_check.py CLLM_BINARY [RUN_DIR]
Without RUN_DIR it trains a tiny run (--pretokenize gpt2) in a temporary
folder. Needs Debian's python3-torch and python3-numpy, and a cllm built with
libutf8proc; without them it says so and exits 77 (skip).
Exit 0 when everything holds, 1 otherwise.
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch  # noqa: F401  (interop_check needs it)
except ImportError as e:
    print(f"gguf_check: SKIPPED: {e} (Debian's /usr/bin/python3 with python3-torch and python3-numpy needed)")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interop_check  # noqa: E402  (the plain-PyTorch GPT-2)

# ---- the format, from docs/gguf.md ----------------------------------------------------------------

GGML_TYPES = {0: ("F32", np.float32), 1: ("F16", np.float16)}  # the ones a cllm export may hold
SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
KEY = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")


class Bad(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Bad(f"runs past the end of the file at byte {self.pos} (wants {n} more)")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def scalar(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        n = self.scalar("<Q")
        raw = self.take(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Bad(f"string at byte {self.pos - n} is not UTF-8")

    def value(self, vtype):
        """Returns (value, element type for arrays or None)."""
        if vtype in SCALARS:
            v = self.scalar(SCALARS[vtype])
            if vtype == T_BOOL and v not in (0, 1):
                raise Bad(f"bool value {v}")
            return v, None
        if vtype == T_STRING:
            return self.string(), None
        if vtype == T_ARRAY:
            etype, n = self.scalar("<I"), self.scalar("<Q")
            return [self.value(etype)[0] for _ in range(n)], etype
        raise Bad(f"unknown metadata value type {vtype}")


def parse_gguf(path):
    with open(path, "rb") as f:
        data = f.read()
    r = Reader(data)
    if r.take(4) != b"GGUF":
        raise Bad("magic is not GGUF")
    version, n_tensors, n_kv = r.scalar("<I"), r.scalar("<Q"), r.scalar("<Q")
    if version != 3:
        raise Bad(f"version {version}, expected 3")
    meta, types = {}, {}
    for _ in range(n_kv):
        key = r.string()
        if not KEY.match(key) or len(key) > 65535:
            raise Bad(f"key {key!r} is not lower_snake_case segments joined by '.'")
        if key in meta:
            raise Bad(f"key {key} appears twice")
        vtype = r.scalar("<I")
        meta[key], etype = r.value(vtype)
        types[key] = (vtype, etype)
    alignment = meta.get("general.alignment", 32)
    if types.get("general.alignment", (T_UINT32,))[0] != T_UINT32 or alignment % 8 or alignment <= 0:
        raise Bad(f"general.alignment {alignment} is not a u32 multiple of 8")
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        if len(name.encode()) > 63:
            raise Bad(f"tensor name {name!r} longer than 63 bytes (ggml's GGML_MAX_NAME is 64 with the NUL)")
        nd = r.scalar("<I")
        if not 1 <= nd <= 4:
            raise Bad(f"{name}: {nd} dimensions")
        dims = [r.scalar("<Q") for _ in range(nd)]
        ttype, offset = r.scalar("<I"), r.scalar("<Q")
        if ttype not in GGML_TYPES:
            raise Bad(f"{name}: ggml type {ttype} is not F32 or F16")
        infos.append((name, dims, ttype, offset))
    if len({i[0] for i in infos}) != len(infos):
        raise Bad("a tensor name appears twice")
    start = -(-r.pos // alignment) * alignment
    if any(data[r.pos:start]):
        raise Bad("the padding before the tensor data is not zeros")
    tensors, expected = {}, 0
    for name, dims, ttype, offset in infos:
        if offset % alignment:
            raise Bad(f"{name}: offset {offset} is not a multiple of {alignment}")
        if offset != expected:
            raise Bad(f"{name}: offset {offset}, but the padded sizes before it add up to {expected}")
        dt = np.dtype(GGML_TYPES[ttype][1]).newbyteorder("<")
        count = int(np.prod(dims))
        end = start + offset + count * dt.itemsize
        if end > len(data):
            raise Bad(f"{name}: data runs past the end of the file")
        # ggml order: dims[0] varies fastest, so numpy's shape is reversed.
        tensors[name] = (np.frombuffer(data, dtype=dt, count=count, offset=start + offset).reshape(dims[::-1]),
                         GGML_TYPES[ttype][0])
        padded = -(-(count * dt.itemsize) // alignment) * alignment
        if any(data[end:start + offset + padded]):
            raise Bad(f"{name}: the padding after its data is not zeros")
        expected = offset + padded
    if start + expected != len(data):
        raise Bad(f"the file has {len(data)} bytes, the tensors and their padding end at {start + expected}")
    return meta, types, tensors, alignment


# ---- what llama.cpp's GPT-2 reads ------------------------------------------------------------------

def byte_to_unicode():
    """GPT-2's table: printable Latin-1 bytes stand for themselves, the rest
    for U+0100.. in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


def expect(cond, what):
    if not cond:
        raise Bad(what)


def check_metadata(meta, types, dtype):
    want = {"general.architecture": (T_STRING, None), "general.file_type": (T_UINT32, None),
            "gpt2.context_length": (T_UINT32, None), "gpt2.embedding_length": (T_UINT32, None),
            "gpt2.feed_forward_length": (T_UINT32, None), "gpt2.block_count": (T_UINT32, None),
            "gpt2.attention.head_count": (T_UINT32, None), "gpt2.attention.layer_norm_epsilon": (T_FLOAT32, None),
            "tokenizer.ggml.model": (T_STRING, None), "tokenizer.ggml.pre": (T_STRING, None),
            "tokenizer.ggml.tokens": (T_ARRAY, T_STRING), "tokenizer.ggml.token_type": (T_ARRAY, T_INT32),
            "tokenizer.ggml.merges": (T_ARRAY, T_STRING), "tokenizer.ggml.bos_token_id": (T_UINT32, None),
            "tokenizer.ggml.eos_token_id": (T_UINT32, None), "general.alignment": (T_UINT32, None)}
    for key, t in want.items():
        expect(key in meta, f"metadata {key} is missing")
        expect(types[key] == t, f"metadata {key} has type {types[key]}, llama.cpp reads {t}")
    expect(meta["general.architecture"] == "gpt2", "general.architecture is not gpt2")
    expect(meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "gpt-2",
           "tokenizer is not model gpt2 / pre gpt-2")
    expect(meta["general.file_type"] == (1 if dtype == "f16" else 0), "general.file_type does not match --dtype")
    C = meta["gpt2.embedding_length"]
    expect(meta["gpt2.feed_forward_length"] == 4 * C, "feed_forward_length is not 4 x embedding_length")
    expect(abs(meta["gpt2.attention.layer_norm_epsilon"] - 1e-5) < 1e-12, "layer_norm_epsilon is not 1e-5")


def expected_dims(meta):
    """ggml dims of every tensor, as llama-model.cpp creates them for GPT-2."""
    C, T = meta["gpt2.embedding_length"], meta["gpt2.context_length"]
    V, F = len(meta["tokenizer.ggml.tokens"]), meta["gpt2.feed_forward_length"]
    d = {"token_embd.weight": [C, V], "position_embd.weight": [C, T],
         "output_norm.weight": [C], "output_norm.bias": [C]}
    for i in range(meta["gpt2.block_count"]):
        p = f"blk.{i}."
        d.update({p + "attn_norm.weight": [C], p + "attn_norm.bias": [C], p + "attn_qkv.weight": [C, 3 * C],
                  p + "attn_qkv.bias": [3 * C], p + "attn_output.weight": [C, C], p + "attn_output.bias": [C],
                  p + "ffn_norm.weight": [C], p + "ffn_norm.bias": [C], p + "ffn_up.weight": [C, F],
                  p + "ffn_up.bias": [F], p + "ffn_down.weight": [F, C], p + "ffn_down.bias": [C]})
    return d


def check_tensors(meta, tensors, dtype, f32_tensors):
    want = expected_dims(meta)
    expect(set(tensors) == set(want), f"tensor names differ from llama.cpp's GPT-2: missing "
                                      f"{sorted(set(want) - set(tensors))}, extra {sorted(set(tensors) - set(want))}")
    for name, dims in want.items():
        arr, tname = tensors[name]
        expect(list(arr.shape[::-1]) == dims, f"{name}: ggml dims {list(arr.shape[::-1])}, llama.cpp wants {dims}")
        f16 = dtype == "f16" and len(dims) == 2 and name != "position_embd.weight"
        expect(tname == ("F16" if f16 else "F32"), f"{name} is {tname}, expected {'F16' if f16 else 'F32'}")
        if f16:
            ref = f32_tensors[name][0].astype(np.float16)
            expect(np.array_equal(arr.view(np.uint16), ref.view(np.uint16)),
                   f"{name}: F16 data is not numpy's float16 of the F32 export")
        elif f32_tensors is not None:
            expect(np.array_equal(arr, f32_tensors[name][0]), f"{name}: differs from the F32 export")


def check_tokenizer(meta, cllm, run):
    tokens, types, merges = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"], meta["tokenizer.ggml.merges"]
    V = len(tokens)
    expect(len(types) == V, "token_type and tokens differ in length")
    eot = meta["tokenizer.ggml.eos_token_id"]
    expect(meta["tokenizer.ggml.bos_token_id"] == eot and 0 <= eot < V, "bos/eos ids")
    expect(tokens[eot] == "<|endoftext|>" and types[eot] == 3, "end-of-text token is not '<|endoftext|>' of type 3")
    expect(all(t == 1 for i, t in enumerate(types) if i != eot), "a token other than end-of-text is not type 1")
    expect(len(set(tokens)) == V, "two tokens have the same text (llama.cpp aborts on that)")
    b2u = byte_to_unicode()
    u2b = {u: b for b, u in b2u.items()}
    index = {t: i for i, t in enumerate(tokens)}
    expect(all(b2u[b] in index and types[index[b2u[b]]] == 1 for b in range(256)),
           "a byte has no token of its own (its byte-to-unicode character)")
    for i, m in enumerate(merges):
        parts = m.split(" ")
        expect(len(parts) == 2 and all(p in index for p in parts), f"merge {i} {m!r} is not two tokens")
        expect(parts[0] + parts[1] in index, f"merge {i} {m!r} makes no token")
    controls = {i for i, t in enumerate(types) if t == 3}
    expect(all(ch in u2b for i, t in enumerate(tokens) if i not in controls for ch in t),
           "a token's text is not made of byte-to-unicode characters")
    # cllm decodes every id in order (one call): the bytes must be the tokens'
    # texts mapped back, concatenated; with every merge's result a token of its
    # parts' texts, that pins each token's bytes.
    ids = [i for i in range(V) if i not in controls]
    text = "".join(f"{i}\n" for i in ids)
    out = subprocess.run([cllm, "tokenizer", "decode", os.path.join(run, "tokenizer.bin")], input=text.encode(),
                         capture_output=True, check=True).stdout
    ours = b"".join(bytes(u2b[ch] for ch in tokens[i]) for i in ids)
    expect(out == ours, "the tokens' bytes differ from what cllm decodes for the same ids")


# ---- the model ---------------------------------------------------------------------------------------

def to_hf(meta, tensors):
    """The GGUF tensors under Hugging Face GPT-2 names and shapes (float64),
    Conv1D weights back to [in, out]."""
    g = {k: np.asarray(v[0], dtype=np.float64) for k, v in tensors.items()}
    hf = {"transformer.wte.weight": g["token_embd.weight"], "transformer.wpe.weight": g["position_embd.weight"],
          "transformer.ln_f.weight": g["output_norm.weight"], "transformer.ln_f.bias": g["output_norm.bias"]}
    for i in range(meta["gpt2.block_count"]):
        p, q = f"transformer.h.{i}.", f"blk.{i}."
        hf.update({p + "ln_1.weight": g[q + "attn_norm.weight"], p + "ln_1.bias": g[q + "attn_norm.bias"],
                   p + "attn.c_attn.weight": g[q + "attn_qkv.weight"].T, p + "attn.c_attn.bias": g[q + "attn_qkv.bias"],
                   p + "attn.c_proj.weight": g[q + "attn_output.weight"].T,
                   p + "attn.c_proj.bias": g[q + "attn_output.bias"],
                   p + "ln_2.weight": g[q + "ffn_norm.weight"], p + "ln_2.bias": g[q + "ffn_norm.bias"],
                   p + "mlp.c_fc.weight": g[q + "ffn_up.weight"].T, p + "mlp.c_fc.bias": g[q + "ffn_up.bias"],
                   p + "mlp.c_proj.weight": g[q + "ffn_down.weight"].T, p + "mlp.c_proj.bias": g[q + "ffn_down.bias"]})
    cfg = {"n_embd": meta["gpt2.embedding_length"], "n_head": meta["gpt2.attention.head_count"],
           "n_layer": meta["gpt2.block_count"], "n_positions": meta["gpt2.context_length"],
           "vocab_size": len(meta["tokenizer.ggml.tokens"]),
           "layer_norm_epsilon": float(meta["gpt2.attention.layer_norm_epsilon"])}
    return cfg, hf


def compare_logits(cllm, run, meta, tensors, rel_bound, what):
    cfg, hf = to_hf(meta, tensors)
    expect(interop_check.compare(cllm, run, cfg, hf, f"GGUF, {what}", rel_bound),
           f"{what}: cllm's logits and PyTorch's on the GGUF tensors differ")


def check_export(cllm, run, tmp, what):
    f32 = None
    for dtype, bound in (("f32", 1e-4), ("f16", 1e-2)):
        path = os.path.join(tmp, f"model-{dtype}.gguf")
        subprocess.run([cllm, "export", run, "--gguf", path, "--dtype", dtype], check=True, stdout=subprocess.DEVNULL)
        meta, types, tensors, alignment = parse_gguf(path)
        check_metadata(meta, types, dtype)
        check_tensors(meta, tensors, dtype, f32)
        if dtype == "f32":
            check_tokenizer(meta, cllm, run)
            f32 = tensors
        print(f"gguf ({dtype}): {os.path.getsize(path)} bytes, {len(meta)} metadata keys, {len(tensors)} tensors, "
              f"alignment {alignment}, {len(meta['tokenizer.ggml.tokens'])} tokens, "
              f"{len(meta['tokenizer.ggml.merges'])} merges: structure OK")
        compare_logits(cllm, run, meta, tensors, bound, f"{what}, --dtype {dtype}")


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[-4], file=sys.stderr)
        return 2
    cllm = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        run = sys.argv[2] if len(sys.argv) == 3 else os.path.join(tmp, "run")
        if len(sys.argv) == 2:
            r = subprocess.run([cllm, "train", "--preset", "tiny", "--steps", "8", "--pretokenize", "gpt2",
                                "--sample-tokens", "0", "--quiet", "--out", run], capture_output=True, text=True,
                               env=dict(os.environ, OMP_NUM_THREADS="2"))
            if r.returncode == 2 and "libutf8proc" in r.stderr:
                print(f"gguf_check: SKIPPED: {r.stderr.strip()} (only GPT-2-pre-tokenized runs can be exported)")
                return 77
            if r.returncode != 0:
                print(f"gguf_check: training the tiny run failed: {r.stderr.strip()}", file=sys.stderr)
                return 1
        try:
            check_export(cllm, run, tmp, "the run as trained")
            # The same with every weight distinct and far from zero (interop_check's
            # random weights), so that a transposed or swapped tensor cannot hide.
            rand = os.path.join(tmp, "random")
            os.mkdir(rand)
            for name in ("config.json", "tokenizer.bin"):
                shutil.copy(os.path.join(run, name), rand)
            weights, _ = interop_check.read_safetensors(os.path.join(run, "model.safetensors"))
            interop_check.write_safetensors(os.path.join(rand, "model.safetensors"), interop_check.randomized(weights))
            check_export(cllm, rand, tmp, "random weights")
        except Bad as e:
            print(f"gguf_check: FAILED: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
