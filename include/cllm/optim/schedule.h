/* Learning-rate schedule: linear warm-up, then cosine decay to a floor.
 *
 *   t <= warmup:  lr * t / warmup
 *   t >  warmup:  min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2,
 *                 p = (t - warmup) / (total - warmup)
 *
 * t is the 1-based optimizer step (the step whose update uses this rate), so
 * the first update uses lr/warmup rather than 0, and the last one (t = total)
 * uses exactly min_lr. The schedule depends only on (t, total): a run stopped
 * and resumed, or ended early with --stop-after, follows the same curve. */
#ifndef CLLM_OPTIM_SCHEDULE_H
#define CLLM_OPTIM_SCHEDULE_H

#include <stdint.h>

typedef struct {
    double lr, min_lr;
    int64_t warmup, total;
} cllm_schedule;

double cllm_schedule_lr(const cllm_schedule *s, int64_t t);

#endif
