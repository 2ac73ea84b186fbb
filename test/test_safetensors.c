/* safetensors: round trip, a hand-built file, and rejection of every kind of
 * damage (short, truncated at every byte, bad JSON, bad dtype, bad shape,
 * offsets out of range, overlaps, gaps, random byte flips). */
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

#include "cllm/base/rng.h"
#include "cllm/base/json.h"
#include "cllm/io/safetensors.h"
#include "support.h"

/* A file from a header text and a buffer of n_data bytes (values 0,1,2...). */
static unsigned char *make_file(const char *header, size_t n_data, size_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + n_data;
    unsigned char *b = malloc(*size);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < n_data; i++) b[8 + h + i] = (unsigned char)i;
    return b;
}

static cllm_status parse_header(const char *header, size_t n_data) {
    size_t size;
    unsigned char *b = make_file(header, n_data, &size);
    cllm_st_file f;
    cllm_status st = cllm_st_parse(b, size, "t.safetensors", &f);
    if (st == CLLM_OK) cllm_st_close(&f);
    free(b);
    return st;
}

static unsigned char *slurp(const char *path, size_t *n) {
    unsigned char *b = read_whole_file(path, n);
    assert_non_null(b);
    return b;
}

/* A small valid file written by our writer: three dtypes, a scalar, metadata. */
static char *write_sample(const char *dir, float *w, int64_t *idx, uint64_t *step) {
    for (int i = 0; i < 6; i++) w[i] = 0.5f * (float)i - 1.0f;
    idx[0] = -3;
    idx[1] = 1LL << 40;
    *step = 12345678901234ULL;
    cllm_st_writer wr;
    cllm_st_writer_init(&wr);
    int64_t s23[2] = {2, 3}, s2[1] = {2};
    assert_int_equal(cllm_st_writer_add(&wr, "layer.weight", CLLM_ST_F32, w, 2, s23), CLLM_OK);
    assert_int_equal(cllm_st_writer_add(&wr, "idx", CLLM_ST_I64, idx, 1, s2), CLLM_OK);
    assert_int_equal(cllm_st_writer_add(&wr, "step", CLLM_ST_U64, step, 0, NULL), CLLM_OK);
    assert_int_equal(cllm_st_writer_metadata(&wr, "format", "pt"), CLLM_OK);
    assert_int_equal(cllm_st_writer_metadata(&wr, "note", "quote \" and \\ and \n"), CLLM_OK);
    /* duplicates are refused */
    assert_int_not_equal(cllm_st_writer_add(&wr, "idx", CLLM_ST_I64, idx, 1, s2), CLLM_OK);
    assert_int_not_equal(cllm_st_writer_metadata(&wr, "format", "x"), CLLM_OK);
    char *path = malloc(strlen(dir) + 32);
    sprintf(path, "%s/sample.safetensors", dir);
    assert_int_equal(cllm_st_writer_write(&wr, path), CLLM_OK);
    cllm_st_writer_free(&wr);
    return path;
}

static void test_round_trip(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    float w[6];
    int64_t idx[2];
    uint64_t step;
    char *path = write_sample(dir, w, idx, &step);

    size_t n;
    unsigned char *raw = slurp(path, &n);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)raw[i] << (8 * i);
    assert_int_equal(hlen % 8, 0); /* buffer starts 8-aligned */
    assert_int_equal(8 + hlen + 24 + 16 + 8, n);
    assert_int_equal(raw[8], '{');
    /* tensors laid out in the order written, data bytes verbatim */
    assert_memory_equal(raw + 8 + hlen, w, 24);
    assert_memory_equal(raw + 8 + hlen + 24, idx, 16);
    free(raw);

    cllm_st_file f;
    assert_int_equal(cllm_st_open(path, &f), CLLM_OK);
    assert_int_equal(f.n_tensors, 3);
    const cllm_st_tensor *t = cllm_st_find(&f, "layer.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, CLLM_ST_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(t->numel, 6);
    assert_memory_equal(t->data, w, sizeof w);
    t = cllm_st_find(&f, "idx");
    assert_non_null(t);
    assert_int_equal(t->dtype, CLLM_ST_I64);
    assert_memory_equal(t->data, idx, sizeof idx);
    t = cllm_st_find(&f, "step");
    assert_non_null(t);
    assert_int_equal(t->dtype, CLLM_ST_U64);
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->numel, 1);
    uint64_t s;
    memcpy(&s, t->data, 8);
    assert_true(s == step);
    assert_null(cllm_st_find(&f, "nope"));
    assert_string_equal(cllm_st_metadata(&f, "format"), "pt");
    assert_string_equal(cllm_st_metadata(&f, "note"), "quote \" and \\ and \n");
    assert_null(cllm_st_metadata(&f, "absent"));
    cllm_st_close(&f);
    free(path);
    remove_tree(dir);
    free(dir);
}

