/* TODO(owner): full validation. */
#include "cllm/cli/env.h"
const char *const cllm_env_documented[] = {"CLLM_SIMD", NULL};
cllm_status cllm_env_check(void) { return CLLM_OK; }
