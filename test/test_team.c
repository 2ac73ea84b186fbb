/* Thread teams (include/cllm/nn/team.h): every team-split layer, the model's
 * forward and backward, and the KV-cached step give the same bits on a team
 * of 2, 3 and 4 threads as on one, for every kernel table this CPU runs, on
 * odd sizes and unaligned, padded operands. The sizes are above the work
 * threshold below which a layer stays on one thread, so the split paths run
 * (each case asserts that a team of 2 was really available). Whole runs
 * under each team shape: test_team_runs.c. */
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cllm/base/rng.h"
#include "cllm/models/gpt2.h"
#include "cllm/nn/layers.h"
#include "cllm/nn/team.h"

static cllm_rng rng;

static float *randn(size_t n, float scale) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = scale * cllm_rng_normal(&rng);
    return p;
}

static int rand_in(int lo, int hi) { return lo + (int)(cllm_rng_next(&rng) % (uint64_t)(hi - lo + 1)); }

static const int team_sizes[] = {2, 3, 4};
enum { N_TEAMS = sizeof team_sizes / sizeof team_sizes[0] };

/* Sets the team of the calling (top-level) thread. */
static void use_team(int n) {
    omp_set_num_threads(n);
    assert_int_equal(nn_team_size(), n);
}

static void assert_same_bits(const float *a, const float *b, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            fail_msg("%s: element %zu differs (%.9g vs %.9g)", what, i, (double)a[i], (double)b[i]);
}

/* ---- the split product ---- */

static void check_gemm(const cllm_kernel_table *k, int ta, int tb, int M, int N, int K, float alpha, float beta) {
    int pad = rand_in(0, 5), lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    size_t na = (size_t)(ta ? K : M) * lda + 1, nb = (size_t)(tb ? N : K) * ldb + 1, nc = (size_t)M * ldc + 1;
    float *A = randn(na, 1.0f), *B = randn(nb, 1.0f), *C0 = randn(nc, 1.0f), *C = malloc(nc * sizeof(float));
    float *ref = malloc(nc * sizeof(float));
    memcpy(ref, C0, nc * sizeof(float));
    use_team(1);
    k->gemm(ta, tb, M, N, K, alpha, A + 1, lda, B + 1, ldb, beta, ref + 1, ldc); /* +1: unaligned */
    for (int t = 0; t < N_TEAMS; t++) {
        memcpy(C, C0, nc * sizeof(float));
        use_team(team_sizes[t]);
        team_gemm(k, ta, tb, M, N, K, alpha, A + 1, lda, B + 1, ldb, beta, C + 1, ldc);
        char what[160];
        snprintf(what, sizeof what, "%s gemm ta=%d tb=%d %dx%dx%d alpha=%g beta=%g team=%d", k->name, ta, tb, M, N,
                 K, (double)alpha, (double)beta, team_sizes[t]);
        assert_same_bits(ref, C, nc, what);
    }
    use_team(1);
    free(A), free(B), free(C0), free(C), free(ref);
}

static void test_team_gemm_same_bits(void **state) {
    (void)state;
    for (int s = 0; s < CLLM_SIMD_COUNT; s++) {
        const cllm_kernel_table *k = cllm_kernel_table_for((cllm_simd)s);
        if (!k) continue;
        for (int rep = 0; rep < 3; rep++)
            for (int ta = 0; ta <= 1; ta++)
                for (int tb = 0; tb <= 1; tb++) {
                    int M = rand_in(25, 140), N = rand_in(25, 140), K = rand_in(30, 90);
                    check_gemm(k, ta, tb, M, N, K, rep % 2 ? 0.37f : 1.0f, rep % 3 ? 1.0f : 0.0f);
                }
        /* one row (the KV step's products) and one column */
        check_gemm(k, 0, 0, 1, 777, 301, 1.0f, 1.0f);
        check_gemm(k, 0, 1, 1, 515, 333, 1.0f, 0.0f);
        check_gemm(k, 1, 0, 411, 1, 299, 0.5f, 1.0f);
    }
}

/* ---- the layers ---- */

/* Runs `body` once on one thread into the buffers `outs` (sizes `sizes`,
 * restored from `init` before each run), then on each team, and compares. */
