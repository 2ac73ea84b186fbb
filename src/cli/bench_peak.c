/* TODO(owner): not implemented yet. */
#include <stdio.h>
#include "cllm/cli/commands.h"
int cllm_bench_peak(int argc, char **argv) {
    (void)argc; (void)argv;
    fprintf(stderr, "cllm bench peak: not implemented yet\n");
    return 1;
}
