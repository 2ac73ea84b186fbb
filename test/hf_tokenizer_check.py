#!/usr/bin/python3
"""Hugging Face tokenizer files of a cllm run, checked from the outside.

1. The pre-tokenizer: `cllm tokenizer split --pretokenize gpt2` cuts text
   exactly where GPT-2's pattern does with Python's `regex` module, for every
   code point Python's Unicode tables assign and a varied sample. Bytes that
   are not UTF-8 go through bytes.decode("utf-8", "surrogateescape"): each
   becomes one character that is neither letter, number nor space, which is
   cllm's documented rule.
2. A run trained here (`cllm train ... --out RUN`) holds tokenizer.json,
   vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json;
   each is checked against what transformers requires (ids contiguous, every
   merge part and result in the vocabulary, the special token flagged and
   named in the configs, the 256 byte tokens, config.json's GPT2Config keys).
3. GPT-2 byte-level BPE reimplemented here from tokenizer.json alone (the
   regex, the byte-to-unicode map, merges by rank as in GPT-2's encoder.py)
   gives cllm's ids (`cllm tokenizer encode RUN`) on ASCII, accents, CJK,
   emoji, digits, contractions, runs of spaces and newlines, runs longer than
   128 bytes and invalid UTF-8; and `cllm tokenizer decode` gives the bytes
   back.
4. The same vocabulary renumbered as OpenAI's GPT-2 files number theirs
   (bytes in byte-to-unicode order), and once shuffled at random, written as
   vocab.json + merges.txt alone: cllm loads the folder and encodes as the
   reference does with that numbering. And a vocabulary of GPT-2's size
   (50,257 tokens: 50,000 merges drawn at random, GPT-2's numbering; OpenAI's
   own files cannot be fetched here) the same way.

usage: /usr/bin/python3 test/hf_tokenizer_check.py CLLM_BINARY
Needs Debian's python3-regex. Exit 0 when all holds, 1 otherwise, 77 (a skip)
when python3-regex is missing or cllm was built without libutf8proc.
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unicodedata

try:
    import regex
except ImportError:
    print("SKIP: python3-regex is not installed (apt-get install python3-regex)")
    sys.exit(77)

PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
EOT = "<|endoftext|>"
GPT2_CONFIG_KEYS = [
    "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner", "activation_function", "resid_pdrop",
    "embd_pdrop", "attn_pdrop", "layer_norm_epsilon", "initializer_range", "summary_type", "summary_use_proj",
    "summary_activation", "summary_proj_to_labels", "summary_first_dropout", "scale_attn_weights", "use_cache",
    "bos_token_id", "eos_token_id", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "model_type",
]

SAMPLES = [
    b"First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n",
    b"It's 2024; isn't it? They'll've gone, we'd said, I'm sure, you're right, we've 's 'S ''s",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe e\u0301t\u00e9 \u00c5ngstr\u00f6m".encode(),
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u4e2d\u6587\u3002 \ud55c\uad6d\uc5b4".encode(),
    "emoji \U0001F600\U0001F44D\U0001F3FD \U0001F1EB\U0001F1F7 ok \u2764\ufe0f".encode(),
    b"digits 0 12 345 6789 3.14159 1,000,000 2^10",
    "\u0663\u0664 \u216b \u00bd \u00b2".encode(),
    b"spaces    and\ttabs\t\t and\n\n\nnewlines \n \n  \r\n end   ",
    "\u3000\u3000x\u00a0y\u2028z \u0085w".encode(),
    b"a" * 300 + b" " + b" " * 500 + b"=" * 200 + b"\n" * 150,
    b"invalid \xff\xfe utf-8 \xc3\x28 \xe2\x82 \xed\xa0\x80 x\x80y \xf0\x9f\x98",
    b"",
]


def run(cmd, data=b""):
    p = subprocess.run(cmd, input=data, capture_output=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.decode(errors='replace')}")
    return p.stdout


def pieces(data):
    text = data.decode("utf-8", "surrogateescape")
    return [m.encode("utf-8", "surrogateescape") for m in PATTERN.findall(text)]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs))), bs


BYTE_ENCODER, GPT2_BYTE_ORDER = bytes_to_unicode()


class Reference:
    """GPT-2 byte-level BPE from a vocabulary and merge list (encoder.py's algorithm)."""

    def __init__(self, vocab, merges):
        self.vocab = vocab
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.cache = {}

    def bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            pairs = {(parts[i], parts[i + 1]) for i in range(len(parts) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self.cache[word] = parts
        return parts

    def encode(self, data):
        ids = []
        for piece in pieces(data):
            ids += [self.vocab[t] for t in self.bpe("".join(BYTE_ENCODER[b] for b in piece))]
        return ids


def cllm_ids(cllm, source, data):
    return [int(x) for x in run([cllm, "tokenizer", "encode", source], data).split()]


class Checker:
    def __init__(self):
        self.failures = 0

    def expect(self, ok, what):
        if not ok:
            self.failures += 1
            print("FAIL:", what)
        return ok


def check_split(cllm, c):
    texts = SAMPLES + [bytes(random.Random(7).choice(b"ab Z9'\n\t.,-\xc3\xa9\xff") for _ in range(2000))]
    assigned = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000 and unicodedata.category(chr(cp)) != "Cn"]
    # each code point alone after a space, inside letters and before a digit
    texts.append("".join(" " + chr(cp) + "a" + chr(cp) + "1" for cp in assigned).encode())
    for data in texts:
        want = [len(p) for p in pieces(data)]
        got = [int(x) for x in run([cllm, "tokenizer", "split", "--pretokenize", "gpt2"], data).split()]
        c.expect(got == want, f"split of {data[:40]!r}...: first difference at chunk "
                 f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))}")
    print(f"pre-tokenizer: {len(texts)} texts ({len(assigned)} code points) split as GPT-2's regex")