typedef struct {
    float *buf[6];
    float *init[6];
    size_t n[6];
    int count;
} outputs;

static void outputs_add(outputs *o, size_t n) {
    o->init[o->count] = randn(n, 1.0f);
    o->buf[o->count] = malloc(n * sizeof(float));
    o->n[o->count] = n;
    o->count++;
}

static void outputs_reset(outputs *o) {
    for (int i = 0; i < o->count; i++) memcpy(o->buf[i], o->init[i], o->n[i] * sizeof(float));
}

static void outputs_free(outputs *o) {
    for (int i = 0; i < o->count; i++) free(o->buf[i]), free(o->init[i]);
}

typedef void (*layer_run)(const cllm_kernel_table *k, void *ctx, float *const *out);

static void check_layer(const cllm_kernel_table *k, const char *name, layer_run run, void *ctx, outputs *o) {
    float *ref[6];
    use_team(1);
    outputs_reset(o);
    run(k, ctx, o->buf);
    for (int i = 0; i < o->count; i++) {
        ref[i] = malloc(o->n[i] * sizeof(float));
        memcpy(ref[i], o->buf[i], o->n[i] * sizeof(float));
    }
    for (int t = 0; t < N_TEAMS; t++) {
        use_team(team_sizes[t]);
        outputs_reset(o);
        run(k, ctx, o->buf);
        for (int i = 0; i < o->count; i++) {
            char what[160];
            snprintf(what, sizeof what, "%s %s output %d team=%d", k->name, name, i, team_sizes[t]);
            assert_same_bits(ref[i], o->buf[i], o->n[i], what);
        }
    }
    use_team(1);
    for (int i = 0; i < o->count; i++) free(ref[i]);
}

typedef struct {
    int N, C, V, B, T, NH;
    float *x, *y, *w, *b, *d, *mean, *rstd, *scratch;
    const uint16_t *y16; /* y's bf16 copy: the linear layers in bf16 mode; NULL: fp32 */
    int32_t *tokens;
} layer_inputs;

static void run_layernorm(const cllm_kernel_table *k, void *ctx, float *const *out) {
    layer_inputs *in = ctx;
    layernorm_forward(k, out[0], out[1], out[2], in->x, in->w, in->b, in->N, in->C);
}

static void run_residual_layernorm(const cllm_kernel_table *k, void *ctx, float *const *out) {
    layer_inputs *in = ctx;
    residual_layernorm_forward(k, out[0], out[1], out[2], out[3], in->x, in->y, in->b, in->w, in->b, in->N, in->C);
}

static void run_layernorm_backward(const cllm_kernel_table *k, void *ctx, float *const *out) {
    layer_inputs *in = ctx;
    layernorm_backward(k, out[0], out[1], out[2], in->d, in->x, in->w, in->mean, in->rstd, in->N, in->C);
}

static void run_gelu_backward(const cllm_kernel_table *k, void *ctx, float *const *out) {
    layer_inputs *in = ctx;
    gelu_backward_overwrite_bias_sums(k, out[0], out[1], in->x, in->d, in->N, in->C);
}

static void run_bias_gelu(const cllm_kernel_table *k, void *ctx, float *const *out) {
    layer_inputs *in = ctx;
    memcpy(out[1], in->x, (size_t)in->N * in->C * sizeof(float));
    bias_gelu_forward(k, out[0], out[1], in->b, in->N, in->C);
}

static void run_linear_backward(const cllm_kernel_table *k, void *ctx, float *const *out) {
    layer_inputs *in = ctx; /* x [N, C] in, d [N, V] out-gradient, y [C, V] weight */
    linear_backward_beta(k, out[0], 1.0f, out[1], out[2], 1.0f, in->d, in->x, in->y, in->y16, in->N, in->C, in->V,
                         LINEAR_W_IN_OUT);
    linear_backward_write(k, out[3], out[4], out[5], in->d, in->x, in->y, in->y16, in->N, in->C, in->V,
                          LINEAR_W_OUT_IN);
}

static void run_linear_forward(const cllm_kernel_table *k, void *ctx, float *const *out) {
    layer_inputs *in = ctx;
    linear_forward(k, out[0], in->x, in->y, in->y16, in->b, in->N, in->C, in->V, LINEAR_W_IN_OUT);
}

