/* Dataset: the token stream, window contents, the validation split, and the
 * stateless per-epoch training order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/data/corpus.h"
#include "cllm/data/dataset.h"
#include "cllm/data/tokenizer.h"
#include "support.h"

typedef struct {
    cllm_corpus corpus;    /* a slice of the default corpus cut into 3 documents */
    cllm_tokenizer *tok;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    cllm_corpus all;
    if (cllm_corpus_load(NULL, 0, &all) != CLLM_OK) return -1;
    if (cllm_corpus_from_bytes(all.bytes, 60000, "slice", &f->corpus) != CLLM_OK) return -1;
    cllm_corpus_free(&all);
    /* Three documents of uneven length over the same bytes. */
    cllm_doc *docs = realloc(f->corpus.docs, 3 * sizeof *docs);
    f->corpus.docs = docs;
    docs[1] = (cllm_doc){strdup("second"), 25000, 20000};
    docs[2] = (cllm_doc){strdup("third"), 45000, 15000};
    docs[0].length = 25000;
    f->corpus.n_docs = 3;
    if (cllm_tokenizer_train(&f->corpus, 400, &f->tok) != CLLM_OK) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    cllm_tokenizer_free(f->tok);
    cllm_corpus_free(&f->corpus);
    free(f);
    return 0;
}

static void test_stream_is_documents_joined_by_eot(void **state) {
    fixture *f = *state;
    cllm_dataset d;
    assert_int_equal(cllm_dataset_build(&f->corpus, f->tok, 64, 0.1, 1, &d), CLLM_OK);
    int32_t eot = cllm_tokenizer_eot(f->tok);
    size_t at = 0;
    for (size_t i = 0; i < f->corpus.n_docs; i++) {
        int32_t *ids;
        size_t n;
        const cllm_doc *doc = &f->corpus.docs[i];
        assert_int_equal(cllm_tokenizer_encode(f->tok, f->corpus.bytes + doc->offset, doc->length, &ids, &n), CLLM_OK);
        assert_true(at + n + 1 <= d.n_tokens);
        assert_memory_equal(d.tokens + at, ids, n * sizeof *ids);
        assert_int_equal(d.tokens[at + n], eot);
        at += n + 1;
        free(ids);
    }
    assert_int_equal(at, d.n_tokens);
    cllm_dataset_free(&d);
}

/* `cllm eval DATA` scores cllm_dataset_tokenize's stream: it must be the very stream training windows. */
static void test_tokenize_is_the_training_stream(void **state) {
    fixture *f = *state;
    cllm_dataset d;
    assert_int_equal(cllm_dataset_build(&f->corpus, f->tok, 64, 0.1, 1, &d), CLLM_OK);
    int32_t *tokens = NULL;
    size_t n = 0;
    assert_int_equal(cllm_dataset_tokenize(&f->corpus, f->tok, &tokens, &n), CLLM_OK);
    assert_int_equal(n, d.n_tokens);
    assert_memory_equal(tokens, d.tokens, n * sizeof *tokens);
    free(tokens);
    cllm_dataset_free(&d);
}

static int contains(const size_t *v, size_t n, size_t x) {
    for (size_t i = 0; i < n; i++)
        if (v[i] == x) return 1;
    return 0;
}

static void test_split_covers_windows_once_with_fraction(void **state) {
    fixture *f = *state;
    const double fractions[] = {0.05, 0.1, 0.5, 1e-9};
    for (int k = 0; k < 4; k++) {
        cllm_dataset d;
        int seq = 32;
        assert_int_equal(cllm_dataset_build(&f->corpus, f->tok, seq, fractions[k], 42, &d), CLLM_OK);
        size_t n_windows = (d.n_tokens - 1) / (size_t)seq;
        assert_int_equal(d.n_train + d.n_val, n_windows);
        size_t expected_val = (size_t)llround(fractions[k] * (double)n_windows);
        assert_int_equal(d.n_val, expected_val ? expected_val : 1);
        for (size_t w = 0; w < n_windows; w++) { /* each window in exactly one list */
            int in_train = contains(d.train_starts, d.n_train, w * (size_t)seq);
            int in_val = contains(d.val_starts, d.n_val, w * (size_t)seq);
            assert_int_equal(in_train + in_val, 1);
        }
        cllm_dataset_free(&d);
    }
    cllm_dataset d;
    assert_int_equal(cllm_dataset_build(&f->corpus, f->tok, 32, 0, 42, &d), CLLM_OK);
    assert_int_equal(d.n_val, 0);
    cllm_dataset_free(&d);
}

