#include "cllm/data/embedded.h"
#include "cllm/base/build_config.h"

/* .incbin copies the file into .rodata at assembly time: no generated C
 * array of a megabyte, and both gcc and clang accept it. */
__asm__(".section .rodata\n"
        ".balign 64\n"
        ".global cllm_corpus_start\n"
        "cllm_corpus_start:\n"
        ".incbin \"" CLLM_DEFAULT_CORPUS_PATH "\"\n"
        ".global cllm_corpus_end\n"
        "cllm_corpus_end:\n"
        ".byte 0\n"
        ".previous\n");

extern const uint8_t cllm_corpus_start[];
extern const uint8_t cllm_corpus_end[];

const uint8_t *cllm_default_corpus(size_t *n_bytes) {
    *n_bytes = (size_t)(cllm_corpus_end - cllm_corpus_start);
    return cllm_corpus_start;
}
