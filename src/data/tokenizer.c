/* Byte-level BPE tokenizer: the object, training, encoding, decoding. The
 * file format is in tokenizer_file.c, Hugging Face files in hf_tokenizer.c.
 *
 * Ids. A tokenizer cllm trains numbers its tokens 0..255 for the bytes
 * themselves, 256 + i for the i-th learned merge (the concatenation of its
 * two parts), then the special tokens, so the end-of-document id (EOT) is
 * vocab_size - 1. One read from other files may number them in any order:
 * byte_id[] maps each byte to its token and every merge carries its result.
 * Raw text never encodes to a special token, so EOT in a token stream
 * always means a document boundary.
 *
 * Pre-splitting. Text is cut into chunks before BPE (pretokenize.h) and
 * merges never cross a chunk boundary. Splitting keeps training cheap: it
 * works on the table of *unique* chunks with their counts (~30k entries for
 * 1 MB of English) instead of the raw text.
 *
 * Training. Pair counts are kept in a hash table, each pair with the list of
 * unique chunks it occurs in. A merge rewrites only those chunks and adjusts
 * the counts of the pairs they contain; the most frequent pair comes from a
 * max-heap with lazy deletion (an entry is stale when its count no longer
 * matches the table). Ties go to the smallest (left, right) pair, so training
 * is fully deterministic. With GPT-2 pre-tokenization (chunks of any length)
 * a pair is skipped, never merged, when its token would be longer than
 * CLLM_TOKENIZER_MAX_TOKEN_BYTES or would have the same bytes as a token that
 * exists: every token's bytes are then distinct, which a tokenizer.json
 * vocabulary (text -> id) needs.
 *
 * Encoding applies, inside each chunk, the lowest-ranked merge present, the
 * leftmost occurrence first, until none applies (a heap of candidate pairs,
 * O(L log L) for a chunk of L bytes: Hugging Face tokenizers' rule). For a
 * tokenizer whose merges only use bytes and earlier merges' results (every
 * tokenizer cllm trains, and GPT-2's), that is the same as applying each
 * merge to all its occurrences left to right in training order, which
 * reproduces the training-time segmentation. Encoded chunks are cached for
 * the duration of one call, which is what makes encoding a megabyte fast:
 * most chunks repeat. */
#include "cllm/data/tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cllm_status oom(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory in the tokenizer"); }
/* ------------------------------------------------------------------ */
/* Small hash helpers                                                  */

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}


/* Open-addressing map from a 64-bit key (never UINT64_MAX) to an int32. */
typedef struct {
    uint64_t *keys;
    int32_t *vals;
    size_t cap, n; /* cap is a power of two */
} u64_map;

#define EMPTY_KEY UINT64_MAX

static cllm_status u64_map_init(u64_map *m, size_t expected) {
    size_t cap = 64;
    while (cap < expected * 2) cap *= 2;
    m->keys = malloc(cap * sizeof *m->keys);
    m->vals = malloc(cap * sizeof *m->vals);
    m->cap = cap;
    m->n = 0;
    if (!m->keys || !m->vals) return oom();
    memset(m->keys, 0xff, cap * sizeof *m->keys);
    return CLLM_OK;
}

static void u64_map_free(u64_map *m) {
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t u64_map_slot(const u64_map *m, uint64_t key) {
    size_t mask = m->cap - 1, i = (size_t)mix64(key) & mask;
    while (m->keys[i] != EMPTY_KEY && m->keys[i] != key) i = (i + 1) & mask;
    return i;
}

static int32_t u64_map_get(const u64_map *m, uint64_t key, int32_t missing) {
    size_t i = u64_map_slot(m, key);
    return m->keys[i] == key ? m->vals[i] : missing;
}

static cllm_status u64_map_grow(u64_map *m) {
    u64_map bigger;
    if (u64_map_init(&bigger, m->cap) != CLLM_OK) {
        u64_map_free(&bigger);
        return oom();
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == EMPTY_KEY) continue;
        size_t j = u64_map_slot(&bigger, m->keys[i]);
        bigger.keys[j] = m->keys[i];
        bigger.vals[j] = m->vals[i];
    }
    bigger.n = m->n;
    u64_map_free(m);
    *m = bigger;
    return CLLM_OK;
}

/* Inserts key -> val if the key is absent; *found receives the stored value. */
static cllm_status u64_map_put_new(u64_map *m, uint64_t key, int32_t val, int32_t *found) {
    if ((m->n + 1) * 2 > m->cap && u64_map_grow(m) != CLLM_OK) return oom();
    size_t i = u64_map_slot(m, key);
    if (m->keys[i] != key) {
        m->keys[i] = key;
        m->vals[i] = val;
        m->n++;
    }
    *found = m->vals[i];
    return CLLM_OK;
}

/* Growable arrays of int32. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} i32_vec;

static cllm_status i32_vec_push(i32_vec *a, int32_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4;
        int32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return oom();
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return CLLM_OK;
}
/* ------------------------------------------------------------------ */
/* The tokenizer object                                                */

struct cllm_tokenizer {
    cllm_pretok pretok;
    int vocab;
    int n_merges;
    int32_t *merges;    /* 3 * n_merges: left, right, result of merge i (priority i) */
    uint32_t *tok_off;  /* per id: where its text starts in tok_text */
    uint32_t *tok_len;  /* per id: text length (a special token's text is its name) */
    uint8_t *tok_text;
    uint8_t *special;   /* per id: 1 for special tokens */
    int32_t byte_id[256];
    int32_t eot;
    u64_map ranks;      /* pair_key(left, right) -> merge index */
};

