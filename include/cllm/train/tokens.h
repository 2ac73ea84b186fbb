/* A run's token stream: the corpus streamed from disk, the tokenizer trained
 * on it, and the token cache DIR/tokens.bin that training and evaluation map.
 *
 * A fresh run reads the corpus twice, one file at a time: once to train the
 * tokenizer, once to encode it into the cache (in parallel, the same ids
 * for any thread count); the two reads must agree (same hash), or the data
 * changed while it was read. --resume and `cllm eval` read it once more to
 * check it is still the data of run.json, and use the cache when it names
 * that data and this tokenizer. A cache that is missing (a folder of an
 * earlier cllm), stale or corrupt is derived data: `train --resume`, which
 * holds the folder's lock, rebuilds it and says so; `cllm eval`, which never
 * writes to a run folder, encodes the data in memory instead and says so. */
#ifndef CLLM_TRAIN_TOKENS_H
#define CLLM_TRAIN_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/data/corpus.h"
#include "cllm/data/token_cache.h"
#include "cllm/data/tokenizer.h"

typedef struct {
    const void *ids; int id_bytes; size_t n_tokens; /* the stream, in the cache's map or in memory */
    /* the corpus as read: what run.json records and the summary shows */
    uint64_t corpus_hash, corpus_bytes;
    size_t n_docs, n_files_read, n_binary_skipped;
    int changed;     /* reuse: the data on disk is not run.json's (the call failed with CLLM_ERR_INPUT) */
    char note[400];  /* reuse: why the cache was rebuilt or not used; "" when it was used as it was */
    /* owned */
    cllm_token_cache cache;
    cllm_token_cache_writer *pending; /* a built cache not yet committed */
    int32_t *memory;
} cllm_run_tokens;

typedef struct {
    int threads;                 /* encoding threads; 0: omp_get_max_threads() */
    const cllm_stop_flag *stop;
    cllm_data_progress progress; /* fn NULL: none */
} cllm_run_tokens_options;

/* Pass 1 of a fresh run: the tokenizer trained on the files, streamed; rt's corpus figures filled. No text at all:
   CLLM_ERR_INPUT "no text in PATH (...)" (paths as given, for the message). */
cllm_status cllm_run_tokenizer_train(const cllm_corpus_files *files, const char *const *paths, int n_paths,
                                     int vocab, cllm_pretok pretok, const cllm_run_tokens_options *o,
                                     cllm_tokenizer **tok, cllm_run_tokens *rt);
/* Before pass 1: DIR/tokens.bin's temporary opened and its header's place written, so that a folder that cannot
   take it fails before the corpus is read. vocab: the largest the tokenizer may have. */
cllm_status cllm_run_tokens_begin(const char *dir, int vocab, cllm_run_tokens *rt);
/* Pass 2: the files encoded into DIR/tokens.bin (begun, or begun now), mapped, not yet committed. When rt already holds corpus figures
   (from pass 1), the two reads must agree: else CLLM_ERR_INPUT "the training data changed while it was read". */
cllm_status cllm_run_tokens_build(const char *dir, const cllm_corpus_files *files, const cllm_tokenizer *tok,
                                  const cllm_run_tokens_options *o, cllm_run_tokens *rt);
/* Makes a built cache DIR/tokens.bin (atomic rename); nothing to do for one reused. */
cllm_status cllm_run_tokens_commit(cllm_run_tokens *rt);
/* --resume and eval: the stream of a run folder whose run.json names (hash, bytes). may_write: a missing, stale or
   corrupt cache is rebuilt and committed; else the stream is encoded in memory. Either way rt->note says why.
   Data on disk other than run.json's: CLLM_ERR_INPUT with rt->changed set and rt's corpus figures those of now
   (the caller words the message). */
cllm_status cllm_run_tokens_reuse(const char *dir, const cllm_corpus_files *files, const cllm_tokenizer *tok,
                                  uint64_t expect_hash, uint64_t expect_bytes, int may_write,
                                  const cllm_run_tokens_options *o, cllm_run_tokens *rt);
/* The files encoded into memory (int32 ids, rt->memory), for a reader that may not write a folder (eval DATA). */
cllm_status cllm_run_tokens_in_memory(const cllm_corpus_files *files, const cllm_tokenizer *tok,
                                      const cllm_run_tokens_options *o, cllm_run_tokens *rt);
/* Hands back the resident pages of tokens [from, to) of a mapped stream (after a long sequential pass). */
void cllm_run_tokens_release(const cllm_run_tokens *rt, size_t from, size_t to);
void cllm_run_tokens_free(cllm_run_tokens *rt); /* an uncommitted cache is removed */

#endif
