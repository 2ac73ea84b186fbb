/* Byte-level BPE tokenizer: training, encoding, decoding, file format.
 *
 * Ids: 0..255 are the bytes themselves; 256 + i is the i-th learned merge
 * (the concatenation of its two parts); the special tokens come last, so the
 * end-of-document id (EOT) is vocab_size - 1. Raw text never encodes to a
 * special token, so EOT in a token stream always means a document boundary.
 *
 * Pre-splitting. Text is cut into chunks before BPE and merges never cross a
 * chunk boundary, as in GPT-2: a chunk is an optional single space followed
 * by a run of letters (ASCII letters and every byte >= 0x80, so UTF-8
 * sequences stay together), or of digits, or of other symbols; or a run of
 * whitespace, minus its last space when a word follows (that space starts the
 * word's chunk). Chunks are capped at MAX_CHUNK bytes so that a pathological
 * input (a megabyte of 'a') costs linear time. Splitting keeps training cheap:
 * it works on the table of *unique* chunks with their counts (~30k entries
 * for 1 MB of English) instead of the raw text.
 *
 * Training. Pair counts are kept in a hash table, each pair with the list of
 * unique chunks it occurs in. A merge rewrites only those chunks and adjusts
 * the counts of the pairs they contain; the most frequent pair comes from a
 * max-heap with lazy deletion (an entry is stale when its count no longer
 * matches the table). Ties go to the smallest (left, right) pair, so training
 * is fully deterministic.
 *
 * Encoding applies, inside each chunk, the lowest-ranked (earliest learned)
 * merge present, all its occurrences left to right, until none applies: the
 * same result as replaying the merges in training order. Encoded chunks are
 * cached for the duration of one call, which is what makes encoding a
 * megabyte fast: most chunks repeat.
 *
 * File format, version 1 (all integers little-endian):
 *
 *   offset  size          field
 *   0       8             magic "CLLM-BPE"
 *   8       4   u32       version = 1
 *   12      4   u32       n_merges (vocab = 256 + n_merges + n_special <= 65536)
 *   16      4   u32       n_special (version 1: exactly 1, the end-of-document token)
 *   20      4   u32       body_bytes: length of the body that follows
 *   24      8*n_merges    merges: (u32 left, u32 right) for ids 256, 257, ...;
 *                         both parts must be ids < the merge's own id, and no
 *                         pair may appear twice
 *   ...                   specials: (u32 name_len in 1..64, name bytes) each;
 *                         ids follow the merges in this order
 *                         (no token may span more than 128 bytes: merges
 *                         never cross a pre-split chunk)
 *   24+body_bytes  8 u64  FNV-1a 64 of every byte before it (header + body)
 *
 * The file is exactly 32 + body_bytes bytes. Loading checks the size, magic,
 * version, checksum and every field, and rejects anything else with
 * CLLM_ERR_INPUT; it never trusts a length before checking it against the
 * bytes actually present. Documented for users in docs/TOKENIZER.md. */
#include "cllm/data/tokenizer.h"

#include "tokenizer_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_CHUNK 128
#define N_SPECIAL 1
#define EOT_NAME "<|endoftext|>"
#define FORMAT_VERSION 1u
#define HEADER_BYTES 24
#define CHECKSUM_BYTES 8
#define MAX_SPECIAL_NAME 64
#define MAX_FILE_BYTES (HEADER_BYTES + 8 * CLLM_TOKENIZER_MAX_VOCAB + N_SPECIAL * (4 + MAX_SPECIAL_NAME) + CHECKSUM_BYTES)
static const char MAGIC[8] = {'C', 'L', 'L', 'M', '-', 'B', 'P', 'E'};

