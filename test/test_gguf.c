/* GGUF writer: a file with every kind of value read back field by field by a
 * reader written here from the spec (ggml's docs/gguf.md); alignment and
 * padding for several alignments and odd tensor sizes; every misuse refused
 * with the file unchanged; crash-safe writing; and binary16 rounding against
 * an oracle that searches the 63,488 finite halves for the nearest one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cllm/base/rng.h"
#include "cllm/io/gguf.h"
#include "support.h"

/* ---- a reader from the spec ------------------------------------------------------------------------ */

typedef struct {
    const unsigned char *p;
    size_t n, pos;
} cursor;

static uint64_t get_le(cursor *c, int bytes) {
    if (c->pos + (size_t)bytes > c->n) fail_msg("read past the end at byte %zu", c->pos);
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)c->p[c->pos + (size_t)i] << (8 * i);
    c->pos += (size_t)bytes;
    return v;
}

/* Checks that the next GGUF string is `want` (length-prefixed, no NUL). */
static void next_string_is(cursor *c, const char *want, size_t want_len) {
    uint64_t n = get_le(c, 8);
    assert_int_equal(n, want_len);
    if (c->pos + n > c->n) fail_msg("string runs past the end");
    assert_memory_equal(c->p + c->pos, want, want_len);
    c->pos += n;
}

static void next_key_is(cursor *c, const char *key, uint32_t type) {
    next_string_is(c, key, strlen(key));
    assert_int_equal(get_le(c, 4), type);
}

static unsigned char *read_file(const char *path, size_t *n) {
    unsigned char *d = read_whole_file(path, n);
    if (!d) fail_msg("cannot read %s", path);
    return d;
}

/* ---- the writer ------------------------------------------------------------------------------------- */

static const char *const names[3] = {"a", "héllo", ""};
static const size_t name_lens[3] = {1, 6, 0};
static const int32_t ints[4] = {1, -2, 3, 2147483647};

static void fill_metadata(cllm_gguf_writer *w) {
    assert_int_equal(cllm_gguf_add_string(w, "general.architecture", "gpt2"), CLLM_OK);
    assert_int_equal(cllm_gguf_add_u32(w, "gpt2.block_count", 0xdeadbeefu), CLLM_OK);
    assert_int_equal(cllm_gguf_add_f32(w, "gpt2.attention.layer_norm_epsilon", 1e-5f), CLLM_OK);
    assert_int_equal(cllm_gguf_add_bool(w, "tokenizer.ggml.add_bos_token", 1), CLLM_OK);
    assert_int_equal(cllm_gguf_add_string_array(w, "tokenizer.ggml.tokens", names, name_lens, 3), CLLM_OK);
    assert_int_equal(cllm_gguf_add_i32_array(w, "tokenizer.ggml.token_type", ints, 4), CLLM_OK);
}

static void check_metadata(cursor *c) {
    next_key_is(c, "general.architecture", CLLM_GGUF_STRING);
    next_string_is(c, "gpt2", 4);
    next_key_is(c, "gpt2.block_count", CLLM_GGUF_UINT32);
    assert_int_equal(get_le(c, 4), 0xdeadbeefu);
    next_key_is(c, "gpt2.attention.layer_norm_epsilon", CLLM_GGUF_FLOAT32);
    uint32_t bits = (uint32_t)get_le(c, 4);
    float eps;
    memcpy(&eps, &bits, 4);
    assert_true(eps == 1e-5f);
    next_key_is(c, "tokenizer.ggml.add_bos_token", CLLM_GGUF_BOOL);
    assert_int_equal(get_le(c, 1), 1);
    next_key_is(c, "tokenizer.ggml.tokens", CLLM_GGUF_ARRAY);
    assert_int_equal(get_le(c, 4), CLLM_GGUF_STRING);
    assert_int_equal(get_le(c, 8), 3);
    for (int i = 0; i < 3; i++) next_string_is(c, names[i], name_lens[i]);
    next_key_is(c, "tokenizer.ggml.token_type", CLLM_GGUF_ARRAY);
    assert_int_equal(get_le(c, 4), CLLM_GGUF_INT32);
    assert_int_equal(get_le(c, 8), 4);
    for (int i = 0; i < 4; i++) assert_int_equal((int32_t)(uint32_t)get_le(c, 4), ints[i]);
}

/* Three tensors of odd sizes (3 floats, 5 x 7 halves, 1 float) at a given
 * alignment: the header, every info, the padding and the data. */
