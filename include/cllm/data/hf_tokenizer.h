/* Hugging Face tokenizer files: written next to tokenizer.bin in every run
 * folder, and read back (docs/TOKENIZER.md, "Hugging Face files").
 *
 *   tokenizer.json           the tokenizers library's format: a BPE model
 *                            (vocab + merges), ByteLevel pre-tokenizer and
 *                            decoder, the special tokens as added tokens
 *   vocab.json, merges.txt   the same vocabulary and merges as GPT-2's files
 *   tokenizer_config.json    GPT2Tokenizer, model_max_length, the specials
 *   special_tokens_map.json  bos/eos/unk = <|endoftext|>
 *
 * Tokens are written in GPT-2's byte-to-unicode form (each byte one
 * printable character). Only GPT-2 pre-tokenization can be expressed: a
 * tokenizer with the cllm chunker gets no Hugging Face files. */
#ifndef CLLM_DATA_HF_TOKENIZER_H
#define CLLM_DATA_HF_TOKENIZER_H

#include <stddef.h>

#include "cllm/base/common.h"
#include "cllm/data/tokenizer.h"

#define CLLM_HF_TOKENIZER_N_FILES 5
extern const char *const cllm_hf_tokenizer_files[CLLM_HF_TOKENIZER_N_FILES];

/* Token id's text as these files (and GGUF's tokenizer.ggml.tokens) write
 * it: its bytes in GPT-2's byte-to-unicode form, a special token's name as
 * it is. NUL-terminated into out, which needs CLLM_HF_TOKEN_TEXT_MAX bytes. */
#define CLLM_HF_TOKEN_TEXT_MAX (2 * CLLM_TOKENIZER_MAX_TOKEN_BYTES + 1)
void cllm_hf_token_text(const cllm_tokenizer *t, int32_t id, char *out);

/* 1 when the files can express t exactly; else 0 and why (one phrase) in why. */
int cllm_hf_tokenizer_expressible(const cllm_tokenizer *t, char *why, size_t n);

/* Writes the five files into dir, each crash-safely (temporary, fsync,
 * rename). model_max_length: the model's context (n_positions). A tokenizer
 * that is not expressible: CLLM_ERR_INPUT with the reason, nothing written. */
cllm_status cllm_hf_tokenizer_write(const cllm_tokenizer *t, const char *dir, int model_max_length);

/* The tokenizer of a Hugging Face folder: tokenizer.json when it exists,
 * else vocab.json + merges.txt (e.g. OpenAI's GPT-2 files). Anything this
 * cllm cannot reproduce exactly (another model type or pre-tokenizer, a
 * normalizer, a token outside the byte alphabet, ids with gaps) is
 * CLLM_ERR_INPUT naming the file and what is wrong. */
cllm_status cllm_hf_tokenizer_load(const char *dir, cllm_tokenizer **out);
/* The same from the files' contents (for tests and fuzzing). */
cllm_status cllm_hf_tokenizer_parse_json(const char *text, size_t n, cllm_tokenizer **out);
cllm_status cllm_hf_tokenizer_parse_vocab_merges(const char *vocab, size_t n_vocab, const char *merges,
                                                 size_t n_merges, cllm_tokenizer **out);

/* A tokenizer from a path: a folder with tokenizer.bin (cllm's own file,
 * preferred) or Hugging Face files, or a file (tokenizer.bin format, or a
 * tokenizer.json). */
cllm_status cllm_tokenizer_load_any(const char *path, cllm_tokenizer **out);

#endif
