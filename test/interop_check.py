#!/usr/bin/python3
"""PyTorch interop check: a cllm run folder loads into a plain-PyTorch GPT-2.

Reads DIR/config.json and DIR/model.safetensors by hand (8-byte little-endian
header length, JSON header, raw buffer; the `safetensors` and `transformers`
packages are not used), builds GPT-2 from torch primitives with the Hugging
Face weight layout (Conv1D weights [in, out], lm_head tied to wte, gelu_new,
LayerNorm eps from the config), runs a fixed token sequence in float64, and
compares its logits with the ones cllm computes for the same tokens
(`cllm eval DIR --dump-logits FILE --tokens IDS`).

Passes when max|cllm - torch| <= 1e-4 * max(1, max|torch|), i.e. 1e-4
absolute for small logits and 1e-4 relative to the largest logit otherwise.

usage: /usr/bin/python3 test/interop_check.py CLLM_BINARY RUN_DIR
Needs Debian's python3-torch and python3-numpy. Exit 0 on match, 1 otherwise.
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64,
          "U64": np.uint64, "I32": np.int32, "U32": np.uint32, "I16": np.int16,
          "U16": np.uint16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: shorter than 8 bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header length {n} runs past the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    buf = data[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors, spans = {}, []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dt = np.dtype(DTYPES[info["dtype"]]).newbyteorder("<")
        count = int(np.prod(info["shape"], dtype=np.int64)) if info["shape"] else 1
        if end - begin != count * dt.itemsize or end > len(buf):
            raise ValueError(f"{path}: tensor {name} has inconsistent offsets")
        tensors[name] = np.frombuffer(buf, dtype=dt, count=count, offset=begin).reshape(info["shape"])
        spans.append((begin, end))
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise ValueError(f"{path}: tensors overlap or leave a gap at byte {pos}")
        pos = end
    if pos != len(buf):
        raise ValueError(f"{path}: buffer has {len(buf)} bytes, tensors cover {pos}")
    return tensors, meta


def write_safetensors(path, tensors):
    """The format as another implementation writes it: names sorted, header
    not padded, so cllm's reader is exercised on a file it did not write."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class GPT2:
    """GPT-2 forward pass over Hugging Face-named tensors."""

    def __init__(self, cfg, tensors):
        self.cfg = cfg
        self.eps = float(cfg.get("layer_norm_epsilon", 1e-5))
        self.w = {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in tensors.items()}
        expected = self.expected_shapes()
        if set(expected) != set(self.w):
            raise ValueError(f"tensor names differ from the config: missing {sorted(set(expected) - set(self.w))}, "
                             f"extra {sorted(set(self.w) - set(expected))}")
        for k, shape in expected.items():
            if tuple(self.w[k].shape) != shape:
                raise ValueError(f"{k}: shape {tuple(self.w[k].shape)}, config implies {shape}")

    def expected_shapes(self):
        c = self.cfg
        C, V, T = c["n_embd"], c["vocab_size"], c["n_positions"]
        s = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (T, C),
             "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
        for i in range(c["n_layer"]):
            p = f"transformer.h.{i}."
            s.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
                      p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
                      p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                      p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
                      p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
        return s

    def ln(self, x, name):
        return torch.nn.functional.layer_norm(x, (x.shape[-1],), self.w[name + ".weight"], self.w[name + ".bias"],
                                              self.eps)

    def conv1d(self, x, name):
        return x @ self.w[name + ".weight"] + self.w[name + ".bias"]

    def attention(self, x, p):
        T, C = x.shape
        H = self.cfg["n_head"]
        q, k, v = self.conv1d(x, p + "attn.c_attn").split(C, dim=-1)
        q, k, v = (t.view(T, H, C // H).transpose(0, 1) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        att = torch.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
        y = (att @ v).transpose(0, 1).reshape(T, C)
        return self.conv1d(y, p + "attn.c_proj")

    def logits(self, ids):
        ids = torch.tensor(ids, dtype=torch.long)
        x = self.w["transformer.wte.weight"][ids] + self.w["transformer.wpe.weight"][: len(ids)]
        for i in range(self.cfg["n_layer"]):
            p = f"transformer.h.{i}."
            x = x + self.attention(self.ln(x, p + "ln_1"), p)
            x = x + self.conv1d(gelu_new(self.conv1d(self.ln(x, p + "ln_2"), p + "mlp.c_fc")), p + "mlp.c_proj")
        x = self.ln(x, "transformer.ln_f")
        return x @ self.w["transformer.wte.weight"].T  # lm_head tied to wte


def compare(cllm, run, cfg, tensors, what, rel_bound=1e-4):
    """cllm's logits for a fixed input against the PyTorch model's; True if
    they match within rel_bound x max(1, max |torch|)."""
    model = GPT2(cfg, tensors)
    V, T = cfg["vocab_size"], cfg["n_positions"]
    ids = [(7 * i * i + 3 * i + 1) % V for i in range(min(T, 32))]  # fixed, spread over the vocabulary
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "logits.f32")
        subprocess.run([cllm, "eval", run, "--dump-logits", out, "--tokens", " ".join(map(str, ids))], check=True)
        ours = np.fromfile(out, dtype="<f4").reshape(len(ids), V).astype(np.float64)
    ref = model.logits(ids).numpy()
    err = float(np.max(np.abs(ours - ref)))
    scale = float(np.max(np.abs(ref)))
    bound = rel_bound * max(1.0, scale)
    ok = err <= bound
    print(f"interop ({what}): {len(tensors)} tensors, {len(ids)} tokens x {V} logits; max |cllm - torch| = "
          f"{err:.3e}, max |torch| = {scale:.3f}, relative {err / max(scale, 1e-30):.3e} (bound {bound:.1e}): "
          f"{'OK' if ok else 'MISMATCH'}")
    return ok


def randomized(tensors, seed=1):
    """Every tensor replaced by distinct random values (LayerNorm weights around
    1), so a transposed or swapped tensor cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, t in tensors.items():
        r = rng.standard_normal(t.shape) * (0.3 if t.ndim == 2 else 0.2)
        out[name] = (r + 1.0 if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else r).astype(np.float32)
    return out


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    cllm, run = sys.argv[1], sys.argv[2]
    with open(os.path.join(run, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["model_type"] == "gpt2" and cfg["activation_function"] == "gelu_new"
    assert cfg.get("tie_word_embeddings", True)
    tensors, meta = read_safetensors(os.path.join(run, "model.safetensors"))
    assert "lm_head.weight" not in tensors, "lm_head should be tied, not stored"
    ok = compare(cllm, run, cfg, tensors, "the run as saved by cllm")

    # The other direction: weights written by this script, read by cllm.
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("config.json", "tokenizer.bin"):
            shutil.copy(os.path.join(run, name), tmp)
        rand = randomized(tensors)
        write_safetensors(os.path.join(tmp, "model.safetensors"), rand)
        ok = compare(cllm, tmp, cfg, rand, "random weights written by PyTorch") and ok
    if not ok:
        print("interop: MISMATCH between cllm and PyTorch logits", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
