/* Validation of the environment variables cllm reads.
 *
 * OpenMP runtimes disagree on malformed values (libomp asserts on
 * OMP_NUM_THREADS=abc, libgomp silently falls back), so cllm checks
 * OMP_NUM_THREADS and OMP_SCHEDULE itself before the runtime is first used,
 * and every documented CLLM_* variable too. */
#ifndef CLLM_CLI_ENV_H
#define CLLM_CLI_ENV_H

#include "cllm/common.h"

/* Checks every variable; on the first bad one returns CLLM_ERR_INPUT with a
 * message naming it. Must run before any OpenMP call. */
cllm_status cllm_env_check(void);

/* The documented CLLM_* variables, NULL-terminated, for `cllm info`. */
extern const char *const cllm_env_documented[];

#endif
