/* The settings of a training run, declared once.
 *
 * cllm_train_option_table lists every setting a run records: its flag, its
 * run.json key, its type and place in cllm_train_options, its default, its
 * range, its help line, and what --resume may do with it. The command line
 * (src/cli/cmd_train.c) builds its flags, defaults, ranges, --help and the
 * "cannot change with --resume" rule from it; run.json is written and read
 * from it (below). Adding a setting is one row here. */
#ifndef CLLM_TRAIN_OPTIONS_H
#define CLLM_TRAIN_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/dist/comm.h"
#include "cllm/kernels/kernels.h"
#include "cllm/models/gpt2.h"

typedef struct {
    /* data: n_data == 0 means the built-in corpus */
    char **data_paths;
    int n_data;
    double val_fraction;
    /* model */
    gpt2_config model;
    const char *init_dir; /* --init: the Hugging Face GPT-2 folder the weights and tokenizer start from; NULL: a
                             fresh model from the seed */
    int pretokenize; /* cllm_pretok of a new run's tokenizer (a resumed run keeps tokenizer.bin's) */
    /* batch: one optimizer step sees batch * grad_accum sequences, computed as
     * (batch / micro) * grad_accum micro-batches of `micro` sequences */
    int batch, micro, grad_accum;
    /* budget: exactly one of these is > 0 */
    int64_t steps;
    double epochs;
    int64_t tokens;
    int64_t stop_after; /* 0: run the whole budget */
    int64_t total_steps; /* the budget in steps as the trainer resolved it: run.json's "total_steps", for
                            `cllm runs`; not a setting (0: not known) */
    /* optimizer */
    double lr, min_lr, weight_decay, clip; /* clip 0: off */
    int64_t warmup; /* < 0: 5% of the budget, at most 100 steps */
    uint64_t seed;
    /* cadence, in steps; 0 = never (eval, save and sample still happen at the end) */
    int64_t eval_every, sample_every, save_every, log_every;
    int64_t eval_tokens; /* predicted tokens per validation pass; 0: all; < 0: cllm_train_eval_cap's default */
    int sample_tokens; /* tokens of the final sample */
    int precision;     /* CLLM_PRECISION_FP32 or CLLM_PRECISION_BF16 (frozen on resume) */
    const char *out_dir;
    const char *tokenizer_path; /* --tokenizer: reuse this file instead of training one (fresh runs; the run keeps
                                   a copy as tokenizer.bin); NULL: train one */
    int quiet, verbose;
    /* How this process runs, from the environment (the CLI reads it: the
     * library never calls getenv); not recorded in run.json. */
    int segments_per_thread; /* CLLM_SEGMENTS; 0: 1 */
    int no_streaming;        /* CLLM_STREAMING=0: reduce after all compute */
    int grad_window;         /* CLLM_GRAD_WINDOW; 0: the engine's default */
    int teams, team_threads; /* CLLM_TEAM or OMP_NUM_THREADS=A,B; 0, 0: from model size and memory */
    const char *progress;    /* CLLM_PROGRESS; NULL: "auto" */
    int columns;             /* COLUMNS, for a terminal that does not say its width; 0: unset */
    double peak_gflops;      /* CLLM_PEAK_GFLOPS per core; 0: measured */
    /* The kernels the model and the engine run on (the CLI passes the table
     * CLLM_SIMD names); NULL: cllm_kernel_table_best(). Not in run.json: it
     * belongs to the machine, not to the run. */
    const cllm_kernel_table *kernels;
    /* The job's ranks (the CLI passes MPI's under mpirun); NULL: this
     * process alone. Rank 0 writes the run folder and prints; every rank
     * reads the data and trains the same tokenizer. Not in run.json. */
    const cllm_comm *comm;
} cllm_train_options;

