/* cllm train: flags, presets, validation and --resume, then cllm_train().
 *
 * Everything the user can get wrong is checked here, before anything is
 * written, so a bad command line is one line on stderr, exit 2, and no run
 * folder. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/cli/commands.h"
#include "cllm/cli/env.h"
#include "cllm/cli/flags.h"
#include "cllm/data/tokenizer.h"
#include "cllm/train/trainer.h"

typedef struct {
    const char *name;
    int n_layer, n_head, n_embd, seq_len;
} preset;

/* "default" is what `cllm train` with no arguments uses: sized so the whole
 * default run (below) finishes in about 3 minutes on 2 cores. */
static const preset presets[] = {
    {"default", 4, 4, 128, 128},
    {"tiny", 2, 2, 32, 32},
    {"S", 4, 4, 256, 256},
    {"M", 6, 6, 384, 256},
};

#define DEFAULT_STEPS 1200

static const preset *find_preset(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(presets[i].name, name) == 0) return &presets[i];
    return NULL;
}

/* Flag values as parsed; "seen" tells an explicit flag from a default. */
typedef struct {
    int layers, heads, embd, seq, vocab, batch, micro, grad_accum;
    int64_t steps, tokens, stop_after, warmup, seed, eval_every, sample_every, save_every, log_every;
    double epochs, lr, min_lr, weight_decay, clip, val_fraction;
    int sample_tokens;
    const char *out, *resume, *preset_name;
    int quiet, verbose;
    struct {
        int layers, heads, embd, seq, vocab, batch, micro, grad_accum, steps, tokens, epochs, stop_after, warmup,
            seed, eval_every, sample_every, save_every, log_every, lr, min_lr, weight_decay, clip, val_fraction,
            sample_tokens, out, preset;
    } seen;
} train_flags;

