#!/usr/bin/python3
"""Writes test/data/gpt2_reference.bin: a PyTorch reference for cllm's GPT-2.

Regenerate (from the repository root, with Debian's python3-torch):

    /usr/bin/python3 test/torch_reference.py test/data/gpt2_reference.bin

A plain GPT-2 written here for this purpose (not Hugging Face's code): token +
position embeddings, pre-LayerNorm blocks of causal multi-head attention and a
4x MLP with tanh-GELU, final LayerNorm, LM head tied to wte, mean
cross-entropy. Weights are drawn from a seeded torch generator in float32
(so C reads exactly the same values), then everything is computed in float64:
the file holds the loss, the logits and the gradient of every tensor.

File format (little-endian):
    magic        8 bytes  b"CLLMREF1"
    config       7 x int32: n_layer, n_head, n_embd, n_positions, vocab_size, B, T
    n_arrays     int32
    n_arrays times:
        name_len int32, name (UTF-8, no terminator)
        dtype    int32: 0 = float32, 1 = int32
        ndim     int32, dims ndim x int64
        data     prod(dims) elements of dtype
Array names: "tokens" [B,T] and "targets" [B,T] (int32), "loss" [1],
"logits" [B,T,V], then each parameter under its Hugging Face name
("transformer.wte.weight", ...) followed by "grad.<name>" for its gradient.
"""
import math
import struct
import sys

import torch
import torch.nn.functional as F

N_LAYER, N_HEAD, N_EMBD, N_POSITIONS, VOCAB = 2, 2, 16, 10, 32
B, T = 2, 8  # T < n_positions: the unused rows of wpe must get zero gradient
SEED = 20240601


def parameter_shapes():
    """Hugging Face GPT-2 names and shapes, in state_dict order."""
    C = N_EMBD
    shapes = [("transformer.wte.weight", (VOCAB, C)), ("transformer.wpe.weight", (N_POSITIONS, C))]
    for i in range(N_LAYER):
        p = f"transformer.h.{i}."
        shapes += [
            (p + "ln_1.weight", (C,)), (p + "ln_1.bias", (C,)),
            (p + "attn.c_attn.weight", (C, 3 * C)), (p + "attn.c_attn.bias", (3 * C,)),
            (p + "attn.c_proj.weight", (C, C)), (p + "attn.c_proj.bias", (C,)),
            (p + "ln_2.weight", (C,)), (p + "ln_2.bias", (C,)),
            (p + "mlp.c_fc.weight", (C, 4 * C)), (p + "mlp.c_fc.bias", (4 * C,)),
            (p + "mlp.c_proj.weight", (4 * C, C)), (p + "mlp.c_proj.bias", (C,)),
        ]
    shapes += [("transformer.ln_f.weight", (C,)), ("transformer.ln_f.bias", (C,))]
    return shapes


def make_weights(gen):
    """Random weights far from GPT-2's init (std 0.3, LayerNorm weights near 1,
    nonzero biases), so that every path carries a sizeable gradient."""
    weights = {}
    for name, shape in parameter_shapes():
        w = 0.3 * torch.randn(shape, generator=gen, dtype=torch.float32)
        if ".ln_" in name and name.endswith(".weight"):
            w += 1.0
        weights[name] = w
    return weights


def gpt2_loss(p, tokens, targets):
    C, H = N_EMBD, N_HEAD
    hs = C // H
    Bn, Tn = tokens.shape
    x = p["transformer.wte.weight"][tokens] + p["transformer.wpe.weight"][:Tn]
    causal = torch.tril(torch.ones(Tn, Tn, dtype=torch.bool))
    for i in range(N_LAYER):
        q = f"transformer.h.{i}."
        h = F.layer_norm(x, (C,), p[q + "ln_1.weight"], p[q + "ln_1.bias"], eps=1e-5)
        qkv = h @ p[q + "attn.c_attn.weight"] + p[q + "attn.c_attn.bias"]
        qh, kh, vh = (t.view(Bn, Tn, H, hs).transpose(1, 2) for t in qkv.split(C, dim=2))
        scores = (qh @ kh.transpose(-2, -1)) / math.sqrt(hs)
        att = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        y = (att @ vh).transpose(1, 2).reshape(Bn, Tn, C)
        x = x + y @ p[q + "attn.c_proj.weight"] + p[q + "attn.c_proj.bias"]
        h = F.layer_norm(x, (C,), p[q + "ln_2.weight"], p[q + "ln_2.bias"], eps=1e-5)
        h = F.gelu(h @ p[q + "mlp.c_fc.weight"] + p[q + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ p[q + "mlp.c_proj.weight"] + p[q + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (C,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps=1e-5)
    logits = x @ p["transformer.wte.weight"].T  # tied LM head
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
    return loss, logits


def pack_array(name, tensor, dtype):
    code, fmt = {"float32": (0, "<f4"), "int32": (1, "<i4")}[dtype]
    data = tensor.detach().cpu().numpy().astype(fmt)
    raw = name.encode()
    head = struct.pack("<i", len(raw)) + raw + struct.pack("<ii", code, data.ndim)
    head += b"".join(struct.pack("<q", d) for d in data.shape)
    return head + data.tobytes()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "test/data/gpt2_reference.bin"
    gen = torch.Generator().manual_seed(SEED)
    weights32 = make_weights(gen)
    tokens = torch.randint(0, VOCAB, (B, T), generator=gen)
    targets = torch.randint(0, VOCAB, (B, T), generator=gen)
    params = {k: v.double().requires_grad_(True) for k, v in weights32.items()}
    loss, logits = gpt2_loss(params, tokens, targets)
    loss.backward()

    arrays = [
        pack_array("tokens", tokens, "int32"),
        pack_array("targets", targets, "int32"),
        pack_array("loss", loss.reshape(1), "float32"),
        pack_array("logits", logits, "float32"),
    ]
    for name, _ in parameter_shapes():
        arrays.append(pack_array(name, weights32[name], "float32"))
        arrays.append(pack_array("grad." + name, params[name].grad, "float32"))
    header = b"CLLMREF1" + struct.pack("<7i", N_LAYER, N_HEAD, N_EMBD, N_POSITIONS, VOCAB, B, T)
    with open(out, "wb") as f:
        f.write(header + struct.pack("<i", len(arrays)) + b"".join(arrays))
    print(f"{out}: loss {loss.item():.6f}, {len(arrays)} arrays")


if __name__ == "__main__":
    main()
