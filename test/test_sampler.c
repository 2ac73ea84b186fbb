/* Sampling: greedy, top-k, top-p, temperature, determinism from the seed;
 * KV-cached generation against full forward passes (with context sliding);
 * the `cllm sample` command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/data/corpus.h"
#include "cllm/data/tokenizer.h"
#include "cllm/models/gpt2.h"
#include "cllm/base/rng.h"
#include "cllm/train/checkpoint.h"
#include "cllm/train/sampler.h"
#include "support.h"

static void random_logits(float *x, int V, uint64_t seed) {
    cllm_rng r;
    cllm_rng_seed(&r, seed);
    for (int i = 0; i < V; i++) x[i] = 3.0f * cllm_rng_normal(&r);
}

static int argmax_ref(const float *x, int V) {
    int b = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void test_greedy_is_argmax(void **state) {
    (void)state;
    float x[100];
    cllm_rng rng;
    cllm_rng_seed(&rng, 1);
    for (uint64_t s = 0; s < 50; s++) {
        random_logits(x, 100, s);
        uint64_t before = rng.s[0];
        assert_int_equal(cllm_sample_next(x, 100, 0.0f, 0, 1.0f, &rng), argmax_ref(x, 100));
        assert_true(rng.s[0] == before); /* greedy consumes no randomness */
        /* top-k = 1 is greedy whatever the temperature */
        assert_int_equal(cllm_sample_next(x, 100, 1.5f, 1, 1.0f, &rng), argmax_ref(x, 100));
        /* a tiny nucleus keeps only the most likely token */
        assert_int_equal(cllm_sample_next(x, 100, 1.0f, 0, 1e-6f, &rng), argmax_ref(x, 100));
    }
    float ties[4] = {1, 5, 5, 2};
    assert_int_equal(cllm_sample_next(ties, 4, 0.0f, 0, 1.0f, &rng), 1); /* lowest id on ties */
}

static void sequence(uint64_t seed, int top_k, float top_p, float temperature, int32_t *out, int n) {
    float x[64];
    cllm_rng rng;
    cllm_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        random_logits(x, 64, (uint64_t)i);
        out[i] = cllm_sample_next(x, 64, temperature, top_k, top_p, &rng);
    }
}

static void test_same_seed_same_tokens(void **state) {
    (void)state;
    const struct {
        int k;
        float p, t;
    } settings[] = {{0, 1.0f, 1.0f}, {5, 1.0f, 0.8f}, {0, 0.9f, 1.2f}, {10, 0.7f, 1.0f}};
    for (size_t s = 0; s < sizeof settings / sizeof settings[0]; s++) {
        int32_t a[200], b[200], c[200];
        sequence(1337, settings[s].k, settings[s].p, settings[s].t, a, 200);
        sequence(1337, settings[s].k, settings[s].p, settings[s].t, b, 200);
        sequence(1338, settings[s].k, settings[s].p, settings[s].t, c, 200);
        assert_memory_equal(a, b, sizeof a);
        assert_memory_not_equal(a, c, sizeof a);
    }
}

/* Frequencies match softmax(logits / T) within sampling error (n = 40000:
 * the standard error of a frequency is at most 0.0025, we allow 0.01). */
static void test_distribution(void **state) {
    (void)state;
    float x[5] = {2.0f, 1.0f, 0.0f, -1.0f, 0.5f};
    const int n = 40000;
    cllm_rng rng;
    cllm_rng_seed(&rng, 99);
    const float temps[] = {1.0f, 2.0f};
    for (int ti = 0; ti < 2; ti++) {
        int count[5] = {0};
        for (int i = 0; i < n; i++) count[cllm_sample_next(x, 5, temps[ti], 0, 1.0f, &rng)]++;
        double z = 0, p[5];
        for (int i = 0; i < 5; i++) z += exp(x[i] / temps[ti]);
        for (int i = 0; i < 5; i++) {
            p[i] = exp(x[i] / temps[ti]) / z;
            if (fabs((double)count[i] / n - p[i]) > 0.01)
                fail_msg("T=%g token %d: frequency %.4f, expected %.4f", temps[ti], i, (double)count[i] / n, p[i]);
        }
    }
    /* a small temperature almost always picks the argmax */
    int top = 0;
    for (int i = 0; i < 2000; i++) top += cllm_sample_next(x, 5, 0.05f, 0, 1.0f, &rng) == 0;
    assert_true(top >= 1995);
    /* top-k = 2 never leaves the two best, and keeps their ratio e^1 */
    int c0 = 0, c1 = 0;
    for (int i = 0; i < n; i++) {
        int t = cllm_sample_next(x, 5, 1.0f, 2, 1.0f, &rng);
        assert_true(t == 0 || t == 1);
        c0 += t == 0;
        c1 += t == 1;
    }
    assert_true(fabs((double)c0 / n - exp(1.0) / (1 + exp(1.0))) < 0.01);
    /* probabilities 0.6/0.3/0.1: top-p 0.5 keeps one token, 0.8 keeps two */
    float y[3] = {logf(0.6f), logf(0.3f), logf(0.1f)};
    for (int i = 0; i < 1000; i++) assert_int_equal(cllm_sample_next(y, 3, 1.0f, 0, 0.5f, &rng), 0);
    c0 = c1 = 0;
    for (int i = 0; i < n; i++) {
        int t = cllm_sample_next(y, 3, 1.0f, 0, 0.8f, &rng);
        assert_true(t == 0 || t == 1);
        c0 += t == 0;
    }
    assert_true(fabs((double)c0 / n - 2.0 / 3.0) < 0.01);
}