static void run_embedding_backward(const cllm_kernel_table *k, void *ctx, float *const *out) {
    (void)k;
    layer_inputs *in = ctx; /* d [B*T, C] */
    embedding_backward(out[0], out[1], in->d, in->tokens, in->B, in->T, in->C);
    embedding_backward_write_wpe(out[2], out[3], in->d, in->tokens, in->B, in->T, in->C);
}

static void run_crossentropy(const cllm_kernel_table *k, void *ctx, float *const *out) {
    layer_inputs *in = ctx; /* x [N, V] logits, tokens [N] targets */
    softmax_crossentropy_forward(k, out[0], out[1], in->x, in->tokens, in->N, in->V);
    softmax_crossentropy_backward(k, out[2], in->x, out[1], in->tokens, 0.25f, in->N, in->V);
}

static void run_attention_in(const cllm_kernel_table *k, attention_precision prec, void *ctx, float *const *out) {
    layer_inputs *in = ctx; /* x [B*T, 3C] qkv, d [B*T, C] */
    attention_forward(k, prec, out[0], out[1], in->x, in->B, in->T, in->C, in->NH);
    attention_backward_beta(k, prec, out[2], 1.0f, in->scratch, 4, in->d, in->x, out[1], in->B, in->T, in->C,
                            in->NH);
}

static void run_attention(const cllm_kernel_table *k, void *ctx, float *const *out) {
    run_attention_in(k, ATTENTION_FP32, ctx, out);
}

static void run_attention_bf16(const cllm_kernel_table *k, void *ctx, float *const *out) {
    run_attention_in(k, ATTENTION_BF16, ctx, out);
}

