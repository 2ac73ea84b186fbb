/* TODO(owner): not implemented yet. */
#include <stdio.h>
#include "cllm/cli/commands.h"
int cllm_cmd_info(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "cllm info: not implemented yet\n");
    return 1;
}
