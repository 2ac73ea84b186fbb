/* Central finite differences against analytic gradients, shared by
 * test_layers.c and test_model.c.
 *
 * Error measure, per tensor: max_i |analytic_i - numeric_i| / max(max_i |numeric_i|, 1e-6),
 * i.e. the worst absolute error relative to the tensor's largest gradient, so
 * tiny gradients next to large ones do not produce meaningless ratios. */
#ifndef CLLM_TEST_GRADCHECK_H
#define CLLM_TEST_GRADCHECK_H

#include <math.h>
#include <stdio.h>

typedef double (*gc_loss_fn)(void *ctx); /* runs the forward, returns the scalar objective */

typedef struct {
    const char *name;
    float *x;           /* the input or parameter, perturbed in place and restored */
    const float *grad;  /* analytic gradient of the objective with respect to x */
    int n;
    int stride;         /* check every stride-th element (1 = all); big tensors are sampled */
} gc_tensor;

/* Returns the worst relative error over the tensors and prints one line per
 * tensor (the worst element with both values), tagged with `what`. */
static inline double gc_check(const char *what, gc_loss_fn loss, void *ctx, const gc_tensor *ts, int nt, float h,
                              double tol) {
    double worst_all = 0.0;
    for (int t = 0; t < nt; t++) {
        const gc_tensor *g = &ts[t];
        int stride = g->stride > 0 ? g->stride : 1;
        double max_err = 0.0, max_num = 0.0, worst_a = 0.0, worst_n = 0.0;
        int worst_i = -1;
        for (int i = 0; i < g->n; i += stride) {
            float saved = g->x[i];
            g->x[i] = saved + h;
            double lp = loss(ctx);
            g->x[i] = saved - h;
            double lm = loss(ctx);
            g->x[i] = saved;
            /* Divide by the step actually taken: saved +/- h rounds in float. */
            double step = (double)(saved + h) - (double)(saved - h);
            double num = (lp - lm) / step;
            double err = fabs(num - (double)g->grad[i]);
            if (fabs(num) > max_num) max_num = fabs(num);
            if (err > max_err || worst_i < 0) {
                max_err = err;
                worst_i = i;
                worst_a = g->grad[i];
                worst_n = num;
            }
        }
        double rel = max_err / (max_num > 1e-6 ? max_num : 1e-6);
        if (rel > worst_all) worst_all = rel;
        printf("%s %-40s rel err %.2e%s (worst [%d]: analytic %.6e numeric %.6e, max|grad| %.3e)\n", what, g->name,
               rel, rel > tol ? "  FAIL" : "", worst_i, worst_a, worst_n, max_num);
    }
    return worst_all;
}

#endif