static void test_hand_built_file(void **state) {
    (void)state;
    /* As another implementation might write it: metadata first, tensors out of
     * order, whitespace, an escaped name, no padding. */
    const char *header = "{ \"__metadata__\" : {\"a\":\"b\"},\n"
                         "  \"b\\u00e9ta\": {\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[8,12]},\n"
                         "  \"alpha\": {\"data_offsets\":[0,8],\"shape\":[1,2],\"dtype\":\"F32\"}}";
    size_t size;
    unsigned char *b = make_file(header, 12, &size);
    cllm_st_file f;
    assert_int_equal(cllm_st_parse(b, size, "hand", &f), CLLM_OK);
    assert_int_equal(f.n_tensors, 2);
    const cllm_st_tensor *t = cllm_st_find(&f, "b\xc3\xa9ta");
    assert_non_null(t);
    assert_int_equal(t->dtype, CLLM_ST_U8);
    assert_int_equal(((const unsigned char *)t->data)[0], 8);
    t = cllm_st_find(&f, "alpha");
    assert_non_null(t);
    assert_int_equal(t->numel, 2);
    assert_int_equal(((const unsigned char *)t->data)[7], 7);
    assert_string_equal(cllm_st_metadata(&f, "a"), "b");
    cllm_st_close(&f);
    free(b);
    /* An empty header with an empty buffer is a valid (empty) file. */
    assert_int_equal(parse_header("{}", 0), CLLM_OK);
}

static void expect_rejected(const char *header, size_t n_data, const char *needle) {
    size_t size;
    unsigned char *b = make_file(header, n_data, &size);
    cllm_st_file f;
    cllm_status st = cllm_st_parse(b, size, "bad.safetensors", &f);
    free(b);
    if (st != CLLM_ERR_INPUT) fail_msg("accepted: %s", header);
    const char *msg = cllm_last_error();
    if (!strstr(msg, "bad.safetensors") || !strstr(msg, needle))
        fail_msg("message '%s' should name the file and contain '%s'", msg, needle);
    assert_int_equal(f.n_tensors, 0); /* left empty */
    cllm_st_close(&f);
}

static void test_rejects_bad_headers(void **state) {
    (void)state;
    const char *ok = "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char buf[512];
    snprintf(buf, sizeof buf, "{%s}", ok);
    assert_int_equal(parse_header(buf, 8), CLLM_OK);

    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "JSON");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", 8, "JSON");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "JSON");
    expect_rejected("{'x':1}", 0, "JSON");
    expect_rejected("[1,2]", 0, "object");
    expect_rejected("{\"x\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype");
    expect_rejected("{\"x\":{\"dtype\":3,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    expect_rejected("{\"x\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "bytes");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "shape");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8, "shape");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, "shape");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                    "\"data_offsets\":[0,8]}}", 8, "bytes");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 8, "data_offsets");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "outside");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "outside");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 12, "outside");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999]}}", 8,
                    "data_offsets");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", 8, "unknown field");
    /* two tensors over the same bytes, or partly overlapping */
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "overlaps");
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlaps");
    /* a gap, and unaccounted bytes at the end */
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "unused");
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "cover");
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate");
    expect_rejected("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__");
    expect_rejected("{\"__metadata__\":[]}", 0, "__metadata__");
    expect_rejected("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty name");
    expect_rejected("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "JSON");
    expect_rejected("{\"a\\q\":{}}", 0, "JSON");
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, "JSON");
    /* deep nesting is refused, not recursed into */
    char deep[400] = "{\"a\":";
    for (int i = 0; i < 100; i++) strcat(deep, "[");
    expect_rejected(deep, 0, "JSON");
}

