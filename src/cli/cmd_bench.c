#include <stdio.h>
#include <string.h>

#include "cllm/cli/commands.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} bench_command;

static const bench_command benches[] = {
    {"reduce", cllm_bench_reduce, "GB/s of the gradient reduction kernels vs memcpy and STREAM-add"},
    {"matmul", cllm_bench_matmul, "GFLOP/s of the matmul kernels vs OpenBLAS on the model's shapes"},
    {"peak", cllm_bench_peak, "the core's measured FMA peak and memory bandwidth"},
    {"step", cllm_bench_step, "tokens/s of a full training step at 1..N threads (and vs PyTorch)"},
    {"encode", cllm_bench_encode, "MB/s of encoding a corpus on 1 and N threads vs one call per document"},
};
static const int n_benches = (int)(sizeof benches / sizeof benches[0]);

static void usage(FILE *out) {
    fprintf(out, "usage: cllm bench WHAT [OPTIONS]\n\nBenchmarks; every figure is a ratio measured in the same run.\n\n");
    for (int i = 0; i < n_benches; i++) fprintf(out, "  %-8s %s\n", benches[i].name, benches[i].summary);
    fprintf(out, "\nRun 'cllm bench WHAT --help' for its options.\n");
}

int cllm_cmd_bench(int argc, char **argv) {
    if (argc < 1) { /* a usage error like any other: one line, not the whole help */
        fprintf(stderr, "cllm bench: missing benchmark (");
        for (int i = 0; i < n_benches; i++) fprintf(stderr, "%s%s", i ? ", " : "", benches[i].name);
        fprintf(stderr, "; see cllm bench --help)\n");
        return 2;
    }
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < n_benches; i++)
        if (strcmp(argv[0], benches[i].name) == 0) return benches[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cllm bench: unknown benchmark '%s' (see cllm bench --help)\n", argv[0]);
    return 2;
}
