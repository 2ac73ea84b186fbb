/* The strict JSON parser on arbitrary bytes (not NUL-terminated: libFuzzer's
 * buffer ends exactly at `size`, so ASan sees any over-read). A parsed tree
 * is walked completely to check its counts and strings. */
#include <string.h>

#include "cllm/base/json.h"
#include "fuzz_support.h"

static size_t walk(const cllm_json *v, int depth) {
    FUZZ_ASSERT(depth <= CLLM_JSON_MAX_DEPTH + 1, "nesting within the limit");
    size_t nodes = 1;
    if (v->type == CLLM_JSON_STRING) FUZZ_ASSERT(strlen(v->string) == v->length, "strings have no NUL inside");
    if (v->type == CLLM_JSON_ARRAY || v->type == CLLM_JSON_OBJECT)
        for (size_t i = 0; i < v->length; i++) {
            if (v->type == CLLM_JSON_OBJECT) {
                FUZZ_ASSERT(cllm_json_get(v, v->keys[i]) == &v->items[i], "keys are unique and found");
            }
            nodes += walk(&v->items[i], depth + 1);
        }
    return nodes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cllm_json *root = NULL;
    if (cllm_json_parse((const char *)data, size, &root) == CLLM_OK) {
        FUZZ_ASSERT(root != NULL, "a parsed value");
        FUZZ_ASSERT(walk(root, 0) <= size, "no more values than bytes");
        cllm_json_free(root);
    } else {
        FUZZ_ASSERT(root == NULL, "no tree after an error");
    }
    return 0;
}
