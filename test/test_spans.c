/* Owned spans: every element of a range lands in exactly one span; inside a
 * span every tensor element has the span's decay setting; neighbouring spans
 * differ in it (nothing is split needlessly); padding joins the span before
 * it. Random tables with padding, random ranges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "cllm/params/spans.h"

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Decay of element i under the table, -1 for padding. */
static int decay_at(const cllm_param_extent *t, int n, size_t i) {
    for (int k = 0; k < n; k++)
        if (i >= t[k].offset && i < t[k].offset + t[k].numel) return t[k].decay;
    return -1;
}

static void check(const cllm_param_extent *t, int n, size_t begin, size_t end) {
    cllm_span_list l;
    assert_int_equal(cllm_spans_of_range(t, n, begin, end, &l), CLLM_OK);
    if (begin == end) {
        assert_int_equal(l.n, 0);
        return;
    }
    assert_true(l.n >= 1);
    assert_int_equal(l.spans[0].begin, begin);
    assert_int_equal(l.spans[l.n - 1].end, end);
    for (int s = 0; s < l.n; s++) {
        const cllm_span *sp = &l.spans[s];
        assert_true(sp->begin < sp->end);
        if (s > 0) {
            assert_int_equal(l.spans[s - 1].end, sp->begin);
            assert_int_not_equal(l.spans[s - 1].decay, sp->decay);
        }
        for (size_t i = sp->begin; i < sp->end; i++) {
            int d = decay_at(t, n, i);
            if (d >= 0) assert_int_equal(d, sp->decay);
        }
        /* A span starts on a tensor (or at the range's start): padding never opens one. */
        if (sp->begin > begin) assert_true(decay_at(t, n, sp->begin) >= 0);
    }
    cllm_span_list_free(&l);
}

static void test_random_tables_and_ranges(void **state) {
    (void)state;
    for (int trial = 0; trial < 300; trial++) {
        int n = 1 + (int)(next() % 12);
        cllm_param_extent t[12];
        size_t pos = 0;
        for (int k = 0; k < n; k++) {
            t[k].offset = pos;
            t[k].numel = 1 + next() % 50;
            t[k].decay = (int)(next() % 2);
            pos += t[k].numel;
            pos = (pos + 15) / 16 * 16; /* padding to 16 floats, as the model lays tensors */
        }
        size_t total = pos;
        for (int r = 0; r < 20; r++) {
            size_t a = next() % (total + 1), b = next() % (total + 1);
            if (a > b) {
                size_t x = a;
                a = b;
                b = x;
            }
            check(t, n, a, b);
        }
        check(t, n, 0, total);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_tables_and_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
