/* cllm: train small GPT-2-style language models on the CPU with OpenMP. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cllm/cli/commands.h"
#include "cllm/cli/env.h"
#include "cllm/cli/ranks.h"
#include "cllm/base/common.h"
#include "cllm/base/build_config.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    /* Under mpirun with several ranks: 1, every rank runs it together (it
     * knows ranks); 0, rank 0 alone runs it and the others exit 0. */
    int ranks;
} command;

static const command commands[] = {
    {"train", cllm_cmd_train, "train a tokenizer and a GPT-2-style model on text files or folders", 1},
    {"eval", cllm_cmd_eval, "loss and perplexity of a saved model on text", 0},
    {"sample", cllm_cmd_sample, "generate text from a saved model", 0},
    {"export", cllm_cmd_export, "write a run's model and tokenizer as a GGUF file for llama.cpp", 0},
    {"tokenizer", cllm_cmd_tokenizer, "train, encode with, or decode with a byte-level BPE tokenizer", 0},
    {"plot", cllm_cmd_plot, "draw the loss curves of one or more runs to a PNG", 0},
    {"runs", cllm_cmd_runs, "list run folders: state, step, losses, tokens, time", 0},
    {"bench", cllm_cmd_bench, "measure kernels, reduction, and training steps", 1},
    {"info", cllm_cmd_info, "CPU features, SIMD path, OpenMP runtime and settings in force", 1},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *out) {
    fprintf(out, "usage: cllm COMMAND [OPTIONS] [ARGS]\n\n"
                 "Trains small GPT-2-style language models on the CPU, parallelised with OpenMP.\n\n"
                 "commands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'cllm help COMMAND' (or 'cllm COMMAND --help') for the options of a command.\n"
                 "Threads come from OMP_NUM_THREADS, the worker schedule from OMP_SCHEDULE,\n"
                 "binding from OMP_PROC_BIND/OMP_PLACES; cllm's own settings are CLLM_* variables\n"
                 "(see README.md).\n");
}

/* libgomp reads OMP_* in its constructor, which runs before main and prints
 * its own complaint about a malformed value; functions in the executable's
 * .preinit_array run before any library constructor, so cllm rejects the
 * value first with one line of its own. */
__attribute__((section(".preinit_array"), used)) static void (*const check_openmp_env_early)(int, char **, char **) =
    cllm_env_preinit;

/* Signals whose default action kills the process in the middle of a write.
 * Ignored, the write fails instead (EPIPE when the reader of stdout has gone,
 * as in `cllm train | head`; EFBIG past `ulimit -f`) and the normal error
 * path runs: temporaries are removed, training goes on without printing or
 * stops with one line. */
static void ignore_write_killers(void) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
}

int main(int argc, char **argv) {
    ignore_write_killers();
    if (argc < 2) { /* a usage error like any other: one line, not the whole help */
        fprintf(stderr, "cllm: missing command (");
        for (int i = 0; i < n_commands; i++) fprintf(stderr, "%s%s", i ? ", " : "", commands[i].name);
        fprintf(stderr, "; see cllm --help)\n");
        return 2;
    }
    const char *name = argv[1];
    /* `cllm help COMMAND` is `cllm COMMAND --help`. */
    char help_flag[] = "--help";
    char *help_argv[4] = {argv[0], argc > 2 ? argv[2] : NULL, help_flag, NULL};
    if (strcmp(name, "help") == 0 && argc > 3) {
        fprintf(stderr, "cllm: unexpected argument '%s' (usage: cllm help [COMMAND])\n", argv[3]);
        return 2;
    }
    if (strcmp(name, "help") == 0 && argc == 3 && strcmp(argv[2], "help") != 0) {
        argc = 3;
        argv = help_argv;
        name = argv[1];
    } else if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0) {
        printf("cllm %s\n", CLLM_VERSION);
        return 0;
    }
    for (int i = 0; i < n_commands; i++) {
        if (strcmp(name, commands[i].name) != 0) continue;
        /* Before anything touches the OpenMP runtime. */
        if (cllm_env_check() != CLLM_OK) {
            fprintf(stderr, "cllm: %s\n", cllm_last_error());
            return 2;
        }
        cllm_env_apply_openmp_defaults();
        /* Under mpirun: MPI starts here, on the thread that will make every MPI call. */
        if (cllm_ranks_start() != CLLM_OK) {
            fprintf(stderr, "cllm: %s%s\n", cllm_ranks_prefix(), cllm_last_error());
            cllm_ranks_finish(2);
            return 2;
        }
        if (!commands[i].ranks && cllm_ranks_comm()->rank != 0) { /* one copy of its output, one writer */
            cllm_ranks_finish(0);
            return 0;
        }
        int rc = commands[i].run(argc - 2, argv + 2);
        cllm_ranks_finish(rc);
        return rc;
    }
    fprintf(stderr, "cllm: unknown command '%s' (see cllm --help)\n", name);
    return 2;
}