static void test_rejects_short_and_oversized_length(void **state) {
    (void)state;
    unsigned char tiny[7] = {2, 0, 0, 0, 0, 0, 0};
    cllm_st_file f;
    for (size_t n = 0; n < sizeof tiny; n++) {
        assert_int_equal(cllm_st_parse(tiny, n, "short.safetensors", &f), CLLM_ERR_INPUT);
        assert_non_null(strstr(cllm_last_error(), "short.safetensors"));
    }
    size_t size;
    unsigned char *b = make_file("{}", 0, &size);
    b[0] = 3; /* one more than the file holds */
    assert_int_equal(cllm_st_parse(b, size, "long.safetensors", &f), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "past the end"));
    memset(b, 0xff, 8); /* 2^64-1: must not wrap around */
    assert_int_equal(cllm_st_parse(b, size, "long.safetensors", &f), CLLM_ERR_INPUT);
    free(b);
}

static void test_open_errors(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    cllm_st_file f;
    assert_int_equal(cllm_st_open("/nonexistent/x.safetensors", &f), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "/nonexistent/x.safetensors"));
    assert_int_equal(cllm_st_open(dir, &f), CLLM_ERR_INPUT); /* a folder */
    remove_tree(dir);
    free(dir);
}

static void test_truncation_at_every_byte(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    float w[6];
    int64_t idx[2];
    uint64_t step;
    char *path = write_sample(dir, w, idx, &step);
    size_t n;
    unsigned char *raw = slurp(path, &n);
    for (size_t k = 0; k < n; k++) {
        cllm_st_file f;
        cllm_status st = cllm_st_parse(raw, k, "cut.safetensors", &f);
        if (st != CLLM_ERR_INPUT) fail_msg("a file cut to %zu of %zu bytes was accepted", k, n);
    }
    cllm_st_file f;
    assert_int_equal(cllm_st_parse(raw, n, "whole", &f), CLLM_OK);
    cllm_st_close(&f);
    free(raw);
    free(path);
    remove_tree(dir);
    free(dir);
}

/* Random flips of 1-3 bytes: every outcome must be a clean accept or a clean
 * rejection (ASan/UBSan in CI catch any out-of-bounds read), and an accepted
 * file's tensors must lie inside it. */
static void test_random_byte_flips(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    float w[6];
    int64_t idx[2];
    uint64_t step;
    char *path = write_sample(dir, w, idx, &step);
    size_t n;
    unsigned char *raw = slurp(path, &n);
    unsigned char *copy = malloc(n);
    cllm_rng rng;
    cllm_rng_seed(&rng, 7);
    int accepted = 0, rejected = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(copy, raw, n);
        int flips = 1 + (int)cllm_rng_below(&rng, 3);
        for (int j = 0; j < flips; j++) {
            size_t at = (size_t)cllm_rng_below(&rng, n);
            /* half the time target the header, where damage matters most */
            if (trial % 2 == 0) at = (size_t)cllm_rng_below(&rng, n < 160 ? n : 160);
            copy[at] ^= (unsigned char)(1 + cllm_rng_below(&rng, 255));
        }
        cllm_st_file f;
        cllm_status st = cllm_st_parse(copy, n, "flip", &f);
        if (st == CLLM_OK) {
            accepted++;
            for (int t = 0; t < f.n_tensors; t++) {
                const unsigned char *d = f.tensors[t].data;
                assert_true(d >= f.bytes && d + f.tensors[t].nbytes <= f.bytes + f.size);
            }
            cllm_st_close(&f);
        } else {
            assert_int_equal(st, CLLM_ERR_INPUT);
            rejected++;
        }
    }
    assert_true(rejected > 0);
    assert_true(accepted > 0); /* flips in the data buffer are undetectable, and fine */
    free(copy);
    free(raw);
    free(path);
    remove_tree(dir);
    free(dir);
}

