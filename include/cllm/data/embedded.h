/* The default corpus (data/tinyshakespeare.txt), embedded in the binary at
 * build time so that `cllm train` with no DATA works from any directory. */
#ifndef CLLM_DATA_EMBEDDED_H
#define CLLM_DATA_EMBEDDED_H

#include <stddef.h>
#include <stdint.h>

const uint8_t *cllm_default_corpus(size_t *n_bytes);
/* The name shown to users for it. */
#define CLLM_DEFAULT_CORPUS_NAME "data/tinyshakespeare.txt (built in)"

#endif
