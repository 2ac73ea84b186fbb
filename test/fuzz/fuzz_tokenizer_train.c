/* Tokenizer training on small arbitrary corpora. The first two bytes choose
 * the vocabulary size (257..1280); the rest is the corpus. Training must
 * succeed on any non-empty text, and the result must round-trip its own
 * corpus and survive serialize + deserialize unchanged. */
#include <stdlib.h>
#include <string.h>

#include "cllm/data/corpus.h"
#include "cllm/data/tokenizer.h"
#include "fuzz_support.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3 || size > 8192) return 0;
    int vocab = CLLM_TOKENIZER_MIN_VOCAB + (int)((data[0] | data[1] << 8) % 1024);
    cllm_corpus c;
    FUZZ_ASSERT(cllm_corpus_from_bytes(data + 2, size - 2, "fuzz", &c) == CLLM_OK, "corpus from bytes");
    cllm_tokenizer *t = NULL;
    FUZZ_ASSERT(cllm_tokenizer_train(&c, vocab, &t) == CLLM_OK, "training on any non-empty text");
    FUZZ_ASSERT(cllm_tokenizer_vocab_size(t) <= vocab, "no more tokens than asked for");
    int32_t *ids = NULL;
    size_t n_ids = 0;
    FUZZ_ASSERT(cllm_tokenizer_encode(t, c.bytes, c.n_bytes, &ids, &n_ids) == CLLM_OK, "encode the corpus");
    uint8_t *text = NULL;
    size_t n_text = 0;
    FUZZ_ASSERT(cllm_tokenizer_decode(t, ids, n_ids, &text, &n_text) == CLLM_OK, "decode");
    FUZZ_ASSERT(n_text == c.n_bytes && memcmp(text, c.bytes, n_text) == 0, "decode(encode(corpus)) == corpus");
    uint8_t *image = NULL;
    size_t n_image = 0;
    FUZZ_ASSERT(cllm_tokenizer_serialize(t, &image, &n_image) == CLLM_OK, "serialize");
    cllm_tokenizer *back = NULL;
    FUZZ_ASSERT(cllm_tokenizer_deserialize(image, n_image, &back) == CLLM_OK, "what training makes loads");
    FUZZ_ASSERT(cllm_tokenizer_vocab_size(back) == cllm_tokenizer_vocab_size(t), "same vocabulary after a reload");
    free(ids), free(text), free(image);
    cllm_tokenizer_free(back);
    cllm_tokenizer_free(t);
    cllm_corpus_free(&c);
    return 0;
}