void cllm_tokenizer_free(cllm_tokenizer *t) {
    if (!t) return;
    free(t->merges);
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_text);
    free(t->special);
    u64_map_free(&t->ranks);
    free(t);
}

static cllm_status invalid(const char *fmt, long a, long b) {
    return cllm_fail(CLLM_ERR_INPUT, "invalid tokenizer: %s (%ld, %ld)", fmt, a, b);
}

/* Every token's text, the specials and the byte tokens; p is checked. */
static cllm_status copy_tokens(cllm_tokenizer *t, const cllm_tokenizer_parts *p) {
    size_t total = 0;
    for (int id = 0; id < p->n_tokens; id++) {
        if (p->len[id] == 0 || p->len[id] > CLLM_TOKENIZER_MAX_TOKEN_BYTES)
            return cllm_fail(CLLM_ERR_INPUT, "invalid tokenizer: token %d is %zu bytes long (1..%d)", id, p->len[id],
                             CLLM_TOKENIZER_MAX_TOKEN_BYTES);
        total += p->len[id];
    }
    t->tok_text = malloc(total);
    if (!t->tok_text) return oom();
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    t->eot = -1;
    size_t off = 0;
    for (int id = 0; id < p->n_tokens; id++) {
        const uint8_t *src = p->text + p->off[id];
        memcpy(t->tok_text + off, src, p->len[id]);
        t->tok_off[id] = (uint32_t)off;
        t->tok_len[id] = (uint32_t)p->len[id];
        off += p->len[id];
        t->special[id] = p->special[id] != 0;
        if (t->special[id] && t->eot < 0 && p->len[id] == strlen(CLLM_TOKENIZER_EOT_NAME) &&
            memcmp(src, CLLM_TOKENIZER_EOT_NAME, p->len[id]) == 0)
            t->eot = id;
        if (!t->special[id] && p->len[id] == 1 && t->byte_id[src[0]] < 0) t->byte_id[src[0]] = id;
    }
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0)
            return cllm_fail(CLLM_ERR_INPUT, "invalid tokenizer: no token for the byte 0x%02x (byte-level BPE needs all 256)", b);
    if (t->eot < 0)
        return cllm_fail(CLLM_ERR_INPUT, "invalid tokenizer: no special token named \"%s\" (the end-of-document token)",
                         CLLM_TOKENIZER_EOT_NAME);
    return CLLM_OK;
}

/* Parts and result are ordinary tokens whose texts concatenate; a pair is learned once. */
static cllm_status copy_merges(cllm_tokenizer *t, const cllm_tokenizer_parts *p) {
    t->merges = malloc(((size_t)p->n_merges * 3 + 1) * sizeof *t->merges);
    if (!t->merges || u64_map_init(&t->ranks, (size_t)p->n_merges) != CLLM_OK) return oom();
    for (int i = 0; i < p->n_merges; i++) {
        int32_t a = p->merges[3 * i], b = p->merges[3 * i + 1], r = p->merges[3 * i + 2];
        if (a < 0 || a >= p->n_tokens || b < 0 || b >= p->n_tokens || r < 0 || r >= p->n_tokens)
            return invalid("a merge refers to a token that does not exist (merge, token)", i,
                           a < 0 || a >= p->n_tokens ? a : b < 0 || b >= p->n_tokens ? b : r);
        if (t->special[a] || t->special[b] || t->special[r])
            return invalid("a merge uses a special token (merge, token)", i, t->special[a] ? a : t->special[b] ? b : r);
        if (t->tok_len[r] != t->tok_len[a] + t->tok_len[b] ||
            memcmp(t->tok_text + t->tok_off[r], t->tok_text + t->tok_off[a], t->tok_len[a]) != 0 ||
            memcmp(t->tok_text + t->tok_off[r] + t->tok_len[a], t->tok_text + t->tok_off[b], t->tok_len[b]) != 0)
            return invalid("a merge's result is not its two parts joined (merge, result)", i, r);
        int32_t first;
        if (u64_map_put_new(&t->ranks, pair_key(a, b), i, &first) != CLLM_OK) return oom();
        if (first != i) return invalid("the same merge appears twice (merges)", first, i);
        memcpy(t->merges + 3 * i, p->merges + 3 * i, 3 * sizeof *t->merges);
    }
    t->n_merges = p->n_merges;
    return CLLM_OK;
}