static cllm_status oom(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory in the tokenizer"); }
static cllm_status corrupt(const char *what) { return cllm_fail(CLLM_ERR_INPUT, "corrupt tokenizer file: %s", what); }

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
/* Pre-splitting                                                       */

enum { CLASS_LETTER, CLASS_DIGIT, CLASS_SPACE, CLASS_OTHER };

static int byte_class(uint8_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return CLASS_LETTER;
    if (c >= '0' && c <= '9') return CLASS_DIGIT;
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f') return CLASS_SPACE;
    return CLASS_OTHER;
}

static size_t run_end(const uint8_t *s, size_t n, size_t i, int cls) {
    while (i < n && byte_class(s[i]) == cls) i++;
    return i;
}

/* End of the chunk that starts at s[i] (i < n). Runs are scanned no further
 * than the cap, so a long run costs linear time, not quadratic. */
static size_t chunk_end(const uint8_t *s, size_t n, size_t i) {
    size_t stop = n - i > MAX_CHUNK ? i + MAX_CHUNK : n;
    int cls = byte_class(s[i]);
    if (s[i] == ' ' && i + 1 < stop && byte_class(s[i + 1]) != CLASS_SPACE)
        return run_end(s, stop, i + 1, byte_class(s[i + 1]));
    if (cls != CLASS_SPACE) return run_end(s, stop, i, cls);
    size_t end = run_end(s, stop, i, CLASS_SPACE);
    /* Leave a final space to the word that follows, as in " the". */
    if (end < n && byte_class(s[end]) != CLASS_SPACE && end - i >= 2 && s[end - 1] == ' ') end--;
    return end;
}

/* ------------------------------------------------------------------ */
/* The tokenizer object                                                */

struct cllm_tokenizer {
    int n_merges;
    int32_t *merges;    /* 2 * n_merges: left, right of id 256 + i */
    int vocab;          /* 256 + n_merges + N_SPECIAL */
    uint32_t *tok_off;  /* per id: where its bytes start in tok_bytes */
    uint32_t *tok_len;  /* per id: byte length (0 for specials) */
    uint8_t *tok_bytes;
    u64_map ranks;      /* pair_key(left, right) -> merge index */
};

void cllm_tokenizer_free(cllm_tokenizer *t) {
    if (!t) return;
    free(t->merges);
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_bytes);
    u64_map_free(&t->ranks);
    free(t);
}

/* Builds the lookup tables from a merge list already known to be valid
 * (parts < own id, no duplicates). Takes ownership of `merges`. */
static cllm_status tokenizer_from_merges(int32_t *merges, int n_merges, cllm_tokenizer **out) {
    cllm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        free(merges);
        return oom();
    }
    t->merges = merges;
    t->n_merges = n_merges;
    t->vocab = 256 + n_merges + N_SPECIAL;
    t->tok_off = malloc((size_t)t->vocab * sizeof *t->tok_off);
    t->tok_len = malloc((size_t)t->vocab * sizeof *t->tok_len);
    if (!t->tok_off || !t->tok_len || u64_map_init(&t->ranks, (size_t)n_merges) != CLLM_OK) goto fail;
    /* Byte lengths first, so the pool is allocated once; a merge's length is
     * the sum of its parts', at most 2^16 * 2^16 in theory, so use 64 bits. */
    uint64_t total = 0;
    for (int id = 0; id < t->vocab; id++) {
        uint64_t len = id < 256 ? 1 : id < 256 + n_merges
                                          ? (uint64_t)t->tok_len[merges[2 * (id - 256)]] + t->tok_len[merges[2 * (id - 256) + 1]]
                                          : 0;
        if (len > MAX_CHUNK) { /* merges never cross chunks, so no real token is longer */
            cllm_tokenizer_free(t);
            return corrupt("a merge builds a token longer than 128 bytes");
        }
        t->tok_off[id] = (uint32_t)total;
        t->tok_len[id] = (uint32_t)len;
        total += len;
    }
    t->tok_bytes = malloc(total ? total : 1);
    if (!t->tok_bytes) goto fail;
    for (int id = 0; id < 256; id++) t->tok_bytes[id] = (uint8_t)id;
    for (int i = 0; i < n_merges; i++) {
        int32_t a = merges[2 * i], b = merges[2 * i + 1];
        uint8_t *dst = t->tok_bytes + t->tok_off[256 + i];
        memcpy(dst, t->tok_bytes + t->tok_off[a], t->tok_len[a]);
        memcpy(dst + t->tok_len[a], t->tok_bytes + t->tok_off[b], t->tok_len[b]);
        int32_t found;
        if (u64_map_put_new(&t->ranks, pair_key(a, b), i, &found) != CLLM_OK) goto fail;
    }
    *out = t;
    return CLLM_OK;
