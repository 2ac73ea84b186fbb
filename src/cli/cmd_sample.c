/* TODO(owner): not implemented yet. */
#include <stdio.h>
#include "cllm/cli/commands.h"
int cllm_cmd_sample(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "cllm sample: not implemented yet\n");
    return 1;
}
