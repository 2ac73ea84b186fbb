/* AdamW reference update against steps worked out by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

/* cmocka's assert_float_equal works in single precision; this compares in double. */
#define assert_near(a, b, eps) assert_near_at((double)(a), (double)(b), (double)(eps), __FILE__, __LINE__)
static void assert_near_at(double a, double b, double eps, const char *file, int line) {
    if (fabs(a - b) <= eps) return;
    fail_msg("%s:%d: %.12g != %.12g (tolerance %g)", file, line, a, b, eps);
}

#include "cllm/optim/adamw.h"

static cllm_adamw_config config(void) {
    return (cllm_adamw_config){.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
}

/* Two steps on one decayed parameter, by hand (lr 0.1, wd 0.1, beta 0.9/0.95):
 *
 * step 1: g = 0.5 * (0.25 + 0.75) = 0.5
 *   decay  p = 1 - 0.1*0.1*1        = 0.99
 *   m = 0.1 * 0.5                    = 0.05
 *   v = 0.05 * 0.25                  = 0.0125
 *   m_hat = 0.05 / (1-0.9) = 0.5,  v_hat = 0.0125 / (1-0.95) = 0.25, sqrt = 0.5
 *   p = 0.99 - 0.1 * 0.5 / (0.5 + 1e-8)  = 0.89 (to 1e-8)
 * step 2: g = 0.5 * (-2) = -1
 *   decay  p = 0.89 - 0.01*0.89      = 0.8811
 *   m = 0.9*0.05 + 0.1*(-1)          = -0.055
 *   v = 0.95*0.0125 + 0.05*1         = 0.061875
 *   m_hat = -0.055 / (1-0.81)        = -0.28947368
 *   v_hat = 0.061875 / (1-0.9025)    =  0.63461538, sqrt = 0.79662751
 *   p = 0.8811 + 0.1 * 0.28947368 / 0.79662751 = 0.91743739 */
static void test_two_hand_computed_steps(void **state) {
    (void)state;
    cllm_adamw_config cfg = config();
    float p = 1.0f, m = 0.0f, v = 0.0f;
    float a = 0.25f, b = 0.75f;
    const float *srcs1[] = {&a, &b};
    cllm_adamw_step h1 = cllm_adamw_step_make(&cfg, 0.1, 1);
    cllm_adamw_update_ref(&p, &m, &v, srcs1, 2, 0.5f, 1, &h1, 1);
    assert_near(m, 0.05f, 1e-7);
    assert_near(v, 0.0125f, 1e-8);
    assert_near(p, 0.89f, 1e-6);

    float c = -2.0f;
    const float *srcs2[] = {&c};
    cllm_adamw_step h2 = cllm_adamw_step_make(&cfg, 0.1, 2);
    cllm_adamw_update_ref(&p, &m, &v, srcs2, 1, 0.5f, 1, &h2, 1);
    assert_near(m, -0.055f, 1e-7);
    assert_near(v, 0.061875f, 1e-7);
    assert_near(p, 0.91743739f, 2e-6);
}

/* Without decay the first step moves p by exactly lr * sign(g) (to eps). */
static void test_no_decay_first_step_is_lr_times_sign(void **state) {
    (void)state;
    cllm_adamw_config cfg = config();
    float p[3] = {1.0f, 1.0f, -3.0f}, m[3] = {0}, v[3] = {0};
    float g[3] = {0.5f, -7.0f, 1e-3f};
    const float *srcs[] = {g};
    cllm_adamw_step h = cllm_adamw_step_make(&cfg, 0.01, 1);
    cllm_adamw_update_ref(p, m, v, srcs, 1, 1.0f, 3, &h, 0);
    assert_near(p[0], 0.99f, 1e-6);
    assert_near(p[1], 1.01f, 1e-6);
    assert_near(p[2], -3.01f, 1e-5);
}

/* Decay alone (zero gradient, zero moments) shrinks p by lr*wd and nothing else. */
static void test_decay_is_decoupled(void **state) {
    (void)state;
    cllm_adamw_config cfg = config();
    float p = 2.0f, m = 0.0f, v = 0.0f, g = 0.0f;
    const float *srcs[] = {&g};
    cllm_adamw_step h = cllm_adamw_step_make(&cfg, 0.5, 3);
    cllm_adamw_update_ref(&p, &m, &v, srcs, 1, 1.0f, 1, &h, 1);
    assert_near(p, 2.0f - 0.5f * 0.1f * 2.0f, 1e-6);
    float q = 2.0f;
    m = v = 0.0f;
    cllm_adamw_update_ref(&q, &m, &v, srcs, 1, 1.0f, 1, &h, 0);
    assert_true(q == 2.0f);
}

static void test_bias_corrections(void **state) {
    (void)state;
    cllm_adamw_config cfg = config();
    cllm_adamw_step h = cllm_adamw_step_make(&cfg, 1e-3, 10);
    assert_near(h.bias_correction1, 1.0 - pow(0.9, 10), 1e-7);
    assert_near(h.bias_correction2, 1.0 - pow(0.95, 10), 1e-7);
    assert_near(h.lr, 1e-3f, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_hand_computed_steps),
        cmocka_unit_test(test_no_decay_first_step_is_lr_times_sign),
        cmocka_unit_test(test_decay_is_decoupled),
        cmocka_unit_test(test_bias_corrections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