static void test_team_layers_same_bits(void **state) {
    (void)state;
    for (int s = 0; s < CLLM_SIMD_COUNT; s++) {
        const cllm_kernel_table *k = cllm_kernel_table_for((cllm_simd)s);
        if (!k) continue;
        layer_inputs in = {.N = rand_in(97, 131), .C = rand_in(1001, 1201), .V = rand_in(200, 300)};
        size_t NC = (size_t)in.N * in.C;
        in.x = randn(NC, 1.0f), in.y = randn(NC, 1.0f), in.d = randn(NC, 1.0f);
        in.w = randn((size_t)in.C, 1.0f), in.b = randn((size_t)in.C, 1.0f);
        in.mean = randn((size_t)in.N, 0.1f), in.rstd = randn((size_t)in.N, 1.0f);
        outputs o = {0};
        outputs_add(&o, NC), outputs_add(&o, (size_t)in.N), outputs_add(&o, (size_t)in.N);
        check_layer(k, "layernorm_forward", run_layernorm, &in, &o);
        outputs_free(&o);
        memset(&o, 0, sizeof o);
        outputs_add(&o, NC), outputs_add(&o, NC), outputs_add(&o, (size_t)in.N), outputs_add(&o, (size_t)in.N);
        check_layer(k, "residual_layernorm_forward", run_residual_layernorm, &in, &o);
        outputs_free(&o);
        memset(&o, 0, sizeof o);
        outputs_add(&o, NC), outputs_add(&o, (size_t)in.C), outputs_add(&o, (size_t)in.C);
        check_layer(k, "layernorm_backward", run_layernorm_backward, &in, &o);
        outputs_free(&o);
        memset(&o, 0, sizeof o);
        outputs_add(&o, NC), outputs_add(&o, (size_t)in.C);
        check_layer(k, "gelu_backward_overwrite_bias_sums", run_gelu_backward, &in, &o);
        outputs_free(&o);
        memset(&o, 0, sizeof o);
        outputs_add(&o, NC), outputs_add(&o, NC);
        check_layer(k, "bias_gelu_forward", run_bias_gelu, &in, &o);
        outputs_free(&o);

        /* products: x [N, C'] with C' = 131 inputs, V outputs */
        layer_inputs lin = in;
        lin.C = 131;
        memset(&o, 0, sizeof o);
        outputs_add(&o, (size_t)in.N * in.V);
        check_layer(k, "linear_forward", run_linear_forward, &lin, &o);
        outputs_free(&o);
        memset(&o, 0, sizeof o);
        outputs_add(&o, (size_t)in.N * lin.C), outputs_add(&o, (size_t)lin.C * in.V), outputs_add(&o, (size_t)in.V);
        outputs_add(&o, (size_t)in.N * lin.C), outputs_add(&o, (size_t)lin.C * in.V), outputs_add(&o, (size_t)in.V);
        check_layer(k, "linear_backward", run_linear_backward, &lin, &o);
        outputs_free(&o);
        /* the same products in bf16 (team_gemm_bf16) */
        uint16_t *y16 = malloc(NC * sizeof(uint16_t));
        k->bf16_round(y16, in.y, NC);
        lin.y16 = y16;
        memset(&o, 0, sizeof o);
        outputs_add(&o, (size_t)in.N * in.V);
        check_layer(k, "linear_forward bf16", run_linear_forward, &lin, &o);
        outputs_free(&o);
        memset(&o, 0, sizeof o);
        outputs_add(&o, (size_t)in.N * lin.C), outputs_add(&o, (size_t)lin.C * in.V), outputs_add(&o, (size_t)in.V);
        outputs_add(&o, (size_t)in.N * lin.C), outputs_add(&o, (size_t)lin.C * in.V), outputs_add(&o, (size_t)in.V);
        check_layer(k, "linear_backward bf16", run_linear_backward, &lin, &o);
        outputs_free(&o);
        lin.y16 = NULL;
        free(y16);

        /* embedding: B x T positions over a vocabulary of V rows, repeated ids */
        layer_inputs emb = in;
        emb.B = 3, emb.T = in.N / 3, emb.V = 37;
        emb.tokens = malloc((size_t)in.N * sizeof(int32_t));
        for (int i = 0; i < in.N; i++) emb.tokens[i] = rand_in(0, emb.V - 1);
        memset(&o, 0, sizeof o);
        outputs_add(&o, (size_t)emb.V * in.C), outputs_add(&o, (size_t)emb.T * in.C);
        outputs_add(&o, (size_t)emb.V * in.C), outputs_add(&o, (size_t)emb.T * in.C);
        check_layer(k, "embedding_backward", run_embedding_backward, &emb, &o);
        outputs_free(&o);

        /* cross-entropy over V = C logits per row */
        layer_inputs ce = in;
        ce.V = in.C;
        for (int i = 0; i < in.N; i++) emb.tokens[i] = rand_in(0, ce.V - 1);
        ce.tokens = emb.tokens;
        memset(&o, 0, sizeof o);
        outputs_add(&o, (size_t)in.N), outputs_add(&o, (size_t)in.N), outputs_add(&o, NC);
        check_layer(k, "softmax_crossentropy", run_crossentropy, &ce, &o);
        outputs_free(&o);
        free(emb.tokens);

        /* attention: B = 3 sequences of T = 37, C = 60 over NH = 5 heads */
        layer_inputs at = {.B = 3, .T = 37, .C = 60, .NH = 5};
        size_t BT = (size_t)at.B * at.T;
        at.x = randn(BT * 3 * at.C, 1.0f), at.d = randn(BT * at.C, 1.0f), at.scratch = randn(4 * (size_t)at.T * at.T, 1.0f);
        memset(&o, 0, sizeof o);
        outputs_add(&o, BT * at.C), outputs_add(&o, (size_t)at.B * at.NH * at.T * at.T), outputs_add(&o, BT * 3 * at.C);
        check_layer(k, "attention", run_attention, &at, &o);
        check_layer(k, "attention (bf16 products)", run_attention_bf16, &at, &o);
        outputs_free(&o);
        free(at.x), free(at.d), free(at.scratch);
        free(in.x), free(in.y), free(in.d), free(in.w), free(in.b), free(in.mean), free(in.rstd);
    }
}

/* ---- the model ---- */

static const gpt2_config model_cfg = {.n_layer = 2, .n_head = 4, .n_embd = 256, .seq_len = 24, .vocab_size = 301};

/* Forward loss, logits and the whole written gradient of one micro-batch of
 * 3 sequences, on the current team. */
