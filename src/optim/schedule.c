#include "cllm/optim/schedule.h"

#include <math.h>

double cllm_schedule_lr(const cllm_schedule *s, int64_t t) {
    if (t < 1) t = 1;
    if (s->warmup > 0 && t <= s->warmup) return s->lr * (double)t / (double)s->warmup;
    int64_t decay_steps = s->total - s->warmup;
    if (decay_steps <= 0 || t >= s->total) return s->min_lr;
    double progress = (double)(t - s->warmup) / (double)decay_steps;
    return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(M_PI * progress));
}
