/* tokenizer.bin parsing (cllm_tokenizer_deserialize, what load calls), past
 * the checksum. Whatever loads must behave: serializing it gives back the
 * exact image (or, for a version-2 image of a tokenizer that version 1 can
 * hold, the version-1 image the writer always makes of it: the same
 * tokenizer, itself a fixed point), and any bytes round-trip through
 * encode/decode. */
#include <stdlib.h>
#include <string.h>

#include "cllm/base/le.h"
#include "cllm/data/tokenizer.h"
#include "fuzz_support.h"

/* The same tokens (bytes and specialness), merges and pre-tokenizer. */
static int same_tokenizer(const cllm_tokenizer *a, const cllm_tokenizer *b) {
    int vocab = cllm_tokenizer_vocab_size(a), merges = cllm_tokenizer_n_merges(a);
    if (vocab != cllm_tokenizer_vocab_size(b) || merges != cllm_tokenizer_n_merges(b) ||
        cllm_tokenizer_pretokenizer(a) != cllm_tokenizer_pretokenizer(b) || cllm_tokenizer_eot(a) != cllm_tokenizer_eot(b))
        return 0;
    for (int32_t id = 0; id < vocab; id++) {
        size_t la, lb;
        const uint8_t *ta = cllm_tokenizer_token_text(a, id, &la), *tb = cllm_tokenizer_token_text(b, id, &lb);
        if (la != lb || memcmp(ta, tb, la) != 0 || cllm_tokenizer_is_special(a, id) != cllm_tokenizer_is_special(b, id))
            return 0;
    }
    for (int i = 0; i < merges; i++) {
        int32_t la, ra, lb, rb;
        cllm_tokenizer_merge(a, i, &la, &ra);
        cllm_tokenizer_merge(b, i, &lb, &rb);
        if (la != lb || ra != rb || cllm_tokenizer_merge_result(a, i) != cllm_tokenizer_merge_result(b, i)) return 0;
    }
    return 1;
}

/* A version-2 image that the writer stored as version 1: the v1 image must
 * load to the same tokenizer and serialize to itself. */
static int canonical_v1_of(const uint8_t *image, size_t size, const uint8_t *again, size_t n_again,
                           const cllm_tokenizer *t) {
    if (size < 12 || n_again < 12 || cllm_get_le32(image + 8) != 2 || cllm_get_le32(again + 8) != 1) return 0;
    cllm_tokenizer *back = NULL;
    if (cllm_tokenizer_deserialize(again, n_again, &back) != CLLM_OK) return 0;
    uint8_t *third = NULL;
    size_t n_third = 0;
    int ok = same_tokenizer(t, back) && cllm_tokenizer_serialize(back, &third, &n_third) == CLLM_OK &&
             n_third == n_again && memcmp(third, again, n_again) == 0;
    free(third);
    cllm_tokenizer_free(back);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *image = fuzz_fix_tokenizer(data, size);
    cllm_tokenizer *t = NULL;
    if (cllm_tokenizer_deserialize(image, size, &t) == CLLM_OK) {
        uint8_t *again = NULL;
        size_t n_again = 0;
        FUZZ_ASSERT(cllm_tokenizer_serialize(t, &again, &n_again) == CLLM_OK, "serialize a loaded tokenizer");
        FUZZ_ASSERT((n_again == size && memcmp(again, image, size) == 0) || canonical_v1_of(image, size, again, n_again, t),
                    "serialize(load(x)) == x");
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