static void test_split_is_deterministic_in_the_seed(void **state) {
    fixture *f = *state;
    cllm_dataset a, b, c;
    assert_int_equal(cllm_dataset_build(&f->corpus, f->tok, 32, 0.1, 7, &a), CLLM_OK);
    assert_int_equal(cllm_dataset_build(&f->corpus, f->tok, 32, 0.1, 7, &b), CLLM_OK);
    assert_int_equal(cllm_dataset_build(&f->corpus, f->tok, 32, 0.1, 8, &c), CLLM_OK);
    assert_true(a.n_val > 50);
    assert_int_equal(a.n_val, b.n_val);
    assert_memory_equal(a.val_starts, b.val_starts, a.n_val * sizeof(size_t));
    assert_memory_equal(a.train_starts, b.train_starts, a.n_train * sizeof(size_t));
    assert_int_equal(a.n_val, c.n_val);
    assert_memory_not_equal(a.val_starts, c.val_starts, a.n_val * sizeof(size_t));
    /* spread over the corpus, not bunched at one end */
    assert_true(a.val_starts[0] < a.n_tokens / 4);
    assert_true(a.val_starts[a.n_val - 1] > a.n_tokens / 4 * 3);
    cllm_dataset_free(&a);
    cllm_dataset_free(&b);
    cllm_dataset_free(&c);
}

static void test_windows_hold_inputs_and_shifted_targets(void **state) {
    fixture *f = *state;
    cllm_dataset d;
    int seq = 16;
    assert_int_equal(cllm_dataset_build(&f->corpus, f->tok, seq, 0.05, 3, &d), CLLM_OK);
    int32_t in[16], tg[16];
    for (uint64_t i = 0; i < 50; i++) {
        size_t start = cllm_dataset_train_start(&d, i);
        cllm_dataset_train_window(&d, i, in, tg);
        assert_memory_equal(in, d.tokens + start, sizeof in);
        assert_memory_equal(tg, d.tokens + start + 1, sizeof tg);
        for (int j = 0; j + 1 < seq; j++) assert_int_equal(tg[j], in[j + 1]);
    }
    for (size_t i = 0; i < d.n_val; i++) {
        cllm_dataset_val_window(&d, i, in, tg);
        assert_memory_equal(in, d.tokens + d.val_starts[i], sizeof in);
        assert_memory_equal(tg, d.tokens + d.val_starts[i] + 1, sizeof tg);
    }
    assert_true(d.val_starts[d.n_val - 1] + (size_t)seq + 1 <= d.n_tokens);
    assert_true(d.train_starts[d.n_train - 1] + (size_t)seq + 1 <= d.n_tokens);
    cllm_dataset_free(&d);
}

/* Each epoch visits every training window once, in an order that depends on
 * the epoch and the seed; the same index always gives the same window. */
static void test_training_order_is_a_permutation_per_epoch(void **state) {
    fixture *f = *state;
    cllm_dataset d, e;
    assert_int_equal(cllm_dataset_build(&f->corpus, f->tok, 8, 0.05, 11, &d), CLLM_OK);
    assert_int_equal(cllm_dataset_build(&f->corpus, f->tok, 8, 0.05, 12, &e), CLLM_OK);
    size_t n = d.n_train;
    assert_true(n > 1000);
    size_t max_start = d.n_tokens;
    unsigned char *seen = calloc(max_start, 1), *is_train = calloc(max_start, 1);
    for (size_t i = 0; i < n; i++) is_train[d.train_starts[i]] = 1;
    size_t *order0 = malloc(n * sizeof *order0);
    size_t same_as_epoch0 = 0, same_as_other_seed = 0, in_place = 0;
    for (uint64_t epoch = 0; epoch < 3; epoch++) {
        memset(seen, 0, max_start);
        for (size_t i = 0; i < n; i++) {
            size_t s = cllm_dataset_train_start(&d, epoch * n + i);
            assert_true(s < max_start && is_train[s]);
            assert_int_equal(seen[s], 0);
            seen[s] = 1;
            if (epoch == 0) order0[i] = s;
            else same_as_epoch0 += order0[i] == s;
            if (epoch == 0) {
                same_as_other_seed += cllm_dataset_train_start(&e, i) == s;
                in_place += d.train_starts[i] == s;
            }
        }
    }
    /* A random order agrees with another one in about 1 place out of n. */
    assert_true(same_as_epoch0 < 20);
    assert_true(same_as_other_seed < 20);
    assert_true(in_place < 10);
    assert_int_equal(cllm_dataset_train_start(&d, 123456), cllm_dataset_train_start(&d, 123456));
    free(seen);
    free(is_train);
    free(order0);
    cllm_dataset_free(&d);
    cllm_dataset_free(&e);
}