/* ---- generation with the KV cache ------------------------------------------- */

typedef struct {
    int calls, stop_at;
} counter;

static int count_tokens(int32_t token, void *user) {
    (void)token;
    counter *c = user;
    return ++c->calls == c->stop_at;
}

/* The reference: a full forward pass over the window for every token, with
 * the same sliding rule written out independently. */
static void generate_by_full_forward(const gpt2_model *m, const int32_t *prompt, int n_prompt, int n_new,
                                     const cllm_sample_settings *set, uint64_t seed, int32_t *out) {
    int T = m->cfg.seq_len, V = m->cfg.vocab_size;
    int32_t *window = malloc((size_t)T * sizeof *window);
    int len = 0;
    gpt2_acts *a = gpt2_acts_create(&m->cfg, 1);
    cllm_sampler s;
    assert_int_equal(cllm_sampler_init(&s, V), CLLM_OK);
    cllm_rng rng;
    cllm_rng_seed(&rng, seed);
    for (int i = 0; i < n_prompt + n_new - 1; i++) {
        int32_t tok = i < n_prompt ? prompt[i] : out[i - n_prompt];
        if (len == T) { /* keep the last T/2 */
            memmove(window, window + T - T / 2, (size_t)(T / 2) * sizeof *window);
            len = T / 2;
        }
        window[len++] = tok;
        if (i < n_prompt - 1) continue;
        gpt2_forward(m, a, window, NULL, 1, len);
        out[i - n_prompt + 1] = cllm_sampler_next(&s, gpt2_logits(a) + (size_t)(len - 1) * V, set, &rng);
    }
    cllm_sampler_free(&s);
    gpt2_acts_destroy(a);
    free(window);
}

static void test_kv_generation_matches_full_forward(void **state) {
    (void)state;
    gpt2_config cfg = {2, 2, 16, 8, 32};
    gpt2_model m;
    assert_int_equal(gpt2_create(&m, &cfg), CLLM_OK);
    gpt2_init_weights(&m, 5);
    /* sharpen the random model so that sampling is not near-uniform */
    const gpt2_tensor *wte = gpt2_find_tensor(&m, "transformer.wte.weight");
    for (size_t i = 0; i < wte->numel; i++) m.params[wte->offset + i] *= 40.0f;
    int32_t prompt[3] = {1, 7, 3};
    const int n_new = 30; /* > seq_len: slides several times */
    cllm_sample_settings settings[] = {{0.0f, 0, 1.0f}, {1.0f, 0, 1.0f}, {0.9f, 5, 0.9f}};
    for (size_t s = 0; s < sizeof settings / sizeof settings[0]; s++) {
        int32_t kv[30], ref[30];
        cllm_rng rng;
        cllm_rng_seed(&rng, 77);
        counter c = {0, -1};
        assert_int_equal(cllm_generate(&m, prompt, 3, n_new, &settings[s], &rng, count_tokens, &c, kv), CLLM_OK);
        assert_int_equal(c.calls, n_new);
        generate_by_full_forward(&m, prompt, 3, n_new, &settings[s], 77, ref);
        assert_memory_equal(kv, ref, sizeof kv);
    }
    /* a prompt longer than the context, greedy */
    int32_t long_prompt[19];
    for (int i = 0; i < 19; i++) long_prompt[i] = (i * 5) % 32;
    int32_t kv[12], ref[12];
    cllm_rng rng;
    cllm_rng_seed(&rng, 1);
    assert_int_equal(cllm_generate(&m, long_prompt, 19, 12, &settings[0], &rng, NULL, NULL, kv), CLLM_OK);
    generate_by_full_forward(&m, long_prompt, 19, 12, &settings[0], 1, ref);
    assert_memory_equal(kv, ref, sizeof kv);
    /* the callback stops generation early; bad prompts are refused */
    counter c = {0, 4};
    assert_int_equal(cllm_generate(&m, prompt, 3, 20, &settings[1], &rng, count_tokens, &c, NULL), CLLM_OK);
    assert_int_equal(c.calls, 4);
    int32_t bad = 32;
    assert_int_equal(cllm_generate(&m, &bad, 1, 5, &settings[1], &rng, NULL, NULL, NULL), CLLM_ERR_INPUT);
    assert_int_equal(cllm_generate(&m, prompt, 0, 5, &settings[1], &rng, NULL, NULL, NULL), CLLM_ERR_INPUT);
    gpt2_destroy(&m);
}

