/* cllm train: flags, presets, validation and --resume, then cllm_train().
 *
 * Everything the user can get wrong is checked here, before anything is
 * written, so a bad command line is one line on stderr, exit 2, and no run
 * folder. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/cli/commands.h"
#include "cllm/cli/env.h"
#include "cllm/cli/ranks.h"
#include "cllm/cli/flags.h"
#include "cllm/data/tokenizer.h"
#include "cllm/base/memory.h"
#include "cllm/dist/engine.h"
#include "cllm/train/pretrained.h"
#include "cllm/report/progress.h"
#include "cllm/train/step.h"
#include "cllm/train/trainer.h"

typedef struct {
    const char *name;
    int n_layer, n_head, n_embd, seq_len;
    const char *lr;   /* the --lr to start from */
    const char *note; /* where that figure comes from */
} preset;

/* "default" is what `cllm train` with no arguments uses: sized so the whole
 * default run (below) finishes in about 3 minutes on 2 cores. */
static const preset presets[] = {
    {"default", 4, 4, 128, 128, "3e-3", "the default run, docs/RESULTS.md"},
    {"tiny", 2, 2, 32, 32, "3e-3", "for tests; learns little"},
    {"S", 4, 4, 256, 256, "3e-3", "docs/RESULTS.md: best validation at ~1000 steps"},
    {"M", 6, 6, 384, 256, "1e-3", "not measured here: wider models want a lower rate"},
};

/* The presets for --help: shape, parameters at the default vocabulary and
 * the suggested learning rate. */
static void describe_presets(char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "\n\npresets (--preset NAME; parameters with --vocab %d):\n",
                                CLLM_TOKENIZER_DEFAULT_VOCAB);
    for (size_t i = 0; i < sizeof presets / sizeof presets[0] && k < n; i++) {
        const preset *p = &presets[i];
        gpt2_config c = {p->n_layer, p->n_head, p->n_embd, p->seq_len, CLLM_TOKENIZER_DEFAULT_VOCAB};
        char params[32];
        cllm_progress_count((size_t)gpt2_param_count_estimate(&c), params, sizeof params);
        k += (size_t)snprintf(buf + k, n - k, "%s  %-8s %d layers x %d, %d heads, context %d: %10s parameters, --lr %s (%s)",
                              i ? "\n" : "", p->name, p->n_layer, p->n_embd, p->n_head, p->seq_len, params, p->lr,
                              p->note);
    }
}

static const preset *find_preset(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(presets[i].name, name) == 0) return &presets[i];
    return NULL;
}

/* The flags of `cllm train`: one per row of cllm_train_option_table
 * (include/cllm/train/options.h), then those of this command alone. */
enum { MAX_FLAGS = 64 };

typedef struct {
    cllm_train_options given; /* values parsed from the command line (or defaults) */
    int seen[MAX_FLAGS];      /* seen[i]: table row i was given */
    const char *out, *resume, *preset_name, *tokenizer;
    int seen_out, seen_preset, seen_stop_after;
    int64_t stop_after;
    int quiet, verbose;
} train_flags;