cllm_status cllm_tokenizer_build(const cllm_tokenizer_parts *p, cllm_tokenizer **out) {
    *out = NULL;
    if (p->n_tokens < CLLM_TOKENIZER_MIN_VOCAB || p->n_tokens > CLLM_TOKENIZER_MAX_VOCAB)
        return cllm_fail(CLLM_ERR_INPUT, "invalid tokenizer: %d tokens (cllm supports %d..%d)", p->n_tokens,
                         CLLM_TOKENIZER_MIN_VOCAB, CLLM_TOKENIZER_MAX_VOCAB);
    if (p->n_merges < 0 || p->n_merges > p->n_tokens)
        return cllm_fail(CLLM_ERR_INPUT, "invalid tokenizer: %d merges for %d tokens", p->n_merges, p->n_tokens);
    if ((unsigned)p->pretok >= CLLM_PRETOK_COUNT)
        return cllm_fail(CLLM_ERR_INPUT, "invalid tokenizer: unknown pre-tokenizer %d", (int)p->pretok);
    cllm_status s = cllm_pretok_require(p->pretok);
    if (s != CLLM_OK) return s;
    cllm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return oom();
    t->pretok = p->pretok;
    t->vocab = p->n_tokens;
    t->tok_off = malloc((size_t)t->vocab * sizeof *t->tok_off);
    t->tok_len = malloc((size_t)t->vocab * sizeof *t->tok_len);
    t->special = malloc((size_t)t->vocab);
    s = t->tok_off && t->tok_len && t->special ? CLLM_OK : oom();
    if (s == CLLM_OK) s = copy_tokens(t, p);
    if (s == CLLM_OK) s = copy_merges(t, p);
    if (s != CLLM_OK) {
        cllm_tokenizer_free(t);
        return s;
    }
    *out = t;
    return CLLM_OK;
}

cllm_status cllm_tokenizer_build_from_pairs(const int32_t *pairs, int n_merges, cllm_pretok pretok,
                                            cllm_tokenizer **out) {
    *out = NULL;
    if (n_merges < 0 || n_merges > CLLM_TOKENIZER_MAX_VOCAB - 257)
        return cllm_fail(CLLM_ERR_INPUT, "invalid tokenizer: %d merges", n_merges);
    for (int i = 0; i < 2 * n_merges; i++)
        if (pairs[i] < 0 || pairs[i] >= 256 + i / 2)
            return cllm_fail(CLLM_ERR_INPUT, "invalid tokenizer: merge %d refers to unknown token %d", i / 2, pairs[i]);
    int n_tokens = 256 + n_merges + 1;
    size_t *off = malloc((size_t)n_tokens * sizeof *off), *len = malloc((size_t)n_tokens * sizeof *len);
    uint8_t *special = calloc((size_t)n_tokens, 1);
    int32_t *triples = malloc(((size_t)n_merges * 3 + 1) * sizeof *triples);
    uint8_t *text = NULL;
    cllm_status s = off && len && special && triples ? CLLM_OK : oom();
    size_t total = 0;
    for (int id = 0; s == CLLM_OK && id < n_tokens; id++) {
        len[id] = id < 256 ? 1 : id < 256 + n_merges ? len[pairs[2 * (id - 256)]] + len[pairs[2 * (id - 256) + 1]]
                                                      : strlen(CLLM_TOKENIZER_EOT_NAME);
        off[id] = total;
        total += len[id];
    }
    if (s == CLLM_OK && !(text = malloc(total))) s = oom();
    if (s == CLLM_OK) {
        for (int id = 0; id < 256; id++) text[id] = (uint8_t)id;
        for (int i = 0; i < n_merges; i++) {
            int32_t a = pairs[2 * i], b = pairs[2 * i + 1];
            memcpy(text + off[256 + i], text + off[a], len[a]);
            memcpy(text + off[256 + i] + len[a], text + off[b], len[b]);
            triples[3 * i] = a;
            triples[3 * i + 1] = b;
            triples[3 * i + 2] = 256 + i;
        }
        memcpy(text + off[n_tokens - 1], CLLM_TOKENIZER_EOT_NAME, len[n_tokens - 1]);
        special[n_tokens - 1] = 1;
        cllm_tokenizer_parts p = {pretok, n_tokens, text, off, len, special, n_merges, triples};
        s = cllm_tokenizer_build(&p, out);
    }
    free(off);
    free(len);
    free(special);
    free(triples);
    free(text);
    return s;
}

int cllm_tokenizer_vocab_size(const cllm_tokenizer *t) { return t->vocab; }
int32_t cllm_tokenizer_eot(const cllm_tokenizer *t) { return t->eot; }
int cllm_tokenizer_n_merges(const cllm_tokenizer *t) { return t->n_merges; }
cllm_pretok cllm_tokenizer_pretokenizer(const cllm_tokenizer *t) { return t->pretok; }

void cllm_tokenizer_merge(const cllm_tokenizer *t, int i, int32_t *left, int32_t *right) {
    CLLM_ASSERT(i >= 0 && i < t->n_merges);
    *left = t->merges[3 * i];
    *right = t->merges[3 * i + 1];
}

int32_t cllm_tokenizer_merge_result(const cllm_tokenizer *t, int i) {
    CLLM_ASSERT(i >= 0 && i < t->n_merges);
    return t->merges[3 * i + 2];
}

int cllm_tokenizer_is_special(const cllm_tokenizer *t, int32_t id) { return id >= 0 && id < t->vocab && t->special[id]; }

const uint8_t *cllm_tokenizer_token_text(const cllm_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->vocab) {
        *len = 0;
        return NULL;
    }
    *len = t->tok_len[id];
    return t->tok_text + t->tok_off[id];
}

const uint8_t *cllm_tokenizer_token_bytes(const cllm_tokenizer *t, int32_t id, size_t *len) {
    const uint8_t *p = cllm_tokenizer_token_text(t, id, len);
    if (p && t->special[id]) *len = 0;
    return p;
}

/* ------------------------------------------------------------------ */
/* Training                                                            */