static void test_small_counts_of_windows(void **state) {
    (void)state;
    /* n_train of 1, 2, 3, 5: the permutation holds on tiny domains too. */
    for (int words = 1; words <= 5; words++) {
        cllm_corpus c;
        const char *text = "abcdefghijklmnopqrstuvwxyz";
        assert_int_equal(cllm_corpus_from_bytes(text, 26, "t", &c), CLLM_OK);
        cllm_tokenizer *t;
        assert_int_equal(cllm_tokenizer_train(&c, 257, &t), CLLM_OK);
        cllm_dataset d;
        int seq = 26 / words; /* 27 tokens (26 + EOT) -> `words` windows */
        assert_int_equal(cllm_dataset_build(&c, t, seq, 0, 5, &d), CLLM_OK);
        assert_int_equal(d.n_train, (size_t)(26 / seq));
        unsigned mask = 0;
        for (size_t i = 0; i < d.n_train; i++) mask |= 1u << (cllm_dataset_train_start(&d, 7 * d.n_train + i) / (size_t)seq);
        assert_int_equal(mask, (1u << d.n_train) - 1);
        cllm_dataset_free(&d);
        cllm_tokenizer_free(t);
        cllm_corpus_free(&c);
    }
}

static void test_too_short_and_bad_arguments(void **state) {
    (void)state;
    cllm_corpus c;
    assert_int_equal(cllm_corpus_from_bytes("0123456789", 10, "t", &c), CLLM_OK); /* 10 tokens + EOT */
    cllm_tokenizer *t;
    assert_int_equal(cllm_tokenizer_train(&c, 257, &t), CLLM_OK);
    cllm_dataset d;
    assert_int_equal(cllm_dataset_build(&c, t, 10, 0, 1, &d), CLLM_OK); /* 11 tokens: exactly one window */
    assert_int_equal(d.n_train, 1);
    cllm_dataset_free(&d);
    assert_int_equal(cllm_dataset_build(&c, t, 11, 0, 1, &d), CLLM_ERR_INPUT);
    assert_string_equal(cllm_last_error(), "corpus too short: 11 tokens, need 12 (1 window of 11+1 tokens)");
    assert_null(d.tokens);
    assert_int_equal(cllm_dataset_build(&c, t, 5, 0.1, 1, &d), CLLM_OK); /* 2 windows: 1 train + 1 val */
    assert_int_equal(d.n_train, 1);
    assert_int_equal(d.n_val, 1);
    cllm_dataset_free(&d);
    assert_int_equal(cllm_dataset_build(&c, t, 6, 0.1, 1, &d), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "corpus too short: 11 tokens, need 13"));
    assert_int_equal(cllm_dataset_build(&c, t, 0, 0.1, 1, &d), CLLM_ERR_INPUT);
    assert_int_equal(cllm_dataset_build(&c, t, 4, 1.0, 1, &d), CLLM_ERR_INPUT);
    assert_int_equal(cllm_dataset_build(&c, t, 4, -0.5, 1, &d), CLLM_ERR_INPUT);
    assert_int_equal(cllm_dataset_build(&c, t, 4, NAN, 1, &d), CLLM_ERR_INPUT);
    cllm_tokenizer_free(t);
    cllm_corpus_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_is_documents_joined_by_eot),
        cmocka_unit_test(test_tokenize_is_the_training_stream),
        cmocka_unit_test(test_split_covers_windows_once_with_fraction),
        cmocka_unit_test(test_split_is_deterministic_in_the_seed),
        cmocka_unit_test(test_windows_hold_inputs_and_shifted_targets),
        cmocka_unit_test(test_training_order_is_a_permutation_per_epoch),
        cmocka_unit_test(test_small_counts_of_windows),
        cmocka_unit_test(test_too_short_and_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