fail:
    cllm_tokenizer_free(t);
    return oom();
}

int cllm_tokenizer_vocab_size(const cllm_tokenizer *t) { return t->vocab; }
int32_t cllm_tokenizer_eot(const cllm_tokenizer *t) { return 256 + t->n_merges; }
int cllm_tokenizer_n_merges(const cllm_tokenizer *t) { return t->n_merges; }

void cllm_tokenizer_merge(const cllm_tokenizer *t, int i, int32_t *left, int32_t *right) {
    *left = t->merges[2 * i];
    *right = t->merges[2 * i + 1];
}

const uint8_t *cllm_tokenizer_token_bytes(const cllm_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->vocab) {
        *len = 0;
        return NULL;
    }
    *len = t->tok_len[id];
    return t->tok_bytes + t->tok_off[id];
}

/* ------------------------------------------------------------------ */
/* Training                                                            */

typedef struct {
    uint64_t key;
    int64_t count;
    uint32_t stamp; /* last merge step that changed the count (dirty marker) */
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

    const cllm_stop_flag *stop; /* polled between chunks, words and merges; NULL: never */
    size_t polled;

    /* while documents come in: the unique chunks so far */
    u64_map seen; /* chunk hash -> word index; collisions resolved by comparing bytes */
    size_t words_cap, n_syms, syms_cap;
    int vocab_size;
} trainer;

struct cllm_tokenizer_trainer {
    trainer tr;
};

static int same_bytes(const int32_t *sym, uint32_t n_sym, const uint8_t *chunk, size_t len) {
    if (n_sym != len) return 0;
    for (size_t k = 0; k < len; k++)
        if (sym[k] != chunk[k]) return 0;
    return 1;
}

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
    u64_map_free(&tr->seen);
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
        tr->pairs[tr->n_pairs++] = (pair_entry){pair_key(a, b), 0, 0, {NULL, 0, 0}};
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

/* Adds one document's chunks to the table of unique chunks and their counts.
 * A chunk seen before is recognised by its symbols, which are still its
 * bytes: merges only start once every document is in. */
static cllm_status collect_words(trainer *tr, const uint8_t *text, size_t n) {
    for (size_t i = 0; i < n;) {
        if (++tr->polled % STOP_POLL == 0 && cllm_stop_requested(tr->stop)) return interrupted();
        size_t end = chunk_end(text, n, i), len = end - i;
        const uint8_t *chunk = text + i;
        /* Probe by hash; equal hashes with different bytes move on by
         * perturbing the key, so distinct chunks never share a slot. */
        uint64_t key = cllm_fnv1a64(chunk, len, CLLM_FNV1A64_OFFSET) & ~(1ULL << 63);
        int32_t w;
        for (;;) {
            if (u64_map_put_new(&tr->seen, key, (int32_t)tr->n_words, &w) != CLLM_OK) return oom();
            if ((size_t)w == tr->n_words || same_bytes(tr->sym + tr->sym_off[w], tr->sym_len[w], chunk, len)) break;
            key = (key + 1) & ~(1ULL << 63);
        }
        if ((size_t)w == tr->n_words) {
            if (tr->n_words == tr->words_cap) {
                size_t cap = tr->words_cap ? tr->words_cap * 2 : 1024;
                uint32_t *b = realloc(tr->sym_len, cap * sizeof *b);
                if (b) tr->sym_len = b;
                int64_t *e = realloc(tr->word_count, cap * sizeof *e);
                if (e) tr->word_count = e;
                size_t *f = realloc(tr->sym_off, cap * sizeof *f);
                if (f) tr->sym_off = f;
                if (!b || !e || !f) return oom();
                tr->words_cap = cap;
            }
            if (tr->n_syms + len > tr->syms_cap) {
                size_t cap = tr->syms_cap ? tr->syms_cap : 1 << 16;
                while (tr->n_syms + len > cap) cap *= 2;
                int32_t *p = realloc(tr->sym, cap * sizeof *p);
                if (!p) return oom();
                tr->sym = p;
                tr->syms_cap = cap;
            }
            tr->sym_len[w] = (uint32_t)len;
            tr->sym_off[w] = tr->n_syms;
            tr->word_count[w] = 0;
            for (size_t k = 0; k < len; k++) tr->sym[tr->n_syms + k] = chunk[k];
            tr->n_syms += len;
            tr->n_words++;
        }
        tr->word_count[w]++;
        i = end;
    }
    return CLLM_OK;
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
        if (tr->pairs[idx].count > 0 && heap_push(tr, (heap_item){tr->pairs[idx].count, idx}) != CLLM_OK) return oom();
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
        if (tr->pairs[it.entry].count == it.count && it.count > 0) return it.entry;
    }
    return -1;
}

