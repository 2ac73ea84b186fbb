/* Every layer's backward against central finite differences of its forward.
 *
 * Each check builds the objective L = sum_i r_i * out_i (r random, summed in
 * double) so that dL/dout = r, runs the backward with dout = r into gradient
 * buffers PRE-FILLED with a constant (so the check also proves that backward
 * accumulates), subtracts the constant, and compares with (L(x+h)-L(x-h))/2h.
 *
 * Tolerance (float forward, h = 1e-2, values and gradients O(1)): each output
 * carries a relative rounding error of a few 1e-8, so L(x±h) is off by about
 * sqrt(n_out)*1e-7 ~ 1e-6 and the difference quotient by ~1e-6/2e-2 = 5e-5;
 * the truncation error h^2/6 * f''' is ~2e-5. Both are ~1e-4 of the O(1)
 * gradients; 2e-3 leaves a 20x margin while any missing or wrong term (an
 * O(0.1..1) error) fails loudly. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cllm/nn/layers.h"
#include "ref/nn_ref.h"
#include "cllm/base/rng.h"
#include "gradcheck.h"

#define FD_H 1e-2f
#define FD_TOL 2e-3
#define PREFILL 0.5f

static cllm_rng rng;

static float *randn(int n, float scale) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) p[i] = scale * cllm_rng_normal(&rng);
    return p;
}

static float *filled(int n, float v) {
    float *p = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) p[i] = v;
    return p;
}

/* Undo the pre-fill so the buffer holds the analytic gradient alone. */
static void remove_prefill(float *g, int n) {
    for (int i = 0; i < n; i++) g[i] -= PREFILL;
}

static double weighted_sum(const float *out, const float *r, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)out[i] * r[i];
    return s;
}

/* The table every layer call of a test passes: the best one for this CPU,
 * unless a loop over the paths selects another. */
static const cllm_kernel_table *kern;

/* Selects path's table for the calls that follow; 0 (with a note) when this
 * CPU cannot run it. */
static int select_path(int path) {
    const cllm_kernel_table *k = cllm_kernel_table_for((cllm_simd)path);
    if (!k) {
        print_message("%s path: skipped, this CPU cannot run it\n", cllm_simd_name((cllm_simd)path));
        return 0;
    }
    kern = k;
    return 1;
}

static int setup(void **state) {
    (void)state;
    cllm_rng_seed(&rng, 1234);
    kern = cllm_kernel_table_best();
    return 0;
}

/* ---------------------------------------------------------------- embedding */

typedef struct {
    int B, T, C;
    int32_t tokens[12];
    float *wte, *wpe, *out, *r;
} emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    embedding_forward(c->out, c->tokens, c->wte, c->wpe, c->B, c->T, c->C);
    return weighted_sum(c->out, c->r, c->B * c->T * c->C);
}

static void test_embedding(void **state) {
    (void)state;
    emb_ctx c = {.B = 2, .T = 6, .C = 4};
    int V = 5, N = c.B * c.T;
    for (int i = 0; i < N; i++) c.tokens[i] = (int32_t)(i * 7 % V); /* repeats: gradients must add up */
    c.wte = randn(V * c.C, 1.0f);
    c.wpe = randn(c.T * c.C, 1.0f);
    c.out = malloc((size_t)N * c.C * sizeof(float));
    c.r = randn(N * c.C, 1.0f);
    float *dwte = filled(V * c.C, PREFILL), *dwpe = filled(c.T * c.C, PREFILL);
    embedding_backward(dwte, dwpe, c.r, c.tokens, c.B, c.T, c.C);
    remove_prefill(dwte, V * c.C);
    remove_prefill(dwpe, c.T * c.C);
    gc_tensor ts[] = {{"wte", c.wte, dwte, V * c.C, 1}, {"wpe", c.wpe, dwpe, c.T * c.C, 1}};
    assert_true(gc_check("embedding", emb_loss, &c, ts, 2, FD_H, FD_TOL) <= FD_TOL);
    free(c.wte), free(c.wpe), free(c.out), free(c.r), free(dwte), free(dwpe);
}

/* ---------------------------------------------------------------- layernorm */

typedef struct {
    int N, C;
    float *inp, *w, *b, *out, *mean, *rstd, *r;
} ln_ctx;

static double ln_loss(void *p) {
    ln_ctx *c = p;
    layernorm_forward(kern, c->out, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C);
    return weighted_sum(c->out, c->r, c->N * c->C);
}

static void test_layernorm(void **state) {
    (void)state;
    ln_ctx c = {.N = 5, .C = 12};
    int n = c.N * c.C;
    c.inp = randn(n, 1.0f);
    for (int i = 0; i < c.C; i++) c.inp[i] += 3.0f; /* one row with a large mean */
    c.w = randn(c.C, 1.0f);
    c.b = randn(c.C, 1.0f);
    c.out = malloc((size_t)n * sizeof(float));
    c.mean = malloc((size_t)c.N * sizeof(float));
    c.rstd = malloc((size_t)c.N * sizeof(float));
    c.r = randn(n, 1.0f);
    ln_loss(&c);
    float *dinp = filled(n, PREFILL), *dw = filled(c.C, PREFILL), *db = filled(c.C, PREFILL);
    layernorm_backward(kern, dinp, dw, db, c.r, c.inp, c.w, c.mean, c.rstd, c.N, c.C);
    remove_prefill(dinp, n);
    remove_prefill(dw, c.C);
    remove_prefill(db, c.C);
    gc_tensor ts[] = {{"inp", c.inp, dinp, n, 1}, {"weight", c.w, dw, c.C, 1}, {"bias", c.b, db, c.C, 1}};
    assert_true(gc_check("layernorm", ln_loss, &c, ts, 3, FD_H, FD_TOL) <= FD_TOL);
    /* The normalized rows have mean 0 and variance 1 (before weight/bias). */
    float *ones = filled(c.C, 1.0f), *zeros = filled(c.C, 0.0f);
    layernorm_forward(kern, c.out, c.mean, c.rstd, c.inp, ones, zeros, c.N, c.C);
    for (int i = 0; i < c.N; i++) {
        double s = 0, s2 = 0;
        for (int j = 0; j < c.C; j++) s += c.out[i * c.C + j], s2 += (double)c.out[i * c.C + j] * c.out[i * c.C + j];
        assert_true(fabs(s / c.C) < 1e-5);
        assert_true(fabs(s2 / c.C - 1.0) < 1e-3);
    }
    free(ones), free(zeros);
    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.mean), free(c.rstd), free(c.r);
    free(dinp), free(dw), free(db);
}

/* ---------------------------------------------------------------- linear */

typedef struct {
    int N, in, out;
    linear_layout layout;
    float *inp, *w, *b, *y, *r;
} lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    linear_forward(kern, c->y, c->inp, c->w, NULL, c->b, c->N, c->in, c->out, c->layout);
    return weighted_sum(c->y, c->r, c->N * c->out);
}

