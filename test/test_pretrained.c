/* Fine-tuning from a Hugging Face GPT-2 folder (`cllm train DATA --init DIR`,
 * src/train/pretrained.c), without Python: a cllm run folder is such a
 * folder, and one rewritten here in BF16 without the "transformer." prefix
 * and with lm_head.weight stands for another saver's. The weights reach the
 * run bit for bit (at --lr 0 nothing moves), the learning rate defaults to
 * CLLM_INIT_LR, the shape and tokenizer are the folder's, shape flags that
 * agree are accepted, and a stopped --init run resumes to the same bits as
 * an uninterrupted one. (test/init_check.py adds PyTorch's side; the
 * refusals are rows of test_bad_input.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cllm/base/json.h"
#include "cllm/io/safetensors.h"
#include "cllm/models/gpt2.h"
#include "cllm/train/checkpoint.h"
#include "cllm/train/options.h"
#include "cllm/train/pretrained.h"
#include "support.h"

static char *workdir, *corpus, *base; /* base: a 2-step tiny run, the folder every test starts from */

#define TINY "--batch 4 --sample-tokens 0 --eval-every 0 --quiet"

static void train_ok(const char *args) {
    run_result r = run_cllm("OMP_NUM_THREADS=2", args);
    if (r.exit_code != 0) fail_msg("cllm %s: exit %d: %s", args, r.exit_code, r.err);
    run_result_free(&r);
}

static int setup(void **state) {
    (void)state;
    workdir = make_temp_dir();
    corpus = write_word_corpus(workdir, "corpus.txt");
    base = path_in(workdir, "base");
    char args[4096];
    snprintf(args, sizeof args, "train '%s' --layers 2 --heads 2 --embd 24 --seq 16 --vocab 300 --steps 2 " TINY
             " --out '%s'", corpus, base);
    run_result r = run_cllm("OMP_NUM_THREADS=1", args);
    int ok = r.exit_code == 0;
    if (!ok) fprintf(stderr, "base run failed: %s\n", r.err);
    run_result_free(&r);
    return ok ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    remove_tree(workdir);
    free(workdir);
    free(corpus);
    free(base);
    return 0;
}

static void load(const char *dir, gpt2_model *m) {
    if (cllm_checkpoint_load_model(dir, m) != CLLM_OK) fail_msg("%s: %s", dir, cllm_last_error());
}

static void assert_same_weights(const gpt2_model *a, const gpt2_model *b) {
    assert_memory_equal(&a->cfg, &b->cfg, sizeof a->cfg);
    for (int i = 0; i < a->n_tensors; i++)
        if (memcmp(a->params + a->tensors[i].offset, b->params + b->tensors[i].offset,
                   a->tensors[i].numel * sizeof(float)) != 0)
            fail_msg("tensor %s differs", a->tensors[i].name);
}

static cllm_json *run_json(const char *dir) {
    char *path = path_in(dir, "run.json");
    cllm_json *j = NULL;
    if (cllm_json_parse_file(path, &j) != CLLM_OK) fail_msg("%s: %s", path, cllm_last_error());
    free(path);
    return j;
}

/* base's weights as BF16 (each float's top half: an exact bfloat16), named
 * without "transformer.", with lm_head.weight = wte, into a folder of their
 * own beside base's config.json and tokenizer; *expect gets the values cllm
 * must read. */
static char *bf16_folder(gpt2_model *expect) {
    char *dir = path_in(workdir, "bf16");
    load(base, expect);
    uint16_t *half = calloc(expect->n_params, sizeof *half);
    for (int i = 0; i < expect->n_tensors; i++) {
        const gpt2_tensor *t = &expect->tensors[i];
        for (size_t k = t->offset; k < t->offset + t->numel; k++) {
            uint32_t u;
            memcpy(&u, &expect->params[k], sizeof u);
            half[k] = (uint16_t)(u >> 16);
            expect->params[k] = cllm_st_bf16_to_f32(half[k]);
        }
    }
    cllm_st_writer w;
    cllm_st_writer_init(&w);
    for (int i = 0; i < expect->n_tensors; i++) {
        const gpt2_tensor *t = &expect->tensors[i];
        assert_int_equal(cllm_st_writer_add(&w, t->name + strlen("transformer."), CLLM_ST_BF16, half + t->offset,
                                            t->ndim, t->shape), CLLM_OK);
    }
    const gpt2_tensor *wte = gpt2_find_tensor(expect, "transformer.wte.weight");
    assert_int_equal(cllm_st_writer_add(&w, "lm_head.weight", CLLM_ST_BF16, half + wte->offset, wte->ndim, wte->shape),
                     CLLM_OK);
    char *model = path_in(dir, "model.safetensors");
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(cllm_st_writer_write(&w, model), CLLM_OK);
    cllm_st_writer_free(&w);
    static const char *const copied[] = {"config.json", "tokenizer.bin"};
    for (int i = 0; i < 2; i++) {
        char *src = path_in(base, copied[i]);
        size_t n;
        unsigned char *bytes = read_whole_file(src, &n);
        assert_non_null(bytes);
        free(write_file(dir, copied[i], bytes, n));
        free(bytes);
        free(src);
    }
    free(model);
    free(half);
    return dir;
}

/* At --lr 0 AdamW moves nothing, so the run's model is the folder's, bit for
 * bit: a cllm run folder, and the same weights as BF16 in another layout. */