static cllm_status learn_merges(trainer *tr, int target, int32_t *merges, int *n_learned) {
    int m = 0;
    if (push_dirty(tr) != CLLM_OK) return oom();
    for (; m < target; m++) {
        if (cllm_stop_requested(tr->stop)) return interrupted();
        int64_t best = pop_best_pair(tr);
        if (best < 0) break;
        uint64_t key = tr->pairs[best].key;
        int32_t a = (int32_t)(key >> 32), b = (int32_t)(key & 0xffffffffu), id = 256 + m;
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
    return cllm_tokenizer_train_stoppable(c, vocab_size, NULL, out);
}

cllm_status cllm_tokenizer_trainer_create(int vocab_size, const cllm_stop_flag *stop, cllm_tokenizer_trainer **out) {
    *out = NULL;
    if (vocab_size < CLLM_TOKENIZER_MIN_VOCAB || vocab_size > CLLM_TOKENIZER_MAX_VOCAB)
        return cllm_fail(CLLM_ERR_INPUT, "vocabulary size %d out of range (%d..%d)", vocab_size,
                         CLLM_TOKENIZER_MIN_VOCAB, CLLM_TOKENIZER_MAX_VOCAB);
    cllm_tokenizer_trainer *b = calloc(1, sizeof *b);
    if (!b) return oom();
    b->tr.stop = stop;
    b->tr.vocab_size = vocab_size;
    if (u64_map_init(&b->tr.pair_index, 1 << 14) != CLLM_OK || u64_map_init(&b->tr.seen, 1 << 15) != CLLM_OK) {
        cllm_tokenizer_trainer_free(b);
        return oom();
    }
    *out = b;
    return CLLM_OK;
}

cllm_status cllm_tokenizer_trainer_add(cllm_tokenizer_trainer *b, const uint8_t *text, size_t n) {
    return collect_words(&b->tr, text, n);
}

void cllm_tokenizer_trainer_free(cllm_tokenizer_trainer *b) {
    if (!b) return;
    trainer_free(&b->tr);
    free(b);
}

cllm_status cllm_tokenizer_trainer_finish(cllm_tokenizer_trainer *b, cllm_tokenizer **out) {
    *out = NULL;
    trainer *tr = &b->tr;
    u64_map_free(&tr->seen); /* every document is in */
    int target = tr->vocab_size - 256 - N_SPECIAL;
    int32_t *merges = malloc(((size_t)target + 1) * 2 * sizeof *merges);
    int learned = 0;
    cllm_status s = merges ? count_initial_pairs(tr) : oom();
    if (s == CLLM_OK) s = learn_merges(tr, target, merges, &learned);
    cllm_tokenizer_trainer_free(b);
    if (s != CLLM_OK) {
        free(merges);
        return s;
    }
    return tokenizer_from_merges(merges, learned, out);
}

cllm_status cllm_tokenizer_train_stoppable(const cllm_corpus *c, int vocab_size, const cllm_stop_flag *stop,
                                           cllm_tokenizer **out) {
    *out = NULL;
    cllm_tokenizer_trainer *b;
    cllm_status s = cllm_tokenizer_trainer_create(vocab_size, stop, &b);
    for (size_t d = 0; s == CLLM_OK && d < c->n_docs; d++)
        s = cllm_tokenizer_trainer_add(b, c->bytes + c->docs[d].offset, c->docs[d].length);
    if (s != CLLM_OK) {
        cllm_tokenizer_trainer_free(b);
        return s;
    }
    return cllm_tokenizer_trainer_finish(b, out);
}

/* ------------------------------------------------------------------ */
/* Encoding and decoding                                               */

/* Applies merges by rank to sym[0..len) in place; returns the new length. */
static size_t apply_merges(const cllm_tokenizer *t, int32_t *sym, size_t len) {
    while (len >= 2) {
        int32_t best = INT32_MAX;
        for (size_t i = 0; i + 1 < len; i++) {
            int32_t r = u64_map_get(&t->ranks, pair_key(sym[i], sym[i + 1]), INT32_MAX);
            if (r < best) best = r;
        }
        if (best == INT32_MAX) break;
        int32_t a = t->merges[2 * best], b = t->merges[2 * best + 1];
        size_t j = 0;
        for (size_t i = 0; i < len;) {
            if (i + 1 < len && sym[i] == a && sym[i + 1] == b) {
                sym[j++] = 256 + best;
                i += 2;
            } else {
                sym[j++] = sym[i++];
            }
        }
        len = j;
    }
    return len;
}

size_t cllm_tokenizer_chunk_end(const uint8_t *s, size_t n, size_t i) { return chunk_end(s, n, i); }

size_t cllm_tokenizer_encode_chunk(const cllm_tokenizer *t, const uint8_t *chunk, size_t len, int32_t *ids) {
    for (size_t i = 0; i < len; i++) ids[i] = chunk[i];
    return apply_merges(t, ids, len);
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
} chunk_cache;

static void cache_free(chunk_cache *cc) {
    u64_map_free(&cc->index);
    free(cc->src);
    free(cc->src_len);
    free(cc->ids_off);
    free(cc->ids_len);
    free(cc->ids.v);
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
    int32_t sym[MAX_CHUNK];
    for (size_t i = 0; i < len; i++) sym[i] = chunk[i];
    size_t n_ids = apply_merges(t, sym, len);
    size_t off = cc->ids.n;
    for (size_t i = 0; i < n_ids; i++)
        if (i32_vec_push(&cc->ids, sym[i]) != CLLM_OK) return -1;
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
        size_t end = chunk_end(bytes, n, i);
        if (end - i == 1) {
            outv[k++] = bytes[i];
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
        total += t->tok_len[ids[i]];
    }
    uint8_t *out = malloc(total ? total : 1);
    if (!out) return oom();
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + k, t->tok_bytes + t->tok_off[ids[i]], t->tok_len[ids[i]]);
        k += t->tok_len[ids[i]];
    }
    *bytes = out;
    *n_bytes = total;
    return CLLM_OK;
}