def check_files(run_dir, c):
    def load(name):
        with open(os.path.join(run_dir, name), encoding="utf-8") as f:
            return json.load(f)

    tj = load("tokenizer.json")
    model = tj["model"]
    vocab, merges = model["vocab"], model["merges"]
    c.expect(model["type"] == "BPE", "model type BPE")
    c.expect(tj["pre_tokenizer"]["type"] == "ByteLevel" and tj["decoder"]["type"] == "ByteLevel", "ByteLevel")
    c.expect(tj["pre_tokenizer"].get("add_prefix_space") is False, "no prefix space")
    ids = sorted(vocab.values())
    c.expect(ids == list(range(len(vocab))), "vocabulary ids contiguous from 0, each once")
    merges = [m.split(" ") if isinstance(m, str) else m for m in merges]
    c.expect(all(len(m) == 2 for m in merges), "every merge is two tokens")
    for a, b in merges:
        if not c.expect(a in vocab and b in vocab and a + b in vocab, f"merge {a} {b}: parts and result in vocab"):
            break
    c.expect(len({tuple(m) for m in merges}) == len(merges), "no merge twice")
    alphabet = set(BYTE_ENCODER.values())
    specials = {t["content"]: t["id"] for t in tj["added_tokens"] if t["special"]}
    c.expect(specials.get(EOT) == vocab.get(EOT), "<|endoftext|> is a special added token with its vocab id")
    c.expect(all(set(k) <= alphabet for k in vocab if k not in specials), "tokens in the byte alphabet")
    c.expect(alphabet <= set(vocab), "every byte has a token")
    c.expect(load("vocab.json") == vocab, "vocab.json is tokenizer.json's vocabulary")
    with open(os.path.join(run_dir, "merges.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    c.expect(lines[0] == "#version: 0.2", "merges.txt starts with #version: 0.2")
    c.expect([l.split(" ") for l in lines[1:] if l] == merges, "merges.txt holds tokenizer.json's merges")
    cfg, tcfg, smap = load("config.json"), load("tokenizer_config.json"), load("special_tokens_map.json")
    missing = [k for k in GPT2_CONFIG_KEYS if k not in cfg]
    c.expect(not missing, f"config.json has every GPT2Config key (missing {missing})")
    c.expect(cfg["vocab_size"] == len(vocab) and cfg["eos_token_id"] == vocab[EOT], "config.json ids")
    c.expect(tcfg["model_max_length"] == cfg["n_positions"], "model_max_length = n_positions")
    c.expect(tcfg["eos_token"] == EOT and tcfg["tokenizer_class"] == "GPT2Tokenizer", "tokenizer_config.json")
    c.expect(tcfg.get("clean_up_tokenization_spaces") is False, "decoding does not rewrite spaces")
    c.expect(tcfg["added_tokens_decoder"][str(vocab[EOT])]["special"] is True, "added_tokens_decoder")
    c.expect(smap == {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT}, "special_tokens_map.json")
    print(f"files: {len(vocab)} tokens, {len(merges)} merges, structure as transformers needs")
    return vocab, merges


def check_encoding(cllm, source, vocab, merges, c, label):
    ref = Reference(vocab, merges)
    for data in SAMPLES:
        want = ref.encode(data)
        got = cllm_ids(cllm, source, data)
        if c.expect(got == want, f"{label}: ids of {data[:40]!r}"):
            back = run([cllm, "tokenizer", "decode", source], "".join(f"{i}\n" for i in got).encode())
            c.expect(back == data, f"{label}: decode of {data[:40]!r} gives the bytes back")
    print(f"{label}: {len(SAMPLES)} samples encode as the reference BPE and decode back")


def renumbered(vocab, merges, order):
    """The vocabulary with ids reassigned: order lists the old ids by new id."""
    by_old = {i: k for k, i in vocab.items()}
    return {by_old[old]: new for new, old in enumerate(order)}


def write_gpt2_style(folder, vocab, merges):
    os.makedirs(folder)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(dict(sorted(vocab.items(), key=lambda kv: kv[1])), f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


def gpt2_sized(seed=1):
    """50,000 random merges over GPT-2's byte tokens, numbered as OpenAI's files (bytes, merges, EOT)."""
    rng = random.Random(seed)
    tokens = [BYTE_ENCODER[b] for b in GPT2_BYTE_ORDER]
    have, merges = set(tokens), []
    common = [BYTE_ENCODER[b] for b in b" etaoinshrdlucmfwypvbgkqjxz\n.,'"]  # so that merges apply to text
    while len(merges) < 50000:
        a = rng.choice(tokens[-2000:] + common) if rng.random() < 0.7 else rng.choice(tokens)
        b = rng.choice(common) if rng.random() < 0.8 else rng.choice(tokens)
        if a + b in have or len(a + b) > 12:
            continue
        have.add(a + b)
        tokens.append(a + b)
        merges.append((a, b))
    vocab = {t: i for i, t in enumerate(tokens)}
    vocab[EOT] = len(vocab)
    return vocab, merges


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    cllm = os.path.abspath(sys.argv[1])
    probe = subprocess.run([cllm, "tokenizer", "split", "--pretokenize", "gpt2"], input=b"x", capture_output=True)
    if probe.returncode == 2 and b"libutf8proc" in probe.stderr:
        print("SKIP: cllm was built without libutf8proc (no GPT-2 pre-tokenization)")
        return 77
    c = Checker()
    check_split(cllm, c)
    tmp = tempfile.mkdtemp(prefix="cllm-hf-")
    try:
        corpus = os.path.join(tmp, "corpus.txt")
        with open(corpus, "wb") as f:
            f.write(b"".join(s * 20 for s in SAMPLES))
        run_dir = os.path.join(tmp, "run")
        shakespeare = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "tinyshakespeare.txt")
        run([cllm, "train", corpus, shakespeare, "--preset", "tiny", "--steps", "1", "--vocab", "800",
             "--sample-tokens", "0", "--quiet", "--out", run_dir])
        vocab, merges = check_files(run_dir, c)
        check_encoding(cllm, run_dir, vocab, merges, c, "run folder (tokenizer.bin)")
        json_only = os.path.join(tmp, "json-only")
        os.makedirs(json_only)
        shutil.copy(os.path.join(run_dir, "tokenizer.json"), json_only)
        check_encoding(cllm, json_only, vocab, merges, c, "tokenizer.json alone")

        eot = vocab[EOT]
        byte_ids = [vocab[BYTE_ENCODER[b]] for b in GPT2_BYTE_ORDER]
        rest = [i for i in range(len(vocab)) if i not in set(byte_ids) and i != eot]
        gpt2 = renumbered(vocab, merges, byte_ids + rest + [eot])
        write_gpt2_style(os.path.join(tmp, "gpt2-style"), gpt2, merges)
        check_encoding(cllm, os.path.join(tmp, "gpt2-style"), gpt2, merges, c, "GPT-2 numbering (vocab.json + merges.txt)")
        order = list(range(len(vocab)))
        random.Random(3).shuffle(order)
        shuffled = renumbered(vocab, merges, order)
        write_gpt2_style(os.path.join(tmp, "shuffled"), shuffled, merges)
        check_encoding(cllm, os.path.join(tmp, "shuffled"), shuffled, merges, c, "shuffled ids")
        big_vocab, big_merges = gpt2_sized()
        write_gpt2_style(os.path.join(tmp, "gpt2-sized"), big_vocab, big_merges)
        check_encoding(cllm, os.path.join(tmp, "gpt2-sized"), big_vocab, big_merges, c,
                       f"GPT-2-sized vocabulary ({len(big_vocab)} tokens)")
    finally:
        shutil.rmtree(tmp)
    if c.failures:
        print(f"{c.failures} check(s) failed")
        return 1
    print("hf_tokenizer_check: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