static void check_file_at_alignment(uint32_t alignment) {
    float a[3] = {1.5f, -2.0f, 3.25f}, c1[1] = {42.0f};
    uint16_t b[35];
    for (int i = 0; i < 35; i++) b[i] = (uint16_t)(0x3c00 + i);
    cllm_gguf_writer w;
    assert_int_equal(cllm_gguf_writer_init(&w, alignment), CLLM_OK);
    fill_metadata(&w);
    const uint64_t da[1] = {3}, db[2] = {7, 5}, dc[4] = {1, 1, 1, 1};
    assert_int_equal(cllm_gguf_add_tensor(&w, "a.weight", CLLM_GGML_F32, 1, da, a), CLLM_OK);
    assert_int_equal(cllm_gguf_add_tensor(&w, "blk.0.b", CLLM_GGML_F16, 2, db, b), CLLM_OK);
    assert_int_equal(cllm_gguf_add_tensor(&w, "c", CLLM_GGML_F32, 4, dc, c1), CLLM_OK);
    char *dir = make_temp_dir(), *path = path_in(dir, "t.gguf");
    assert_int_equal(cllm_gguf_write(&w, path), CLLM_OK);
    size_t n;
    unsigned char *d = read_file(path, &n);
    assert_int_equal(n, cllm_gguf_file_size(&w));

    cursor c = {d, n, 0};
    assert_memory_equal(d, "GGUF", 4);
    c.pos = 4;
    assert_int_equal(get_le(&c, 4), 3);
    assert_int_equal(get_le(&c, 8), 3); /* tensors */
    assert_int_equal(get_le(&c, 8), 7); /* six KVs + general.alignment */
    check_metadata(&c);
    next_key_is(&c, "general.alignment", CLLM_GGUF_UINT32);
    assert_int_equal(get_le(&c, 4), alignment);
    /* offsets: each the padded sizes of those before it */
    uint64_t size_a = 12, size_b = 70, pad = alignment;
    uint64_t off_b = (size_a + pad - 1) / pad * pad, off_c = off_b + (size_b + pad - 1) / pad * pad;
    next_string_is(&c, "a.weight", 8);
    assert_int_equal(get_le(&c, 4), 1);
    assert_int_equal(get_le(&c, 8), 3);
    assert_int_equal(get_le(&c, 4), CLLM_GGML_F32);
    assert_int_equal(get_le(&c, 8), 0);
    next_string_is(&c, "blk.0.b", 7);
    assert_int_equal(get_le(&c, 4), 2);
    assert_int_equal(get_le(&c, 8), 7);
    assert_int_equal(get_le(&c, 8), 5);
    assert_int_equal(get_le(&c, 4), CLLM_GGML_F16);
    assert_int_equal(get_le(&c, 8), off_b);
    next_string_is(&c, "c", 1);
    assert_int_equal(get_le(&c, 4), 4);
    for (int i = 0; i < 4; i++) assert_int_equal(get_le(&c, 8), 1);
    assert_int_equal(get_le(&c, 4), CLLM_GGML_F32);
    assert_int_equal(get_le(&c, 8), off_c);
    size_t start = (c.pos + alignment - 1) / alignment * alignment;
    for (size_t i = c.pos; i < start; i++) assert_int_equal(d[i], 0);
    assert_memory_equal(d + start, a, sizeof a); /* little-endian host: the bytes as they are in memory */
    assert_memory_equal(d + start + off_b, b, sizeof b);
    assert_memory_equal(d + start + off_c, c1, sizeof c1);
    for (size_t i = start + size_a; i < start + off_b; i++) assert_int_equal(d[i], 0);
    for (size_t i = start + off_b + size_b; i < start + off_c; i++) assert_int_equal(d[i], 0);
    uint64_t end = start + off_c + 4;
    assert_int_equal(n, (end + alignment - 1) / alignment * alignment);
    for (size_t i = (size_t)end; i < n; i++) assert_int_equal(d[i], 0);
    free(d);
    cllm_gguf_writer_free(&w);
    remove_tree(dir);
    free(path);
    free(dir);
}

static void test_file_layout(void **state) {
    (void)state;
    const uint32_t alignments[] = {8, 16, 32, 64, 4096};
    for (size_t i = 0; i < sizeof alignments / sizeof *alignments; i++) check_file_at_alignment(alignments[i]);
}

