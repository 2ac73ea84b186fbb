/* Learning-rate schedule: linear warm-up, cosine decay to the floor. */
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

#include "cllm/optim/schedule.h"

/* lr 1, floor 0.1, 10 warm-up steps, 110 in all: 100 steps of cosine. */
static const cllm_schedule s = {.lr = 1.0, .min_lr = 0.1, .warmup = 10, .total = 110};

static void test_warmup_is_linear(void **state) {
    (void)state;
    assert_near(cllm_schedule_lr(&s, 1), 0.1, 1e-12);
    assert_near(cllm_schedule_lr(&s, 5), 0.5, 1e-12);
    assert_near(cllm_schedule_lr(&s, 10), 1.0, 1e-12);
    for (int t = 2; t <= 10; t++)
        assert_near(cllm_schedule_lr(&s, t) - cllm_schedule_lr(&s, t - 1), 0.1, 1e-12);
}

/* Key points of the cosine: a quarter of the way 0.1 + 0.45 (1 + cos(pi/4))
 * = 0.86819805, half way the mid-point 0.55, the end exactly the floor. */
static void test_cosine_key_points(void **state) {
    (void)state;
    assert_near(cllm_schedule_lr(&s, 35), 0.86819805, 1e-8);
    assert_near(cllm_schedule_lr(&s, 60), 0.55, 1e-12);
    assert_near(cllm_schedule_lr(&s, 110), 0.1, 1e-12);
    assert_near(cllm_schedule_lr(&s, 500), 0.1, 1e-12);
}

static void test_decay_is_monotone_and_symmetric(void **state) {
    (void)state;
    for (int t = 11; t <= 110; t++) assert_true(cllm_schedule_lr(&s, t) < cllm_schedule_lr(&s, t - 1));
    /* cosine symmetry around the mid-point: lr(60-d) + lr(60+d) = lr + floor */
    for (int d = 1; d < 50; d++)
        assert_near(cllm_schedule_lr(&s, 60 - d) + cllm_schedule_lr(&s, 60 + d), 1.1, 1e-12);
}

static void test_no_warmup_and_no_decay_edge_cases(void **state) {
    (void)state;
    cllm_schedule nw = {.lr = 2.0, .min_lr = 0.0, .warmup = 0, .total = 4};
    assert_near(cllm_schedule_lr(&nw, 1), 2.0 * 0.5 * (1 + cos(M_PI / 4)), 1e-12);
    assert_near(cllm_schedule_lr(&nw, 4), 0.0, 1e-12);
    cllm_schedule all_warm = {.lr = 1.0, .min_lr = 0.5, .warmup = 8, .total = 8};
    assert_near(cllm_schedule_lr(&all_warm, 8), 1.0, 1e-12);
    assert_near(cllm_schedule_lr(&all_warm, 9), 0.5, 1e-12);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_warmup_is_linear),
        cmocka_unit_test(test_cosine_key_points),
        cmocka_unit_test(test_decay_is_monotone_and_symmetric),
        cmocka_unit_test(test_no_warmup_and_no_decay_edge_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
