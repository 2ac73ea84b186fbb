/* tokens.bin (cllm_token_cache_open: header, size, ids checksum, ids in
 * range, one end-of-text id per document). Half the inputs get both
 * checksums recomputed (by the format of src/data/token_cache.c), so that
 * mutations reach the checks behind them. What opens must hold what the
 * header says: the size, every id below the vocabulary, as many end-of-text
 * ids as documents; and the windows over it must read. */
#include <stdlib.h>
#include <string.h>

#include "cllm/data/dataset.h"
#include "cllm/data/token_cache.h"
#include "fuzz_support.h"

#define VOCAB 300 /* the seeds' tokenizer (make_seeds.sh) */
#define EOT (VOCAB - 1)

static uint64_t fnv(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* FNV-1a's step on 8-byte little-endian words, the last 0-7 bytes one at a time. */
static uint64_t ids_checksum(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *image = malloc(size ? size : 1);
    memcpy(image, data, size);
    if (size >= 128 && !(data[size - 1] & 1)) {
        uint64_t s = ids_checksum(image + 128, size - 128);
        memcpy(image + 56, &s, 8);
        uint64_t h = fnv(image, 120);
        memcpy(image + 120, &h, 8);
    }
    const char *path = fuzz_write(fuzz_scratch_dir(), "tokens.bin", image, size);
    cllm_token_cache c;
    cllm_status st = cllm_token_cache_open(path, VOCAB, EOT, &c);
    FUZZ_ASSERT(st == CLLM_OK || st == CLLM_ERR_INPUT, "a bad file is bad input, never an internal error");
    if (st == CLLM_OK) {
        const cllm_token_cache_info *in = &c.info;
        FUZZ_ASSERT(in->id_bytes == 2 || in->id_bytes == 4, "ids of 2 or 4 bytes");
        FUZZ_ASSERT(128 + in->n_tokens * (uint64_t)in->id_bytes == size, "the size the header says");
        uint64_t eots = 0;
        cllm_dataset d;
        cllm_status ds = cllm_dataset_from_ids(c.ids, in->id_bytes, in->n_tokens, 8, 0, 1, &d);
        FUZZ_ASSERT(ds == CLLM_OK || ds == CLLM_ERR_INPUT, "windows or 'too short'");
        if (ds == CLLM_OK) {
            int32_t id;
            for (size_t i = 0; i < in->n_tokens; i++) {
                cllm_dataset_read(&d, i, 1, &id);
                FUZZ_ASSERT(id >= 0 && id < VOCAB, "every id in the vocabulary");
                eots += id == EOT;
            }
            FUZZ_ASSERT(eots == in->n_docs, "one end-of-text id per document");
            int32_t inputs[8], targets[8];
            cllm_dataset_train_window(&d, 12345, inputs, targets);
            cllm_dataset_free(&d);
        }
        cllm_token_cache_release(&c, 0, in->n_tokens);
        cllm_token_cache_close(&c);
    } else {
        FUZZ_ASSERT(c.map == NULL, "a failed open leaves no map");
    }
    free(image);
    return 0;
}
