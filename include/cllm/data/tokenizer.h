/* Byte-level BPE tokenizer.
 *
 * A tokenizer cllm trains has ids 0..255 for the raw bytes, then one id per
 * learned merge (in the order learned, which is also the priority when
 * encoding), then the special tokens (end-of-document). One read from
 * Hugging Face files (hf_tokenizer.h) may number its tokens in any order:
 * every byte has a token, every merge (left, right) has a result token, and
 * the merges' order is their priority. Text is cut into chunks by the
 * tokenizer's pre-tokenizer (pretokenize.h) before BPE. Any byte string
 * encodes and decodes back exactly, and encoding raw text never produces a
 * special token. The file format is described in src/data/tokenizer_file.c
 * and docs/TOKENIZER.md. */
#ifndef CLLM_DATA_TOKENIZER_H
#define CLLM_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/data/corpus.h"
#include "cllm/data/pretokenize.h"

#define CLLM_TOKENIZER_MIN_VOCAB 257
#define CLLM_TOKENIZER_MAX_VOCAB 65536
#define CLLM_TOKENIZER_DEFAULT_VOCAB 512
/* No token is longer (GPT-2's pre-tokenizer has no chunk limit, so training
 * skips a merge that would build a longer one; the cllm chunker caps chunks,
 * and so tokens, at 128 bytes). */
#define CLLM_TOKENIZER_MAX_TOKEN_BYTES 1024
#define CLLM_TOKENIZER_EOT_NAME "<|endoftext|>"

typedef struct cllm_tokenizer cllm_tokenizer;
/* vocab_size = total vocabulary: 256 byte tokens + merges + special tokens (end-of-document). 257..65536; default 512.
 * The pre-tokenizer is cllm_pretok_default(). */
cllm_status cllm_tokenizer_train(const cllm_corpus *c, int vocab_size, cllm_tokenizer **out);
/* The same, abandoned within milliseconds of *stop becoming non-zero: CLLM_ERR_INTERRUPTED, *out NULL. stop may be NULL. */
cllm_status cllm_tokenizer_train_stoppable(const cllm_corpus *c, int vocab_size, const cllm_stop_flag *stop,
                                           cllm_tokenizer **out);
/* With a chosen pre-tokenizer; one this build lacks is CLLM_ERR_INPUT naming the package. */
cllm_status cllm_tokenizer_train_mode(const cllm_corpus *c, int vocab_size, cllm_pretok pretok,
                                      const cllm_stop_flag *stop, cllm_tokenizer **out);
/* The pre-tokenizer the tokenizer was trained with (recorded in its file). */
cllm_pretok cllm_tokenizer_pretokenizer(const cllm_tokenizer *t);
int cllm_tokenizer_vocab_size(const cllm_tokenizer *t);
int32_t cllm_tokenizer_eot(const cllm_tokenizer *t);          /* the end-of-document id */
cllm_status cllm_tokenizer_encode(const cllm_tokenizer *t, const uint8_t *bytes, size_t n, int32_t **ids, size_t *n_ids); /* *ids malloc'd */
cllm_status cllm_tokenizer_decode(const cllm_tokenizer *t, const int32_t *ids, size_t n, uint8_t **bytes, size_t *n_bytes); /* out-of-range id: CLLM_ERR_INPUT */
const uint8_t *cllm_tokenizer_token_bytes(const cllm_tokenizer *t, int32_t id, size_t *len); /* for streaming output; specials -> len 0; NULL if out of range */
cllm_status cllm_tokenizer_save(const cllm_tokenizer *t, const char *path);   /* crash-safe: temp + fsync + rename */
cllm_status cllm_tokenizer_load(const char *path, cllm_tokenizer **out);       /* full validation; corrupt -> CLLM_ERR_INPUT */
void cllm_tokenizer_free(cllm_tokenizer *t);

/* Number of merges (for a tokenizer cllm trained: vocab_size - 256 - specials). */
int cllm_tokenizer_n_merges(const cllm_tokenizer *t);
/* The i-th merge (priority i): the pair (left, right) that becomes one token
 * (id 256 + i in a tokenizer cllm trained). */
void cllm_tokenizer_merge(const cllm_tokenizer *t, int i, int32_t *left, int32_t *right);
/* The token the i-th merge makes. */
int32_t cllm_tokenizer_merge_result(const cllm_tokenizer *t, int i);
/* 1 for a special token (end-of-document and the like: never produced by
 * encoding text, decoded to nothing). */
int cllm_tokenizer_is_special(const cllm_tokenizer *t, int32_t id);
/* A token's text for tokenizer files: its bytes, or a special token's name. */
const uint8_t *cllm_tokenizer_token_text(const cllm_tokenizer *t, int32_t id, size_t *len);

/* A tokenizer from its parts, checked (CLLM_ERR_INPUT with what is wrong):
 * n_tokens (257..65536) tokens, token id's text at text + off[id], len[id]
 * bytes (1..CLLM_TOKENIZER_MAX_TOKEN_BYTES), special[id] non-zero for
 * special tokens; every byte value must be some non-special token of length
 * 1, and one special token must be named "<|endoftext|>". merges: n_merges
 * triples (left, right, result) in priority order, each of non-special
 * tokens whose texts concatenate, no pair twice. Copies what it keeps. */
typedef struct {
    cllm_pretok pretok;
    int n_tokens;
    const uint8_t *text;
    const size_t *off, *len;
    const uint8_t *special;
    int n_merges;
    const int32_t *merges;
} cllm_tokenizer_parts;
cllm_status cllm_tokenizer_build(const cllm_tokenizer_parts *p, cllm_tokenizer **out);
/* cllm's own layout: ids 0..255 the bytes, merge i = pairs[2i], pairs[2i+1]
 * becoming id 256 + i (parts must be smaller ids), then "<|endoftext|>". */
cllm_status cllm_tokenizer_build_from_pairs(const int32_t *pairs, int n_merges, cllm_pretok pretok,
                                            cllm_tokenizer **out);

/* The serialized file image (what save writes), malloc'd; and parsing one
   with the same validation as load. Useful to embed a tokenizer elsewhere
   (e.g. inside a checkpoint) and for tests. */
cllm_status cllm_tokenizer_serialize(const cllm_tokenizer *t, uint8_t **data, size_t *n);
cllm_status cllm_tokenizer_deserialize(const uint8_t *data, size_t n, cllm_tokenizer **out);

#endif
