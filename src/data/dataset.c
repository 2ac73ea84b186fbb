/* The token stream cut into windows, with a held-out validation split and an
 * endless, stateless training order.
 *
 * Windows start every seq_len tokens and hold seq_len + 1 tokens, so that
 * every token in the stream is a target exactly once per epoch. The split is
 * a seeded shuffle of the window indices: validation windows are spread over
 * the whole corpus rather than taken from its end (which, for a folder of
 * files, would hold out whole files and measure something else).
 *
 * The training order is a keyed pseudo-random permutation per epoch (a
 * Feistel network with cycle walking), so the index-th window is computed in
 * O(1) without storing a shuffled array per epoch: resuming a run needs only
 * the step counter, and threads can fetch windows concurrently. */
#include "cllm/data/dataset.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/base/rng.h"
#include "cllm/data/encoder.h"

#define SPLIT_SALT 0x73706c6974ULL /* "split": the split never reuses the order's random stream */
#define ORDER_SALT 0x6f72646572ULL /* "order" */
#define FEISTEL_ROUNDS 4

static cllm_status oom(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory building the dataset"); }

typedef struct { int32_t *out; size_t n, cap; } stream_buffer;

static cllm_status append_ids(void *ctx, const int32_t *ids, size_t n) {
    stream_buffer *b = ctx;
    CLLM_ASSERT(b->n + n <= b->cap);
    memcpy(b->out + b->n, ids, n * sizeof *ids);
    b->n += n;
    return CLLM_OK;
}

cllm_status cllm_dataset_tokenize(const cllm_corpus *c, const cllm_tokenizer *t, int32_t **tokens, size_t *n_tokens) {
    *tokens = NULL;
    *n_tokens = 0;
    /* byte-level BPE never makes more tokens than bytes: one allocation holds every document and its EOT */
    stream_buffer b = {malloc((c->n_bytes + c->n_docs + 1) * sizeof *b.out), 0, c->n_bytes + c->n_docs + 1};
    if (!b.out) return oom();
    cllm_encoder *e;
    cllm_status s = cllm_encoder_create(t, 0, 0, append_ids, &b, &e);
    for (size_t i = 0; s == CLLM_OK && i < c->n_docs; i++)
        s = cllm_encoder_add(e, c->bytes + c->docs[i].offset, c->docs[i].length);
    if (s == CLLM_OK) s = cllm_encoder_flush(e);
    cllm_encoder_free(e);
    if (s != CLLM_OK) {
        free(b.out);
        return s;
    }
    *tokens = b.out;
    *n_tokens = b.n;
    return CLLM_OK;
}

static int compare_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static size_t validation_count(double val_fraction, size_t n_windows) {
    if (val_fraction <= 0) return 0;
    size_t n_val = (size_t)llround(val_fraction * (double)n_windows);
    if (n_val < 1) n_val = 1;
    if (n_val > n_windows - 1) n_val = n_windows - 1;
    return n_val;
}

/* A seeded partial shuffle picks the validation windows; both lists are then
 * sorted so that the stored split itself does not depend on the shuffle's order. */
static cllm_status split_windows(cllm_dataset *d, size_t n_windows, double val_fraction) {
    size_t *idx = malloc(n_windows * sizeof *idx);
    if (!idx) return oom();
    for (size_t i = 0; i < n_windows; i++) idx[i] = i * (size_t)d->seq_len;
    d->n_val = validation_count(val_fraction, n_windows);
    d->n_train = n_windows - d->n_val;
    cllm_rng rng;
    cllm_rng_seed(&rng, d->seed ^ SPLIT_SALT);
    for (size_t i = 0; i < d->n_val; i++) {
        size_t j = i + (size_t)cllm_rng_below(&rng, n_windows - i);
        size_t tmp = idx[i];
        idx[i] = idx[j];
        idx[j] = tmp;
    }
    d->val_starts = malloc((d->n_val ? d->n_val : 1) * sizeof *d->val_starts);
    d->train_starts = malloc(d->n_train * sizeof *d->train_starts);
    if (!d->val_starts || !d->train_starts) {
        free(idx);
        return oom();
    }
    memcpy(d->val_starts, idx, d->n_val * sizeof *idx);
    memcpy(d->train_starts, idx + d->n_val, d->n_train * sizeof *idx);
    free(idx);
    qsort(d->val_starts, d->n_val, sizeof *d->val_starts, compare_size);
    qsort(d->train_starts, d->n_train, sizeof *d->train_starts, compare_size);
    return CLLM_OK;
}

/* The windows of a stream already in place (d->ids, d->n_tokens). */
static cllm_status cut_windows(cllm_dataset *d, int seq_len, double val_fraction, uint64_t seed) {
    d->seq_len = seq_len;
    d->seed = seed;
    if (seq_len < 1) return cllm_fail(CLLM_ERR_INPUT, "sequence length must be at least 1, got %d", seq_len);
    if (!(val_fraction >= 0 && val_fraction < 1))
        return cllm_fail(CLLM_ERR_INPUT, "validation fraction must be in [0, 1), got %g", val_fraction);
    size_t n_windows = d->n_tokens > 0 ? (d->n_tokens - 1) / (size_t)seq_len : 0;
    size_t need_windows = val_fraction > 0 ? 2 : 1;
    if (n_windows < need_windows)
        return cllm_fail(CLLM_ERR_INPUT, "corpus too short: %zu tokens, need %zu (%zu window%s of %d+1 tokens)",
                         d->n_tokens, need_windows * (size_t)seq_len + 1, need_windows, need_windows > 1 ? "s" : "",
                         seq_len);
    return split_windows(d, n_windows, val_fraction);
}

cllm_status cllm_dataset_build(const cllm_corpus *c, const cllm_tokenizer *t, int seq_len, double val_fraction,
                               uint64_t seed, cllm_dataset *out) {
    memset(out, 0, sizeof *out);
    cllm_status s = CLLM_OK;
    if (seq_len < 1 || !(val_fraction >= 0 && val_fraction < 1)) s = cut_windows(out, seq_len, val_fraction, seed);
    if (s == CLLM_OK) s = cllm_dataset_tokenize(c, t, &out->tokens, &out->n_tokens);
    if (s == CLLM_OK) {
        out->ids = out->tokens;
        out->id_bytes = 4;
        s = cut_windows(out, seq_len, val_fraction, seed);
    }
    if (s != CLLM_OK) cllm_dataset_free(out);
    return s;
}

cllm_status cllm_dataset_from_ids(const void *ids, int id_bytes, size_t n_tokens, int seq_len, double val_fraction,
                                  uint64_t seed, cllm_dataset *out) {
    memset(out, 0, sizeof *out);
    CLLM_ASSERT(id_bytes == 2 || id_bytes == 4);
    out->ids = ids;
    out->id_bytes = id_bytes;
    out->n_tokens = n_tokens;
    cllm_status s = cut_windows(out, seq_len, val_fraction, seed);
    if (s != CLLM_OK) cllm_dataset_free(out);
    return s;
}

/* A bijection on [0, n): a balanced Feistel network on the smallest square
 * power-of-two domain >= n, re-applied until the value lands inside [0, n)
 * (cycle walking; the domain is < 4n, so few passes are needed). */
static uint64_t permute_index(uint64_t i, uint64_t n, const uint64_t keys[FEISTEL_ROUNDS]) {
    int half = 1;
    while (half < 32 && (1ULL << (2 * half)) < n) half++;
    uint64_t mask = (1ULL << half) - 1, x = i;
    do {
        uint64_t left = x >> half, right = x & mask;
        for (int r = 0; r < FEISTEL_ROUNDS; r++) {
            uint64_t k = keys[r] ^ right;
            uint64_t f = cllm_splitmix64(&k) & mask;
            uint64_t next = left ^ f;
            left = right;
            right = next;
        }
        x = left << half | right;
    } while (x >= n);
    return x;
}

static void read_ids(const void *base, int id_bytes, size_t start, size_t n, int32_t *out) {
    if (id_bytes == 4) {
        memcpy(out, (const int32_t *)base + start, n * sizeof *out);
        return;
    }
    const uint16_t *ids = (const uint16_t *)base + start;
    for (size_t i = 0; i < n; i++) out[i] = ids[i];
}

void cllm_dataset_read(const cllm_dataset *d, size_t start, size_t n, int32_t *out) {
    read_ids(d->ids, d->id_bytes, start, n, out);
}

/* seq_len + 1 ids from base at start, as inputs and targets shifted by one. */
static void split_window(const void *base, int id_bytes, int seq_len, size_t start, int32_t *inputs,
                         int32_t *targets) {
    read_ids(base, id_bytes, start, (size_t)seq_len, inputs);
    memmove(targets, inputs + 1, ((size_t)seq_len - 1) * sizeof *targets);
    read_ids(base, id_bytes, start + (size_t)seq_len, 1, targets + seq_len - 1);
}

static void copy_window(const cllm_dataset *d, size_t start, int32_t *inputs, int32_t *targets) {
    split_window(d->ids, d->id_bytes, d->seq_len, start, inputs, targets);
}

cllm_status cllm_dataset_hold_validation(cllm_dataset *d, void (*read_upto)(void *ctx, size_t pos), void *ctx) {
    if (d->n_val == 0 || d->val_ids) return CLLM_OK;
    size_t w = (size_t)d->seq_len + 1, bytes = (size_t)d->id_bytes;
    uint8_t *held = malloc(d->n_val * w * bytes);
    if (!held) return oom();
    for (size_t i = 0; i < d->n_val; i++) { /* val_starts ascending: one pass over the stream */
        memcpy(held + i * w * bytes, (const uint8_t *)d->ids + d->val_starts[i] * bytes, w * bytes);
        if (read_upto && i % 256 == 255) read_upto(ctx, d->val_starts[i]);
    }
    if (read_upto) read_upto(ctx, d->n_tokens);
    d->val_ids = held;
    return CLLM_OK;
}

size_t cllm_dataset_train_start(const cllm_dataset *d, uint64_t index) {
    uint64_t epoch = index / d->n_train, pos = index % d->n_train;
    uint64_t keys[FEISTEL_ROUNDS];
    cllm_rng rng;
    cllm_rng_seed(&rng, (d->seed ^ ORDER_SALT) + epoch * 0xd1b54a32d192ed03ULL);
    for (int r = 0; r < FEISTEL_ROUNDS; r++) keys[r] = cllm_rng_next(&rng);
    return d->train_starts[permute_index(pos, d->n_train, keys)];
}

void cllm_dataset_train_window(const cllm_dataset *d, uint64_t index, int32_t *inputs, int32_t *targets) {
    copy_window(d, cllm_dataset_train_start(d, index), inputs, targets);
}

void cllm_dataset_val_window(const cllm_dataset *d, size_t index, int32_t *inputs, int32_t *targets) {
    if (d->val_ids) split_window(d->val_ids, d->id_bytes, d->seq_len, index * ((size_t)d->seq_len + 1), inputs, targets);
    else copy_window(d, d->val_starts[index], inputs, targets);
}

void cllm_dataset_free(cllm_dataset *d) {
    if (!d) return;
    free(d->tokens);
    free(d->train_starts);
    free(d->val_starts);
    free(d->val_ids);
    memset(d, 0, sizeof *d);
}