/* ---- `cllm sample` ----------------------------------------------------------- */

static const char text[] = "the cat sat on the mat. the dog sat on the log. the cat and the dog sat.\n";

static void make_run(const char *dir) {
    cllm_corpus c;
    assert_int_equal(cllm_corpus_from_bytes(text, sizeof text - 1, "t", &c), CLLM_OK);
    cllm_tokenizer *tok = NULL;
    assert_int_equal(cllm_tokenizer_train(&c, 280, &tok), CLLM_OK);
    gpt2_config cfg = {1, 2, 16, 16, cllm_tokenizer_vocab_size(tok)};
    gpt2_model m;
    assert_int_equal(gpt2_create(&m, &cfg), CLLM_OK);
    gpt2_init_weights(&m, 3);
    assert_int_equal(cllm_checkpoint_save_model(dir, &m, cllm_tokenizer_eot(tok)), CLLM_OK);
    char *tp = cllm_path_join(dir, "tokenizer.bin");
    assert_int_equal(cllm_tokenizer_save(tok, tp), CLLM_OK);
    free(tp);
    gpt2_destroy(&m);
    cllm_tokenizer_free(tok);
    cllm_corpus_free(&c);
}

static run_result sample(const char *dir, const char *flags) {
    char args[1024];
    snprintf(args, sizeof args, "sample '%s' %s", dir, flags);
    return run_cllm(NULL, args);
}

static void test_sample_command(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    make_run(dir);
    run_result a = sample(dir, "--tokens 40 --seed 5");
    run_result b = sample(dir, "--tokens 40 --seed 5");
    run_result c = sample(dir, "--tokens 40 --seed 6");
    assert_int_equal(a.exit_code, 0);
    assert_true(strlen(a.out) > 20);
    assert_string_equal(a.out, b.out);
    assert_string_not_equal(a.out, c.out);
    run_result g1 = sample(dir, "--tokens 30 --temperature 0 --seed 1 --prompt 'the cat'");
    run_result g2 = sample(dir, "--tokens 30 --temperature 0 --seed 2 --prompt 'the cat'");
    assert_int_equal(g1.exit_code, 0);
    assert_string_equal(g1.out, g2.out); /* greedy ignores the seed */
    assert_memory_equal(g1.out, "the cat", 7); /* the prompt comes first */
    run_result_free(&a);
    run_result_free(&b);
    run_result_free(&c);
    run_result_free(&g1);
    run_result_free(&g2);

    const char *bad[] = {"--temperature -1", "--top-p 0", "--top-p 1.5", "--top-k -2", "--tokens x", "--bogus"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run_result r = sample(dir, bad[i]);
        if (r.exit_code != 2 || count_lines(r.err) != 1) fail_msg("%s: exit %d, '%s'", bad[i], r.exit_code, r.err);
        run_result_free(&r);
    }
    run_result r = run_cllm(NULL, "sample /nonexistent/run");
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    run_result_free(&r);
    char *tp = cllm_path_join(dir, "tokenizer.bin");
    free(write_file(dir, "tokenizer.bin", "garbage", 7));
    r = sample(dir, "");
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    run_result_free(&r);
    free(tp);
    remove_tree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_is_argmax),
        cmocka_unit_test(test_same_seed_same_tokens),
        cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_kv_generation_matches_full_forward),
        cmocka_unit_test(test_sample_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