static int fail_line(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "cllm train: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

/* Flags that would change the model or its data: refused with --resume. */
static const char *model_flag_given(const train_flags *f, int n_data) {
    if (f->seen.layers) return "--layers";
    if (f->seen.heads) return "--heads";
    if (f->seen.embd) return "--embd";
    if (f->seen.seq) return "--seq";
    if (f->seen.vocab) return "--vocab";
    if (f->seen.preset) return "--preset";
    if (f->seen.val_fraction) return "--val-fraction";
    if (f->seen.seed) return "--seed";
    if (n_data > 0) return "DATA";
    return NULL;
}

static int budget_flags_given(const train_flags *f) { return f->seen.steps + f->seen.epochs + f->seen.tokens; }

static void apply_budget(const train_flags *f, cllm_train_options *o) {
    o->steps = f->seen.steps ? f->steps : 0;
    o->epochs = f->seen.epochs ? f->epochs : 0;
    o->tokens = f->seen.tokens ? f->tokens : 0;
}

/* Settings that may change on --resume (training continues bitwise only
 * when none does, except the cadences and --stop-after). */
static void apply_overrides(const train_flags *f, cllm_train_options *o) {
    if (budget_flags_given(f)) apply_budget(f, o);
    if (f->seen.batch) o->batch = f->batch;
    if (f->seen.micro) o->micro = f->micro;
    if (f->seen.grad_accum) o->grad_accum = f->grad_accum;
    if (f->seen.lr) o->lr = f->lr;
    if (f->seen.min_lr) o->min_lr = f->min_lr;
    if (f->seen.warmup) o->warmup = f->warmup;
    if (f->seen.weight_decay) o->weight_decay = f->weight_decay;
    if (f->seen.clip) o->clip = f->clip;
    if (f->seen.eval_every) o->eval_every = f->eval_every;
    if (f->seen.sample_every) o->sample_every = f->sample_every;
    if (f->seen.save_every) o->save_every = f->save_every;
    if (f->seen.log_every) o->log_every = f->log_every;
    if (f->seen.sample_tokens) o->sample_tokens = f->sample_tokens;
}

static void fill_fresh(const train_flags *f, const preset *p, char **data, int n_data, cllm_train_options *o) {
    memset(o, 0, sizeof *o);
    o->data_paths = data;
    o->n_data = n_data;
    o->val_fraction = f->val_fraction;
    o->model.n_layer = f->seen.layers ? f->layers : p->n_layer;
    o->model.n_head = f->seen.heads ? f->heads : p->n_head;
    o->model.n_embd = f->seen.embd ? f->embd : p->n_embd;
    o->model.seq_len = f->seen.seq ? f->seq : p->seq_len;
    o->model.vocab_size = f->vocab;
    o->batch = f->batch;
    o->micro = f->micro;
    o->grad_accum = f->grad_accum;
    apply_budget(f, o);
    if (!budget_flags_given(f)) o->steps = f->steps;
    o->lr = f->lr;
    o->min_lr = f->seen.min_lr ? f->min_lr : f->lr / 10.0;
    o->warmup = f->warmup;
    o->weight_decay = f->weight_decay;
    o->clip = f->clip;
    o->seed = (uint64_t)f->seed;
    o->eval_every = f->eval_every;
    o->sample_every = f->sample_every;
    o->save_every = f->save_every;
    o->log_every = f->log_every;
    o->sample_tokens = f->sample_tokens;
}

static int check_combination(const cllm_train_options *o) {
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
    if (gpt2_config_validate(&o->model) != CLLM_OK) return fail_line("%s%s", cllm_last_error(), "");
    return 0;
}

int cllm_cmd_train(int argc, char **argv) {
    train_flags f = {
        .vocab = CLLM_TOKENIZER_DEFAULT_VOCAB, .batch = 16, .micro = 1, .grad_accum = 1, .steps = DEFAULT_STEPS,
        .lr = 3e-3, .weight_decay = 0.1, .clip = 1.0, .seed = 1337, .val_fraction = 0.05, .warmup = -1,
        .eval_every = 200, .save_every = 200, .log_every = 20, .sample_tokens = 200, .preset_name = "default",
    };
    const cllm_flag flags[] = {
        {"preset", CLLM_FLAG_STRING, &f.preset_name, "NAME", "model size: tiny, S (4x256, T 256), M (6x384, T 256); default: 4 layers x 128, T 128", 1, 0, &f.seen.preset},
        {"layers", CLLM_FLAG_INT, &f.layers, "N", "transformer blocks (default from the preset)", 1, 128, &f.seen.layers},
        {"heads", CLLM_FLAG_INT, &f.heads, "N", "attention heads (default from the preset)", 1, 256, &f.seen.heads},
        {"embd", CLLM_FLAG_INT, &f.embd, "N", "embedding width (default from the preset)", 1, 16384, &f.seen.embd},
        {"seq", CLLM_FLAG_INT, &f.seq, "N", "context length T in tokens (default from the preset)", 2, 65536, &f.seen.seq},
        {"vocab", CLLM_FLAG_INT, &f.vocab, "N", "tokenizer vocabulary size, 257..65536 (default 512)", CLLM_TOKENIZER_MIN_VOCAB, CLLM_TOKENIZER_MAX_VOCAB, &f.seen.vocab},
        {"batch", CLLM_FLAG_INT, &f.batch, "N", "sequences per optimizer step, before --grad-accum (default 16)", 1, 1 << 20, &f.seen.batch},
        {"micro", CLLM_FLAG_INT, &f.micro, "N", "sequences per micro-batch; --batch must be a multiple (default 1)", 1, 1 << 20, &f.seen.micro},
        {"grad-accum", CLLM_FLAG_INT, &f.grad_accum, "N", "accumulate N batches per optimizer step (default 1)", 1, 1 << 20, &f.seen.grad_accum},
        {"steps", CLLM_FLAG_INT64, &f.steps, "N", "budget: optimizer steps (default 1200)", 1, 1e12, &f.seen.steps},
        {"epochs", CLLM_FLAG_DOUBLE, &f.epochs, "X", "budget: passes over the training windows", 1e-9, 1e9, &f.seen.epochs},
        {"tokens", CLLM_FLAG_INT64, &f.tokens, "N", "budget: training tokens", 1, 1e15, &f.seen.tokens},
        {"stop-after", CLLM_FLAG_INT64, &f.stop_after, "K", "end at step K, keeping the full budget's schedule (resume later)", 1, 1e12, &f.seen.stop_after},
        {"lr", CLLM_FLAG_DOUBLE, &f.lr, "X", "peak learning rate (default 3e-3)", 0, 1e6, &f.seen.lr},
        {"min-lr", CLLM_FLAG_DOUBLE, &f.min_lr, "X", "floor of the cosine decay (default lr/10)", 0, 1e6, &f.seen.min_lr},
        {"warmup", CLLM_FLAG_INT64, &f.warmup, "N", "linear warm-up steps (default 5% of the budget, at most 100)", 0, 1e12, &f.seen.warmup},
        {"weight-decay", CLLM_FLAG_DOUBLE, &f.weight_decay, "X", "AdamW decoupled weight decay, not on biases/LayerNorm/embeddings (default 0.1)", 0, 10, &f.seen.weight_decay},
        {"clip", CLLM_FLAG_DOUBLE, &f.clip, "X", "global gradient-norm clipping threshold, 0 = off (default 1.0)", 0, 1e9, &f.seen.clip},
        {"seed", CLLM_FLAG_INT64, &f.seed, "N", "seed of initialization, data order and sampling (default 1337)", 0, 9.2e18, &f.seen.seed},
        {"val-fraction", CLLM_FLAG_DOUBLE, &f.val_fraction, "X", "share of windows held out for validation, 0..0.5 (default 0.05)", 0, 0.5, &f.seen.val_fraction},
        {"eval-every", CLLM_FLAG_INT64, &f.eval_every, "N", "validation loss every N steps, 0 = only at the end (default 200)", 0, 1e12, &f.seen.eval_every},
        {"sample-every", CLLM_FLAG_INT64, &f.sample_every, "N", "print a short sample every N steps, 0 = only at the end (default 0)", 0, 1e12, &f.seen.sample_every},
        {"save-every", CLLM_FLAG_INT64, &f.save_every, "N", "checkpoint every N steps, 0 = only at the end (default 200)", 0, 1e12, &f.seen.save_every},
        {"log-every", CLLM_FLAG_INT64, &f.log_every, "N", "plain progress line every N steps when not on a terminal (default 20)", 1, 1e12, &f.seen.log_every},
        {"sample-tokens", CLLM_FLAG_INT, &f.sample_tokens, "N", "tokens in the sample printed at the end, 0 = none (default 200)", 0, 1 << 20, &f.seen.sample_tokens},
        {"out", CLLM_FLAG_STRING, &f.out, "DIR", "run folder (default runs/YYYYmmdd-HHMMSS)", 1, 0, &f.seen.out},
        {"resume", CLLM_FLAG_STRING, &f.resume, "DIR", "continue the run in DIR from its last checkpoint", 1, 0, NULL},
        {"quiet", CLLM_FLAG_BOOL, &f.quiet, NULL, "no start-up summary and no progress (CLLM_PROGRESS overrides)", 1, 0, NULL},
        {"verbose", CLLM_FLAG_BOOL, &f.verbose, NULL, "per step: worker compute min/median/max, reduction, exposed share, atomics, utilisation", 1, 0, NULL},
    };
    const cllm_command_spec spec = {
        "train", "[DATA...]",
        "Trains a byte-level BPE tokenizer and a GPT-2-style model on text files or folders (default: the\n"
        "built-in Tiny Shakespeare), evaluates it, checkpoints it, and prints a sample. Threads come\n"
        "from OMP_NUM_THREADS.",
        flags, (int)(sizeof flags / sizeof flags[0]), 0, -1,
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
    if (budget_flags_given(&f) > 1) {
        free(positional);
        return fail_line("give only one budget: --steps, --epochs or --tokens%s%s", "", "");
    }

    cllm_train_options o;
    int resume = f.resume != NULL;
    uint64_t hash = 0;
    size_t bytes = 0;
    if (resume) {
        const char *refused = model_flag_given(&f, n_pos);
        if (refused) {
            free(positional);
            return fail_line("%s cannot change with --resume (it would change the model or its data)", refused, "");
        }
        if (f.seen.out && strcmp(f.out, f.resume) != 0) {
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
        o.out_dir = f.seen.out ? f.out : NULL;
    }
    o.stop_after = f.seen.stop_after ? f.stop_after : 0;
    o.quiet = f.quiet;
    o.verbose = f.verbose;
    o.kernels = cllm_kernel_table_for(cllm_env_simd()); /* CLLM_SIMD, resolved once here */

    rc = check_combination(&o);
    if (rc == 0) {
        cllm_train_result res;
        cllm_status st = cllm_train(&o, resume, &res);
        if (st != CLLM_OK) {
            fprintf(stderr, "cllm train: %s\n", cllm_last_error());
            rc = (int)st;
        } else {
            rc = res.interrupted ? 130 : 0;
        }
    }
    if (resume) cllm_train_options_free_paths(&o);
    free(positional);
    return rc;
}