/* ------------------------------------------------------------------ */
/* Serialization                                                       */

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

cllm_status cllm_tokenizer_serialize(const cllm_tokenizer *t, uint8_t **data, size_t *n) {
    size_t name_len = strlen(EOT_NAME);
    size_t body = 8 * (size_t)t->n_merges + N_SPECIAL * (4 + name_len);
    size_t total = HEADER_BYTES + body + CHECKSUM_BYTES;
    uint8_t *p = malloc(total);
    if (!p) return oom();
    memcpy(p, MAGIC, 8);
    put_u32(p + 8, FORMAT_VERSION);
    put_u32(p + 12, (uint32_t)t->n_merges);
    put_u32(p + 16, N_SPECIAL);
    put_u32(p + 20, (uint32_t)body);
    uint8_t *q = p + HEADER_BYTES;
    for (int i = 0; i < 2 * t->n_merges; i++, q += 4) put_u32(q, (uint32_t)t->merges[i]);
    put_u32(q, (uint32_t)name_len);
    memcpy(q + 4, EOT_NAME, name_len);
    q += 4 + name_len;
    put_u64(q, cllm_fnv1a64(p, (size_t)(q - p), CLLM_FNV1A64_OFFSET));
    *data = p;
    *n = total;
    return CLLM_OK;
}

