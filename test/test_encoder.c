/* The parallel encoder and the streaming tokenizer trainer: the encoder's
 * ids equal the one-document encoder's, bitwise, for 1..4 threads and any
 * batch size, on documents cut into pieces or not, with raw bytes and long
 * runs; the trainer fed a document at a time equals the in-memory one. Also
 * run under ThreadSanitizer (.ci/run.d/tsan.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/data/corpus.h"
#include "cllm/data/encoder.h"
#include "cllm/data/tokenizer.h"
#include "support.h"

/* ---- a corpus of awkward documents ---------------------------------------------------- */

typedef struct {
    cllm_corpus corpus;
    cllm_tokenizer *tok;                    /* the default pre-tokenizer's */
    cllm_tokenizer *by_mode[CLLM_PRETOK_COUNT]; /* each pre-tokenizer this build has, else NULL */
} fixture;

/* The shared corpus of awkward documents (support.c). */
static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (make_awkward_corpus(&f->corpus) != 0) return -1;
    if (cllm_tokenizer_train(&f->corpus, 600, &f->tok) != CLLM_OK) return -1;
    for (int m = 0; m < CLLM_PRETOK_COUNT; m++)
        if (cllm_pretok_available((cllm_pretok)m) &&
            cllm_tokenizer_train_mode(&f->corpus, 600, (cllm_pretok)m, NULL, &f->by_mode[m]) != CLLM_OK)
            return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    cllm_tokenizer_free(f->tok);
    for (int m = 0; m < CLLM_PRETOK_COUNT; m++) cllm_tokenizer_free(f->by_mode[m]);
    cllm_corpus_free(&f->corpus);
    free(f);
    return 0;
}

/* The reference: each document through cllm_tokenizer_encode, then EOT. */
static int32_t *reference_stream(const fixture *f, const cllm_tokenizer *tok, size_t *n) {
    int32_t *out = malloc((f->corpus.n_bytes + f->corpus.n_docs) * sizeof *out);
    size_t k = 0;
    for (size_t d = 0; d < f->corpus.n_docs; d++) {
        int32_t *ids;
        size_t m;
        assert_int_equal(cllm_tokenizer_encode(tok, f->corpus.bytes + f->corpus.docs[d].offset,
                                               f->corpus.docs[d].length, &ids, &m),
                         CLLM_OK);
        memcpy(out + k, ids, m * sizeof *ids);
        free(ids);
        k += m;
        out[k++] = cllm_tokenizer_eot(tok);
    }
    *n = k;
    return out;
}

typedef struct { int32_t *v; size_t n, cap, calls; } sink_buf;

static cllm_status collect(void *ctx, const int32_t *ids, size_t n) {
    sink_buf *b = ctx;
    assert_true(b->n + n <= b->cap);
    memcpy(b->v + b->n, ids, n * sizeof *ids);
    b->n += n;
    b->calls++;
    return CLLM_OK;
}

/* Bitwise the reference at 1..4 threads and for batches from one document at a time to everything at once. */
static void test_encoder_equals_the_reference_for_any_thread_count(void **state) {
    fixture *f = *state;
    const size_t batches[] = {1, 100000, 1u << 20, 0};
    int modes = 0;
    for (int mode = 0; mode < CLLM_PRETOK_COUNT; mode++) {
        const cllm_tokenizer *tok = f->by_mode[mode];
        if (!tok) {
            printf("pre-tokenizer %s: not in this build, skipped\n", cllm_pretok_name((cllm_pretok)mode));
            continue;
        }
        modes++;
        size_t n_ref;
        int32_t *ref = reference_stream(f, tok, &n_ref);
        for (int threads = 1; threads <= 4; threads++) {
            for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
                sink_buf buf = {malloc((n_ref + 1) * sizeof(int32_t)), 0, n_ref + 1, 0};
                cllm_encoder *e;
                assert_int_equal(cllm_encoder_create(tok, threads, batches[b], collect, &buf, &e), CLLM_OK);
                for (size_t d = 0; d < f->corpus.n_docs; d++)
                    assert_int_equal(cllm_encoder_add(e, f->corpus.bytes + f->corpus.docs[d].offset,
                                                      f->corpus.docs[d].length),
                                     CLLM_OK);
                assert_int_equal(cllm_encoder_flush(e), CLLM_OK);
                cllm_encoder_free(e);
                assert_int_equal(buf.n, n_ref);
                assert_memory_equal(buf.v, ref, n_ref * sizeof *ref);
                if (batches[b] == 1) assert_int_equal(buf.calls, f->corpus.n_docs); /* one batch per document */
                free(buf.v);
            }
        }
        free(ref);
    }
    assert_true(modes >= 1);
}

/* An empty document is just its EOT, as cllm_dataset_tokenize has always made it. */
static void test_encoder_empty_document(void **state) {
    fixture *f = *state;
    int32_t v[4];
    sink_buf buf = {v, 0, 4, 0};
    cllm_encoder *e;
    assert_int_equal(cllm_encoder_create(f->tok, 2, 0, collect, &buf, &e), CLLM_OK);
    assert_int_equal(cllm_encoder_add(e, (const uint8_t *)"", 0), CLLM_OK);
    assert_int_equal(cllm_encoder_add(e, (const uint8_t *)"a", 1), CLLM_OK);
    assert_int_equal(cllm_encoder_flush(e), CLLM_OK);
    cllm_encoder_free(e);
    int32_t eot = cllm_tokenizer_eot(f->tok);
    assert_int_equal(buf.n, 3);
    assert_int_equal(v[0], eot);
    int32_t *a_ids;
    size_t n_a;
    assert_int_equal(cllm_tokenizer_encode(f->tok, (const uint8_t *)"a", 1, &a_ids, &n_a), CLLM_OK);
    assert_int_equal(n_a, 1);
    assert_int_equal(v[1], a_ids[0]);
    free(a_ids);
    assert_int_equal(v[2], eot);
}

/* Fed a document at a time, the trainer learns the merges it learns from the whole corpus. */
static void test_streaming_trainer_equals_in_memory(void **state) {
    fixture *f = *state;
    cllm_tokenizer_trainer *b;
    assert_int_equal(cllm_tokenizer_trainer_create(600, cllm_tokenizer_pretokenizer(f->tok), NULL, &b), CLLM_OK);
    for (size_t d = 0; d < f->corpus.n_docs; d++)
        assert_int_equal(cllm_tokenizer_trainer_add(b, f->corpus.bytes + f->corpus.docs[d].offset,
                                                    f->corpus.docs[d].length),
                         CLLM_OK);
    cllm_tokenizer *t;
    assert_int_equal(cllm_tokenizer_trainer_finish(b, &t), CLLM_OK);
    uint8_t *x, *y;
    size_t nx, ny;
    assert_int_equal(cllm_tokenizer_serialize(t, &x, &nx), CLLM_OK);
    assert_int_equal(cllm_tokenizer_serialize(f->tok, &y, &ny), CLLM_OK);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    free(x);
    free(y);
    cllm_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoder_equals_the_reference_for_any_thread_count),
        cmocka_unit_test(test_encoder_empty_document),
        cmocka_unit_test(test_streaming_trainer_equals_in_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