typedef enum {
    CLLM_OPT_INT,    /* int */
    CLLM_OPT_INT64,  /* int64_t (uint64_t for the seed: its range keeps it non-negative) */
    CLLM_OPT_DOUBLE, /* double */
    CLLM_OPT_PATH,   /* const char *: a file or folder, NULL when not given; absolute (or null) in run.json */
    CLLM_OPT_CHOICE  /* int: the index of one of the names "a|b|c" in metavar, written by name in run.json; a
                        run.json from before the row existed means the first name */
} cllm_opt_type;

/* --precision: fp32 everywhere, or bf16 matrix products with fp32 master
 * weights (docs/BF16.md). */
enum { CLLM_PRECISION_FP32 = 0, CLLM_PRECISION_BF16 = 1 };

typedef enum {
    CLLM_OPT_FROZEN, /* would change the model or its data: refused with --resume */
    CLLM_OPT_FREE,   /* may change with --resume (then the continuation is no longer bitwise that of one run) */
    CLLM_OPT_BUDGET  /* one of --steps/--epochs/--tokens: giving one on --resume replaces the budget */
} cllm_opt_resume;

/* --lr's default when --init starts from a trained model (see the row). */
#define CLLM_INIT_LR 1e-4

/* Defaults that are not a number of their own. */
#define CLLM_OPT_FROM_PRESET (-1e300) /* the model shape: from --preset */
#define CLLM_OPT_DERIVED (-2e300)     /* computed from other settings (min_lr = lr / 10) */

typedef struct {
    const char *flag;    /* "grad-accum" (without dashes) */
    const char *key;     /* run.json key: "grad_accum" */
    cllm_opt_type type;
    size_t offset;       /* in cllm_train_options */
    double fresh;        /* default of a new run (budget: 0 = not the default budget) */
    double min, max;     /* accepted range, on the command line and in run.json */
    const char *metavar; /* "N", "X" */
    const char *help;    /* one line for --help */
    cllm_opt_resume resume;
} cllm_train_option;

extern const cllm_train_option cllm_train_option_table[];
extern const int cllm_train_option_count;

/* The address of option `opt`'s field in o. */
void *cllm_train_option_field(cllm_train_options *o, const cllm_train_option *opt);
/* A numeric row's value; for a CLLM_OPT_PATH row, 1 when a path is set and
 * 0 when not (set with 0 clears it; its path is cllm_train_option_path). */
double cllm_train_option_get(const cllm_train_options *o, const cllm_train_option *opt);
void cllm_train_option_set(cllm_train_options *o, const cllm_train_option *opt, double v);
const char *cllm_train_option_path(const cllm_train_options *o, const cllm_train_option *opt);
/* The index-th name of a CLLM_OPT_CHOICE row into buf ("" when out of range); and a name's index, or -1. */
void cllm_train_option_choice_name(const cllm_train_option *opt, int index, char *buf, size_t n);
int cllm_train_option_choice_index(const cllm_train_option *opt, const char *name);

/* Defaults of a new run for every option that has a number of its own. */
void cllm_train_options_defaults(cllm_train_options *o);

/* run.json: every option of the table (paths as given, or null: make them
 * absolute first), the data paths (as given: make them absolute first, or
 * "builtin"), the corpus size and hash. Crash-safe. */
cllm_status cllm_run_json_write(const char *dir, const cllm_train_options *o, uint64_t corpus_hash,
                                size_t corpus_bytes);
/* Reads DIR/run.json into *o (data_paths and the path rows malloc'd: free
 * with cllm_train_options_free_paths; out_dir points to nothing: the caller
 * sets it). A path row's key may be absent (folders written before the row
 * existed): NULL. Missing or malformed file, a value outside its range:
 * CLLM_ERR_INPUT naming the file and the key. */
cllm_status cllm_run_json_read(const char *dir, cllm_train_options *o, uint64_t *corpus_hash,
                               size_t *corpus_bytes);
void cllm_train_options_free_paths(cllm_train_options *o);

#endif
