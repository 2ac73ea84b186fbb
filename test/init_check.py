#!/usr/bin/python3
"""Fine-tuning from a Hugging Face GPT-2 folder (`cllm train DATA --init DIR`).

Writes small random GPT-2s in Hugging Face format, as transformers' savers
lay them out (no `transformers` needed): config.json with the GPT2Config keys
transformers writes (dropout rates, n_inner null, ...), model.safetensors in
F32, F16 or BF16, with or without the `transformer.` prefix, with or without
`lm_head.weight` (= wte), with or without the old causal-mask buffers, and a
tokenizer made by cllm (an odd vocabulary: 301) as cllm's tokenizer.bin, as
Hugging Face's tokenizer.json, or as GPT-2's vocab.json + merges.txt (once
with the ids shuffled, as GPT-2's own vocabulary does not put the bytes at
0..255). For each folder:

1. cllm loads it: its logits (`cllm eval DIR --dump-logits`) match a plain
   PyTorch GPT-2 (test/interop_check.py's) run in float64 on the same
   weights, within 1e-4 relative to the largest logit;
2. `cllm train DATA --init DIR --lr 0` carries the weights into the run
   folder bit for bit: F16 and BF16 are widened exactly;
3. a real fine-tuning run (a few steps at the --init default lr) changes
   them, keeps the architecture and tokenizer (the run encodes a varied text
   to the folder's ids, which for the shuffled vocabulary are the shuffled
   ones), and its run folder loads again into PyTorch with matching logits;
   eval, sample and --resume work on it, and so does `cllm export --gguf`
   (test/gguf_check.py, when this cllm and tree have them).

usage: /usr/bin/python3 test/init_check.py CLLM_BINARY DATA
       /usr/bin/python3 test/init_check.py --random-gpt2 DIR TOKENIZER [--vocab V --layers L --heads H
                     --embd C --positions T]   (a random GPT-2 folder, GPT-2 small's shape by default, for
                     docs/PERFORMANCE.md's measurements)
Needs Debian's python3-torch and python3-numpy. Exit 0 when all pass.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from interop_check import GPT2, compare, read_safetensors  # noqa: E402

TORCH_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}

# (dtype, "transformer." prefix, lm_head.weight stored, attn.bias buffers, tokenizer files)
VARIANTS = [
    ("F32", True, True, False, "bin"),
    ("F16", True, False, True, "json"),
    ("F16", False, True, False, "vocab"),
    ("BF16", True, True, True, "shuffled"),
    ("BF16", False, False, False, "bin"),
]
HF_FILES = ["tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]
SAMPLE = "Hello, wörld! It's 2024: naïve café, 東京, 🙂\n\n   spaces   and\ttabs don't stop.\n"


def hf_config(layers, heads, embd, positions, vocab, eot):
    """config.json as transformers' GPT2Config.save_pretrained writes it."""
    return {
        "_name_or_path": "random-gpt2", "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1, "bos_token_id": eot, "embd_pdrop": 0.1, "eos_token_id": eot,
        "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": positions,
        "n_embd": embd, "n_head": heads, "n_inner": None, "n_layer": layers, "n_positions": positions,
        "reorder_and_upcast_attn": False, "resid_pdrop": 0.1, "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True, "summary_activation": None, "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True, "summary_type": "cls_index", "summary_use_proj": True,
        "torch_dtype": "float32", "transformers_version": "4.40.0", "use_cache": True, "vocab_size": vocab,
    }


def random_weights(cfg, seed, std=None):
    """Hugging Face-named float32 tensors, every one distinct and random: large
    (0.3, 0.2 for vectors) so that a swapped or transposed tensor shows in the
    logits, or GPT-2's own initialization scale `std` (biases 0)."""
    g = torch.Generator().manual_seed(seed)
    C, V, T = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    shapes = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (T, C),
              "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
    for i in range(cfg["n_layer"]):
        p = f"transformer.h.{i}."
        shapes.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "attn.c_attn.weight": (C, 3 * C),
                       p + "attn.c_attn.bias": (3 * C,), p + "attn.c_proj.weight": (C, C),
                       p + "attn.c_proj.bias": (C,), p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
                       p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
                       p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
    out = {}
    for name, shape in shapes.items():
        t = torch.randn(shape, generator=g) * (std or (0.3 if len(shape) == 2 else 0.2))
        if std and name.endswith(".bias"):
            t = torch.zeros(shape)
        out[name] = t + 1.0 if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else t
    return out


