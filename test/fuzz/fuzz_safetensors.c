/* safetensors parsing (cllm_st_parse) on arbitrary bytes, then the two ways
 * cllm reads such a file: as model.safetensors (cllm_checkpoint_load_model,
 * beside a fixed config.json that the model seed matches) and
 * the way resume reads optimizer.safetensors (lookups by name, dtype and
 * element count, then copies out). Every tensor must lie inside the file. */
#include <string.h>

#include "cllm/train/checkpoint.h"
#include "cllm/io/safetensors.h"
#include "fuzz_support.h"

/* The config.json of make_seeds.sh's run (the tiny preset narrowed to
 * 1 layer x 8 wide, T 8, 300 tokens), so the model seed loads. */
static const char seed_config[] =
    "{\"model_type\":\"gpt2\",\"n_layer\":1,\"n_head\":2,\"n_embd\":8,\"n_positions\":8,\"n_ctx\":8,"
    "\"vocab_size\":300,\"bos_token_id\":299,\"eos_token_id\":299,\"activation_function\":\"gelu_new\","
    "\"layer_norm_epsilon\":1e-05,\"tie_word_embeddings\":true}";

static volatile unsigned char sink;

static void touch_every_tensor(const cllm_st_file *f, size_t size) {
    unsigned char x = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const cllm_st_tensor *t = &f->tensors[i];
        const unsigned char *p = t->data;
        FUZZ_ASSERT(t->nbytes == t->numel * cllm_st_dtype_size(t->dtype), "nbytes = numel * dtype size");
        FUZZ_ASSERT(p >= f->bytes && t->nbytes <= size && p - f->bytes <= (ptrdiff_t)(size - t->nbytes),
                    "tensor inside the file");
        FUZZ_ASSERT(cllm_st_find(f, t->name) == t, "names unique and found");
        for (size_t b = 0; b < t->nbytes; b++) x ^= p[b];
    }
    sink = x;
}

/* What resume does with optimizer.safetensors (src/train/trainer.c). */
static void read_like_the_optimizer(const cllm_st_file *f) {
    static const char *const u64_names[] = {"params_hash", "step", "data_window", "rng_state"};
    uint64_t u[4] = {0};
    for (int i = 0; i < 4; i++) {
        const cllm_st_tensor *t = cllm_st_find(f, u64_names[i]);
        if (t && t->dtype == CLLM_ST_U64 && t->numel <= 4) memcpy(u, t->data, t->numel * sizeof *u);
    }
    static float m[4096];
    const cllm_st_tensor *t = cllm_st_find(f, "adamw.m");
    if (t && t->dtype == CLLM_ST_F32 && t->numel <= 4096) memcpy(m, t->data, t->numel * sizeof *m);
    (void)cllm_st_metadata(f, "step");
    unsigned char first_m[sizeof m[0]];
    memcpy(first_m, m, sizeof first_m); /* the bits: a float may not fit a byte */
    sink ^= (unsigned char)(u[0] ^ first_m[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cllm_st_file f;
    if (cllm_st_parse(data, size, "fuzz", &f) == CLLM_OK) {
        touch_every_tensor(&f, size);
        read_like_the_optimizer(&f);
        for (int i = 0; i < f.n_meta; i++) FUZZ_ASSERT(cllm_st_metadata(&f, f.meta_keys[i]) != NULL, "metadata found");
    } else {
        FUZZ_ASSERT(f.n_tensors == 0 && f.tensors == NULL, "nothing left after an error");
    }
    cllm_st_close(&f);
    const char *dir = fuzz_scratch_dir();
    fuzz_write(dir, CLLM_CONFIG_FILE, seed_config, sizeof seed_config - 1);
    fuzz_write(dir, CLLM_MODEL_FILE, data, size);
    gpt2_model model;
    if (cllm_checkpoint_load_model(dir, &model) == CLLM_OK) {
        FUZZ_ASSERT(model.cfg.n_embd == 8 && model.n_params > 0, "the model config.json describes");
        gpt2_destroy(&model);
    }
    return 0;
}
