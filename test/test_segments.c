/* The segment partition: every element covered exactly once, interior
 * boundaries on whole cache lines (and grains), sizes balanced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "cllm/kernels/kernels.h"
#include "cllm/dist/segments.h"

static void check_partition(size_t n, int count, size_t grain) {
    cllm_segment *seg = malloc(sizeof(cllm_segment) * (size_t)count);
    assert_non_null(seg);
    cllm_segments_split(n, count, grain, seg);
    size_t expect_begin = 0, max_len = 0, min_len = SIZE_MAX;
    for (int s = 0; s < count; s++) {
        /* consecutive, non-overlapping, no gaps: covers [0, n) exactly once */
        assert_int_equal(seg[s].begin, expect_begin);
        assert_true(seg[s].end >= seg[s].begin);
        assert_true(seg[s].end <= n);
        if (seg[s].end < n) {
            assert_int_equal(seg[s].end % grain, 0);
            assert_int_equal((seg[s].end * sizeof(float)) % 64, 0); /* whole 64-byte lines */
        }
        size_t len = seg[s].end - seg[s].begin;
        if (seg[s].end < n) { /* the last may be short */
            if (len > max_len) max_len = len;
            if (len < min_len) min_len = len;
        }
        expect_begin = seg[s].end;
    }
    assert_int_equal(expect_begin, n);
    if (max_len >= min_len && min_len != SIZE_MAX) assert_true(max_len - min_len <= grain);
    free(seg);
}

static void test_partition_covers_exactly_once(void **state) {
    (void)state;
    static const size_t sizes[] = {1, 15, 16, 17, 255, 256, 257, 1000, 4096, 65537, 124439808, 1000003};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int threads = 1; threads <= 64; threads++)
            for (int per = 1; per <= 4; per++) {
                check_partition(sizes[i], threads * per, 16);
                check_partition(sizes[i], threads * per, CLLM_SEGMENT_GRAIN);
            }
}

static void test_element_counts_by_marking(void **state) {
    (void)state;
    /* Independent check: mark each element; every mark must be exactly 1. */
    size_t n = 100003;
    unsigned char *mark = calloc(n, 1);
    cllm_segment seg[37];
    cllm_segments_split(n, 37, 16, seg);
    for (int s = 0; s < 37; s++)
        for (size_t i = seg[s].begin; i < seg[s].end; i++) mark[i]++;
    for (size_t i = 0; i < n; i++) assert_int_equal(mark[i], 1);
    free(mark);
}

static void test_more_segments_than_grains(void **state) {
    (void)state;
    cllm_segment seg[64];
    cllm_segments_split(100, 64, CLLM_SEGMENT_GRAIN, seg);
    int non_empty = 0;
    for (int s = 0; s < 64; s++) non_empty += seg[s].end > seg[s].begin;
    assert_int_equal(non_empty, 1);
    assert_int_equal(seg[63].end, 100);
}

static void test_grain_is_whole_sq_chunks(void **state) {
    (void)state;
    /* What keeps the clipped norm independent of the thread count. */
    assert_int_equal(CLLM_SEGMENT_GRAIN % CLLM_SQ_CHUNK, 0);
    assert_int_equal(CLLM_SEGMENT_GRAIN % 16, 0);
}

static void test_owner_round_robin(void **state) {
    (void)state;
    for (int t = 1; t <= 8; t++) {
        int owned[8] = {0};
        for (int s = 0; s < 3 * t; s++) owned[cllm_segment_owner(s, t)]++;
        for (int i = 0; i < t; i++) assert_int_equal(owned[i], 3);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition_covers_exactly_once),
        cmocka_unit_test(test_element_counts_by_marking),
        cmocka_unit_test(test_more_segments_than_grains),
        cmocka_unit_test(test_grain_is_whole_sq_chunks),
        cmocka_unit_test(test_owner_round_robin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