static void test_empty_file(void **state) {
    (void)state;
    cllm_gguf_writer w;
    assert_int_equal(cllm_gguf_writer_init(&w, 32), CLLM_OK);
    char *dir = make_temp_dir(), *path = path_in(dir, "e.gguf");
    assert_int_equal(cllm_gguf_write(&w, path), CLLM_OK);
    size_t n;
    unsigned char *d = read_file(path, &n);
    /* 24-byte header + the alignment KV (8 + 17 + 4 + 4), padded to 64 */
    assert_int_equal(n, 64);
    assert_int_equal(n, cllm_gguf_file_size(&w));
    cursor c = {d, n, 4};
    assert_int_equal(get_le(&c, 4), 3);
    assert_int_equal(get_le(&c, 8), 0);
    assert_int_equal(get_le(&c, 8), 1);
    next_key_is(&c, "general.alignment", CLLM_GGUF_UINT32);
    assert_int_equal(get_le(&c, 4), 32);
    free(d);
    cllm_gguf_writer_free(&w);
    remove_tree(dir);
    free(path);
    free(dir);
}

/* Every misuse is refused and leaves the writer as it was: the file written
 * afterwards is the one fill_metadata alone gives. */
static void test_misuse_is_refused(void **state) {
    (void)state;
    cllm_gguf_writer w;
    assert_int_equal(cllm_gguf_writer_init(&w, 12), CLLM_ERR_INTERNAL);
    assert_int_equal(cllm_gguf_writer_init(&w, 0), CLLM_ERR_INTERNAL);
    assert_int_equal(cllm_gguf_writer_init(&w, 32), CLLM_OK);
    fill_metadata(&w);
    size_t len = w.kv.len;
    const char *bad_keys[] = {"", "General.name", "general..name", ".general", "general.", "gen eral", "général",
                              "general.architecture", "general.alignment"};
    for (size_t i = 0; i < sizeof bad_keys / sizeof *bad_keys; i++) {
        assert_int_equal(cllm_gguf_add_u32(&w, bad_keys[i], 1), CLLM_ERR_INTERNAL);
        assert_int_equal(cllm_gguf_add_string(&w, bad_keys[i], "x"), CLLM_ERR_INTERNAL);
    }
    const char *bad_utf8[] = {"\xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ok\x80"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof *bad_utf8; i++) {
        assert_int_equal(cllm_gguf_add_string(&w, "general.name", bad_utf8[i]), CLLM_ERR_INTERNAL);
        size_t l = strlen(bad_utf8[i]);
        assert_int_equal(cllm_gguf_add_string_array(&w, "general.tags", &bad_utf8[i], &l, 1), CLLM_ERR_INTERNAL);
    }
    assert_int_equal(w.kv.len, len);
    assert_int_equal(w.n_kv, 6);

    float x[4] = {0};
    const uint64_t d1[1] = {4}, d5[5] = {1, 1, 1, 1, 4}, zero[2] = {0, 4};
    char long_name[CLLM_GGUF_MAX_NAME + 2];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_int_equal(cllm_gguf_add_tensor(&w, long_name, CLLM_GGML_F32, 1, d1, x), CLLM_ERR_INTERNAL);
    long_name[CLLM_GGUF_MAX_NAME] = '\0'; /* 63 bytes: the longest ggml takes */
    assert_int_equal(cllm_gguf_add_tensor(&w, long_name, CLLM_GGML_F32, 1, d1, x), CLLM_OK);
    assert_int_equal(cllm_gguf_add_tensor(&w, long_name, CLLM_GGML_F32, 1, d1, x), CLLM_ERR_INTERNAL);
    assert_int_equal(cllm_gguf_add_tensor(&w, "", CLLM_GGML_F32, 1, d1, x), CLLM_ERR_INTERNAL);
    assert_int_equal(cllm_gguf_add_tensor(&w, "five", CLLM_GGML_F32, 5, d5, x), CLLM_ERR_INTERNAL);
    assert_int_equal(cllm_gguf_add_tensor(&w, "none", CLLM_GGML_F32, 0, d1, x), CLLM_ERR_INTERNAL);
    assert_int_equal(cllm_gguf_add_tensor(&w, "zero", CLLM_GGML_F32, 2, zero, x), CLLM_ERR_INTERNAL);
    assert_int_equal(cllm_gguf_add_tensor(&w, "q4", (cllm_ggml_type)2, 1, d1, x), CLLM_ERR_INTERNAL);
    assert_int_equal(w.n_tensors, 1);
    cllm_gguf_writer_free(&w);
}

