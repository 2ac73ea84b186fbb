/* What the parallel encoder (src/data/encoder.c) needs of the tokenizer:
 * the pre-tokenizer and the BPE of one chunk. Private to src/data. */
#ifndef CLLM_DATA_TOKENIZER_INTERNAL_H
#define CLLM_DATA_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/data/tokenizer.h"

/* The pre-tokenizer: the end of the chunk that starts at s[i] (i < n) in the document s[0..n). A document's
   chunks are those found by scanning this from 0; it depends on (s, n, i) alone, so a scan started at any chunk
   start finds the same chunks after it. */
size_t cllm_tokenizer_chunk_end(const uint8_t *s, size_t n, size_t i);
/* The ids of one chunk (its bytes with every merge applied by rank) into ids[0..len); returns how many. */
size_t cllm_tokenizer_encode_chunk(const cllm_tokenizer *t, const uint8_t *chunk, size_t len, int32_t *ids);

#endif
