/* A whole run folder: the input is config.json, model.safetensors and
 * tokenizer.bin separated by FUZZ_SPLIT lines (the tokenizer's checksum fixed
 * up), written into a scratch folder and loaded with cllm_run_load, as eval
 * and sample do. What loads must be consistent: the tokenizer's vocabulary
 * is the model's. A missing piece leaves its file absent. */
#include "cllm/train/checkpoint.h"
#include "fuzz_support.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *parts[3];
    size_t sizes[3];
    int n = fuzz_split(data, size, parts, sizes, 3);
    const char *dir = fuzz_scratch_dir();
    fuzz_write(dir, CLLM_CONFIG_FILE, parts[0], sizes[0]);
    fuzz_write(dir, CLLM_MODEL_FILE, n > 1 ? parts[1] : NULL, n > 1 ? sizes[1] : 0);
    uint8_t *tok = n > 2 ? fuzz_fix_tokenizer(parts[2], sizes[2]) : NULL;
    fuzz_write(dir, CLLM_TOKENIZER_FILE, tok, n > 2 ? sizes[2] : 0);
    free(tok);
    gpt2_model model;
    cllm_tokenizer *t = NULL;
    if (cllm_run_load(dir, &model, &t) == CLLM_OK) {
        FUZZ_ASSERT(t != NULL && cllm_tokenizer_vocab_size(t) == model.cfg.vocab_size, "tokenizer matches model");
        cllm_tokenizer_free(t);
        gpt2_destroy(&model);
    } else {
        FUZZ_ASSERT(t == NULL, "nothing left after an error");
    }
    return 0;
}