static void test_failed_write_keeps_previous_file(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    float w[6];
    int64_t idx[2];
    uint64_t step;
    char *path = write_sample(dir, w, idx, &step);
    size_t n0;
    unsigned char *before = slurp(path, &n0);
    float other[6] = {9, 9, 9, 9, 9, 9};
    int64_t shape[1] = {6};
    /* the size the new file would have, so that every cut point is tried */
    char *side = malloc(strlen(dir) + 16);
    sprintf(side, "%s/side", dir);
    cllm_st_writer probe;
    cllm_st_writer_init(&probe);
    assert_int_equal(cllm_st_writer_add(&probe, "other", CLLM_ST_F32, other, 1, shape), CLLM_OK);
    assert_int_equal(cllm_st_writer_write(&probe, side), CLLM_OK);
    cllm_st_writer_free(&probe);
    size_t n_new;
    free(slurp(side, &n_new));
    free(side);
    for (int64_t k = 0; k < (int64_t)n_new; k++) {
        cllm_st_writer wr;
        cllm_st_writer_init(&wr);
        assert_int_equal(cllm_st_writer_add(&wr, "other", CLLM_ST_F32, other, 1, shape), CLLM_OK);
        cllm_st_debug_fail_after(k, 0);
        assert_int_not_equal(cllm_st_writer_write(&wr, path), CLLM_OK);
        cllm_st_debug_fail_after(-1, 0);
        cllm_st_writer_free(&wr);
        size_t n1;
        unsigned char *after = slurp(path, &n1);
        assert_int_equal(n0, n1);
        assert_memory_equal(before, after, n0);
        free(after);
    }
    free(before);
    free(path);
    remove_tree(dir);
    free(dir);
}

static void test_json_reader(void **state) {
    (void)state;
    cllm_json *v = NULL;
    const char *doc = "{\"a\":[1,-2,3.5e1,true,false,null],\"s\":\"x\\ty\\ud83d\\ude00\",\"o\":{}}";
    assert_int_equal(cllm_json_parse(doc, strlen(doc), &v), CLLM_OK);
    const cllm_json *a = cllm_json_get(v, "a");
    assert_non_null(a);
    assert_int_equal(a->length, 6);
    assert_true(a->items[0].is_integer && a->items[0].integer == 1);
    assert_true(a->items[1].is_integer && a->items[1].integer == -2);
    assert_false(a->items[2].is_integer);
    assert_true(a->items[2].number == 35.0);
    assert_int_equal(a->items[3].type, CLLM_JSON_BOOL);
    assert_int_equal(a->items[5].type, CLLM_JSON_NULL);
    assert_string_equal(cllm_json_get(v, "s")->string, "x\ty\xf0\x9f\x98\x80");
    assert_null(cllm_json_get(v, "missing"));
    cllm_json_free(v);
    const char *bad[] = {"", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "\"\\ud800\"", "tru", "nan", "[1] [2]",
                         "\"a\x01\"", "{\"a\":1,\"a\":2}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (cllm_json_parse(bad[i], strlen(bad[i]), &v) != CLLM_ERR_INPUT) fail_msg("accepted '%s'", bad[i]);
        assert_null(v);
    }
}

/* The one JSON number writer: null for NaN and +-Inf (JSON has neither), and
 * finite values that the strict reader reads back exactly at 17 digits. */