typedef struct {
    uint64_t key;
    int64_t count;
    uint32_t stamp; /* last merge step that changed the count (dirty marker) */
    int banned;     /* never merged (its token would be too long or not distinct) */
    i32_vec words;  /* unique chunks that contain the pair (may hold stale ones) */
} pair_entry;

typedef struct {
    int64_t count;
    uint32_t entry;
} heap_item;

typedef struct {
    /* unique chunks: symbols live in sym[sym_off[w] .. + sym_len[w]) */
    int32_t *sym;
    size_t *sym_off;
    uint32_t *sym_len;
    int64_t *word_count;
    size_t n_words;

    pair_entry *pairs;
    size_t n_pairs, pairs_cap;
    u64_map pair_index; /* pair key -> index in pairs */

    heap_item *heap;
    size_t heap_n, heap_cap;

    uint32_t stamp;
    i32_vec dirty; /* pair entries changed in the current merge step */

    cllm_pretok pretok;
    /* GPT-2 mode: every token's bytes, so that a merge making a token longer
     * than the cap or equal to an existing one is skipped. */
    int distinct;
    uint8_t *text;
    size_t text_n, text_cap;
    size_t tok_off[CLLM_TOKENIZER_MAX_VOCAB];
    uint32_t tok_len[CLLM_TOKENIZER_MAX_VOCAB];
    u64_map text_index; /* FNV of a token's bytes -> id, collisions probed on */

    const cllm_stop_flag *stop; /* polled between chunks, words and merges; NULL: never */
} trainer;

static cllm_status interrupted(void) {
    return cllm_fail(CLLM_ERR_INTERRUPTED, "interrupted while training the tokenizer");
}

/* Polled every STOP_POLL units of work: often enough to answer within
 * milliseconds, rarely enough to cost nothing. */
#define STOP_POLL 4096

static void trainer_free(trainer *tr) {
    free(tr->sym);
    free(tr->sym_off);
    free(tr->sym_len);
    free(tr->word_count);
    for (size_t i = 0; i < tr->n_pairs; i++) free(tr->pairs[i].words.v);
    free(tr->pairs);
    u64_map_free(&tr->pair_index);
    free(tr->heap);
    free(tr->dirty.v);
    free(tr->text);
    u64_map_free(&tr->text_index);
}

/* Higher count first; on a tie, the smaller (left, right) pair. */
static int heap_before(const trainer *tr, heap_item x, heap_item y) {
    if (x.count != y.count) return x.count > y.count;
    return tr->pairs[x.entry].key < tr->pairs[y.entry].key;
}

static cllm_status heap_push(trainer *tr, heap_item it) {
    if (tr->heap_n == tr->heap_cap) {
        size_t cap = tr->heap_cap ? tr->heap_cap * 2 : 1024;
        heap_item *p = realloc(tr->heap, cap * sizeof *p);
        if (!p) return oom();
        tr->heap = p;
        tr->heap_cap = cap;
    }
    size_t i = tr->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_before(tr, it, tr->heap[parent])) break;
        tr->heap[i] = tr->heap[parent];
        i = parent;
    }
    tr->heap[i] = it;
    return CLLM_OK;
}

static heap_item heap_pop(trainer *tr) {
    heap_item top = tr->heap[0], last = tr->heap[--tr->heap_n];
    size_t i = 0, n = tr->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(tr, tr->heap[c + 1], tr->heap[c])) c++;
        if (!heap_before(tr, tr->heap[c], last)) break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (n) tr->heap[i] = last;
    return top;
}

/* Adds `delta` to the pair's count, creating the pair if new; records that
 * word `w` contains it when w >= 0. */
static cllm_status add_pair(trainer *tr, int32_t a, int32_t b, int64_t delta, int32_t w) {
    int32_t idx;
    if (u64_map_put_new(&tr->pair_index, pair_key(a, b), (int32_t)tr->n_pairs, &idx) != CLLM_OK) return oom();
    if ((size_t)idx == tr->n_pairs) {
        if (tr->n_pairs == tr->pairs_cap) {
            size_t cap = tr->pairs_cap ? tr->pairs_cap * 2 : 4096;
            pair_entry *p = realloc(tr->pairs, cap * sizeof *p);
            if (!p) return oom();
            tr->pairs = p;
            tr->pairs_cap = cap;
        }
        tr->pairs[tr->n_pairs++] = (pair_entry){pair_key(a, b), 0, 0, 0, {NULL, 0, 0}};
    }
    pair_entry *e = &tr->pairs[idx];
    e->count += delta;
    if (e->stamp != tr->stamp) {
        e->stamp = tr->stamp;
        if (i32_vec_push(&tr->dirty, idx) != CLLM_OK) return oom();
    }
    if (w >= 0 && (e->words.n == 0 || e->words.v[e->words.n - 1] != w)) return i32_vec_push(&e->words, w);
    return CLLM_OK;
}

