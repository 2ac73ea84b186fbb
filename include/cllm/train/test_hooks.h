/* Fault injection for the tests, kept out of the training API: each hook
 * makes one thing go wrong at a given step (0: never), so a test can check
 * what the user then sees. Not for use by the product. */
#ifndef CLLM_TRAIN_TEST_HOOKS_H
#define CLLM_TRAIN_TEST_HOOKS_H

#include <stdint.h>

/* Test hook: the training loss of the given step (1-based) is replaced by NaN
 * before the finiteness check, to test the stop on divergence. 0: off. */
void cllm_train_debug_nan_at_step(int64_t step);
/* Test hook: after the update of step `step` (0: never), one parameter becomes
 * NaN while the loss stays finite, as a silent blow-up would leave it. */
void cllm_train_debug_poison_after_step(int64_t step);
/* Test hook: the last micro-batch of step `step` (0: never) fails with its own
 * message, as a worker's error would. */
void cllm_train_debug_fail_at_step(int64_t step);
/* Test hook: right after the periodic checkpoint of step `step` (0: never) is
 * saved, the process sends itself SIGTERM, as a user's Ctrl-C or a job
 * scheduler might at that moment. */
void cllm_train_debug_signal_after_save(int64_t step);

/* Test hook: the last micro-batch of step `step` (0: never) fails with its
 * own message, as a worker's error would. */
void cllm_step_debug_fail_at(int64_t step);

#endif
