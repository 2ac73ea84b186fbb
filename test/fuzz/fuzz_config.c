/* The readers of a run folder's JSON files: config.json
 * (cllm_checkpoint_read_config) and run.json (cllm_run_json_read), both fed
 * the fuzz input as the file. Accepted settings must be in their documented
 * ranges. */
#include <string.h>

#include "cllm/train/checkpoint.h"
#include "cllm/train/trainer.h"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *dir = fuzz_scratch_dir();
    fuzz_write(dir, CLLM_CONFIG_FILE, data, size);
    gpt2_config cfg;
    int32_t eot = -2;
    if (cllm_checkpoint_read_config(dir, &cfg, &eot) == CLLM_OK) {
        FUZZ_ASSERT(cfg.n_layer > 0 && cfg.n_head > 0 && cfg.n_embd > 0 && cfg.seq_len > 0 && cfg.vocab_size > 0,
                    "positive sizes");
        FUZZ_ASSERT(cfg.n_embd % cfg.n_head == 0, "n_embd a multiple of n_head");
        FUZZ_ASSERT(eot >= -1 && eot < cfg.vocab_size, "eos_token_id in the vocabulary");
    }
    fuzz_write(dir, CLLM_RUN_FILE, data, size);
    cllm_train_options o;
    memset(&o, 0, sizeof o);
    uint64_t hash = 0;
    size_t bytes = 0;
    if (cllm_run_json_read(dir, &o, &hash, &bytes) == CLLM_OK) {
        FUZZ_ASSERT(o.n_data >= 0 && (o.n_data == 0 || o.data_paths != NULL), "data paths");
        for (int i = 0; i < o.n_data; i++) FUZZ_ASSERT(o.data_paths[i] != NULL, "each data path set");
        cllm_train_options_free_paths(&o);
    }
    return 0;
}