/* Collects the unique chunks of every document with their counts. */
static cllm_status collect_words(trainer *tr, const cllm_corpus *c) {
    u64_map seen; /* chunk hash -> word index; collisions resolved by comparing bytes */
    size_t cap = 1024, total_syms = 0, syms_cap = 1 << 16;
    size_t *src_off = malloc(cap * sizeof *src_off);
    tr->sym_len = malloc(cap * sizeof *tr->sym_len);
    tr->word_count = malloc(cap * sizeof *tr->word_count);
    tr->sym_off = malloc(cap * sizeof *tr->sym_off);
    tr->sym = malloc(syms_cap * sizeof *tr->sym);
    cllm_status s = u64_map_init(&seen, 1 << 15);
    if (!src_off || !tr->sym_len || !tr->word_count || !tr->sym_off || !tr->sym || s != CLLM_OK) goto fail;
    size_t polled = 0;
    for (size_t d = 0; d < c->n_docs; d++) {
        const uint8_t *text = c->bytes + c->docs[d].offset;
        size_t n = c->docs[d].length;
        for (size_t i = 0; i < n;) {
            if (++polled % STOP_POLL == 0 && cllm_stop_requested(tr->stop)) {
                s = interrupted();
                goto fail;
            }
            size_t end = cllm_pretok_chunk_end(tr->pretok, text, n, i), len = end - i;
            const uint8_t *chunk = text + i;
            /* Probe by hash; equal hashes with different bytes move on by
             * perturbing the key, so distinct chunks never share a slot. */
            uint64_t key = cllm_fnv1a64(chunk, len, CLLM_FNV1A64_OFFSET) & ~(1ULL << 63);
            int32_t w;
            for (;;) {
                if ((s = u64_map_put_new(&seen, key, (int32_t)tr->n_words, &w)) != CLLM_OK) goto fail;
                if ((size_t)w == tr->n_words) break;
                if (tr->sym_len[w] == len && memcmp(c->bytes + src_off[w], chunk, len) == 0) break;
                key = (key + 1) & ~(1ULL << 63);
            }
            if ((size_t)w == tr->n_words) {
                if (tr->n_words == cap) {
                    cap *= 2;
                    size_t *a = realloc(src_off, cap * sizeof *a);
                    if (a) src_off = a;
                    uint32_t *b = realloc(tr->sym_len, cap * sizeof *b);
                    if (b) tr->sym_len = b;
                    int64_t *e = realloc(tr->word_count, cap * sizeof *e);
                    if (e) tr->word_count = e;
                    size_t *f = realloc(tr->sym_off, cap * sizeof *f);
                    if (f) tr->sym_off = f;
                    if (!a || !b || !e || !f) goto fail;
                }
                if (total_syms + len > syms_cap) {
                    while (total_syms + len > syms_cap) syms_cap *= 2;
                    int32_t *p = realloc(tr->sym, syms_cap * sizeof *p);
                    if (!p) goto fail;
                    tr->sym = p;
                }
                src_off[w] = (size_t)(chunk - c->bytes);
                tr->sym_len[w] = (uint32_t)len;
                tr->sym_off[w] = total_syms;
                tr->word_count[w] = 0;
                for (size_t k = 0; k < len; k++) tr->sym[total_syms + k] = chunk[k];
                total_syms += len;
                tr->n_words++;
            }
            tr->word_count[w]++;
            i = end;
        }
    }
    free(src_off);
    u64_map_free(&seen);
    return CLLM_OK;
fail:
    free(src_off);
    u64_map_free(&seen);
    return s != CLLM_OK ? s : oom();
}

static cllm_status count_initial_pairs(trainer *tr) {
    tr->stamp = 1; /* so every pair created here lands in the dirty list, then the heap */
    for (size_t w = 0; w < tr->n_words; w++) {
        if (w % STOP_POLL == 0 && cllm_stop_requested(tr->stop)) return interrupted();
        const int32_t *s = tr->sym + tr->sym_off[w];
        for (uint32_t i = 0; i + 1 < tr->sym_len[w]; i++)
            if (add_pair(tr, s[i], s[i + 1], tr->word_count[w], (int32_t)w) != CLLM_OK) return oom();
    }
    return CLLM_OK;
}

/* Pushes the current count of every pair changed in this step. */
static cllm_status push_dirty(trainer *tr) {
    for (size_t i = 0; i < tr->dirty.n; i++) {
        uint32_t idx = (uint32_t)tr->dirty.v[i];
        if (tr->pairs[idx].count > 0 && !tr->pairs[idx].banned &&
            heap_push(tr, (heap_item){tr->pairs[idx].count, idx}) != CLLM_OK)
            return oom();
    }
    tr->dirty.n = 0;
    return CLLM_OK;
}

/* Replaces every (a, b) in word w by `id`, left to right, and moves the
 * word's pair counts from the old symbol sequence to the new one. */