static int fail_line(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "cllm train: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

static cllm_flag_kind flag_kind(cllm_opt_type t) {
    switch (t) {
    case CLLM_OPT_INT: return CLLM_FLAG_INT;
    case CLLM_OPT_INT64: return CLLM_FLAG_INT64;
    case CLLM_OPT_DOUBLE: return CLLM_FLAG_DOUBLE;
    case CLLM_OPT_PATH: return CLLM_FLAG_STRING;
    case CLLM_OPT_CHOICE: return CLLM_FLAG_CHOICE;
    }
    return CLLM_FLAG_DOUBLE;
}

/* The table's rows, then --preset, --stop-after, --out, --resume, --quiet, --verbose. */
static int build_flags(train_flags *f, cllm_flag *flags) {
    int n = 0;
    for (int i = 0; i < cllm_train_option_count; i++) {
        const cllm_train_option *opt = &cllm_train_option_table[i];
        flags[n++] = (cllm_flag){opt->flag, flag_kind(opt->type), cllm_train_option_field(&f->given, opt), opt->metavar,
                                 opt->help, opt->min, opt->max, &f->seen[i]};
    }
    flags[n++] = (cllm_flag){"preset", CLLM_FLAG_STRING, &f->preset_name, "NAME",
                             "model size: tiny, S, M (above); default: 4 layers x 128, T 128", 1, 0,
                             &f->seen_preset};
    flags[n++] = (cllm_flag){"tokenizer", CLLM_FLAG_STRING, &f->tokenizer, "FILE",
                             "reuse this tokenizer (cllm tokenizer train -o FILE, or a run's tokenizer.bin) instead "
                             "of training one; --vocab, if given, must match it",
                             1, 0, NULL};
    flags[n++] = (cllm_flag){"stop-after", CLLM_FLAG_INT64, &f->stop_after, "K",
                             "end at step K, keeping the full budget's schedule (resume later)", 1, 1e12,
                             &f->seen_stop_after};
    flags[n++] = (cllm_flag){"out", CLLM_FLAG_STRING, &f->out, "DIR", "run folder (default runs/YYYYmmdd-HHMMSS)", 1, 0,
                             &f->seen_out};
    flags[n++] = (cllm_flag){"resume", CLLM_FLAG_STRING, &f->resume, "DIR",
                             "continue the run in DIR from its last checkpoint", 1, 0, NULL};
    flags[n++] = (cllm_flag){"quiet", CLLM_FLAG_BOOL, &f->quiet, NULL,
                             "no start-up summary and no progress (CLLM_PROGRESS overrides)", 1, 0, NULL};
    flags[n++] = (cllm_flag){"verbose", CLLM_FLAG_BOOL, &f->verbose, NULL,
                             "per step: worker compute min/median/max, reduction, exposed share, atomics, utilisation", 1,
                             0, NULL};
    return n;
}

static int budget_flags_given(const train_flags *f) {
    int n = 0;
    for (int i = 0; i < cllm_train_option_count; i++) n += f->seen[i] && cllm_train_option_table[i].resume == CLLM_OPT_BUDGET;
    return n;
}

/* The first flag that would change the model or its data: refused with --resume. */
static const char *frozen_flag_given(const train_flags *f, int n_data) {
    for (int i = 0; i < cllm_train_option_count; i++)
        if (f->seen[i] && cllm_train_option_table[i].resume == CLLM_OPT_FROZEN) return cllm_train_option_table[i].flag;
    if (f->seen_preset) return "preset";
    if (f->tokenizer) return "tokenizer";
    if (n_data > 0) return "DATA";
    return NULL;
}

/* The budget rows: the one given (the others 0), or the fresh default. */
static void apply_budget(const train_flags *f, cllm_train_options *o, int use_default) {
    for (int i = 0; i < cllm_train_option_count; i++) {
        const cllm_train_option *opt = &cllm_train_option_table[i];
        if (opt->resume != CLLM_OPT_BUDGET) continue;
        double v = f->seen[i] ? cllm_train_option_get(&f->given, opt) : use_default ? opt->fresh : 0;
        cllm_train_option_set(o, opt, v);
    }
}

/* --resume: run.json's settings, with those given now that may change. */
static void apply_overrides(const train_flags *f, cllm_train_options *o) {
    if (budget_flags_given(f)) apply_budget(f, o, 0);
    for (int i = 0; i < cllm_train_option_count; i++) {
        const cllm_train_option *opt = &cllm_train_option_table[i];
        if (f->seen[i] && opt->resume == CLLM_OPT_FREE) cllm_train_option_set(o, opt, cllm_train_option_get(&f->given, opt));
    }
}

/* The row of the option stored at `offset`. */
static const cllm_train_option *option_at(size_t offset) {
    for (int i = 0; i < cllm_train_option_count; i++)
        if (cllm_train_option_table[i].offset == offset) return &cllm_train_option_table[i];
    CLLM_ASSERT(!"an option of cllm_train_option_table");
    return NULL;
}

/* Whether the flag of the option stored at `offset` was given. */
static int option_given(const train_flags *f, size_t offset) {
    return f->seen[option_at(offset) - cllm_train_option_table];
}

#define GIVEN(field) option_given(f, offsetof(cllm_train_options, field))

/* --tokenizer FILE: the run's vocabulary is the file's; a --vocab that says
 * otherwise is refused here, before anything is read or written. */
static int use_tokenizer_file(const train_flags *f, cllm_train_options *o) {
    cllm_tokenizer *tok = NULL;
    if (!*f->tokenizer) return fail_line("--tokenizer needs a file name, not an empty string%s%s", "", "");
    if (cllm_tokenizer_load(f->tokenizer, &tok) != CLLM_OK) return fail_line("%s%s", cllm_last_error(), "");
    int vocab = cllm_tokenizer_vocab_size(tok);
    cllm_pretok mode = cllm_tokenizer_pretokenizer(tok);
    cllm_tokenizer_free(tok);
    /* The file's tokenizer keeps the pre-tokenization it was trained with, and
       run.json records that one. */
    if (GIVEN(pretokenize) && o->pretokenize != (int)mode) {
        fprintf(stderr, "cllm train: --pretokenize %s does not match --tokenizer %s (trained with %s): drop --pretokenize\n",
                cllm_pretok_name((cllm_pretok)o->pretokenize), f->tokenizer, cllm_pretok_name(mode));
        return 2;
    }
    o->pretokenize = (int)mode;
    if (GIVEN(model.vocab_size) && o->model.vocab_size != vocab) {
        char given[32], has[64];
        snprintf(given, sizeof given, "%d", o->model.vocab_size);
        snprintf(has, sizeof has, "%d tokens", vocab);
        fprintf(stderr, "cllm train: --vocab %s does not match --tokenizer %s (%s): drop --vocab or give %d\n", given,
                f->tokenizer, has, vocab);
        return 2;
    }
    o->model.vocab_size = vocab;
    o->tokenizer_path = f->tokenizer;
    return 0;
}

/* A new run: every row as given or by default, the shape from the preset. */
static void fill_fresh(const train_flags *f, const preset *p, char **data, int n_data, cllm_train_options *o) {
    *o = f->given;
    o->data_paths = data;
    o->n_data = n_data;
    if (!GIVEN(model.n_layer)) o->model.n_layer = p->n_layer;
    if (!GIVEN(model.n_head)) o->model.n_head = p->n_head;
    if (!GIVEN(model.n_embd)) o->model.n_embd = p->n_embd;
    if (!GIVEN(model.seq_len)) o->model.seq_len = p->seq_len;
    apply_budget(f, o, !budget_flags_given(f));
    if (!GIVEN(min_lr)) o->min_lr = o->lr / 10.0;
}

/* --init: the model's shape is the folder's config.json. A shape flag that
 * agrees with it is accepted, one that contradicts it refused, and --preset
 * (a shape of cllm's own), --pretokenize and --tokenizer (the tokenizer is
 * the folder's) too. --lr defaults lower (CLLM_INIT_LR): the
 * model is trained already. Returns 0, or the exit status after one line. */
static int apply_init(const train_flags *f, cllm_train_options *o) {
    if (f->seen_preset)
        return fail_line("--preset cannot be combined with --init: the model's shape comes from %s/config.json%s",
                         o->init_dir, "");
    if (!*o->init_dir) return fail_line("--init needs a folder name, not an empty string%s%s", "", "");
    if (GIVEN(pretokenize) || f->tokenizer)
        return fail_line("%s cannot be combined with --init: the tokenizer comes from %s",
                         f->tokenizer ? "--tokenizer" : "--pretokenize", o->init_dir);
    gpt2_config cfg;
    if (cllm_pretrained_read_config(o->init_dir, &cfg, NULL) != CLLM_OK) return fail_line("%s%s", cllm_last_error(), "");
    const struct {
        size_t at;       /* in cllm_train_options */
        int has;         /* the folder's value */
        const char *key; /* config.json's name for it */
    } shape[] = {
        {offsetof(cllm_train_options, model.n_layer), cfg.n_layer, "n_layer"},
        {offsetof(cllm_train_options, model.n_head), cfg.n_head, "n_head"},
        {offsetof(cllm_train_options, model.n_embd), cfg.n_embd, "n_embd"},
        {offsetof(cllm_train_options, model.seq_len), cfg.seq_len, "n_positions"},
        {offsetof(cllm_train_options, model.vocab_size), cfg.vocab_size, "vocab_size"},
    };
    for (size_t i = 0; i < sizeof shape / sizeof shape[0]; i++) {
        const cllm_train_option *opt = option_at(shape[i].at);
        char a[512], b[512];
        /* run.json holds the shape in the rows' ranges: a folder outside them could not resume */
        if (shape[i].has < opt->min || shape[i].has > opt->max) {
            snprintf(a, sizeof a, "%s/config.json: %s %d", o->init_dir, shape[i].key, shape[i].has);
            snprintf(b, sizeof b, "%.0f..%.0f", opt->min, opt->max);
            return fail_line("%s is outside what cllm train takes (%s)", a, b);
        }
        int given = *(const int *)((const char *)o + shape[i].at);
        if (!option_given(f, shape[i].at) || given == shape[i].has) continue;
        snprintf(a, sizeof a, "--%s %d", opt->flag, given);
        snprintf(b, sizeof b, "%s/config.json (%s %d): --init keeps the folder's architecture", o->init_dir,
                 shape[i].key, shape[i].has);
        return fail_line("%s contradicts %s", a, b);
    }
    o->model = cfg;
    if (!GIVEN(lr)) o->lr = CLLM_INIT_LR;
    if (!GIVEN(min_lr)) o->min_lr = o->lr / 10.0;
    return 0;
}

#undef GIVEN

/* A rough peak of what a run allocates, so that a model that cannot fit is
 * refused here (exit 2, with the figure) instead of failing in malloc or being
 * OOM-killed part-way: with P parameters (4 bytes each) it counts the model
 * (and its 2-byte bf16 copy with --precision bf16), AdamW's two moments, the engine's gradient buffers (one per team plus a
 * few in flight, never more than the micro-batches: teams + 2 + log2(M),
 * at most M; cllm_engine_pool_buffers), one activation arena per team for
 * --micro sequences (the team shape given, or the default, which shrinks the
 * teams count until this fits), and on
 * --resume the checkpoint being read (model and optimizer files, read whole,
 * and a second copy of the model: 4P). The corpus, tokens and validation
 * windows are not counted (they are not known yet, and small beside the
 * model whenever this check matters). */
static cllm_status training_fits_memory(const cllm_train_options *o, int resume) {
    int threads = omp_get_max_threads(), teams = o->teams, team_threads = o->team_threads;
    int micro_batches = o->batch / o->micro * o->grad_accum;
    if (teams <= 0)
        cllm_step_team_default(&o->model, o->micro, micro_batches, o->grad_window, threads,
                               (double)cllm_memory_available(), &teams, &team_threads);
    double P = gpt2_param_count_estimate(&o->model);
    double buffers = cllm_engine_pool_buffers(micro_batches, teams, o->grad_window);
    double bf16_copy = o->precision == CLLM_PRECISION_BF16 ? 0.5 : 0.0; /* 2 bytes a parameter */
    double floats = P * (3.0 + bf16_copy + buffers + (resume ? 4.0 : 0.0));
    double bytes = floats * sizeof(float) + teams * gpt2_acts_bytes_estimate(&o->model, o->micro);
    char what[160];
    snprintf(what, sizeof what, "a model of %.3g parameters (%d layers x %d wide) with %d team(s) of %d thread(s)", P,
             o->model.n_layer, o->model.n_embd, teams, team_threads);
    return cllm_memory_check(bytes, what);
}

static int check_combination(const cllm_train_options *o, int resume) {
    char a[64], b[64];
    if (o->batch % o->micro != 0) {
        snprintf(a, sizeof a, "%d", o->batch);
        snprintf(b, sizeof b, "%d", o->micro);
        return fail_line("--batch %s is not a multiple of --micro %s", a, b);
    }
    if (o->min_lr > o->lr) return fail_line("--min-lr must not exceed --lr%s%s", "", "");
    if (o->model.n_embd % o->model.n_head != 0) {
        snprintf(a, sizeof a, "%d", o->model.n_embd);
        snprintf(b, sizeof b, "%d", o->model.n_head);
        return fail_line("--embd %s is not a multiple of --heads %s", a, b);
    }
    if (training_fits_memory(o, resume) != CLLM_OK) return fail_line("%s%s", cllm_last_error(), "");
    if (gpt2_config_validate(&o->model) != CLLM_OK) return fail_line("%s%s", cllm_last_error(), "");
    return 0;
}

int cllm_cmd_train(int argc, char **argv) {
    train_flags f;
    memset(&f, 0, sizeof f);
    cllm_train_options_defaults(&f.given);
    f.preset_name = "default";
    cllm_flag flags[MAX_FLAGS];
    int n_flags = build_flags(&f, flags);
    CLLM_ASSERT(n_flags <= MAX_FLAGS && cllm_train_option_count <= MAX_FLAGS);
    char summary[2048];
    int k = snprintf(summary, sizeof summary, "%s",
                     "Trains a byte-level BPE tokenizer and a GPT-2-style model on text files or folders (default: the\n"
                     "built-in Tiny Shakespeare), evaluates it, checkpoints it, and prints a sample. Threads come\n"
                     "from OMP_NUM_THREADS, in teams: each team computes one micro-batch at a time with one gradient\n"
                     "buffer, its threads splitting every layer (same results for any shape). CLLM_TEAM=K makes\n"
                     "teams of K threads, OMP_NUM_THREADS=A,B makes A teams of B; by default the most teams that\n"
                     "divide the threads, are no more than the micro-batches per step, and whose gradient buffers\n"
                     "and activations fit in 3/4 of the available memory (one team of all threads if none does).\n"
                     "\n"
                     "Extending a finished run: cllm train --resume DIR --steps N (N above the steps done) continues\n"
                     "with the schedule of an N-step run: warm-up and cosine are recomputed for N, so the learning\n"
                     "rate jumps from the floor it ended at back up to where an N-step run would be at that step.\n"
                     "Give --min-lr and --lr to shape it (e.g. --lr equal to --min-lr for a flat continuation).");
    describe_presets(summary + k, sizeof summary - (size_t)k);
    const cllm_command_spec spec = {
        "train", "[DATA...]", summary, flags, n_flags, 0, -1,
    };
    char **positional = calloc((size_t)argc + 1, sizeof *positional);
    if (!positional) return 1;
    int n_pos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, positional, &n_pos));
    if (rc >= 0) {
        free(positional);
        return rc;
    }
    const preset *p = find_preset(f.preset_name);
    if (!p) {
        free(positional);
        return fail_line("unknown --preset '%s' (choose tiny, S or M)%s", f.preset_name, "");
    }
    if ((f.seen_out && !*f.out) || (f.resume && !*f.resume)) {
        free(positional);
        return fail_line("%s needs a folder name, not an empty string%s", f.resume && !*f.resume ? "--resume" : "--out",
                         "");
    }
    if (budget_flags_given(&f) > 1) {
        free(positional);
        return fail_line("give only one budget: --steps, --epochs or --tokens%s%s", "", "");
    }

    cllm_train_options o;
    int resume = f.resume != NULL;
    uint64_t hash = 0;
    size_t bytes = 0;
    if (resume) {
        const char *refused = frozen_flag_given(&f, n_pos);
        if (refused) {
            free(positional);
            return fail_line("%s%s cannot change with --resume (it would change the model or its data)",
                             strcmp(refused, "DATA") ? "--" : "", refused);
        }
        if (f.seen_out && strcmp(f.out, f.resume) != 0) {
            free(positional);
            return fail_line("--out and --resume name different folders; a resumed run continues in %s%s", f.resume, "");
        }
        if (cllm_run_json_read(f.resume, &o, &hash, &bytes) != CLLM_OK) {
            free(positional);
            return fail_line("%s%s", cllm_last_error(), "");
        }
        apply_overrides(&f, &o);
        o.out_dir = f.resume;
    } else {
        fill_fresh(&f, p, positional, n_pos, &o);
        o.out_dir = f.seen_out ? f.out : NULL;
        rc = f.tokenizer && !o.init_dir ? use_tokenizer_file(&f, &o) : 0;
        if (rc == 0 && o.init_dir) rc = apply_init(&f, &o);
        if (rc) {
            free(positional);
            return rc;
        }
    }
    o.stop_after = f.seen_stop_after ? f.stop_after : 0;
    o.quiet = f.quiet;
    o.verbose = f.verbose;
    o.segments_per_thread = cllm_env_segments();
    o.no_streaming = !cllm_env_streaming();
    o.grad_window = cllm_env_grad_window();
    cllm_env_team(&o.teams, &o.team_threads);
    o.progress = cllm_env_progress();
    o.columns = cllm_env_columns();
    o.peak_gflops = cllm_env_peak_gflops();
    o.kernels = cllm_kernel_table_for(cllm_env_simd()); /* CLLM_SIMD, resolved once here */
    o.comm = cllm_ranks_comm(); /* mpirun's ranks, or this process alone */

    rc = check_combination(&o, resume);
    if (rc == 0) {
        cllm_train_result res;
        cllm_status st = cllm_train(&o, resume, &res);
        if (st != CLLM_OK) {
            if (!res.same_on_all_ranks || cllm_ranks_comm()->rank == 0)
                fprintf(stderr, "cllm train: %s%s\n", cllm_ranks_prefix(), cllm_last_error());
            if (res.same_on_all_ranks) cllm_ranks_agreed_failure();
            rc = (int)st;
        } else {
            rc = res.interrupted ? 130 : 0;
        }
    }
    if (resume) cllm_train_options_free_paths(&o);
    free(positional);
    return rc;
}
