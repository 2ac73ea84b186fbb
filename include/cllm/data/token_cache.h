/* The token cache: a corpus tokenized once, in a file that training and
 * evaluation map read-only (src/data/token_cache.c has the format).
 *
 * The file names what it was made from: the tokenizer (the FNV-1a 64 of
 * its file image, tokenizer.bin's bytes) and the corpus (the FNV-1a 64 of
 * every document's bytes in reading order, its size and its document
 * count: the figures run.json keeps). A reader compares those with what it
 * has; the file itself is checked whole when opened (size, header checksum,
 * a checksum of the ids, every id inside the vocabulary, one end-of-text
 * id per document), without bringing it into the process's memory. */
#ifndef CLLM_DATA_TOKEN_CACHE_H
#define CLLM_DATA_TOKEN_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/data/corpus.h"
#include "cllm/data/tokenizer.h"

typedef struct {
    uint64_t tokenizer_hash, corpus_hash, corpus_bytes, n_docs, n_tokens;
    int id_bytes; /* 2: uint16 ids (vocabulary <= 65536), 4: uint32 */
} cllm_token_cache_info;

typedef struct {
    cllm_token_cache_info info;
    const void *ids; /* n_tokens ids of id_bytes each, in the map */
    void *map;
    size_t map_bytes;
} cllm_token_cache;

/* FNV-1a 64 of the tokenizer's file image. */
cllm_status cllm_token_cache_tokenizer_hash(const cllm_tokenizer *t, uint64_t *hash);

/* Maps the file and checks all of it (see the top): a missing, truncated or corrupt file, or an id outside
   0..vocab-1, end-of-text ids (eot) other than one per document: CLLM_ERR_INPUT naming the file and the problem.
   *out is then empty. */
cllm_status cllm_token_cache_open(const char *path, int vocab, int32_t eot, cllm_token_cache *out);
void cllm_token_cache_close(cllm_token_cache *c);
/* Whether the cache was made from what `want` names (tokenizer, corpus hash, bytes, documents); if not, a
   phrase saying what differs in why[0..n). */
int cllm_token_cache_matches(const cllm_token_cache_info *have, const cllm_token_cache_info *want, char *why,
                             size_t n);
/* Gives back the pages of ids[from, to) that the process holds (the file stays in the page cache): after a
   pass over much of the stream, so that the resident size does not grow with the corpus. */
void cllm_token_cache_release(const cllm_token_cache *c, size_t from, size_t to);

/* Called during a build with the corpus bytes done so far (of about `total`). */
typedef struct {
    void (*fn)(void *ctx, uint64_t done, uint64_t total);
    void *ctx;
} cllm_data_progress;

/* Writing: the corpus streamed file by file through the parallel encoder into PATH.tmp.PID, checked and mapped
   into *out, and left uncommitted, so that the caller decides when it becomes PATH (cllm_token_cache_commit,
   an atomic rename) or is dropped (cllm_token_cache_abort). The file's corpus figures are those of the bytes
   actually encoded (out->info). A stop request: CLLM_ERR_INTERRUPTED, nothing left behind. */
typedef struct cllm_token_cache_writer cllm_token_cache_writer;
cllm_status cllm_token_cache_build(const char *path, const cllm_corpus_files *files, const cllm_tokenizer *t,
                                   int threads, const cllm_stop_flag *stop, const cllm_data_progress *progress,
                                   cllm_token_cache_writer **w, cllm_token_cache *out);
/* The same in two steps: begin opens PATH.tmp.PID and writes the header's place through (a folder that cannot
   take the file says so before any reading; ids will be 2 bytes when vocab <= 65536); encode streams the files
   (on failure w stays to be aborted). */
cllm_status cllm_token_cache_begin(const char *path, int vocab, cllm_token_cache_writer **w);
cllm_status cllm_token_cache_encode(cllm_token_cache_writer *w, const cllm_corpus_files *files,
                                    const cllm_tokenizer *t, int threads, const cllm_stop_flag *stop,
                                    const cllm_data_progress *progress, cllm_token_cache *out);
cllm_status cllm_token_cache_commit(cllm_token_cache_writer *w); /* frees w */
void cllm_token_cache_abort(cllm_token_cache_writer *w);         /* frees w; NULL is fine */

#endif
