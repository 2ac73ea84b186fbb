/* TODO(owner): not implemented yet. */
#include <stdio.h>
#include "cllm/cli/commands.h"
int cllm_cmd_tokenizer(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "cllm tokenizer: not implemented yet\n");
    return 1;
}
