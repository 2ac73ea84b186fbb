/* tokenizer.bin parsing (cllm_tokenizer_deserialize, what load calls), past
 * the checksum. Whatever loads must behave: serializing it gives back the
 * exact image, and any bytes round-trip through encode/decode. */
#include <stdlib.h>
#include <string.h>

#include "cllm/data/tokenizer.h"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *image = fuzz_fix_tokenizer(data, size);
    cllm_tokenizer *t = NULL;
    if (cllm_tokenizer_deserialize(image, size, &t) == CLLM_OK) {
        uint8_t *again = NULL;
        size_t n_again = 0;
        FUZZ_ASSERT(cllm_tokenizer_serialize(t, &again, &n_again) == CLLM_OK, "serialize a loaded tokenizer");
        FUZZ_ASSERT(n_again == size && memcmp(again, image, size) == 0, "serialize(load(x)) == x");
        free(again);
        /* The file's own bytes as text: a stress test of its merges. */
        int32_t *ids = NULL;
        size_t n_ids = 0;
        FUZZ_ASSERT(cllm_tokenizer_encode(t, image, size, &ids, &n_ids) == CLLM_OK, "encode");
        uint8_t *text = NULL;
        size_t n_text = 0;
        FUZZ_ASSERT(cllm_tokenizer_decode(t, ids, n_ids, &text, &n_text) == CLLM_OK, "decode");
        FUZZ_ASSERT(n_text == size && memcmp(text, image, size) == 0, "decode(encode(x)) == x");
        free(ids);
        free(text);
        cllm_tokenizer_free(t);
    } else {
        FUZZ_ASSERT(t == NULL, "a failed load leaves no tokenizer");
    }
    free(image);
    return 0;
}
