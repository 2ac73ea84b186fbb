/* Encoding arbitrary bytes with a trained tokenizer: decode(encode(x)) == x,
 * every id in the vocabulary, and raw bytes never encode to the special
 * end-of-text token. The tokenizer is trained once, on the start of the
 * built-in corpus, so its merges are the kind real runs have. */
#include <stdlib.h>
#include <string.h>

#include "cllm/data/corpus.h"
#include "cllm/data/tokenizer.h"
#include "fuzz_support.h"

static cllm_tokenizer *tokenizer;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    cllm_corpus c;
    FUZZ_ASSERT(cllm_corpus_load(NULL, 0, &c) == CLLM_OK, "the built-in corpus loads");
    cllm_corpus prefix;
    FUZZ_ASSERT(cllm_corpus_from_bytes(c.bytes, c.n_bytes < 200000 ? c.n_bytes : 200000, "prefix", &prefix) == CLLM_OK,
                "corpus prefix");
    FUZZ_ASSERT(cllm_tokenizer_train(&prefix, 512, &tokenizer) == CLLM_OK, "train the reference tokenizer");
    cllm_corpus_free(&prefix);
    cllm_corpus_free(&c);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int32_t *ids = NULL;
    size_t n_ids = 0;
    FUZZ_ASSERT(cllm_tokenizer_encode(tokenizer, data, size, &ids, &n_ids) == CLLM_OK, "encode any bytes");
    FUZZ_ASSERT(n_ids <= size, "no more tokens than bytes");
    int32_t vocab = cllm_tokenizer_vocab_size(tokenizer), eot = cllm_tokenizer_eot(tokenizer);
    for (size_t i = 0; i < n_ids; i++) FUZZ_ASSERT(ids[i] >= 0 && ids[i] < vocab && ids[i] != eot, "ids in range, no EOT");
    uint8_t *text = NULL;
    size_t n_text = 0;
    FUZZ_ASSERT(cllm_tokenizer_decode(tokenizer, ids, n_ids, &text, &n_text) == CLLM_OK, "decode");
    FUZZ_ASSERT(n_text == size && (size == 0 || memcmp(text, data, size) == 0), "decode(encode(x)) == x");
    free(ids);
    free(text);
    return 0;
}
