/* A trained GPT-2 to start from (include/cllm/train/pretrained.h). */
#include "cllm/train/pretrained.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cllm/data/hf_tokenizer.h"
#include "cllm/train/checkpoint.h"

/* What such a folder holds, said once for every missing piece. */
#define FOLDER_NEEDS "a Hugging Face GPT-2 folder holds config.json, model.safetensors and the tokenizer"

static int has_file(const char *dir, const char *name) {
    char *path = cllm_path_join(dir, name);
    struct stat sb;
    int yes = path && stat(path, &sb) == 0;
    free(path);
    return yes;
}

/* The folder and the named file in it exist: otherwise one line saying
 * which is missing (the loaders' own messages speak of run folders). The
 * weights only as PyTorch's pickle, or split in shards, get a hint. */
static cllm_status require_file(const char *dir, const char *name) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return cllm_fail(CLLM_ERR_INPUT, "--init %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return cllm_fail(CLLM_ERR_INPUT, "--init %s: not a folder (%s)", dir, FOLDER_NEEDS);
    if (has_file(dir, name)) return CLLM_OK;
    const char *hint = strcmp(name, CLLM_MODEL_FILE) != 0 ? FOLDER_NEEDS
                       : has_file(dir, "model.safetensors.index.json")
                           ? "the weights are split in shards: cllm reads one model.safetensors"
                       : has_file(dir, "pytorch_model.bin")
                           ? "pytorch_model.bin is not read: save the model with safe_serialization to get "
                             "model.safetensors"
                           : FOLDER_NEEDS;
    return cllm_fail(CLLM_ERR_INPUT, "--init %s: no %s (%s)", dir, name, hint);
}

cllm_status cllm_pretrained_read_config(const char *dir, gpt2_config *cfg, int32_t *eot_id) {
    cllm_status st = require_file(dir, CLLM_CONFIG_FILE);
    if (st == CLLM_OK) st = require_file(dir, CLLM_MODEL_FILE);
    if (st == CLLM_OK) st = cllm_checkpoint_read_config(dir, cfg, eot_id);
    return st;
}

const char *cllm_pretrained_tokenizer_file(const char *dir) {
    if (has_file(dir, CLLM_TOKENIZER_FILE)) return CLLM_TOKENIZER_FILE;
    if (has_file(dir, "tokenizer.json")) return "tokenizer.json";
    if (has_file(dir, "vocab.json") && has_file(dir, "merges.txt")) return "vocab.json + merges.txt";
    return NULL;
}

/* cllm's tokenizer.bin when there is one, else the Hugging Face files
 * (tokenizer.json, or vocab.json + merges.txt: OpenAI's GPT-2 files). */
cllm_status cllm_pretrained_load_tokenizer(const char *dir, cllm_tokenizer **tok) {
    *tok = NULL;
    gpt2_config cfg;
    int32_t eot = -1;
    cllm_status st = cllm_pretrained_read_config(dir, &cfg, &eot);
    if (st == CLLM_OK && !cllm_pretrained_tokenizer_file(dir))
        st = cllm_fail(CLLM_ERR_INPUT, "--init %s: no tokenizer: neither tokenizer.bin, tokenizer.json nor vocab.json "
                       "+ merges.txt (%s)", dir, FOLDER_NEEDS);
    if (st == CLLM_OK) st = cllm_tokenizer_load_any(dir, tok);
    if (st == CLLM_OK && cllm_tokenizer_vocab_size(*tok) != cfg.vocab_size)
        st = cllm_fail(CLLM_ERR_INPUT, "--init %s: the tokenizer has %d tokens but config.json says vocab_size %d", dir,
                       cllm_tokenizer_vocab_size(*tok), cfg.vocab_size);
    if (st == CLLM_OK && eot >= 0 && cllm_tokenizer_eot(*tok) != eot)
        st = cllm_fail(CLLM_ERR_INPUT, "--init %s: the tokenizer's end-of-text id %d differs from config.json "
                       "eos_token_id %d", dir, (int)cllm_tokenizer_eot(*tok), (int)eot);
    if (st != CLLM_OK && *tok) {
        cllm_tokenizer_free(*tok);
        *tok = NULL;
    }
    return st;
}

cllm_status cllm_pretrained_load_weights(const char *dir, gpt2_model *m, char *what, size_t what_len) {
    cllm_status st = require_file(dir, CLLM_MODEL_FILE);
    return st == CLLM_OK ? cllm_checkpoint_fill_model(dir, m, what, what_len) : st;
}
