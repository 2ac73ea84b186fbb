/* Starting a run from a trained GPT-2 (`cllm train DATA --init DIR`).
 *
 * DIR is a Hugging Face-format GPT-2 folder: config.json (GPT2Config keys;
 * what cllm's model cannot compute is refused, see
 * cllm_checkpoint_read_config), model.safetensors (F32, F16 or BF16; with
 * or without the "transformer." prefix; lm_head.weight optional and equal
 * to wte; see cllm_checkpoint_load_model) and its tokenizer. A cllm run
 * folder is such a folder too. The run keeps the folder's architecture,
 * weights and tokenizer, so its token ids mean what they meant. Every
 * message names the folder as --init gave it. */
#ifndef CLLM_TRAIN_PRETRAINED_H
#define CLLM_TRAIN_PRETRAINED_H

#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/data/tokenizer.h"
#include "cllm/models/gpt2.h"

/* DIR's model shape, checked (and that it fits in memory); *eot_id is its
 * eos_token_id, -1 when the config has none. */
cllm_status cllm_pretrained_read_config(const char *dir, gpt2_config *cfg, int32_t *eot_id);

/* DIR's tokenizer, checked against its config.json (the same vocabulary
 * size and end-of-text id): tokenizer.bin (cllm's format) when present, else
 * the Hugging Face files, tokenizer.json or vocab.json + merges.txt
 * (cllm_tokenizer_load_any), with their token ids as they are. */
cllm_status cllm_pretrained_load_tokenizer(const char *dir, cllm_tokenizer **tok);

/* Which of DIR's tokenizer files cllm_pretrained_load_tokenizer reads:
 * "tokenizer.bin", "tokenizer.json" or "vocab.json + merges.txt" (NULL: none). */
const char *cllm_pretrained_tokenizer_file(const char *dir);

/* DIR's weights into m, created for the config cllm_pretrained_read_config
 * gave (the parameters are replaced; on failure m is to be discarded);
 * what (may be NULL): the file's layout in a few words, for the summary. */
cllm_status cllm_pretrained_load_weights(const char *dir, gpt2_model *m, char *what, size_t what_len);

#endif