/* Header, size and checksum; on success *n_merges is known to fit the body. */
static cllm_status check_envelope(const uint8_t *data, size_t n, uint32_t *n_merges) {
    if (n == 0) return corrupt("empty file");
    if (memcmp(data, MAGIC, n < 8 ? n : 8) != 0)
        return cllm_fail(CLLM_ERR_INPUT, "not a cllm tokenizer file (bad magic)");
    if (n < HEADER_BYTES) return corrupt("truncated header");
    uint32_t version = get_u32(data + 8);
    if (version != FORMAT_VERSION)
        return cllm_fail(CLLM_ERR_INPUT, "unsupported tokenizer file version %u (this cllm reads version %u)",
                         version, FORMAT_VERSION);
    uint32_t body = get_u32(data + 20);
    if ((uint64_t)body + HEADER_BYTES + CHECKSUM_BYTES != n) {
        char msg[128];
        snprintf(msg, sizeof msg, "%zu bytes but the header announces %llu (truncated?)", n,
                 (unsigned long long)body + HEADER_BYTES + CHECKSUM_BYTES);
        return corrupt(msg);
    }
    if (get_u64(data + n - CHECKSUM_BYTES) != cllm_fnv1a64(data, n - CHECKSUM_BYTES, CLLM_FNV1A64_OFFSET))
        return corrupt("checksum mismatch");
    *n_merges = get_u32(data + 12);
    if (get_u32(data + 16) != N_SPECIAL) return corrupt("version 1 has exactly one special token");
    if (*n_merges > (uint32_t)(CLLM_TOKENIZER_MAX_VOCAB - 256 - N_SPECIAL)) return corrupt("too many merges");
    if ((uint64_t)*n_merges * 8 > body) return corrupt("merge table longer than the file");
    return CLLM_OK;
}

/* Merges: parts must already exist, and each pair may be learned once. */
static cllm_status read_merges(const uint8_t *p, uint32_t n_merges, int32_t *merges) {
    u64_map seen;
    if (u64_map_init(&seen, n_merges) != CLLM_OK) {
        u64_map_free(&seen);
        return oom();
    }
    cllm_status s = CLLM_OK;
    for (uint32_t i = 0; i < n_merges && s == CLLM_OK; i++) {
        uint32_t a = get_u32(p + 8 * (size_t)i), b = get_u32(p + 8 * (size_t)i + 4);
        if (a >= 256 + i || b >= 256 + i) {
            char msg[96];
            snprintf(msg, sizeof msg, "merge %u refers to unknown token %u", i, a >= 256 + i ? a : b);
            s = corrupt(msg);
            break;
        }
        int32_t first;
        if ((s = u64_map_put_new(&seen, pair_key((int32_t)a, (int32_t)b), (int32_t)i, &first)) != CLLM_OK) break;
        if ((uint32_t)first != i) s = corrupt("the same merge appears twice");
        merges[2 * i] = (int32_t)a;
        merges[2 * i + 1] = (int32_t)b;
    }
    u64_map_free(&seen);
    return s;
}

