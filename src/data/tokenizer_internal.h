/* What the parallel encoder (src/data/encoder.c) needs of the tokenizer: the
 * BPE of one chunk, with per-thread scratch. The pre-tokenizer that finds the
 * chunks is cllm_pretok_chunk_end (pretokenize.h). Private to src/data. */
#ifndef CLLM_DATA_TOKENIZER_INTERNAL_H
#define CLLM_DATA_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/data/tokenizer.h"

/* One thread's working memory for cllm_tokenizer_encode_chunk. */
typedef struct cllm_bpe_scratch cllm_bpe_scratch;
cllm_bpe_scratch *cllm_bpe_scratch_create(void); /* NULL: out of memory */
void cllm_bpe_scratch_free(cllm_bpe_scratch *s);
/* The token of a one-byte chunk. */
int32_t cllm_tokenizer_byte_id(const cllm_tokenizer *t, uint8_t b);
/* The ids of one chunk (every merge applied by rank) into ids[0..len); returns how many, SIZE_MAX when out of
   memory. */
size_t cllm_tokenizer_encode_chunk(const cllm_tokenizer *t, cllm_bpe_scratch *s, const uint8_t *chunk, size_t len,
                                   int32_t *ids);

#endif