/* The previous file stays whole until the new one is complete, and a place
 * that cannot be written is bad input with nothing left behind. */
static void test_writes_are_atomic(void **state) {
    (void)state;
    char *dir = make_temp_dir(), *path = path_in(dir, "m.gguf");
    free(write_file(dir, "m.gguf", "old", 3));
    cllm_gguf_writer w;
    assert_int_equal(cllm_gguf_writer_init(&w, 32), CLLM_OK);
    fill_metadata(&w);
    char *file = write_file(dir, "plain", "x", 1), *under = path_in(file, "m.gguf");
    assert_int_equal(cllm_gguf_write(&w, under), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "cannot write"));
    assert_int_equal(cllm_gguf_write(&w, path), CLLM_OK);
    size_t n;
    unsigned char *d = read_file(path, &n);
    assert_int_equal(n, cllm_gguf_file_size(&w));
    assert_memory_equal(d, "GGUF", 4);
    free(d);
    /* only the two files: no temporary beside them */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 2", dir);
    assert_int_equal(system(cmd), 0);
    cllm_gguf_writer_free(&w);
    remove_tree(dir);
    free(under);
    free(file);
    free(path);
    free(dir);
}

/* ---- binary16 ----------------------------------------------------------------------------------------- */

/* The exact value of a finite half. */
static double half_value(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
    return h & 0x8000 ? -v : v;
}

/* The oracle: the nearest of the finite halves (and 2^16 standing for
 * infinity, as IEEE rounding treats it), ties to the even one. */
static uint16_t nearest_half(float x) {
    if (isnan(x)) return 0x7e00;
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    uint16_t lo = 0, hi = 0x7bff; /* largest h with value <= a, by bisection over the ordered magnitudes */
    if (a >= half_value(0x7bff)) {
        lo = 0x7bff;
    } else {
        while (lo < hi) {
            uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
            if (half_value(mid) <= a) lo = mid;
            else hi = (uint16_t)(mid - 1);
        }
    }
    double below = half_value(lo), above = lo == 0x7bff ? 65536.0 : half_value((uint16_t)(lo + 1));
    if (a == below) return sign | lo;
    uint16_t up = (uint16_t)(lo + 1); /* 0x7c00 is infinity */
    if (a - below < above - a) return sign | lo;
    if (a - below > above - a) return sign | up;
    return sign | ((lo & 1) ? up : lo);
}

static void check_f16(float x) {
    uint16_t got = cllm_f16_from_f32(x), want = nearest_half(x);
    if (isnan(x)) {
        if ((got & 0x7c00) != 0x7c00 || (got & 0x3ff) == 0) fail_msg("NaN %a became %04x, not a NaN", (double)x, got);
        return;
    }
    if (got != want) fail_msg("%a (%.9g): got %04x, nearest half is %04x", (double)x, (double)x, got, want);
}

static void test_f16_rounding(void **state) {
    (void)state;
    /* every finite half exactly, the midpoints between neighbours (ties) and a float either side of each */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        for (int s = 0; s < 2; s++) {
            float v = (float)half_value((uint16_t)h);
            v = s ? -v : v;
            check_f16(v);
            if (h + 1 <= 0x7c00) {
                double next = h + 1 == 0x7c00 ? 65536.0 : half_value((uint16_t)(h + 1));
                float mid = (float)((half_value((uint16_t)h) + next) / 2); /* exact in float */
                mid = s ? -mid : mid;
                check_f16(mid);
                check_f16(nextafterf(mid, 0));
                check_f16(nextafterf(mid, s ? -INFINITY : INFINITY));
            }
        }
    }
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 65504.0f, 65519.99f, 65520.0f, 1e30f,
                             0x1p-24f, 0x1p-25f, 0x1.000002p-25f, 0x1p-26f, 0x1p-149f, 0x1.8p-24f, 0x1.ffcp-15f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) check_f16(special[i]);
    /* random bit patterns over every exponent */
    cllm_rng r;
    cllm_rng_seed(&r, 12345);
    for (int i = 0; i < 1000000; i++) {
        uint32_t bits = (uint32_t)cllm_rng_next(&r);
        float x;
        memcpy(&x, &bits, 4);
        check_f16(x);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_layout),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_misuse_is_refused),
        cmocka_unit_test(test_writes_are_atomic),
        cmocka_unit_test(test_f16_rounding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