static void test_json_numbers_are_never_nan(void **state) {
    (void)state;
    char buf[64];
    const double non_finite[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(cllm_json_format_number(buf, sizeof buf, non_finite[i], 9), 4);
        assert_string_equal(buf, "null");
    }
    const double finite[] = {0.0, -0.0, 2.5, 0.1, 7e15, -1e-300, 1.7976931348623157e308, 5e-324};
    for (int i = 0; i < 8; i++) {
        cllm_json_format_number(buf, sizeof buf, finite[i], 17);
        cllm_json *v = NULL;
        assert_int_equal(cllm_json_parse(buf, strlen(buf), &v), CLLM_OK);
        assert_int_equal(v->type, CLLM_JSON_NUMBER);
        assert_true(v->number == finite[i]);
        cllm_json_free(v);
    }
    char *out = NULL;
    size_t len = 0, cap = 0;
    assert_true(cllm_json_appendf(&out, &len, &cap, "{\"a\":"));
    assert_true(cllm_json_append_number(&out, &len, &cap, NAN, 9));
    assert_true(cllm_json_appendf(&out, &len, &cap, ",\"b\":"));
    assert_true(cllm_json_append_number(&out, &len, &cap, 1.5, 9));
    assert_true(cllm_json_appendf(&out, &len, &cap, "}"));
    assert_string_equal(out, "{\"a\":null,\"b\":1.5}");
    cllm_json *v = NULL;
    assert_int_equal(cllm_json_parse(out, len, &v), CLLM_OK);
    assert_int_equal(cllm_json_get(v, "a")->type, CLLM_JSON_NULL);
    cllm_json_free(v);
    free(out);
}


/* Bits of a float, so that -0, NaN payloads and subnormals compare exactly. */
static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

/* Every binary16 pattern against its value computed another way (ldexp of
 * the integer significand): bit-identical for finite values, and an infinity
 * or a NaN with the same sign and fraction bits otherwise. */
static void test_f16_widening_is_exact(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float got = cllm_st_f16_to_f32((uint16_t)h);
        int sign = h >> 15, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
        if (exp == 0x1f) {
            assert_true(frac ? isnan(got) : isinf(got));
            assert_int_equal(bits_of(got) >> 31, sign);
            assert_int_equal((bits_of(got) >> 13) & 0x3ff, frac);
            assert_int_equal(bits_of(got) & 0x1fff, 0);
            continue;
        }
        double v = exp ? ldexp(1024 + frac, exp - 25) : ldexp(frac, -24);
        float want = (float)(sign ? -v : v);
        if (bits_of(got) != bits_of(want)) fail_msg("f16 %04x: got %a, want %a", h, (double)got, (double)want);
    }
}

static void test_bf16_widening_is_exact(void **state) {
    (void)state;
    for (uint32_t b = 0; b < 65536; b++) {
        float got = cllm_st_bf16_to_f32((uint16_t)b);
        int sign = b >> 15, exp = (b >> 7) & 0xff, frac = b & 0x7f;
        if (exp == 0xff) {
            assert_true(frac ? isnan(got) : isinf(got));
            assert_int_equal(bits_of(got), b << 16);
            continue;
        }
        double v = exp ? ldexp(128 + frac, exp - 134) : ldexp(frac, -133);
        float want = (float)(sign ? -v : v);
        if (bits_of(got) != bits_of(want)) fail_msg("bf16 %04x: got %a, want %a", b, (double)got, (double)want);
    }
}

/* cllm_st_to_f32 on a file whose half-precision tensors sit at odd byte
 * offsets (after a 1-byte tensor), in our writer's layout and read back. */