static void model_step(const gpt2_model *m, const int32_t *tok, const int32_t *tgt, float *loss, float *logits,
                       float *grad) {
    gpt2_acts *a = gpt2_acts_create_team(&m->cfg, 3, 4);
    assert_non_null(a);
    *loss = gpt2_forward(m, a, tok, tgt, 3, m->cfg.seq_len);
    memcpy(logits, gpt2_logits(a), (size_t)3 * m->cfg.seq_len * m->cfg.vocab_size * sizeof(float));
    gpt2_backward_overwrite(m, a, grad, 0.5f);
    gpt2_acts_destroy(a);
}

/* Logits of every KV step over a sequence longer than nothing: each position
 * attends over the cache. */
static void model_kv(const gpt2_model *m, const int32_t *tok, int n, float *logits) {
    gpt2_kv *kv = gpt2_kv_create(&m->cfg);
    assert_non_null(kv);
    for (int i = 0; i < n; i++) {
        const float *l = gpt2_kv_step(m, kv, tok[i]);
        assert_non_null(l);
        memcpy(logits + (size_t)i * m->cfg.vocab_size, l, (size_t)m->cfg.vocab_size * sizeof(float));
    }
    gpt2_kv_destroy(kv);
}

static void test_team_model_and_kv_step_same_bits(void **state) {
    (void)state;
    for (int s = 0; s < CLLM_SIMD_COUNT; s++) {
        const cllm_kernel_table *k = cllm_kernel_table_for((cllm_simd)s);
        if (!k) continue;
        gpt2_model m;
        assert_int_equal(gpt2_create(&m, &model_cfg), CLLM_OK);
        gpt2_use_kernels(&m, k);
        gpt2_init_weights(&m, 7);
        int T = model_cfg.seq_len, V = model_cfg.vocab_size, n = 3 * T;
        int32_t tok[3 * 24], tgt[3 * 24];
        for (int i = 0; i < n; i++) tok[i] = rand_in(0, V - 1), tgt[i] = rand_in(0, V - 1);
        size_t nl = (size_t)n * V;
        float *logits_ref = malloc(nl * sizeof(float)), *logits = malloc(nl * sizeof(float));
        float *grad_ref = malloc(m.n_params * sizeof(float)), *grad = malloc(m.n_params * sizeof(float));
        float *kv_ref = malloc((size_t)T * V * sizeof(float)), *kv = malloc((size_t)T * V * sizeof(float));
        float loss_ref, loss;
        use_team(1);
        model_step(&m, tok, tgt, &loss_ref, logits_ref, grad_ref);
        model_kv(&m, tok, T, kv_ref);
        for (int t = 0; t < N_TEAMS; t++) {
            use_team(team_sizes[t]);
            model_step(&m, tok, tgt, &loss, logits, grad);
            model_kv(&m, tok, T, kv);
            char what[96];
            snprintf(what, sizeof what, "%s model team=%d", k->name, team_sizes[t]);
            assert_same_bits(&loss_ref, &loss, 1, what);
            assert_same_bits(logits_ref, logits, nl, what);
            assert_same_bits(grad_ref, grad, m.n_params, what);
            snprintf(what, sizeof what, "%s KV step team=%d", k->name, team_sizes[t]);
            assert_same_bits(kv_ref, kv, (size_t)T * V, what);
        }
        use_team(1);
        free(logits_ref), free(logits), free(grad_ref), free(grad), free(kv_ref), free(kv);
        gpt2_destroy(&m);
    }
}

/* team_block covers [0, n) once, in whole grains, for any thread count. */
static void test_team_block_partitions(void **state) {
    (void)state;
    for (int n = 0; n < 300; n += 7)
        for (int grain = 1; grain <= 32; grain *= 2)
            for (int threads = 1; threads <= 9; threads++) {
                int expect = 0;
                for (int t = 0; t < threads; t++) {
                    int lo, hi;
                    team_block(n, grain, t, threads, &lo, &hi);
                    assert_int_equal(lo, expect);
                    assert_true(hi >= lo && (lo % grain == 0));
                    expect = hi;
                }
                assert_int_equal(expect, n);
            }
}

int main(void) {
    cllm_rng_seed(&rng, 2024);
    /* The top-level thread's team is set per case with omp_set_num_threads. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_team_block_partitions),
        cmocka_unit_test(test_team_gemm_same_bits),
        cmocka_unit_test(test_team_layers_same_bits),
        cmocka_unit_test(test_team_model_and_kv_step_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
