/* Hugging Face tokenizer files (cllm_hf_tokenizer_parse_json, and
 * parse_vocab_merges when the input holds two parts separated by FUZZ_SPLIT:
 * vocab.json then merges.txt). Whatever loads must behave: any bytes
 * round-trip through encode/decode, and tokenizer.bin holds it exactly. */
#include <stdlib.h>
#include <string.h>

#include "cllm/data/hf_tokenizer.h"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *parts[2];
    size_t sizes[2];
    int n = fuzz_split(data, size, parts, sizes, 2);
    cllm_tokenizer *t = NULL;
    cllm_status st = n == 1 ? cllm_hf_tokenizer_parse_json((const char *)parts[0], sizes[0], &t)
                            : cllm_hf_tokenizer_parse_vocab_merges((const char *)parts[0], sizes[0],
                                                                   (const char *)parts[1], sizes[1], &t);
    if (st != CLLM_OK) {
        FUZZ_ASSERT(t == NULL, "a failed load leaves no tokenizer");
        return 0;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    FUZZ_ASSERT(cllm_tokenizer_encode(t, data, size, &ids, &n_ids) == CLLM_OK, "encode");
    uint8_t *text = NULL;
    size_t n_text = 0;
    FUZZ_ASSERT(cllm_tokenizer_decode(t, ids, n_ids, &text, &n_text) == CLLM_OK, "decode");
    FUZZ_ASSERT(n_text == size && memcmp(text, data, size) == 0, "decode(encode(x)) == x");
    uint8_t *image = NULL;
    size_t n_image = 0;
    cllm_tokenizer *back = NULL;
    FUZZ_ASSERT(cllm_tokenizer_serialize(t, &image, &n_image) == CLLM_OK, "serialize");
    FUZZ_ASSERT(cllm_tokenizer_deserialize(image, n_image, &back) == CLLM_OK, "tokenizer.bin reads back");
    FUZZ_ASSERT(cllm_tokenizer_vocab_size(back) == cllm_tokenizer_vocab_size(t) &&
                    cllm_tokenizer_n_merges(back) == cllm_tokenizer_n_merges(t),
                "the same tokenizer");
    free(image);
    free(ids);
    free(text);
    cllm_tokenizer_free(back);
    cllm_tokenizer_free(t);
    return 0;
}