static void check_linear(linear_layout layout, int with_bias) {
    lin_ctx c = {.N = 4, .in = 6, .out = 5, .layout = layout};
    c.inp = randn(c.N * c.in, 1.0f);
    c.w = randn(c.in * c.out, 1.0f);
    c.b = with_bias ? randn(c.out, 1.0f) : NULL;
    c.y = malloc((size_t)c.N * c.out * sizeof(float));
    c.r = randn(c.N * c.out, 1.0f);
    /* Forward against the definition, in double. */
    lin_loss(&c);
    for (int i = 0; i < c.N; i++) {
        for (int j = 0; j < c.out; j++) {
            double s = with_bias ? c.b[j] : 0.0;
            for (int k = 0; k < c.in; k++)
                s += (double)c.inp[i * c.in + k] *
                     (layout == LINEAR_W_IN_OUT ? c.w[k * c.out + j] : c.w[j * c.in + k]);
            assert_true(fabs(s - c.y[i * c.out + j]) < 1e-5);
        }
    }
    float *dinp = filled(c.N * c.in, PREFILL), *dw = filled(c.in * c.out, PREFILL);
    float *db = with_bias ? filled(c.out, PREFILL) : NULL;
    linear_backward(kern, dinp, dw, db, c.r, c.inp, c.w, NULL, c.N, c.in, c.out, layout);
    remove_prefill(dinp, c.N * c.in);
    remove_prefill(dw, c.in * c.out);
    if (db) remove_prefill(db, c.out);
    gc_tensor ts[] = {{"inp", c.inp, dinp, c.N * c.in, 1}, {"weight", c.w, dw, c.in * c.out, 1},
                      {"bias", c.b, db, c.out, 1}};
    const char *what = layout == LINEAR_W_IN_OUT ? "linear[in,out]" : "linear[out,in]";
    assert_true(gc_check(what, lin_loss, &c, ts, with_bias ? 3 : 2, FD_H, FD_TOL) <= FD_TOL);
    free(c.inp), free(c.w), free(c.b), free(c.y), free(c.r), free(dinp), free(dw), free(db);
}

static void test_linear_conv1d_layout(void **state) {
    (void)state;
    check_linear(LINEAR_W_IN_OUT, 1);
}

static void test_linear_tied_head_layout(void **state) {
    (void)state;
    check_linear(LINEAR_W_OUT_IN, 0);
}

/* ---------------------------------------------------------------- attention */

typedef struct {
    int B, T, C, NH;
    float *qkv, *att, *out, *r;
} att_ctx;

static double att_loss(void *p) {
    att_ctx *c = p;
    attention_forward(kern, ATTENTION_FP32, c->out, c->att, c->qkv, c->B, c->T, c->C, c->NH);
    return weighted_sum(c->out, c->r, c->B * c->T * c->C);
}

/* Attention by its definition, in double, for one (b, h, t): the forward
 * check that does not share a line of code with attention_forward. */
static double naive_attention_out(const att_ctx *c, int b, int h, int t, int i) {
    int hs = c->C / c->NH, ld = 3 * c->C;
    const float *row = c->qkv + (size_t)b * c->T * ld;
    double s[256], mx = -1e300, z = 0, y = 0; /* tests keep T <= 256 */
    for (int j = 0; j <= t; j++) {
        double dot = 0;
        for (int e = 0; e < hs; e++)
            dot += (double)row[t * ld + h * hs + e] * row[j * ld + c->C + h * hs + e];
        s[j] = dot / sqrt((double)hs);
        mx = fmax(mx, s[j]);
    }
    for (int j = 0; j <= t; j++) z += exp(s[j] - mx);
    for (int j = 0; j <= t; j++) y += exp(s[j] - mx) / z * row[j * ld + 2 * c->C + h * hs + i];
    return y;
}

static void run_attention_check(int B, int T, int C, int NH, int stride) {
    att_ctx c = {.B = B, .T = T, .C = C, .NH = NH};
    int nqkv = c.B * c.T * 3 * c.C, nout = c.B * c.T * c.C, hs = C / NH;
    c.qkv = randn(nqkv, 1.0f);
    c.att = malloc((size_t)c.B * c.NH * c.T * c.T * sizeof(float));
    c.out = malloc((size_t)nout * sizeof(float));
    c.r = randn(nout, 1.0f);
    att_loss(&c);
    /* Causal: each probability row sums to 1 over 0..t and is 0 above. */
    for (int row = 0; row < c.B * c.NH * c.T; row++) {
        int t = row % c.T;
        double s = 0;
        for (int j = 0; j < c.T; j++) {
            float a = c.att[(size_t)row * c.T + j];
            if (j > t) assert_true(a == 0.0f);
            s += a;
        }
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    double worst = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < hs; i++)
                    worst = fmax(worst, fabs(naive_attention_out(&c, b, h, t, i) -
                                             c.out[((size_t)b * T + t) * C + h * hs + i]));
    printf("attention T=%d: forward vs definition max |diff| %.2e\n", T, worst);
    assert_true(worst < 1e-5);
    float *dqkv = filled(nqkv, PREFILL), *scratch = malloc((size_t)c.T * c.T * sizeof(float));
    for (int i = 0; i < c.T * c.T; i++) scratch[i] = NAN; /* stale scratch must not leak in */
    attention_backward(kern, dqkv, scratch, c.r, c.qkv, c.att, c.B, c.T, c.C, c.NH);
    remove_prefill(dqkv, nqkv);
    gc_tensor ts[] = {{"qkv", c.qkv, dqkv, nqkv, stride}};
    assert_true(gc_check("attention", att_loss, &c, ts, 1, FD_H, FD_TOL) <= FD_TOL);
    free(c.qkv), free(c.att), free(c.out), free(c.r), free(dqkv), free(scratch);
}

static void test_attention(void **state) {
    (void)state;
    run_attention_check(2, 5, 8, 2, 1);
}

/* Longer than two causal row blocks (64), with a partial last block. */
static void test_attention_long_sequence(void **state) {
    (void)state;
    run_attention_check(1, 150, 8, 2, 11);
}

/* Attention calls the gemm kernel directly: it must hold on the scalar path too. */
static void test_attention_scalar_kernels(void **state) {
    (void)state;
    const cllm_kernel_table *saved = kern;
    kern = cllm_kernel_table_for(CLLM_SIMD_SCALAR);
    run_attention_check(2, 5, 8, 2, 1);
    run_attention_check(1, 150, 8, 2, 11);
    kern = saved;
}

/* ---------------------------------------------------------------- overwrite variants */

static void fill_nan(float *p, int n) {
    for (int i = 0; i < n; i++) p[i] = NAN;
}