/* name[0..len) for a message: printable ASCII as is, anything else as \xHH. */
static void printable_name(const uint8_t *name, uint32_t len, char *out, size_t n) {
    size_t k = 0;
    for (uint32_t i = 0; i < len && k + 5 < n; i++)
        k += (size_t)(name[i] >= 0x20 && name[i] < 0x7f && name[i] != '"'
                          ? snprintf(out + k, n - k, "%c", name[i])
                          : snprintf(out + k, n - k, "\\x%02x", name[i]));
    out[k] = '\0';
}

/* Version 1 has one special token and it is the end-of-document token: a
 * file naming it otherwise (hand-edited, or from another tool) would load a
 * tokenizer whose last id means something cllm does not implement. */
static cllm_status check_specials(const uint8_t *p, size_t left) {
    static const char *const names[N_SPECIAL] = {EOT_NAME};
    for (int i = 0; i < N_SPECIAL; i++) {
        if (left < 4) return corrupt("truncated special token");
        uint32_t len = get_u32(p);
        if (len == 0 || len > MAX_SPECIAL_NAME || len > left - 4) return corrupt("bad special token name length");
        if (len != strlen(names[i]) || memcmp(p + 4, names[i], len) != 0) {
            char got[4 * MAX_SPECIAL_NAME + 1], msg[6 * MAX_SPECIAL_NAME];
            printable_name(p + 4, len, got, sizeof got);
            snprintf(msg, sizeof msg, "special token %d is named \"%s\", version 1 requires \"%s\"", i, got,
                     names[i]);
            return corrupt(msg);
        }
        p += 4 + len;
        left -= 4 + len;
    }
    if (left != 0) return corrupt("trailing bytes after the special tokens");
    return CLLM_OK;
}

cllm_status cllm_tokenizer_deserialize(const uint8_t *data, size_t n, cllm_tokenizer **out) {
    *out = NULL;
    uint32_t n_merges = 0;
    cllm_status s = check_envelope(data, n, &n_merges);
    if (s != CLLM_OK) return s;
    size_t body = n - HEADER_BYTES - CHECKSUM_BYTES;
    s = check_specials(data + HEADER_BYTES + 8 * (size_t)n_merges, body - 8 * (size_t)n_merges);
    if (s != CLLM_OK) return s;
    int32_t *merges = malloc(((size_t)n_merges + 1) * 2 * sizeof *merges);
    if (!merges) return oom();
    s = read_merges(data + HEADER_BYTES, n_merges, merges);
    if (s != CLLM_OK) {
        free(merges);
        return s;
    }
    return tokenizer_from_merges(merges, (int)n_merges, out);
}

cllm_status cllm_tokenizer_save(const cllm_tokenizer *t, const char *path) {
    uint8_t *data;
    size_t n;
    cllm_status s = cllm_tokenizer_serialize(t, &data, &n);
    if (s != CLLM_OK) return s;
    s = cllm_write_file_atomic(path, data, n);
    free(data);
    return s;
}

cllm_status cllm_tokenizer_load(const char *path, cllm_tokenizer **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cllm_fail(CLLM_ERR_INPUT, "cannot read %s: %s", path, strerror(errno));
    /* Read one byte past the largest valid file, so that size alone rejects
     * a huge file without reading all of it. */
    uint8_t *data = malloc(MAX_FILE_BYTES + 1);
    if (!data) {
        fclose(f);
        return oom();
    }
    size_t n = fread(data, 1, MAX_FILE_BYTES + 1, f);
    int read_failed = ferror(f);
    fclose(f);
    cllm_status s;
    if (read_failed) s = cllm_fail(CLLM_ERR_INPUT, "cannot read %s", path);
    else if (n > MAX_FILE_BYTES) s = cllm_fail(CLLM_ERR_INPUT, "%s: too large to be a cllm tokenizer file", path);
    else if ((s = cllm_tokenizer_deserialize(data, n, out)) != CLLM_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", cllm_last_error());
        s = cllm_fail(s, "%s: %s", path, msg);
    }
    free(data);
    return s;
}
