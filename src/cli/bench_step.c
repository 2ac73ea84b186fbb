/* TODO(owner): not implemented yet. */
#include <stdio.h>
#include "cllm/cli/commands.h"
int cllm_bench_step(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "cllm bench step: not implemented yet\n");
    return 1;
}