static double max_abs(const float *a, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

static double max_abs_diff(const float *a, const float *b, int n) {
    double worst = 0;
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

/* An *_overwrite backward into a NaN-filled input gradient must equal the
 * accumulating one into zeros (same products, so bitwise or within the
 * rounding of a different summation order), and must still accumulate the
 * parameter gradients. Odd sizes so no tile divides them. */
static void test_linear_backward_overwrite(void **state) {
    (void)state;
    for (int layout = LINEAR_W_IN_OUT; layout <= LINEAR_W_OUT_IN; layout++) {
        int N = 37, in = 29, out = 45;
        float *inp = randn(N * in, 1.0f), *w = randn(in * out, 1.0f), *dout = randn(N * out, 1.0f);
        float *dx_acc = filled(N * in, 0.0f), *dx_set = malloc((size_t)N * in * sizeof(float));
        float *dw_acc = filled(in * out, PREFILL), *dw_set = filled(in * out, PREFILL);
        float *db_acc = filled(out, PREFILL), *db_set = filled(out, PREFILL);
        fill_nan(dx_set, N * in);
        linear_backward(kern, dx_acc, dw_acc, db_acc, dout, inp, w, NULL, N, in, out, (linear_layout)layout);
        linear_backward_overwrite(kern, dx_set, dw_set, db_set, dout, inp, w, NULL, N, in, out, (linear_layout)layout);
        assert_true(max_abs_diff(dx_acc, dx_set, N * in) < 1e-5);
        assert_true(max_abs_diff(dw_acc, dw_set, in * out) == 0.0);
        assert_true(max_abs_diff(db_acc, db_set, out) == 0.0);
        free(inp), free(w), free(dout), free(dx_acc), free(dx_set), free(dw_acc), free(dw_set), free(db_acc),
            free(db_set);
    }
}

static void check_attention_overwrite(int B, int T, int C, int NH) {
    int nqkv = B * T * 3 * C, nout = B * T * C;
    float *qkv = randn(nqkv, 1.0f), *dout = randn(nout, 1.0f);
    float *att = malloc((size_t)B * NH * T * T * sizeof(float)), *out = malloc((size_t)nout * sizeof(float));
    float *scratch = malloc((size_t)T * T * sizeof(float));
    float *d_acc = filled(nqkv, 0.0f), *d_set = malloc((size_t)nqkv * sizeof(float));
    fill_nan(d_set, nqkv);
    attention_forward(kern, ATTENTION_FP32, out, att, qkv, B, T, C, NH);
    attention_backward(kern, d_acc, scratch, dout, qkv, att, B, T, C, NH);
    attention_backward_overwrite(kern, ATTENTION_FP32, d_set, scratch, 1, dout, qkv, att, B, T, C, NH);
    double worst = max_abs_diff(d_acc, d_set, nqkv);
    printf("attention overwrite T=%d: max |diff| %.2e\n", T, worst);
    assert_true(worst < 1e-5); /* also fails on any NaN left unwritten */
    free(qkv), free(dout), free(att), free(out), free(scratch), free(d_acc), free(d_set);
}

static void test_attention_backward_overwrite(void **state) {
    (void)state;
    check_attention_overwrite(2, 5, 8, 2);
    check_attention_overwrite(1, 150, 12, 3); /* a partial last row block */
    check_attention_overwrite(1, 128, 8, 2); /* exactly two row blocks */
}

/* bf16 products in attention (bf16 mode): close to fp32 with the rounding
 * of bf16 operands (each relative error <= 2^-9, a product term's <= 2^-8,
 * K terms adding like a random walk, three products in a row for dQ and
 * dK), but not fp32's bits (bf16 really ran); the overwriting backward onto
 * garbage equals the accumulating one onto zeros, bit for bit. hs = 20, so
 * the 1/sqrt(hs) scale is not a power of two, and T = 150 ends with a
 * partial row block. */
static void test_attention_bf16_products(void **state) {
    (void)state;
    int B = 2, T = 150, C = 40, NH = 2;
    int nqkv = B * T * 3 * C, nout = B * T * C, natt = B * NH * T * T;
    float *qkv = randn(nqkv, 1.0f), *dout = randn(nout, 1.0f);
    float *att[2], *out[2], *d[2], *scratch = malloc((size_t)T * T * sizeof(float));
    for (int p = 0; p < 2; p++) {
        att[p] = malloc((size_t)natt * sizeof(float)), out[p] = malloc((size_t)nout * sizeof(float));
        d[p] = filled(nqkv, 0.0f);
        attention_forward(kern, p ? ATTENTION_BF16 : ATTENTION_FP32, out[p], att[p], qkv, B, T, C, NH);
        attention_backward_beta(kern, p ? ATTENTION_BF16 : ATTENTION_FP32, d[p], 1.0f, scratch, 1, dout, qkv, att[p],
                                B, T, C, NH);
    }
    double ea = max_abs_diff(att[1], att[0], natt);
    double eo = max_abs_diff(out[1], out[0], nout) / max_abs(out[0], nout);
    double ed = max_abs_diff(d[1], d[0], nqkv) / max_abs(d[0], nqkv);
    printf("attention bf16 vs fp32: probabilities max |diff| %.2e, out %.2e, dqkv %.2e (relative to the largest)\n",
           ea, eo, ed);
    assert_true(ea < 1e-2 && eo < 1e-2 && ed < 1e-2);
    assert_true(ea > 0.0 && eo > 0.0 && ed > 0.0);
    float *d_set = malloc((size_t)nqkv * sizeof(float));
    fill_nan(d_set, nqkv);
    attention_backward_overwrite(kern, ATTENTION_BF16, d_set, scratch, 1, dout, qkv, att[1], B, T, C, NH);
    assert_true(max_abs_diff(d_set, d[1], nqkv) == 0.0);
    for (int p = 0; p < 2; p++) free(att[p]), free(out[p]), free(d[p]);
    free(qkv), free(dout), free(scratch), free(d_set);
}

static void test_gelu_backward_overwrite(void **state) {
    (void)state;
    int n = 1001;
    float *x = randn(n, 2.0f), *dout = randn(n, 1.0f), *acc = filled(n, 0.0f);
    float *set = malloc((size_t)n * sizeof(float));
    const cllm_kernel_table *saved = kern;
    for (int path = CLLM_SIMD_SCALAR; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        for (int i = 0; i < n; i++) acc[i] = 0.0f;
        fill_nan(set, n);
        gelu_backward(kern, acc, x, dout, n);
        gelu_backward_overwrite(kern, set, x, dout, n);
        assert_true(max_abs_diff(acc, set, n) == 0.0);
        /* In place: dinp aliasing dout. */
        memcpy(set, dout, (size_t)n * sizeof(float));
        gelu_backward_overwrite(kern, set, x, set, n);
        assert_true(max_abs_diff(acc, set, n) == 0.0);
    }
    kern = saved;
    free(x), free(dout), free(acc), free(set);
}

/* The vectorised causal softmax (call-free exp, AVX2 max) and its backward
 * against the scalar reference (libm expf, sequential sums) on a T that is
 * not a multiple of 8 or of the row block. exp_arith is within ~2 ulp of
 * expf and the sums (up to T terms) are reordered: probabilities and outputs
 * agree to ~1e-6, gradients to ~1e-6 of their largest magnitude. */
static void test_attention_fast_paths_match_reference(void **state) {
    (void)state;
    int B = 2, T = 147, C = 16, NH = 2, nqkv = B * T * 3 * C, nout = B * T * C, natt = B * NH * T * T;
    float *qkv = randn(nqkv, 2.0f), *dout = randn(nout, 1.0f), *scratch = malloc((size_t)T * T * sizeof(float));
    float *att_ref = malloc((size_t)natt * sizeof(float)), *out_ref = malloc((size_t)nout * sizeof(float));
    float *att = malloc((size_t)natt * sizeof(float)), *out = malloc((size_t)nout * sizeof(float));
    float *d_ref = filled(nqkv, 0.0f), *d = filled(nqkv, 0.0f);
    const cllm_kernel_table *saved = kern;
    kern = cllm_kernel_table_for(CLLM_SIMD_SCALAR);
    attention_forward(kern, ATTENTION_FP32, out_ref, att_ref, qkv, B, T, C, NH);
    attention_backward(kern, d_ref, scratch, dout, qkv, att_ref, B, T, C, NH);
    int checked = 0;
    for (int path = CLLM_SIMD_OMP; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        attention_forward(kern, ATTENTION_FP32, out, att, qkv, B, T, C, NH);
        for (int i = 0; i < nqkv; i++) d[i] = 0.0f;
        attention_backward(kern, d, scratch, dout, qkv, att, B, T, C, NH);
        double ea = max_abs_diff(att, att_ref, natt), eo = max_abs_diff(out, out_ref, nout);
        double ed = max_abs_diff(d, d_ref, nqkv) / fmax(1.0, max_abs(d_ref, nqkv));
        printf("attention %s vs scalar: att %.2e, out %.2e, dqkv %.2e (relative to max |dqkv|)\n", cllm_simd_name((cllm_simd)path), ea, eo,
               ed);
        assert_true(ea < 1e-6 && eo < 1e-5 && ed < 1e-5);
        checked++;
    }
    kern = saved;
    assert_true(checked >= 1);
    free(qkv), free(dout), free(scratch), free(att_ref), free(out_ref), free(att), free(out), free(d_ref), free(d);
}

/* ---------------------------------------------------------------- fused and vectorised element-wise */

/* LayerNorm's vectorised rows (reassociated sums) against the sequential
 * scalar reference, on a width that is not a multiple of 8, rows with a
 * large mean (the cancellation case) and pre-filled accumulating gradients.
 * Values are O(1..10): relative 1e-5 of the largest is a few float ulps per
 * reordered term. */
static void test_layernorm_fast_paths_match_reference(void **state) {
    (void)state;
    int N = 9, C = 77;
    float *x = randn(N * C, 1.0f), *w = randn(C, 1.0f), *b = randn(C, 1.0f), *dout = randn(N * C, 1.0f);
    /* |mean| = 10 std: the centring matters, while the float rounding of a
     * mean near 1000 (~1e-4, the same for any summation order) would swamp
     * the comparison. */
    for (int c = 0; c < C; c++) x[3 * C + c] += 10.0f;
    float *o_ref = malloc((size_t)N * C * sizeof(float)), *o = malloc((size_t)N * C * sizeof(float));
    float mean_ref[9], rstd_ref[9], mean[9], rstd[9];
    float *dx_ref = filled(N * C, PREFILL), *dw_ref = filled(C, PREFILL), *db_ref = filled(C, PREFILL);
    float *dx = filled(N * C, PREFILL), *dw = filled(C, PREFILL), *db = filled(C, PREFILL);
    const cllm_kernel_table *saved = kern;
    kern = cllm_kernel_table_for(CLLM_SIMD_SCALAR);
    layernorm_forward(kern, o_ref, mean_ref, rstd_ref, x, w, b, N, C);
    layernorm_backward(kern, dx_ref, dw_ref, db_ref, dout, x, w, mean_ref, rstd_ref, N, C);
    int checked = 0;
    for (int path = CLLM_SIMD_OMP; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        for (int i = 0; i < N * C; i++) dx[i] = PREFILL;
        for (int c = 0; c < C; c++) dw[c] = db[c] = PREFILL;
        layernorm_forward(kern, o, mean, rstd, x, w, b, N, C);
        layernorm_backward(kern, dx, dw, db, dout, x, w, mean, rstd, N, C);
        double eo = max_abs_diff(o, o_ref, N * C) / fmax(1.0, max_abs(o_ref, N * C));
        double em = 0, er = 0;
        for (int i = 0; i < N; i++) {
            em = fmax(em, fabs(mean[i] - mean_ref[i]) / fmax(1.0, fabs(mean_ref[i])));
            er = fmax(er, fabs(rstd[i] - rstd_ref[i]) / rstd_ref[i]);
        }
        double ed = max_abs_diff(dx, dx_ref, N * C) / fmax(1.0, max_abs(dx_ref, N * C));
        double ew = max_abs_diff(dw, dw_ref, C) / fmax(1.0, max_abs(dw_ref, C));
        double eb = max_abs_diff(db, db_ref, C) / fmax(1.0, max_abs(db_ref, C));
        printf("layernorm %s vs scalar: out %.1e mean %.1e rstd %.1e dx %.1e dw %.1e db %.1e\n",
               cllm_simd_name((cllm_simd)path), eo, em, er, ed, ew, eb);
        assert_true(eo < 1e-5 && em < 1e-6 && er < 1e-5 && ed < 1e-5 && ew < 1e-5 && eb < 1e-6);
        checked++;
    }
    kern = saved;
    assert_true(checked >= 1);
    free(x), free(w), free(b), free(dout), free(o_ref), free(o), free(dx_ref), free(dw_ref), free(db_ref), free(dx),
        free(dw), free(db);
}

/* residual_layernorm_forward against residual_forward + layernorm_forward on
 * every path: the same row kernel, so bitwise equal; with a bias on b, equal
 * to adding the bias to b first (what a product with the bias writes); res
 * aliasing b, as the model calls it. */
static void test_residual_layernorm_matches_unfused(void **state) {
    (void)state;
    int N = 7, C = 45, n = N * C;
    float *a = randn(n, 1.0f), *b = randn(n, 1.0f), *bb = randn(C, 1.0f), *w = randn(C, 1.0f), *lb = randn(C, 1.0f);
    float *res_ref = malloc((size_t)n * sizeof(float)), *out_ref = malloc((size_t)n * sizeof(float));
    float *res = malloc((size_t)n * sizeof(float)), *out = malloc((size_t)n * sizeof(float));
    float mean_ref[7], rstd_ref[7], mean[7], rstd[7];
    const cllm_kernel_table *saved = kern;
    for (int path = CLLM_SIMD_SCALAR; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        for (int with_bias = 0; with_bias <= 1; with_bias++) {
            for (int i = 0; i < n; i++) res_ref[i] = b[i] + (with_bias ? bb[i % C] : 0.0f);
            residual_forward(res_ref, a, res_ref, n);
            layernorm_forward(kern, out_ref, mean_ref, rstd_ref, res_ref, w, lb, N, C);
            memcpy(res, b, (size_t)n * sizeof(float));
            residual_layernorm_forward(kern, res, out, mean, rstd, a, res, with_bias ? bb : NULL, w, lb, N, C);
            assert_true(max_abs_diff(res, res_ref, n) == 0.0);
            assert_true(max_abs_diff(out, out_ref, n) == 0.0);
            assert_true(max_abs_diff(mean, mean_ref, N) == 0.0 && max_abs_diff(rstd, rstd_ref, N) == 0.0);
        }
    }
    kern = saved;
    free(a), free(b), free(bb), free(w), free(lb), free(res_ref), free(out_ref), free(res), free(out);
}

/* bias_gelu_forward against the bias added by hand and gelu_forward, on
 * every path (each path's fused loop against that path's unfused one:
 * bitwise), and the fast fused paths against the scalar reference within the
 * GELU tolerance of test_gelu_fast_paths_match_reference. */
static void test_bias_gelu_matches_unfused(void **state) {
    (void)state;
    int N = 5, C = 83, n = N * C;
    float *pre0 = randn(n, 2.0f), *bias = randn(C, 1.0f);
    float *pre = malloc((size_t)n * sizeof(float)), *out = malloc((size_t)n * sizeof(float));
    float *pre_ref = malloc((size_t)n * sizeof(float)), *out_ref = malloc((size_t)n * sizeof(float));
    float *out_scalar = malloc((size_t)n * sizeof(float));
    const cllm_kernel_table *saved = kern;
    for (int path = CLLM_SIMD_SCALAR; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        for (int i = 0; i < n; i++) pre_ref[i] = pre0[i] + bias[i % C];
        gelu_forward(kern, out_ref, pre_ref, n);
        memcpy(pre, pre0, (size_t)n * sizeof(float));
        bias_gelu_forward(kern, out, pre, bias, N, C);
        assert_true(max_abs_diff(pre, pre_ref, n) == 0.0);
        assert_true(max_abs_diff(out, out_ref, n) == 0.0);
        if (path == CLLM_SIMD_SCALAR) memcpy(out_scalar, out, (size_t)n * sizeof(float));
        double worst = 0;
        for (int i = 0; i < n; i++)
            worst = fmax(worst, fabs(out[i] - out_scalar[i]) / fmax(1.0, fabs(pre_ref[i])));
        assert_true(worst <= 1e-6);
    }
    kern = saved;
    free(pre0), free(bias), free(pre), free(out), free(pre_ref), free(out_ref), free(out_scalar);
}

/* ---------------------------------------------------------------- gelu */

typedef struct {
    int n;
    float *x, *y, *r;
} gelu_ctx;

static double gelu_loss(void *p) {
    gelu_ctx *c = p;
    gelu_forward(kern, c->y, c->x, c->n);
    return weighted_sum(c->y, c->r, c->n);
}

static void test_gelu(void **state) {
    (void)state;
    gelu_ctx c = {.n = 40};
    c.x = randn(c.n, 2.0f);
    c.y = malloc((size_t)c.n * sizeof(float));
    c.r = randn(c.n, 1.0f);
    /* Known values of the tanh approximation. */
    float xs[3] = {0.0f, 1.0f, -2.0f}, ys[3];
    gelu_forward(kern, ys, xs, 3);
    assert_true(ys[0] == 0.0f);
    assert_true(fabsf(ys[1] - 0.841192f) < 1e-5f);
    assert_true(fabsf(ys[2] - (-0.045402f)) < 1e-5f);
    float *dx = filled(c.n, PREFILL);
    gelu_backward(kern, dx, c.x, c.r, c.n);
    remove_prefill(dx, c.n);
    gc_tensor ts[] = {{"inp", c.x, dx, c.n, 1}};
    assert_true(gc_check("gelu", gelu_loss, &c, ts, 1, FD_H, FD_TOL) <= FD_TOL);
    free(c.x), free(c.y), free(c.r), free(dx);
}

/* The vectorised GELU paths (polynomial exp) against the libm reference
 * (CLLM_SIMD=scalar), forward and backward, over a dense grid and extremes.
 * Bound: the fast tanh is within ~2 ulp of tanhf, i.e. ~2e-7 absolute, scaled
 * by |x| (forward) or |x| * du/dx (backward); 1e-6 * max(1, |x|^3) covers it. */
static void test_gelu_fast_paths_match_reference(void **state) {
    (void)state;
    enum { N = 24000 + 8 };
    static float x[N], ref_y[N], ref_d[N], y[N], d[N], dout[N];
    for (int i = 0; i < 24000; i++) x[i] = -12.0f + 0.001f * (float)i;
    const float extremes[8] = {0.0f, -0.0f, 30.0f, -30.0f, 100.0f, -100.0f, 1e4f, -1e4f};
    memcpy(x + 24000, extremes, sizeof extremes);
    for (int i = 0; i < N; i++) dout[i] = 1.0f + 0.25f * (float)(i % 7);
    const cllm_kernel_table *saved = kern;
    kern = cllm_kernel_table_for(CLLM_SIMD_SCALAR);
    gelu_forward(kern, ref_y, x, N);
    memset(ref_d, 0, sizeof ref_d);
    gelu_backward(kern, ref_d, x, dout, N);
    int checked = 0;
    for (int path = CLLM_SIMD_OMP; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        gelu_forward(kern, y, x, N);
        memset(d, 0, sizeof d);
        gelu_backward(kern, d, x, dout, N);
        double worst_y = 0, worst_d = 0;
        int at_y = 0, at_d = 0;
        for (int i = 0; i < N; i++) {
            double ax = fabs(x[i]), scale = fmax(1.0, ax * ax * ax);
            double ey = fabs(y[i] - ref_y[i]) / fmax(1.0, ax), ed = fabs(d[i] - ref_d[i]) / scale;
            if (ey > worst_y) worst_y = ey, at_y = i;
            if (ed > worst_d) worst_d = ed, at_d = i;
        }
        printf("gelu %s: forward err %.2e at x=%g, backward err %.2e at x=%g\n", cllm_simd_name((cllm_simd)path),
               worst_y, x[at_y], worst_d, x[at_d]);
        assert_true(worst_y <= 1e-6);
        assert_true(worst_d <= 1e-6);
        checked++;
    }
    kern = saved;
    assert_true(checked >= 1); /* the portable omp path exists everywhere */
}

/* ---------------------------------------------------------------- dispatch and unaligned data */

/* Every table is the build of its own name, and no two builds share a row
 * kernel (asking for avx512 runs the AVX-512 loops, not the AVX2 ones):
 * the element-wise rows that differ between builds are distinct functions. */
static void test_each_path_runs_its_own_build(void **state) {
    (void)state;
    const cllm_kernel_table *seen[CLLM_SIMD_COUNT] = {0};
    for (int path = CLLM_SIMD_SCALAR; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        printf("path %s: element-wise build %s\n", cllm_simd_name((cllm_simd)path), kern->name);
        assert_int_equal(kern->isa, path);
        assert_string_equal(kern->name, cllm_simd_name((cllm_simd)path));
        for (int other = 0; other < path; other++) {
            if (!seen[other]) continue;
            assert_true(kern->gelu != seen[other]->gelu);
            assert_true(kern->layernorm_row != seen[other]->layernorm_row);
            assert_true(kern->softmax_row != seen[other]->softmax_row);
            assert_true(kern->logsumexp_row != seen[other]->logsumexp_row);
        }
        seen[path] = kern;
    }
    kern = cllm_kernel_table_best();
}

/* n random floats starting one float past a 64-byte boundary, so no vector
 * load of the fast paths is aligned; free with free_unaligned. */
static float *randn_unaligned(int n, float scale) {
    float *base = malloc(((size_t)n + 1) * sizeof(float));
    for (int i = 0; i <= n; i++) base[i] = scale * cllm_rng_normal(&rng);
    return base + 1;
}
static float *alloc_unaligned(int n) { return (float *)malloc(((size_t)n + 1) * sizeof(float)) + 1; }
static void free_unaligned(float *p) { free(p - 1); }

/* GELU forward and both backwards on unaligned data of lengths around the
 * vector widths (tails of 1..15 lanes, shorter than one vector), every path
 * against the scalar reference with the bound of
 * test_gelu_fast_paths_match_reference; the overwrite backward must not
 * read the NaN it overwrites and must equal the accumulating one onto zeros. */
static void test_gelu_paths_on_unaligned_tails(void **state) {
    (void)state;
    static const int lengths[] = {1, 7, 15, 16, 17, 31, 33, 100};
    const cllm_kernel_table *saved = kern;
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        int n = lengths[k];
        float *x = randn_unaligned(n, 3.0f), *dout = randn_unaligned(n, 1.0f);
        float *y_ref = alloc_unaligned(n), *d_ref = alloc_unaligned(n), *y = alloc_unaligned(n);
        float *d_acc = alloc_unaligned(n), *d_set = alloc_unaligned(n);
        kern = cllm_kernel_table_for(CLLM_SIMD_SCALAR);
        gelu_forward(kern, y_ref, x, n);
        for (int i = 0; i < n; i++) d_ref[i] = PREFILL;
        gelu_backward(kern, d_ref, x, dout, n);
        for (int path = CLLM_SIMD_OMP; path <= CLLM_SIMD_AVX512; path++) {
            if (!select_path(path)) continue;
            gelu_forward(kern, y, x, n);
            for (int i = 0; i < n; i++) d_acc[i] = PREFILL;
            gelu_backward(kern, d_acc, x, dout, n);
            fill_nan(d_set, n);
            gelu_backward_overwrite(kern, d_set, x, dout, n);
            for (int i = 0; i < n; i++) {
                double ax = fabs(x[i]);
                assert_true(fabs(y[i] - y_ref[i]) <= 1e-6 * fmax(1.0, ax));
                assert_true(fabs(d_acc[i] - d_ref[i]) <= 1e-6 * fmax(1.0, ax * ax * ax));
                assert_true(fabs((d_set[i] + PREFILL) - d_acc[i]) <= 1e-6 * fmax(1.0, fabs(d_acc[i])));
            }
        }
        free_unaligned(x), free_unaligned(dout), free_unaligned(y_ref), free_unaligned(d_ref), free_unaligned(y);
        free_unaligned(d_acc), free_unaligned(d_set);
    }
    kern = saved;
}

/* LayerNorm, fused residual + LayerNorm, bias + GELU and the cross-entropy
 * rows on unaligned rows of odd width (C = 21: one 16-lane vector and a tail
 * of 5), every path against the scalar reference, with the tolerances of the
 * aligned tests above. */
static void test_row_kernels_on_unaligned_rows(void **state) {
    (void)state;
    enum { N = 3, C = 21, V = 37 };
    float *x = randn_unaligned(N * C, 2.0f), *a = randn_unaligned(N * C, 1.0f), *w = randn_unaligned(C, 1.0f);
    float *b = randn_unaligned(C, 1.0f), *dout = randn_unaligned(N * C, 1.0f), *logits = randn_unaligned(N * V, 3.0f);
    float *out[2], *res[2], *pre[2], *g[2], *dx[2], *dw[2], *db[2], *dl[2], mean[2][N], rstd[2][N], loss[2][N],
        lse[2][N];
    for (int k = 0; k < 2; k++) {
        out[k] = alloc_unaligned(N * C), res[k] = alloc_unaligned(N * C), pre[k] = alloc_unaligned(N * C);
        g[k] = alloc_unaligned(N * C), dx[k] = alloc_unaligned(N * C), dw[k] = alloc_unaligned(C);
        db[k] = alloc_unaligned(C), dl[k] = alloc_unaligned(N * V);
    }
    int32_t targets[N] = {0, 36, 17};
    const cllm_kernel_table *saved = kern;
    for (int path = CLLM_SIMD_SCALAR; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        int k = path == CLLM_SIMD_SCALAR ? 0 : 1; /* 0: the reference, kept */
        residual_layernorm_forward(kern, res[k], out[k], mean[k], rstd[k], a, x, b, w, b, N, C);
        for (int i = 0; i < N * C; i++) dx[k][i] = PREFILL;
        for (int c = 0; c < C; c++) dw[k][c] = db[k][c] = PREFILL;
        layernorm_backward(kern, dx[k], dw[k], db[k], dout, res[k], w, mean[k], rstd[k], N, C);
        memcpy(pre[k], x, (size_t)N * C * sizeof(float));
        bias_gelu_forward(kern, g[k], pre[k], b, N, C);
        softmax_crossentropy_forward(kern, loss[k], lse[k], logits, targets, N, V);
        softmax_crossentropy_backward(kern, dl[k], logits, lse[k], targets, 0.5f, N, V);
        if (k == 0) continue;
        assert_true(max_abs_diff(res[1], res[0], N * C) == 0.0); /* adds only: exact on every path */
        assert_true(max_abs_diff(pre[1], pre[0], N * C) == 0.0);
        assert_true(max_abs_diff(out[1], out[0], N * C) < 1e-5 * fmax(1.0, max_abs(out[0], N * C)));
        assert_true(max_abs_diff(mean[1], mean[0], N) < 1e-6 && max_abs_diff(rstd[1], rstd[0], N) < 1e-5);
        assert_true(max_abs_diff(dx[1], dx[0], N * C) < 1e-5 * fmax(1.0, max_abs(dx[0], N * C)));
        assert_true(max_abs_diff(dw[1], dw[0], C) < 1e-5 * fmax(1.0, max_abs(dw[0], C)));
        assert_true(max_abs_diff(db[1], db[0], C) < 1e-6 * fmax(1.0, max_abs(db[0], C)));
        for (int i = 0; i < N * C; i++) assert_true(fabs(g[1][i] - g[0][i]) <= 1e-6 * fmax(1.0, fabs(pre[0][i])));
        assert_true(max_abs_diff(loss[1], loss[0], N) < 1e-5 && max_abs_diff(lse[1], lse[0], N) < 1e-5);
        assert_true(max_abs_diff(dl[1], dl[0], N * V) < 4e-6);
    }
    kern = saved;
    free_unaligned(x), free_unaligned(a), free_unaligned(w), free_unaligned(b), free_unaligned(dout);
    free_unaligned(logits);
    for (int k = 0; k < 2; k++) {
        free_unaligned(out[k]), free_unaligned(res[k]), free_unaligned(pre[k]), free_unaligned(g[k]);
        free_unaligned(dx[k]), free_unaligned(dw[k]), free_unaligned(db[k]), free_unaligned(dl[k]);
    }
}

/* The bias gradient's column sums add the rows in order on every path, so
 * they are bitwise the scalar ones (and accumulate onto what was there). */
static void test_bias_gradient_bitwise_on_every_path(void **state) {
    (void)state;
    enum { N = 13, IN = 5, OUT = 37 };
    float *inp = randn_unaligned(N * IN, 1.0f), *w = randn_unaligned(IN * OUT, 1.0f);
    float *dout = randn_unaligned(N * OUT, 1.0f), *dx = alloc_unaligned(N * IN), *dw = alloc_unaligned(IN * OUT);
    float *db_ref = alloc_unaligned(OUT), *db = alloc_unaligned(OUT);
    const cllm_kernel_table *saved = kern;
    for (int path = CLLM_SIMD_SCALAR; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        float *d = path == CLLM_SIMD_SCALAR ? db_ref : db;
        for (int j = 0; j < OUT; j++) d[j] = PREFILL;
        linear_backward_overwrite(kern, dx, dw, d, dout, inp, w, NULL, N, IN, OUT, LINEAR_W_IN_OUT);
        if (path != CLLM_SIMD_SCALAR) assert_memory_equal(db, db_ref, OUT * sizeof(float));
    }
    kern = saved;
    free_unaligned(inp), free_unaligned(w), free_unaligned(dout), free_unaligned(dx), free_unaligned(dw);
    free_unaligned(db_ref), free_unaligned(db);
}

/* The GELU backward that also sums the bias gradient: bitwise the unfused
 * gelu_backward_overwrite followed by column sums added row by row onto a
 * pre-filled dbias, on every path, unaligned rows of odd width. */
static void test_gelu_backward_bias_sums_match_unfused(void **state) {
    (void)state;
    enum { N = 7, C = 83 };
    float *x = randn_unaligned(N * C, 2.0f), *dout = randn_unaligned(N * C, 1.0f);
    float *d_ref = alloc_unaligned(N * C), *d = alloc_unaligned(N * C);
    float *db_ref = alloc_unaligned(C), *db = alloc_unaligned(C);
    const cllm_kernel_table *saved = kern;
    for (int path = CLLM_SIMD_SCALAR; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        gelu_backward_overwrite(kern, d_ref, x, dout, N * C);
        for (int j = 0; j < C; j++) db_ref[j] = db[j] = PREFILL;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < C; j++) db_ref[j] += d_ref[i * C + j];
        fill_nan(d, N * C);
        gelu_backward_overwrite_bias_sums(kern, d, db, x, dout, N, C);
        assert_memory_equal(d, d_ref, N * C * sizeof(float));
        assert_memory_equal(db, db_ref, C * sizeof(float));
    }
    kern = saved;
    free_unaligned(x), free_unaligned(dout), free_unaligned(d_ref), free_unaligned(d), free_unaligned(db_ref);
    free_unaligned(db);
}

