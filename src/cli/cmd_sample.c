/* cllm sample DIR: generate text from a saved run, streamed as it is produced. */
#include <stdio.h>

#include "cllm/cli/commands.h"
#include "cllm/cli/env.h"
#include "cllm/cli/flags.h"
#include "cllm/train/checkpoint.h"
#include "cllm/train/sampler.h"

int cllm_cmd_sample(int argc, char **argv) {
    const char *prompt = "";
    int tokens = 256, top_k = 0;
    double temperature = 0.8, top_p = 1.0;
    int64_t seed = 1337;
    const cllm_flag flags[] = {
        {"prompt", CLLM_FLAG_STRING, &prompt, "TEXT", "text to continue (default: empty, start of a document)", 1, 0, NULL},
        {"tokens", CLLM_FLAG_INT, &tokens, "N", "tokens to generate (default 256)", 0, 1e8, NULL},
        {"temperature", CLLM_FLAG_DOUBLE, &temperature, "T", "softmax temperature; 0 = greedy (default 0.8)", 0, 100, NULL},
        {"top-k", CLLM_FLAG_INT, &top_k, "K", "sample among the K most likely tokens; 0 = off (default 0)", 0, 1e9, NULL},
        {"top-p", CLLM_FLAG_DOUBLE, &top_p, "P", "nucleus: smallest set with probability >= P; 1 = off (default 1.0)", 1e-9, 1,
         NULL},
        {"seed", CLLM_FLAG_INT64, &seed, "S", "random seed; the same seed gives the same text (default 1337)", 0, 9.2e18,
         NULL},
    };
    const cllm_command_spec spec = {
        "sample", "DIR",
        "Generates text from the model in run folder DIR, streaming each token to stdout as it is\n"
        "produced (KV cache). When the text outgrows the model's context, the window restarts from\n"
        "its last half.",
        flags, (int)(sizeof flags / sizeof flags[0]), 1, 1};
    char *pos[argc > 0 ? argc : 1];
    int npos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &npos));
    if (rc >= 0) return rc;

    gpt2_model m;
    cllm_tokenizer *tok = NULL;
    cllm_status st = cllm_run_load(pos[0], &m, &tok);
    if (st != CLLM_OK) {
        fprintf(stderr, "cllm sample: %s\n", cllm_last_error());
        return (int)st;
    }
    gpt2_use_kernels(&m, cllm_kernel_table_for(cllm_env_simd()));
    cllm_sample_settings set = {(float)temperature, top_k, (float)top_p};
    st = cllm_sample_to_stream(&m, tok, prompt, tokens, &set, (uint64_t)seed, stdout);
    if (st == CLLM_OK) {
        fputc('\n', stdout);
        fflush(stdout);
    } else {
        fprintf(stderr, "cllm sample: %s\n", cllm_last_error());
    }
    gpt2_destroy(&m);
    cllm_tokenizer_free(tok);
    return (int)st;
}
