/* The token stream of a corpus, cut into fixed training and validation windows. */
#ifndef CLLM_DATA_DATASET_H
#define CLLM_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/data/corpus.h"
#include "cllm/data/tokenizer.h"

/* the token stream split into fixed windows */
typedef struct {
    int seq_len;
    size_t n_tokens;                       /* whole stream: docs joined with EOT separators (each doc, the last
                                              included, is followed by one EOT: doc0 EOT doc1 EOT ...) */
    const void *ids; int id_bytes;         /* the stream: n_tokens ids of 2 (uint16) or 4 bytes (int32), native order */
    int32_t *tokens;                       /* cllm_dataset_build: the stream it owns (ids points here); else NULL */
    void *val_ids;                         /* cllm_dataset_hold_validation: the validation windows' ids, in order */
    size_t *train_starts; size_t n_train;  /* start offsets of training windows of seq_len+1 tokens */
    size_t *val_starts; size_t n_val;      /* held-out windows */
    uint64_t seed;
} cllm_dataset;

/* The corpus as one token stream, every document (the last included) followed by one EOT: the stream
   cllm_dataset_build windows, and the one `cllm eval DATA` scores, so the two cannot diverge. The caller frees
   *tokens. */
cllm_status cllm_dataset_tokenize(const cllm_corpus *c, const cllm_tokenizer *t, int32_t **tokens, size_t *n_tokens);
/* Tokenizes the corpus (documents joined by EOT so no window silently spans two documents without it), cuts it
   into windows of seq_len+1 tokens with stride seq_len, and assigns a val_fraction of them (at least 1 when
   val_fraction > 0) to validation, chosen deterministically from the seed. Fewer tokens than one training window
   (plus one validation window if val_fraction > 0): CLLM_ERR_INPUT "corpus too short: N tokens, need M". */
cllm_status cllm_dataset_build(const cllm_corpus *c, const cllm_tokenizer *t, int seq_len, double val_fraction,
                               uint64_t seed, cllm_dataset *out);
/* The same windows over a stream held elsewhere (a memory-mapped token cache), which must outlive the dataset:
   ids[0..n_tokens) of id_bytes 2 (uint16) or 4 (int32) each. */
cllm_status cllm_dataset_from_ids(const void *ids, int id_bytes, size_t n_tokens, int seq_len, double val_fraction,
                                  uint64_t seed, cllm_dataset *out);
/* Copies the validation windows (n_val x (seq_len + 1) ids, a val_fraction of the stream) into memory the dataset
   owns, read in one pass in stream order, calling read_upto(ctx, pos) now and then with the position reached (NULL:
   never): evaluations then never read the stream, so a mapped stream's pages need not stay resident. */
cllm_status cllm_dataset_hold_validation(cllm_dataset *d, void (*read_upto)(void *ctx, size_t pos), void *ctx);
/* Tokens [start, start + n) of the stream as int32. */
void cllm_dataset_read(const cllm_dataset *d, size_t start, size_t n, int32_t *out);
/* The index-th training window of an endless, deterministic sequence: epoch = index / n_train, and within an epoch
   windows come in a permutation drawn from (seed, epoch). Stateless, so resuming needs only the index and many
   threads can fetch windows at once. Writes seq_len inputs and seq_len targets (shifted by one). */
void cllm_dataset_train_window(const cllm_dataset *d, uint64_t index, int32_t *inputs, int32_t *targets);
/* Where in `tokens` the index-th training window starts (what train_window copies from). */
size_t cllm_dataset_train_start(const cllm_dataset *d, uint64_t index);
void cllm_dataset_val_window(const cllm_dataset *d, size_t index, int32_t *inputs, int32_t *targets); /* index < n_val */
void cllm_dataset_free(cllm_dataset *d);

#endif