/* The causal softmax rows on every row length 1..T (tails of every size)
 * with an unaligned score matrix: forward and backward against the scalar
 * reference, as test_attention_fast_paths_match_reference. */
static void test_attention_paths_on_unaligned_rows(void **state) {
    (void)state;
    int B = 1, T = 37, C = 6, NH = 2, nqkv = B * T * 3 * C, nout = B * T * C, natt = B * NH * T * T;
    float *qkv = randn_unaligned(nqkv, 2.0f), *dy = randn_unaligned(nout, 1.0f), *scratch = alloc_unaligned(T * T);
    float *att[2], *out[2], *d[2];
    for (int k = 0; k < 2; k++) att[k] = alloc_unaligned(natt), out[k] = alloc_unaligned(nout), d[k] = alloc_unaligned(nqkv);
    const cllm_kernel_table *saved = kern;
    for (int path = CLLM_SIMD_SCALAR; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        int k = path == CLLM_SIMD_SCALAR ? 0 : 1;
        attention_forward(kern, ATTENTION_FP32, out[k], att[k], qkv, B, T, C, NH);
        fill_nan(d[k], nqkv);
        attention_backward_overwrite(kern, ATTENTION_FP32, d[k], scratch, 1, dy, qkv, att[k], B, T, C, NH);
        if (k == 0) continue;
        assert_true(max_abs_diff(att[1], att[0], natt) < 1e-6);
        assert_true(max_abs_diff(out[1], out[0], nout) < 1e-5);
        assert_true(max_abs_diff(d[1], d[0], nqkv) < 1e-5 * fmax(1.0, max_abs(d[0], nqkv)));
    }
    kern = saved;
    free_unaligned(qkv), free_unaligned(dy), free_unaligned(scratch);
    for (int k = 0; k < 2; k++) free_unaligned(att[k]), free_unaligned(out[k]), free_unaligned(d[k]);
}

