/* cllm export RUN --gguf FILE [--dtype f32|f16]: the run's model and tokenizer
 * as one GGUF file for llama.cpp (include/cllm/train/export.h). */
#include <stdio.h>
#include <string.h>

#include "cllm/cli/commands.h"
#include "cllm/cli/flags.h"
#include "cllm/train/export.h"

int cllm_cmd_export(int argc, char **argv) {
    const char *gguf = NULL, *dtype = "f32";
    const cllm_flag flags[] = {
        {"gguf", CLLM_FLAG_STRING, &gguf, "FILE", "write a GGUF file for llama.cpp (required)", 1, 0, NULL},
        {"dtype", CLLM_FLAG_STRING, &dtype, "f32|f16",
         "type of the weight matrices; norms, biases and positions stay f32 (default f32)", 1, 0, NULL},
    };
    const cllm_command_spec spec = {
        "export", "RUN --gguf FILE",
        "Writes the model and tokenizer of run folder RUN as a GGUF file (version 3) that llama.cpp\n"
        "loads as a GPT-2: llama.cpp's tensor names and layout, the tokenizer as GPT-2 BPE. The run's\n"
        "tokenizer must use GPT-2 pre-tokenization (cllm train --pretokenize gpt2).",
        flags, (int)(sizeof flags / sizeof flags[0]), 1, 1};
    char *pos[argc > 0 ? argc : 1];
    int npos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &npos));
    if (rc >= 0) return rc;
    if (!gguf) {
        fprintf(stderr, "cllm export: missing --gguf FILE (the file to write; see cllm export --help)\n");
        return 2;
    }
    if (strcmp(dtype, "f32") != 0 && strcmp(dtype, "f16") != 0) {
        fprintf(stderr, "cllm export: --dtype must be f32 or f16, not '%s'\n", dtype);
        return 2;
    }
    if ((rc = cllm_flags_check_output_file("export", "--gguf", gguf)) >= 0) return rc;
    cllm_export_dtype dt = strcmp(dtype, "f16") == 0 ? CLLM_EXPORT_F16 : CLLM_EXPORT_F32;
    cllm_export_summary s;
    /* A stop request abandons the file: FILE stays as it was, no temporary beside it (exit 130). */
    cllm_stop_catch(1);
    cllm_status st = cllm_export_gguf(pos[0], gguf, dt, &s);
    cllm_stop_release();
    if (st != CLLM_OK) {
        fprintf(stderr, "cllm export: %s\n", cllm_last_error());
        return (int)st;
    }
    printf("gguf: %d tensors (%d F16), %d tokens, %d merges, %llu bytes -> %s\n", s.n_tensors, s.n_f16, s.n_tokens,
           s.n_merges, (unsigned long long)s.bytes, gguf);
    return 0;
}