static cllm_status merge_in_word(trainer *tr, int32_t w, int32_t a, int32_t b, int32_t id) {
    int32_t *s = tr->sym + tr->sym_off[w];
    uint32_t len = tr->sym_len[w];
    int64_t cnt = tr->word_count[w];
    int present = 0;
    for (uint32_t i = 0; i + 1 < len && !present; i++) present = s[i] == a && s[i + 1] == b;
    if (!present) return CLLM_OK; /* a stale entry in the pair's word list */
    for (uint32_t i = 0; i + 1 < len; i++)
        if (add_pair(tr, s[i], s[i + 1], -cnt, -1) != CLLM_OK) return oom();
    uint32_t j = 0;
    for (uint32_t i = 0; i < len;) {
        if (i + 1 < len && s[i] == a && s[i + 1] == b) {
            s[j++] = id;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    tr->sym_len[w] = j;
    /* Only pairs that involve the new id are new to this word. */
    for (uint32_t i = 0; i + 1 < j; i++) {
        int is_new = s[i] == id || s[i + 1] == id;
        if (add_pair(tr, s[i], s[i + 1], cnt, is_new ? w : -1) != CLLM_OK) return oom();
    }
    return CLLM_OK;
}

/* The most frequent live pair, or -1 when no pair is left. */
static int64_t pop_best_pair(trainer *tr) {
    while (tr->heap_n > 0) {
        heap_item it = heap_pop(tr);
        if (tr->pairs[it.entry].count == it.count && it.count > 0 && !tr->pairs[it.entry].banned) return it.entry;
    }
    return -1;
}

/* The slot of `len` bytes in text_index: the id of the token with these
 * bytes, or (*found = 0) where a new one goes. */
static cllm_status find_text(trainer *tr, const uint8_t *bytes, size_t len, int32_t new_id, int *found) {
    uint64_t key = cllm_fnv1a64(bytes, len, CLLM_FNV1A64_OFFSET) & ~(1ULL << 63);
    for (;;) {
        int32_t id;
        if (u64_map_put_new(&tr->text_index, key, new_id, &id) != CLLM_OK) return oom();
        *found = id != new_id;
        if (!*found || (tr->tok_len[id] == len && memcmp(tr->text + tr->tok_off[id], bytes, len) == 0)) return CLLM_OK;
        key = (key + 1) & ~(1ULL << 63);
    }
}

/* Records token `id`'s bytes (a + b, or the byte itself when b < 0); *ok = 0
 * (and nothing recorded) when they are too long or those of another token. */
static cllm_status add_text(trainer *tr, int32_t id, int32_t a, int32_t b, int *ok) {
    size_t len = b < 0 ? 1 : (size_t)tr->tok_len[a] + tr->tok_len[b];
    *ok = 0;
    if (len > CLLM_TOKENIZER_MAX_TOKEN_BYTES) return CLLM_OK;
    if (tr->text_n + len > tr->text_cap) {
        size_t cap = tr->text_cap ? tr->text_cap * 2 : 4096;
        while (cap < tr->text_n + len) cap *= 2;
        uint8_t *p = realloc(tr->text, cap);
        if (!p) return oom();
        tr->text = p;
        tr->text_cap = cap;
    }
    uint8_t *dst = tr->text + tr->text_n;
    if (b < 0) {
        dst[0] = (uint8_t)a;
    } else {
        memcpy(dst, tr->text + tr->tok_off[a], tr->tok_len[a]);
        memcpy(dst + tr->tok_len[a], tr->text + tr->tok_off[b], tr->tok_len[b]);
    }
    int found;
    /* The bytes are written before the slot is claimed, so a probe that
     * reaches this id compares against them. */
    tr->tok_off[id] = tr->text_n;
    tr->tok_len[id] = (uint32_t)len;
    if (find_text(tr, dst, len, id, &found) != CLLM_OK) return oom();
    if (found) return CLLM_OK;
    tr->text_n += len;
    *ok = 1;
    return CLLM_OK;
}

static cllm_status start_texts(trainer *tr) {
    if (u64_map_init(&tr->text_index, 1 << 12) != CLLM_OK) return oom();
    for (int b = 0; b < 256; b++) {
        int ok;
        if (add_text(tr, b, b, -1, &ok) != CLLM_OK) return oom();
    }
    return CLLM_OK;
}

static cllm_status learn_merges(trainer *tr, int target, int32_t *merges, int *n_learned) {
    int m = 0;
    if (push_dirty(tr) != CLLM_OK) return oom();
    if (tr->distinct && start_texts(tr) != CLLM_OK) return oom();
    for (; m < target; m++) {
        if (cllm_stop_requested(tr->stop)) return interrupted();
        int64_t best = pop_best_pair(tr);
        if (best < 0) break;
        uint64_t key = tr->pairs[best].key;
        int32_t a = (int32_t)(key >> 32), b = (int32_t)(key & 0xffffffffu), id = 256 + m;
        if (tr->distinct) {
            int ok;
            if (add_text(tr, id, a, b, &ok) != CLLM_OK) return oom();
            if (!ok) {
                tr->pairs[best].banned = 1;
                m--;
                continue;
            }
        }
        merges[2 * m] = a;
        merges[2 * m + 1] = b;
        tr->stamp++;
        i32_vec words = tr->pairs[best].words; /* rewriting words may grow other lists, not this one */
        tr->pairs[best].words = (i32_vec){NULL, 0, 0};
        cllm_status s = CLLM_OK;
        for (size_t k = 0; k < words.n && s == CLLM_OK; k++) s = merge_in_word(tr, words.v[k], a, b, id);
        free(words.v);
        if (s != CLLM_OK || push_dirty(tr) != CLLM_OK) return oom();
    }
    *n_learned = m;
    return CLLM_OK;
}

cllm_status cllm_tokenizer_train(const cllm_corpus *c, int vocab_size, cllm_tokenizer **out) {
    return cllm_tokenizer_train_mode(c, vocab_size, cllm_pretok_default(), NULL, out);
}

cllm_status cllm_tokenizer_train_stoppable(const cllm_corpus *c, int vocab_size, const cllm_stop_flag *stop,
                                           cllm_tokenizer **out) {
    return cllm_tokenizer_train_mode(c, vocab_size, cllm_pretok_default(), stop, out);
}

cllm_status cllm_tokenizer_train_mode(const cllm_corpus *c, int vocab_size, cllm_pretok pretok,
                                      const cllm_stop_flag *stop, cllm_tokenizer **out) {
    *out = NULL;
    cllm_status s = cllm_pretok_require(pretok);
    if (s != CLLM_OK) return s;
    if (vocab_size < CLLM_TOKENIZER_MIN_VOCAB || vocab_size > CLLM_TOKENIZER_MAX_VOCAB)
        return cllm_fail(CLLM_ERR_INPUT, "vocabulary size %d out of range (%d..%d)", vocab_size,
                         CLLM_TOKENIZER_MIN_VOCAB, CLLM_TOKENIZER_MAX_VOCAB);
    int target = vocab_size - 256 - 1;
    int32_t *merges = malloc(((size_t)target + 1) * 2 * sizeof *merges);
    trainer *tr = calloc(1, sizeof *tr);
    if (!tr || !merges) {
        free(tr);
        free(merges);
        return oom();
    }
    tr->stop = stop;
    tr->pretok = pretok;
    tr->distinct = pretok == CLLM_PRETOK_GPT2;
    s = u64_map_init(&tr->pair_index, 1 << 14);
    int learned = 0;
    if (s == CLLM_OK) s = collect_words(tr, c);
    if (s == CLLM_OK) s = count_initial_pairs(tr);
    if (s == CLLM_OK) s = learn_merges(tr, target, merges, &learned);
    trainer_free(tr);
    free(tr);
    if (s != CLLM_OK) {
        free(merges);
        return s;
    }
    s = cllm_tokenizer_build_from_pairs(merges, learned, pretok, out);
    free(merges);
    return s;
}
/* ------------------------------------------------------------------ */
/* Encoding and decoding                                               */

/* A pair that may merge: (rank, position of its left symbol), lowest rank
 * first, then leftmost; left/right tell a stale entry from a live one. */
typedef struct {
    int32_t rank, pos, left, right;
} bpe_cand;

/* Scratch of one encode call: the symbols of a chunk as a linked list (a
 * merged-away symbol has id -1) and the candidate heap. */
typedef struct {
    int32_t *id, *next, *prev;
    bpe_cand *heap;
    size_t cap, heap_n;
} bpe_scratch;

static void scratch_free(bpe_scratch *sc) {
    free(sc->id);
    free(sc->next);
    free(sc->prev);
    free(sc->heap);
}

static cllm_status scratch_reserve(bpe_scratch *sc, size_t len) {
    if (len <= sc->cap) return CLLM_OK;
    size_t cap = sc->cap ? sc->cap : 256;
    while (cap < len) cap *= 2;
    scratch_free(sc);
    sc->id = malloc(cap * sizeof *sc->id);
    sc->next = malloc(cap * sizeof *sc->next);
    sc->prev = malloc(cap * sizeof *sc->prev);
    sc->heap = malloc(3 * cap * sizeof *sc->heap); /* len - 1 pairs, then at most 2 per merge */
    sc->cap = cap;
    if (sc->id && sc->next && sc->prev && sc->heap) return CLLM_OK;
    scratch_free(sc);
    memset(sc, 0, sizeof *sc);
    return oom();
}

static int cand_before(bpe_cand x, bpe_cand y) { return x.rank != y.rank ? x.rank < y.rank : x.pos < y.pos; }

static void cand_push(bpe_scratch *sc, bpe_cand c) {
    size_t i = sc->heap_n++;
    while (i > 0 && cand_before(c, sc->heap[(i - 1) / 2])) {
        sc->heap[i] = sc->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    sc->heap[i] = c;
}

static bpe_cand cand_pop(bpe_scratch *sc) {
    bpe_cand top = sc->heap[0], last = sc->heap[--sc->heap_n];
    size_t i = 0, n = sc->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_before(sc->heap[c + 1], sc->heap[c])) c++;
        if (!cand_before(sc->heap[c], last)) break;
        sc->heap[i] = sc->heap[c];
        i = c;
    }
    if (n) sc->heap[i] = last;
    return top;
}

/* The pair that starts at pos, if it is a merge. */
static void push_pair(const cllm_tokenizer *t, bpe_scratch *sc, int32_t pos) {
    int32_t q = sc->next[pos];
    if (q < 0) return;
    int32_t r = u64_map_get(&t->ranks, pair_key(sc->id[pos], sc->id[q]), -1);
    if (r >= 0) cand_push(sc, (bpe_cand){r, pos, sc->id[pos], sc->id[q]});
}

/* BPE over one chunk: its ids appended to *out. */
static cllm_status apply_merges(const cllm_tokenizer *t, bpe_scratch *sc, const uint8_t *chunk, size_t len,
                                i32_vec *out) {
    if (scratch_reserve(sc, len) != CLLM_OK) return oom();
    for (size_t k = 0; k < len; k++) {
        sc->id[k] = t->byte_id[chunk[k]];
        sc->prev[k] = (int32_t)k - 1;
        sc->next[k] = k + 1 < len ? (int32_t)k + 1 : -1;
    }
    sc->heap_n = 0;
    for (size_t k = 0; k + 1 < len; k++) push_pair(t, sc, (int32_t)k);
    while (sc->heap_n > 0) {
        bpe_cand c = cand_pop(sc);
        int32_t q = sc->next[c.pos];
        if (sc->id[c.pos] != c.left || q < 0 || sc->id[q] != c.right) continue; /* stale */
        sc->id[c.pos] = t->merges[3 * c.rank + 2];
        sc->id[q] = -1;
        sc->next[c.pos] = sc->next[q];
        if (sc->next[q] >= 0) sc->prev[sc->next[q]] = c.pos;
        if (sc->prev[c.pos] >= 0) push_pair(t, sc, sc->prev[c.pos]);
        push_pair(t, sc, c.pos);
    }
    for (int32_t k = 0; k >= 0; k = sc->next[k])
        if (i32_vec_push(out, sc->id[k]) != CLLM_OK) return oom();
    return CLLM_OK;
}

/* Per-call cache of encoded chunks: chunk -> ids. Keys point into the input. */
typedef struct {
    u64_map index;     /* chunk hash -> entry */
    const uint8_t **src;
    uint32_t *src_len;
    size_t *ids_off;
    uint32_t *ids_len;
    size_t n, cap;
    i32_vec ids;
    bpe_scratch scratch;
} chunk_cache;

static void cache_free(chunk_cache *cc) {
    u64_map_free(&cc->index);
    free(cc->src);
    free(cc->src_len);
    free(cc->ids_off);
    free(cc->ids_len);
    free(cc->ids.v);
    scratch_free(&cc->scratch);
}

/* The cached entry for the chunk, computing it on a miss; -1 on out of memory. */
static int64_t cache_lookup(const cllm_tokenizer *t, chunk_cache *cc, const uint8_t *chunk, size_t len) {
    uint64_t key = cllm_fnv1a64(chunk, len, CLLM_FNV1A64_OFFSET) & ~(1ULL << 63);
    int32_t e;
    for (;;) {
        if (u64_map_put_new(&cc->index, key, (int32_t)cc->n, &e) != CLLM_OK) return -1;
        if ((size_t)e == cc->n) break;
        if (cc->src_len[e] == len && memcmp(cc->src[e], chunk, len) == 0) return e;
        key = (key + 1) & ~(1ULL << 63);
    }
    if (cc->n == cc->cap) {
        size_t cap = cc->cap ? cc->cap * 2 : 1024;
        const uint8_t **a = realloc(cc->src, cap * sizeof *a);
        if (a) cc->src = a;
        uint32_t *b = realloc(cc->src_len, cap * sizeof *b);
        if (b) cc->src_len = b;
        size_t *d = realloc(cc->ids_off, cap * sizeof *d);
        if (d) cc->ids_off = d;
        uint32_t *f = realloc(cc->ids_len, cap * sizeof *f);
        if (f) cc->ids_len = f;
        if (!a || !b || !d || !f) return -1;
        cc->cap = cap;
    }
    size_t off = cc->ids.n;
    if (apply_merges(t, &cc->scratch, chunk, len, &cc->ids) != CLLM_OK) return -1;
    size_t n_ids = cc->ids.n - off;
    cc->src[cc->n] = chunk;
    cc->src_len[cc->n] = (uint32_t)len;
    cc->ids_off[cc->n] = off;
    cc->ids_len[cc->n] = (uint32_t)n_ids;
    return (int64_t)cc->n++;
}

cllm_status cllm_tokenizer_encode(const cllm_tokenizer *t, const uint8_t *bytes, size_t n, int32_t **ids,
                                  size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    /* Every token covers at least one byte, so n ids always suffice. */
    int32_t *outv = malloc((n ? n : 1) * sizeof *outv);
    chunk_cache cc;
    memset(&cc, 0, sizeof cc);
    if (!outv || u64_map_init(&cc.index, 1024) != CLLM_OK) goto fail;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t end = cllm_pretok_chunk_end(t->pretok, bytes, n, i);
        if (end - i == 1) {
            outv[k++] = t->byte_id[bytes[i]];
        } else {
            int64_t e = cache_lookup(t, &cc, bytes + i, end - i);
            if (e < 0) goto fail;
            memcpy(outv + k, cc.ids.v + cc.ids_off[e], cc.ids_len[e] * sizeof *outv);
            k += cc.ids_len[e];
        }
        i = end;
    }
    cache_free(&cc);
    int32_t *shrunk = realloc(outv, (k ? k : 1) * sizeof *outv);
    *ids = shrunk ? shrunk : outv;
    *n_ids = k;
    return CLLM_OK;
fail:
    cache_free(&cc);
    free(outv);
    return oom();
}

cllm_status cllm_tokenizer_decode(const cllm_tokenizer *t, const int32_t *ids, size_t n, uint8_t **bytes,
                                  size_t *n_bytes) {
    *bytes = NULL;
    *n_bytes = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab)
            return cllm_fail(CLLM_ERR_INPUT, "token id %ld out of range (vocabulary %d)", (long)ids[i], t->vocab);
        size_t len;
        cllm_tokenizer_token_bytes(t, ids[i], &len);
        total += len;
    }
    uint8_t *out = malloc(total ? total : 1);
    if (!out) return oom();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const uint8_t *src = cllm_tokenizer_token_bytes(t, ids[i], &len);
        memcpy(out + k, src, len);
        k += len;
    }
    *bytes = out;
    *n_bytes = total;
    return CLLM_OK;
}