/* ---------------------------------------------------------------- residual */

typedef struct {
    int n;
    float *a, *b, *y, *r;
} res_ctx;

static double res_loss(void *p) {
    res_ctx *c = p;
    residual_forward(c->y, c->a, c->b, c->n);
    return weighted_sum(c->y, c->r, c->n);
}

static void test_residual(void **state) {
    (void)state;
    res_ctx c = {.n = 20};
    c.a = randn(c.n, 1.0f);
    c.b = randn(c.n, 1.0f);
    c.y = malloc((size_t)c.n * sizeof(float));
    c.r = randn(c.n, 1.0f);
    float *da = filled(c.n, PREFILL), *db = filled(c.n, PREFILL);
    residual_backward(da, db, c.r, c.n);
    remove_prefill(da, c.n);
    remove_prefill(db, c.n);
    gc_tensor ts[] = {{"a", c.a, da, c.n, 1}, {"b", c.b, db, c.n, 1}};
    assert_true(gc_check("residual", res_loss, &c, ts, 2, FD_H, FD_TOL) <= FD_TOL);
    free(c.a), free(c.b), free(c.y), free(c.r), free(da), free(db);
}

/* ---------------------------------------------------------------- loss */

typedef struct {
    int N, V;
    int32_t targets[6];
    float *logits, *losses, *lse;
    float dloss;
} ce_ctx;