static void test_weights_reach_the_run_exactly(void **state) {
    (void)state;
    gpt2_model want, got;
    char args[4096], *out = path_in(workdir, "still");
    snprintf(args, sizeof args, "train '%s' --init '%s' --lr 0 --steps 1 " TINY " --out '%s'", corpus, base, out);
    train_ok(args);
    load(base, &want);
    load(out, &got);
    assert_same_weights(&want, &got);
    gpt2_destroy(&got);
    gpt2_destroy(&want);

    char *folder = bf16_folder(&want), *out2 = path_in(workdir, "still-bf16");
    snprintf(args, sizeof args, "train '%s' --init '%s' --lr 0 --steps 1 --batch 4 --sample-tokens 0 --out '%s'",
             corpus, folder, out2);
    run_result r = run_cllm("OMP_NUM_THREADS=2", args);
    if (r.exit_code != 0) fail_msg("cllm %s: %s", args, r.err);
    /* the summary says what was read */
    if (!strstr(r.out, "BF16 tensors (widened exactly to F32), names without transformer., lm_head.weight = wte; "
                       "tokenizer tokenizer.bin"))
        fail_msg("the start-up summary does not describe the folder:\n%s", r.out);
    run_result_free(&r);
    load(out2, &got);
    assert_same_weights(&want, &got);
    gpt2_destroy(&got);
    gpt2_destroy(&want);
    free(folder);
    free(out2);
    free(out);
}

/* The folder's shape and tokenizer, the fine-tuning learning rate, and
 * run.json naming the folder; shape flags equal to the folder's pass. */
static void test_run_keeps_the_folder_and_defaults_lr(void **state) {
    (void)state;
    char args[4096], *out = path_in(workdir, "tuned");
    snprintf(args, sizeof args, "train '%s' --init '%s' --layers 2 --embd 24 --vocab 300 --steps 3 " TINY
             " --out '%s'", corpus, base, out);
    train_ok(args);
    gpt2_config cfg;
    int32_t eot;
    assert_int_equal(cllm_pretrained_read_config(out, &cfg, &eot), CLLM_OK);
    assert_int_equal(cfg.n_layer, 2);
    assert_int_equal(cfg.n_embd, 24);
    assert_int_equal(cfg.seq_len, 16);
    assert_int_equal(cfg.vocab_size, 300);
    char *a = path_in(base, "tokenizer.bin"), *b = path_in(out, "tokenizer.bin");
    size_t na, nb;
    unsigned char *ta = read_whole_file(a, &na), *tb = read_whole_file(b, &nb);
    assert_true(ta && tb && na == nb && memcmp(ta, tb, na) == 0);
    cllm_json *j = run_json(out);
    assert_true(cllm_json_get(j, "lr")->number == CLLM_INIT_LR);
    assert_true(fabs(cllm_json_get(j, "min_lr")->number - CLLM_INIT_LR / 10) < 1e-18);
    char *real = realpath(base, NULL);
    assert_string_equal(cllm_json_get(j, "init")->string, real);
    /* the weights moved from the folder's */
    gpt2_model from, to;
    load(base, &from);
    load(out, &to);
    assert_memory_not_equal(from.params, to.params, from.n_params * sizeof(float));
    gpt2_destroy(&from);
    gpt2_destroy(&to);
    free(real);
    cllm_json_free(j);
    free(ta);
    free(tb);
    free(a);
    free(b);
    free(out);
}

/* Stopped after 2 of 4 steps and resumed (the folder is not read again: it
 * may be gone), the run ends with the bits of an uninterrupted one. */
static void test_init_run_resumes_exactly(void **state) {
    (void)state;
    char args[4096], *whole = path_in(workdir, "whole"), *split = path_in(workdir, "split");
    char *copy = path_in(workdir, "base-copy");
    copy_tree(base, copy);
    snprintf(args, sizeof args, "train '%s' --init '%s' --steps 4 " TINY " --out '%s'", corpus, copy, whole);
    train_ok(args);
    snprintf(args, sizeof args, "train '%s' --init '%s' --steps 4 --stop-after 2 " TINY " --out '%s'", corpus, copy,
             split);
    train_ok(args);
    remove_tree(copy);
    snprintf(args, sizeof args, "train --resume '%s' --quiet --sample-tokens 0", split);
    train_ok(args);
    gpt2_model a, b;
    load(whole, &a);
    load(split, &b);
    assert_same_weights(&a, &b);
    gpt2_destroy(&a);
    gpt2_destroy(&b);
    free(copy);
    free(whole);
    free(split);
}

/* The library's own checks, below the command line. */
static void test_pretrained_api(void **state) {
    (void)state;
    gpt2_config cfg;
    int32_t eot = -2;
    assert_int_equal(cllm_pretrained_read_config(base, &cfg, &eot), CLLM_OK);
    assert_int_equal(eot, 299);
    cllm_tokenizer *tok = NULL;
    assert_int_equal(cllm_pretrained_load_tokenizer(base, &tok), CLLM_OK);
    assert_int_equal(cllm_tokenizer_vocab_size(tok), 300);
    cllm_tokenizer_free(tok);
    gpt2_model m;
    assert_int_equal(gpt2_create(&m, &cfg), CLLM_OK);
    char what[256];
    assert_int_equal(cllm_pretrained_load_weights(base, &m, what, sizeof what), CLLM_OK);
    assert_string_equal(what, "F32 tensors");
    assert_string_equal(cllm_pretrained_tokenizer_file(base), "tokenizer.bin");
    gpt2_model ref;
    load(base, &ref);
    assert_same_weights(&ref, &m);
    gpt2_destroy(&ref);
    gpt2_destroy(&m);
    char *missing = path_in(workdir, "nothing");
    assert_int_equal(cllm_pretrained_read_config(missing, &cfg, &eot), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "--init"));
    free(missing);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pretrained_api),
        cmocka_unit_test(test_weights_reach_the_run_exactly),
        cmocka_unit_test(test_run_keeps_the_folder_and_defaults_lr),
        cmocka_unit_test(test_init_run_resumes_exactly),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
