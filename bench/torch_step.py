#!/usr/bin/python3
"""One PyTorch training step of the same GPT-2 that `cllm bench step` times.

Same shapes (presets S, M and G, the GPT-2 small shape), same batch (B=8 random sequences of T=256
tokens), same work per step (forward, cross-entropy, backward, global-norm
clipping at 1.0, AdamW with decay on the matrices only), timed the same way:
one warm-up step, then the median of --repeats steps.

Thread settings must be fixed before torch is imported, because Debian's
torch runs its matrix products in OpenBLAS's own thread pool, which
torch.set_num_threads does not limit: `cllm bench step --against-torch`
therefore runs this script once per setting, with OPENBLAS_NUM_THREADS in
the environment and --threads for torch, and keeps PyTorch's best.

--bf16 runs the forward and the loss under torch.autocast("cpu",
dtype=torch.bfloat16) (bf16 matrix products, fp32 master weights and
optimizer), PyTorch's counterpart of `cllm bench step --precision bf16`;
a torch without CPU autocast exits non-zero and cllm reports it did not run.

Prints one JSON object: {"preset", "threads", "openblas_threads", "bf16",
"tokens_per_s", "step_s_median", "loss"}.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

PRESETS = {  # n_layer, n_embd, n_head, vocab
    "S": (4, 256, 4, 256),
    "M": (6, 384, 6, 512),
    "G": (12, 768, 12, 50257),  # GPT-2 small's shape (its context is 1024; here T = --seq)
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="S")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps, median kept (default 5)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bf16", action="store_true", help="forward under CPU bf16 autocast")
    return p.parse_args()


def build_model(torch, n_layer, n_embd, n_head, vocab, seq):
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(n_embd)
            self.c_attn = nn.Linear(n_embd, 3 * n_embd)
            self.c_proj = nn.Linear(n_embd, n_embd)
            self.ln_2 = nn.LayerNorm(n_embd)
            self.c_fc = nn.Linear(n_embd, 4 * n_embd)
            self.mlp_proj = nn.Linear(4 * n_embd, n_embd)
            self.register_buffer("mask", torch.ones(seq, seq, dtype=torch.bool).tril())

        def attention(self, x):
            B, T, C = x.shape
            hs = C // n_head
            q, k, v = self.c_attn(x).split(C, dim=2)
            q = q.view(B, T, n_head, hs).transpose(1, 2)
            k = k.view(B, T, n_head, hs).transpose(1, 2)
            v = v.view(B, T, n_head, hs).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
            y = F.softmax(att, dim=-1) @ v
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

        def forward(self, x):
            x = x + self.attention(self.ln_1(x))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(vocab, n_embd)
            self.wpe = nn.Embedding(seq, n_embd)
            self.h = nn.ModuleList(Block() for _ in range(n_layer))
            self.ln_f = nn.LayerNorm(n_embd)

        def forward(self, idx, targets):
            T = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(T))
            for block in self.h:
                x = block(x)
            logits = self.ln_f(x) @ self.wte.weight.t()  # tied LM head, as in cllm
            return F.cross_entropy(logits.view(-1, vocab), targets.reshape(-1))

    model = GPT()
    for name, p in model.named_parameters():  # GPT-2 initialisation, as cllm's
        if name.endswith("bias"):
            torch.nn.init.zeros_(p)
        elif p.dim() == 2:
            std = 0.02 / math.sqrt(2 * n_layer) if ("c_proj" in name or "mlp_proj" in name) else 0.02
            torch.nn.init.normal_(p, 0.0, std)
    return model


def main():
    args = parse_args()
    import torch  # after argparse: OPENBLAS_NUM_THREADS is already in the environment

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    n_layer, n_embd, n_head, vocab = PRESETS[args.preset]
    model = build_model(torch, n_layer, n_embd, n_head, vocab, args.seq)
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "wte" not in n and "wpe" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "wte" not in n and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    data = torch.randint(0, vocab, (args.batch, args.seq + 1))
    x, y = data[:, :-1].contiguous(), data[:, 1:].contiguous()

    def step():
        opt.zero_grad(set_to_none=True)
        if args.bf16:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(x, y)
        else:
            loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    step()  # warm-up: allocator, thread pools
    times = []
    loss = 0.0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({
        "preset": args.preset, "threads": args.threads,
        "openblas_threads": int(os.environ.get("OPENBLAS_NUM_THREADS", "0") or 0), "bf16": args.bf16,
        "tokens_per_s": args.batch * args.seq / med, "step_s_median": med, "loss": loss,
    }))


if __name__ == "__main__":
    sys.exit(main())