def write_safetensors(path, tensors):
    """safetensors as the reference implementation lays it out: names sorted,
    each tensor's raw little-endian bytes (torch's, so BF16 is real BF16)."""
    header, offset, blobs = {}, 0, []
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        raw = t.view(torch.uint8).numpy().tobytes() if t.dim() else t.reshape(1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def shuffled_vocab(src, dst, seed):
    """GPT-2-format files whose ids are a permutation of src's (the
    end-of-text id kept last): the token numbering is the file's to choose.
    Returns old id -> new id."""
    with open(os.path.join(src, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    ids = sorted(vocab.values())
    eot = vocab["<|endoftext|>"]
    movable = [i for i in ids if i != eot]
    perm = list(movable)
    np.random.default_rng(seed).shuffle(perm)
    new_id = dict(zip(movable, perm))
    new_id[eot] = eot
    with open(os.path.join(dst, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({tok: new_id[i] for tok, i in vocab.items()}, f, ensure_ascii=False)
    shutil.copy(os.path.join(src, "merges.txt"), dst)
    return new_id


def copy_tokenizer(tokdir, folder, kind, seed):
    """The tokenizer files of one kind into folder; the id map (None: ids as they are)."""
    if kind == "none":
        pass
    elif kind == "bin":
        shutil.copy(os.path.join(tokdir, "tokenizer.bin"), folder)
    elif kind == "json":
        for name in HF_FILES:
            shutil.copy(os.path.join(tokdir, name), folder)
    elif kind == "vocab":
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(os.path.join(tokdir, name), folder)
    else:
        return shuffled_vocab(tokdir, folder, seed)
    return None


def write_folder(folder, cfg, weights, variant, tokdir, seed=1):
    """The HF folder for one variant; returns the weights as cllm should read
    them (float32 after the dtype round trip), under the prefixed names, and
    the tokenizer's id map (None: cllm's ids)."""
    dtype, prefixed, lm_head, buffers, tok_kind = variant
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    stored, expect = {}, {}
    for name, t in weights.items():
        s = t.to(TORCH_DTYPES[dtype])
        stored[name if prefixed else name[len("transformer."):]] = s
        expect[name] = s.to(torch.float32)
    if lm_head:
        stored["lm_head.weight"] = stored["transformer.wte.weight" if prefixed else "wte.weight"].clone()
    T = cfg["n_positions"]
    for i in range(cfg["n_layer"]) if buffers else []:
        p = ("transformer." if prefixed else "") + f"h.{i}.attn."
        stored[p + "bias"] = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
        stored[p + "masked_bias"] = torch.tensor(-1e4)
    write_safetensors(os.path.join(folder, "model.safetensors"), stored)
    id_map = copy_tokenizer(tokdir, folder, tok_kind, seed)
    return {k: v.numpy() for k, v in expect.items()}, id_map


def run(cmd, **kw):
    """Its stdout (a sample is any bytes: decoded with replacement); a failure shows cllm's stderr."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        raise SystemExit(f"init: {' '.join(cmd)} exited {r.returncode}: {r.stderr.decode('utf-8', 'replace')}")
    return r.stdout.decode("utf-8", "replace")


def encode(cllm, tokenizer):
    """The ids cllm gives SAMPLE with a tokenizer (a folder: tokenizer.bin, else its Hugging Face files)."""
    out = subprocess.run([cllm, "tokenizer", "encode", tokenizer], input=SAMPLE.encode(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    if out.returncode != 0:
        raise SystemExit(f"init: tokenizer encode {tokenizer}: {out.stderr.decode('utf-8', 'replace')}")
    return [int(x) for x in out.stdout.split()]


def check_variant(cllm, data, tmp, k, variant, cfg, tokdir):
    name = f"{variant[0]}{'' if variant[1] else ', no prefix'}{', lm_head' if variant[2] else ''}" \
           f"{', mask buffers' if variant[3] else ''}, tokenizer {variant[4]}"
    init = os.path.join(tmp, f"init{k}")
    expect, id_map = write_folder(init, cfg, random_weights(cfg, 100 + k), variant, tokdir, seed=k)
    ids = encode(cllm, init)
    base = encode(cllm, os.path.join(tokdir, "tokenizer.bin"))
    read_right = ids == (base if id_map is None else [id_map[i] for i in base])
    print(f"init ({name}): the folder's tokenizer gives {'the' if read_right else 'NOT the'} expected ids "
          f"({len(ids)} tokens{', shuffled' if id_map else ''})")
    ok = read_right
    ok = compare(cllm, init, cfg, expect, f"--init folder {name}") and ok

    # The weights carried into a run bit for bit: --lr 0 changes nothing.
    small = ["--batch", "2", "--eval-every", "0", "--sample-tokens", "0", "--quiet"]
    still = os.path.join(tmp, f"still{k}")
    run([cllm, "train", data, "--init", init, "--lr", "0", "--steps", "1", "--out", still] + small)
    got, _ = read_safetensors(os.path.join(still, "model.safetensors"))
    exact = set(got) == set(expect) and all(np.array_equal(got[n].view(np.uint32), expect[n].view(np.uint32))
                                            for n in expect)
    print(f"init ({name}): weights in the run folder {'bit for bit the folder' if exact else 'DIFFER'}'s")
    ok = ok and exact

    # Fine-tuning: the weights move, the architecture and tokenizer stay, and the result loads again.
    ft = os.path.join(tmp, f"ft{k}")
    out = run([cllm, "train", data, "--init", init, "--steps", "4", "--stop-after", "2", "--out", ft] + small[:-1])
    lr_line = [ln for ln in out.splitlines() if "schedule" in ln]
    run([cllm, "train", "--resume", ft, "--quiet", "--sample-tokens", "0"])
    tuned, _ = read_safetensors(os.path.join(ft, "model.safetensors"))
    with open(os.path.join(ft, "config.json")) as f:
        ft_cfg = json.load(f)
    with open(os.path.join(ft, "run.json")) as f:
        run_json = json.load(f)
    same_shape = all(ft_cfg[key] == cfg[key] for key in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"))
    moved = any(not np.array_equal(tuned[n], expect[n]) for n in expect)
    same_tok = encode(cllm, ft) == ids
    default_lr = run_json["lr"] == 1e-4 and bool(lr_line) and "lr 0.0001" in lr_line[0]
    recorded = run_json["init"] == os.path.realpath(init)
    print(f"init ({name}): fine-tuned 4 steps (2 + resume): shape kept {same_shape}, weights moved {moved}, "
          f"tokenizer kept {same_tok}, lr default 1e-4 {default_lr}, run.json init {recorded}")
    ok = ok and same_shape and moved and same_tok and default_lr and recorded
    ok = compare(cllm, ft, ft_cfg, tuned, f"fine-tuned from {name}") and ok
    run([cllm, "eval", ft])
    sample = run([cllm, "sample", ft, "--tokens", "8", "--seed", "5"])
    ok = ok and len(sample) > 0
    return check_export(cllm, ft, name) and ok


def check_export(cllm, run_dir, name):
    """The fine-tuned run through `cllm export --gguf`, read back from the GGUF spec by gguf_check.py."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf_check.py")
    has_export = subprocess.run([cllm, "export", "--help"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL).returncode == 0
    if not (has_export and os.path.exists(script)):
        print(f"init ({name}): export check SKIPPED: this cllm has no `export` command or the tree no "
              f"test/gguf_check.py")
        return True
    r = subprocess.run([sys.executable, script, cllm, run_dir], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    print(f"init ({name}): cllm export --gguf of the fine-tuned run: gguf_check.py exit {r.returncode}")
    if r.returncode not in (0, 77):
        print(r.stdout.decode("utf-8", "replace"))
    return r.returncode in (0, 77)


def write_random_gpt2(argv):
    """A random GPT-2 folder of a given shape, GPT-2 small's by default
    (OpenAI's config.json: 12 x 768, 12 heads, context 1024, vocabulary
    50,257, which the tokenizer must have), at GPT-2's initialization scale,
    F32 with the mask buffers as the checkpoint on the Hugging Face hub."""
    import argparse
    ap = argparse.ArgumentParser(prog="init_check.py --random-gpt2")
    ap.add_argument("dir")
    ap.add_argument("tokenizer")
    for flag, default in (("vocab", 50257), ("layers", 12), ("heads", 12), ("embd", 768), ("positions", 1024)):
        ap.add_argument("--" + flag, type=int, default=default)
    a = ap.parse_args(argv)
    cfg = hf_config(layers=a.layers, heads=a.heads, embd=a.embd, positions=a.positions, vocab=a.vocab,
                    eot=a.vocab - 1)
    write_folder(a.dir, cfg, random_weights(cfg, 7, std=0.02), ("F32", True, False, True, "none"), None)
    shutil.copy(a.tokenizer, os.path.join(a.dir, "tokenizer.bin"))
    print(f"{a.dir}: GPT-2 {a.layers} x {a.embd}, {a.heads} heads, context {a.positions}, vocab {a.vocab}, F32")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--random-gpt2":
        write_random_gpt2(sys.argv[2:])
        return 0
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    cllm, data = sys.argv[1], sys.argv[2]
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        # The tokenizer of a 1-step run: tokenizer.bin and its Hugging Face files.
        tokdir = os.path.join(tmp, "tokenizer-run")
        run([cllm, "train", data, "--preset", "tiny", "--vocab", "301", "--steps", "1", "--sample-tokens", "0",
             "--quiet", "--out", tokdir])
        variants = VARIANTS
        if not os.path.exists(os.path.join(tokdir, "tokenizer.json")):
            print("init: SKIPPED the Hugging Face tokenizer variants: this cllm writes no tokenizer.json "
                  "(built without libutf8proc, so no GPT-2 pre-tokenization)")
            variants = [v for v in VARIANTS if v[4] == "bin"]
        # An odd vocabulary, width and context: nothing may rely on multiples of 16.
        cfg = hf_config(layers=2, heads=3, embd=36, positions=40, vocab=301, eot=300)
        for k, variant in enumerate(variants):
            ok = check_variant(cllm, data, tmp, k, variant, cfg, tokdir) and ok
    if not ok:
        print("init: FAILED (see above)", file=sys.stderr)
        return 1
    print("init: all variants passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
