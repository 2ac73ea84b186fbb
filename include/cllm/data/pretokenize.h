/* Pre-tokenization: how text is cut into chunks before byte-level BPE.
 *
 * Merges never cross a chunk boundary. A pre-tokenizer is one function, "the
 * end of the chunk that starts at byte i"; the chunks of a text are found by
 * calling it from 0 (i = end of the previous chunk). That sequential chunk
 * list is the only thing encoders and trainers depend on, so a parallel
 * encoder that first lists the chunks stays exact for every mode.
 *
 * Two modes (docs/TOKENIZER.md):
 *   CLLM_PRETOK_GPT2  GPT-2's pattern, exactly:
 *       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *     over UTF-8 with Unicode categories from libutf8proc. A byte that is not
 *     part of a valid UTF-8 sequence is one character that is neither a
 *     letter, a number nor white space (what Python's
 *     bytes.decode("utf-8", "surrogateescape") and the regex module give).
 *     Chunks have no length limit. Needs a build with libutf8proc.
 *   CLLM_PRETOK_CLLM  the chunker of cllm's version-1 tokenizer files: ASCII
 *     letters and every byte >= 0x80 count as letters, chunks are capped at
 *     128 bytes. Old tokenizer.bin files load with it; it needs no library. */
#ifndef CLLM_DATA_PRETOKENIZE_H
#define CLLM_DATA_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"

typedef enum {
    CLLM_PRETOK_CLLM = 0, /* the version-1 chunker */
    CLLM_PRETOK_GPT2 = 1  /* GPT-2's regular expression */
} cllm_pretok;

#define CLLM_PRETOK_COUNT 2

/* 1 when this build can run the mode (GPT-2 needs libutf8proc). */
int cllm_pretok_available(cllm_pretok mode);
/* CLLM_OK, or CLLM_ERR_INPUT with a message naming the missing package. */
cllm_status cllm_pretok_require(cllm_pretok mode);
/* The mode of new tokenizers: GPT-2 where available, else the cllm chunker. */
cllm_pretok cllm_pretok_default(void);
/* "gpt2", "cllm"; and back (-1 for an unknown name). */
const char *cllm_pretok_name(cllm_pretok mode);
int cllm_pretok_from_name(const char *name);

/* End of the chunk that starts at s[i] (i < n): a value in (i, n]. The mode
 * must be available (CLLM_ASSERT). */
size_t cllm_pretok_chunk_end(cllm_pretok mode, const uint8_t *s, size_t n, size_t i);

#endif