static void test_to_f32_reads_every_float_dtype(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    uint8_t pad = 7;
    uint16_t half[5] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x8000};    /* 1, -2, 2^-24, 65504, -0 */
    uint16_t brain[5] = {0x3f80, 0xc040, 0x0001, 0x7f7f, 0x8000};   /* 1, -3, 2^-133, max, -0 */
    float full[3] = {0.1f, -1e30f, 3.0f};
    int32_t ints[2] = {1, 2};
    int64_t s5[1] = {5}, s3[1] = {3}, s2[1] = {2}, s1[1] = {1};
    cllm_st_writer w;
    cllm_st_writer_init(&w);
    assert_int_equal(cllm_st_writer_add(&w, "pad", CLLM_ST_U8, &pad, 1, s1), CLLM_OK);
    assert_int_equal(cllm_st_writer_add(&w, "half", CLLM_ST_F16, half, 1, s5), CLLM_OK);
    assert_int_equal(cllm_st_writer_add(&w, "brain", CLLM_ST_BF16, brain, 1, s5), CLLM_OK);
    assert_int_equal(cllm_st_writer_add(&w, "full", CLLM_ST_F32, full, 1, s3), CLLM_OK);
    assert_int_equal(cllm_st_writer_add(&w, "ints", CLLM_ST_I32, ints, 1, s2), CLLM_OK);
    char *path = malloc(strlen(dir) + 32);
    sprintf(path, "%s/mixed.safetensors", dir);
    assert_int_equal(cllm_st_writer_write(&w, path), CLLM_OK);
    cllm_st_writer_free(&w);
    cllm_st_file f;
    assert_int_equal(cllm_st_open(path, &f), CLLM_OK);
    float out[5];
    const cllm_st_tensor *h = cllm_st_find(&f, "half");
    assert_true(((uintptr_t)h->data & 1) == 1); /* really unaligned */
    assert_int_equal(cllm_st_to_f32(&f, h, out), CLLM_OK);
    const float want_half[5] = {1.0f, -2.0f, 0x1p-24f, 65504.0f, -0.0f};
    for (int i = 0; i < 5; i++) assert_int_equal(bits_of(out[i]), bits_of(want_half[i]));
    assert_int_equal(cllm_st_to_f32(&f, cllm_st_find(&f, "brain"), out), CLLM_OK);
    const float want_brain[5] = {1.0f, -3.0f, 0x1p-133f, 0x1.fep127f, -0.0f};
    for (int i = 0; i < 5; i++) assert_int_equal(bits_of(out[i]), bits_of(want_brain[i]));
    assert_int_equal(cllm_st_to_f32(&f, cllm_st_find(&f, "full"), out), CLLM_OK);
    for (int i = 0; i < 3; i++) assert_int_equal(bits_of(out[i]), bits_of(full[i]));
    assert_int_equal(cllm_st_to_f32_range(&f, h, 2, 3, out), CLLM_OK); /* a part: elements 2..4 */
    for (int i = 0; i < 3; i++) assert_int_equal(bits_of(out[i]), bits_of(want_half[2 + i]));
    assert_int_equal(cllm_st_to_f32_range(&f, h, 4, 2, out), CLLM_ERR_INTERNAL); /* past the end */
    assert_true(cllm_st_converts_to_f32(CLLM_ST_F16) && !cllm_st_converts_to_f32(CLLM_ST_I32) &&
                !cllm_st_converts_to_f32(CLLM_ST_F64));
    assert_int_equal(cllm_st_to_f32(&f, cllm_st_find(&f, "ints"), out), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "tensor ints is I32, cllm reads F32, F16 or BF16"));
    cllm_st_close(&f);
    free(path);
    remove_tree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_hand_built_file),
        cmocka_unit_test(test_rejects_bad_headers),
        cmocka_unit_test(test_rejects_short_and_oversized_length),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_truncation_at_every_byte),
        cmocka_unit_test(test_random_byte_flips),
        cmocka_unit_test(test_failed_write_keeps_previous_file),
        cmocka_unit_test(test_json_reader),
        cmocka_unit_test(test_json_numbers_are_never_nan),
        cmocka_unit_test(test_f16_widening_is_exact),
        cmocka_unit_test(test_bf16_widening_is_exact),
        cmocka_unit_test(test_to_f32_reads_every_float_dtype),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