static double ce_loss(void *p) {
    ce_ctx *c = p;
    softmax_crossentropy_forward(kern, c->losses, c->lse, c->logits, c->targets, c->N, c->V);
    double s = 0;
    for (int i = 0; i < c->N; i++) s += c->losses[i];
    return s * c->dloss;
}

static void test_softmax_crossentropy(void **state) {
    (void)state;
    ce_ctx c = {.N = 6, .V = 7, .dloss = 1.0f / 6.0f};
    for (int i = 0; i < c.N; i++) c.targets[i] = (int32_t)(i * 3 % c.V);
    c.logits = randn(c.N * c.V, 2.0f);
    c.losses = malloc((size_t)c.N * sizeof(float));
    c.lse = malloc((size_t)c.N * sizeof(float));
    ce_loss(&c);
    for (int i = 0; i < c.N; i++) { /* against the definition, in double */
        double z = 0;
        for (int j = 0; j < c.V; j++) z += exp((double)c.logits[i * c.V + j]);
        assert_true(fabs(log(z) - c.logits[i * c.V + c.targets[i]] - c.losses[i]) < 1e-5);
    }
    float *d = malloc((size_t)c.N * c.V * sizeof(float));
    softmax_crossentropy_backward(kern, d, c.logits, c.lse, c.targets, c.dloss, c.N, c.V);
    gc_tensor ts[] = {{"logits", c.logits, d, c.N * c.V, 1}};
    assert_true(gc_check("softmax_ce", ce_loss, &c, ts, 1, FD_H, FD_TOL) <= FD_TOL);
    /* Huge logits must not overflow (max subtraction). */
    for (int j = 0; j < c.V; j++) c.logits[j] = 1000.0f + (float)j;
    softmax_crossentropy_forward(kern, c.losses, c.lse, c.logits, c.targets, 1, c.V);
    assert_true(isfinite(c.losses[0]) && c.losses[0] >= 0.0f);
    /* In place (dlogits aliasing logits) gives the same gradient. */
    softmax_crossentropy_forward(kern, c.losses, c.lse, c.logits, c.targets, c.N, c.V);
    softmax_crossentropy_backward(kern, d, c.logits, c.lse, c.targets, c.dloss, c.N, c.V);
    softmax_crossentropy_backward(kern, c.logits, c.logits, c.lse, c.targets, c.dloss, c.N, c.V);
    assert_memory_equal(d, c.logits, (size_t)c.N * c.V * sizeof(float));
    free(c.logits), free(c.losses), free(c.lse), free(d);
}

