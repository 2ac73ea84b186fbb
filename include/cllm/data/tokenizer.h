/* Byte-level BPE tokenizer.
 *
 * Ids 0..255 are the raw bytes, then one id per learned merge (in the order
 * learned, which is also the priority when encoding), then the special tokens
 * (end-of-document). Any byte string encodes and decodes back exactly, and
 * encoding raw text never produces a special token. The file format is
 * described at the top of src/data/tokenizer.c and in docs/TOKENIZER.md. */
#ifndef CLLM_DATA_TOKENIZER_H
#define CLLM_DATA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/data/corpus.h"

#define CLLM_TOKENIZER_MIN_VOCAB 257
#define CLLM_TOKENIZER_MAX_VOCAB 65536
#define CLLM_TOKENIZER_DEFAULT_VOCAB 512

typedef struct cllm_tokenizer cllm_tokenizer;
/* vocab_size = total vocabulary: 256 byte tokens + merges + special tokens (end-of-document). 257..65536; default 512. */
cllm_status cllm_tokenizer_train(const cllm_corpus *c, int vocab_size, cllm_tokenizer **out);
/* The same, abandoned within milliseconds of *stop becoming non-zero: CLLM_ERR_INTERRUPTED, *out NULL. stop may be NULL. */
cllm_status cllm_tokenizer_train_stoppable(const cllm_corpus *c, int vocab_size, const cllm_stop_flag *stop,
                                           cllm_tokenizer **out);
/* The same, fed one document at a time, so that a corpus of any size is never held whole: create, add every
   document in order (the bytes are not kept), then finish, which learns the merges and frees the trainer (also on
   failure). The result equals cllm_tokenizer_train's on the same documents. */
typedef struct cllm_tokenizer_trainer cllm_tokenizer_trainer;
cllm_status cllm_tokenizer_trainer_create(int vocab_size, const cllm_stop_flag *stop, cllm_tokenizer_trainer **out);
cllm_status cllm_tokenizer_trainer_add(cllm_tokenizer_trainer *b, const uint8_t *text, size_t n);
cllm_status cllm_tokenizer_trainer_finish(cllm_tokenizer_trainer *b, cllm_tokenizer **out);
void cllm_tokenizer_trainer_free(cllm_tokenizer_trainer *b); /* abandons a trainer not finished */
int cllm_tokenizer_vocab_size(const cllm_tokenizer *t);
int32_t cllm_tokenizer_eot(const cllm_tokenizer *t);          /* the end-of-document id */
cllm_status cllm_tokenizer_encode(const cllm_tokenizer *t, const uint8_t *bytes, size_t n, int32_t **ids, size_t *n_ids); /* *ids malloc'd */
cllm_status cllm_tokenizer_decode(const cllm_tokenizer *t, const int32_t *ids, size_t n, uint8_t **bytes, size_t *n_bytes); /* out-of-range id: CLLM_ERR_INPUT */
const uint8_t *cllm_tokenizer_token_bytes(const cllm_tokenizer *t, int32_t id, size_t *len); /* for streaming output; specials -> len 0; NULL if out of range */
cllm_status cllm_tokenizer_save(const cllm_tokenizer *t, const char *path);   /* crash-safe: temp + fsync + rename */
cllm_status cllm_tokenizer_load(const char *path, cllm_tokenizer **out);       /* full validation; corrupt -> CLLM_ERR_INPUT */
void cllm_tokenizer_free(cllm_tokenizer *t);

/* Number of learned merges (vocab_size - 256 - specials). */
int cllm_tokenizer_n_merges(const cllm_tokenizer *t);
/* The i-th learned merge: the pair (left, right) that became id 256 + i. */
void cllm_tokenizer_merge(const cllm_tokenizer *t, int i, int32_t *left, int32_t *right);

/* The serialized file image (what save writes), malloc'd; and parsing one
   with the same validation as load. Useful to embed a tokenizer elsewhere
   (e.g. inside a checkpoint) and for tests. */
cllm_status cllm_tokenizer_serialize(const cllm_tokenizer *t, uint8_t **data, size_t *n);
cllm_status cllm_tokenizer_deserialize(const uint8_t *data, size_t n, cllm_tokenizer **out);

#endif