/* The vectorised softmax paths against the libm reference: losses and
 * gradients agree to float rounding (the sums only change order). */
static void test_softmax_fast_paths_match_reference(void **state) {
    (void)state;
    enum { N = 6, V = 1003 }; /* V not a multiple of any vector width */
    static float logits[N * V], ref_loss[N], ref_lse[N], ref_d[N * V], loss[N], lse[N], d[N * V];
    int32_t targets[N];
    for (int i = 0; i < N * V; i++) logits[i] = 6.0f * cllm_rng_normal(&rng);
    for (int i = 0; i < N; i++) targets[i] = (int32_t)cllm_rng_below(&rng, V);
    logits[2 * V + 5] = 200.0f; /* one dominant logit: exp(l - max) underflows elsewhere */
    const cllm_kernel_table *saved = kern;
    kern = cllm_kernel_table_for(CLLM_SIMD_SCALAR);
    softmax_crossentropy_forward(kern, ref_loss, ref_lse, logits, targets, N, V);
    softmax_crossentropy_backward(kern, ref_d, logits, ref_lse, targets, 0.25f, N, V);
    for (int path = CLLM_SIMD_OMP; path <= CLLM_SIMD_AVX512; path++) {
        if (!select_path(path)) continue;
        softmax_crossentropy_forward(kern, loss, lse, logits, targets, N, V);
        softmax_crossentropy_backward(kern, d, logits, lse, targets, 0.25f, N, V);
        double worst_l = 0, worst_d = 0;
        for (int i = 0; i < N; i++) {
            worst_l = fmax(worst_l, fabs(loss[i] - ref_loss[i]) / fmax(1.0, fabs(ref_loss[i])));
            worst_l = fmax(worst_l, fabs(lse[i] - ref_lse[i]) / fmax(1.0, fabs(ref_lse[i])));
        }
        for (int i = 0; i < N * V; i++) worst_d = fmax(worst_d, fabs(d[i] - ref_d[i]));
        printf("softmax_ce %s: loss rel err %.2e, dlogits abs err %.2e (of at most 0.25)\n",
               cllm_simd_name((cllm_simd)path), worst_l, worst_d);
        assert_true(worst_l <= 1e-6);
        /* exp(l - lse) inherits lse's rounding: one ulp of an lse near 200 is
         * 1.5e-5 relative, i.e. up to ~4e-6 on a gradient of 0.25. */
        assert_true(worst_d <= 4e-6);
    }
    kern = saved;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_embedding, setup),
        cmocka_unit_test_setup(test_layernorm, setup),
        cmocka_unit_test_setup(test_linear_conv1d_layout, setup),
        cmocka_unit_test_setup(test_linear_tied_head_layout, setup),
        cmocka_unit_test_setup(test_attention, setup),
        cmocka_unit_test_setup(test_attention_long_sequence, setup),
        cmocka_unit_test_setup(test_attention_scalar_kernels, setup),
        cmocka_unit_test_setup(test_linear_backward_overwrite, setup),
        cmocka_unit_test_setup(test_attention_backward_overwrite, setup),
        cmocka_unit_test_setup(test_attention_bf16_products, setup),
        cmocka_unit_test_setup(test_gelu_backward_overwrite, setup),
        cmocka_unit_test_setup(test_attention_fast_paths_match_reference, setup),
        cmocka_unit_test_setup(test_layernorm_fast_paths_match_reference, setup),
        cmocka_unit_test_setup(test_residual_layernorm_matches_unfused, setup),
        cmocka_unit_test_setup(test_bias_gelu_matches_unfused, setup),
        cmocka_unit_test_setup(test_gelu, setup),
        cmocka_unit_test_setup(test_gelu_fast_paths_match_reference, setup),
        cmocka_unit_test_setup(test_residual, setup),
        cmocka_unit_test_setup(test_softmax_crossentropy, setup),
        cmocka_unit_test_setup(test_softmax_fast_paths_match_reference, setup),
        cmocka_unit_test_setup(test_each_path_runs_its_own_build, setup),
        cmocka_unit_test_setup(test_gelu_paths_on_unaligned_tails, setup),
        cmocka_unit_test_setup(test_row_kernels_on_unaligned_rows, setup),
        cmocka_unit_test_setup(test_bias_gradient_bitwise_on_every_path, setup),
        cmocka_unit_test_setup(test_attention_paths_on_unaligned_rows, setup),
        cmocka_unit_test_setup(test_gelu_backward_bias_sums_match_unfused, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
