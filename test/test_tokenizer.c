/* Byte-level BPE: hand-worked merges, exact round trips on arbitrary bytes,
 * the file format (round trip, every truncation, flipped bytes, forged
 * fields), and the `cllm tokenizer` command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "cllm/data/corpus.h"
#include "cllm/data/tokenizer.h"
#include "cllm/base/rng.h"
#include "support.h"

static cllm_tokenizer *train_on(const char *text, size_t n, int vocab) {
    cllm_corpus c;
    assert_int_equal(cllm_corpus_from_bytes(text, n, "text", &c), CLLM_OK);
    cllm_tokenizer *t = NULL;
    /* The cllm chunker: these cases were worked out for it, and its files are version 1. */
    assert_int_equal(cllm_tokenizer_train_mode(&c, vocab, CLLM_PRETOK_CLLM, NULL, &t), CLLM_OK);
    cllm_corpus_free(&c);
    return t;
}

static void assert_merges(const cllm_tokenizer *t, const int32_t (*expected)[2], int n) {
    assert_int_equal(cllm_tokenizer_n_merges(t), n);
    for (int i = 0; i < n; i++) {
        int32_t a, b;
        cllm_tokenizer_merge(t, i, &a, &b);
        assert_int_equal(a, expected[i][0]);
        assert_int_equal(b, expected[i][1]);
    }
}

static void assert_encodes(const cllm_tokenizer *t, const char *text, const int32_t *expected, size_t n) {
    int32_t *ids;
    size_t n_ids;
    assert_int_equal(cllm_tokenizer_encode(t, (const uint8_t *)text, strlen(text), &ids, &n_ids), CLLM_OK);
    assert_int_equal(n_ids, n);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], expected[i]);
    free(ids);
}

/* "aaabdaaabac" is one chunk (all letters). Worked by hand:
 *   pairs: aa 4, ab 2, bd 1, da 1, ba 1, ac 1           -> merge (a,a)     = 256
 *   Z a b d Z a b a c: Za 2, ab 2, bd, dZ, ba, ac 1     -> tie at 2; the smaller pair (97,98) < (256,97)
 *                                                         wins: (a,b) = 257
 *   Z Y d Z Y a c: ZY 2, Yd, dZ, Ya, ac 1                -> (256,257) = 258 ("aaab")
 *   X d X a c: Xd, dX, Xa, ac all 1                      -> smallest pair (97,99) = 259
 * so vocab 261 (256 + 4 merges + EOT) learns exactly these four. */
static void test_merges_match_hand_worked_example(void **state) {
    (void)state;
    const char *text = "aaabdaaabac";
    cllm_tokenizer *t = train_on(text, strlen(text), 261);
    static const int32_t expected[][2] = {{97, 97}, {97, 98}, {256, 257}, {97, 99}};
    assert_merges(t, expected, 4);
    assert_int_equal(cllm_tokenizer_vocab_size(t), 261);
    assert_int_equal(cllm_tokenizer_eot(t), 260);
    size_t len;
    const uint8_t *p = cllm_tokenizer_token_bytes(t, 258, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(p, "aaab", 4);
    /* X d X ac */
    assert_encodes(t, "aaabdaaabac", (const int32_t[]){258, 100, 258, 259}, 4);
    cllm_tokenizer_free(t);
}

/* Pre-splitting: "ab ab ab cd" is the chunks "ab" x1, " ab" x2, " cd" x1.
 *   pairs: (a,b) 3, (' ',a) 2, (' ',c) 1, (c,d) 1; (b,' ') never counts: it crosses chunks
 *   -> (97,98) = 256; then (' ',256) 2 -> (32,256) = 257; then (' ',c) 1 and (c,d) 1 tie:
 *   (32,99) = 258; then (258,100) = 259 (" cd"). Every chunk is then one token, so asking
 *   for more stops there: vocab 256 + 4 + EOT = 261. */
static void test_merges_never_cross_chunks_and_stop_when_done(void **state) {
    (void)state;
    const char *text = "ab ab ab cd";
    cllm_tokenizer *t = train_on(text, strlen(text), 300);
    static const int32_t expected[][2] = {{97, 98}, {32, 256}, {32, 99}, {258, 100}};
    assert_merges(t, expected, 4);
    assert_int_equal(cllm_tokenizer_vocab_size(t), 261);
    assert_encodes(t, "ab ab cd", (const int32_t[]){256, 257, 259}, 3);
    assert_encodes(t, "abab", (const int32_t[]){256, 256}, 2);
    assert_encodes(t, "ba", (const int32_t[]){98, 97}, 2);
    cllm_tokenizer_free(t);
}

/* Chunks stop at 128 bytes: 1000 'a' are 7 chunks of 128 and one of 104. Worked by hand:
 * doubling merges (a,a)=256, (256,256)=257, ... up to (261,261)=262 (128 a's) turn the
 * 128-chunks into one token; the 104-chunk is then 261 260 258 (64+32+8), whose two pairs
 * tie at 1: (260,258)=263 first (smaller), then (261,263)=264. 9 merges in all. */
static void test_long_runs_split_at_128_bytes(void **state) {
    (void)state;
    char *text = malloc(1000);
    memset(text, 'a', 1000);
    cllm_tokenizer *t = train_on(text, 1000, 300);
    static const int32_t expected[][2] = {{97, 97},   {256, 256}, {257, 257}, {258, 258}, {259, 259},
                                          {260, 260}, {261, 261}, {260, 258}, {261, 263}};
    assert_merges(t, expected, 9);
    int32_t *ids;
    size_t n_ids;
    assert_int_equal(cllm_tokenizer_encode(t, (const uint8_t *)text, 1000, &ids, &n_ids), CLLM_OK);
    static const int32_t expected_ids[] = {262, 262, 262, 262, 262, 262, 262, 264};
    assert_int_equal(n_ids, 8);
    assert_memory_equal(ids, expected_ids, sizeof expected_ids);
    free(ids);
    free(text);
    cllm_tokenizer_free(t);
}

static void test_vocab_range(void **state) {
    (void)state;
    cllm_corpus c;
    assert_int_equal(cllm_corpus_from_bytes("hello", 5, "t", &c), CLLM_OK);
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_train(&c, 256, &t), CLLM_ERR_INPUT);
    assert_null(t);
    assert_int_equal(cllm_tokenizer_train(&c, 65537, &t), CLLM_ERR_INPUT);
    assert_int_equal(cllm_tokenizer_train(&c, 257, &t), CLLM_OK);
    assert_int_equal(cllm_tokenizer_n_merges(t), 0);
    assert_int_equal(cllm_tokenizer_eot(t), 256);
    cllm_tokenizer_free(t);
    cllm_corpus_free(&c);
}

static cllm_tokenizer *small_text_tokenizer(int vocab) {
    cllm_corpus c;
    assert_int_equal(cllm_corpus_load(NULL, 0, &c), CLLM_OK);
    cllm_corpus small;
    assert_int_equal(cllm_corpus_from_bytes(c.bytes, 20000, "first 20 kB", &small), CLLM_OK);
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_train(&small, vocab, &t), CLLM_OK);
    assert_int_equal(cllm_tokenizer_vocab_size(t), vocab);
    cllm_corpus_free(&small);
    cllm_corpus_free(&c);
    return t;
}

/* Random bytes of three kinds: uniform (NULs, invalid UTF-8), text-like from a
 * small alphabet with spaces, and long runs of one byte (chunk length caps). */
static void random_bytes(cllm_rng *r, uint8_t *buf, size_t n, int kind) {
    static const char alphabet[] = "the quick brown fox  \n\n,.;'!? THE\xc3\xa9\xff\x00";
    for (size_t i = 0; i < n; i++) {
        if (kind == 0) buf[i] = (uint8_t)cllm_rng_below(r, 256);
        else if (kind == 1) buf[i] = (uint8_t)alphabet[cllm_rng_below(r, sizeof alphabet)];
        else buf[i] = i > 0 && cllm_rng_below(r, 300) ? buf[i - 1] : (uint8_t)cllm_rng_below(r, 256);
    }
}

static void test_round_trip_random_bytes(void **state) {
    (void)state;
    cllm_tokenizer *t = small_text_tokenizer(400);
    int32_t eot = cllm_tokenizer_eot(t);
    uint8_t *buf = malloc(10001);
    size_t merged_somewhere = 0;
    for (uint64_t seed = 0; seed < 300; seed++) {
        cllm_rng r;
        cllm_rng_seed(&r, seed);
        size_t n = seed == 0 ? 0 : seed == 1 ? 10000 : (size_t)cllm_rng_below(&r, 10001);
        random_bytes(&r, buf, n, (int)(seed % 3));
        int32_t *ids;
        size_t n_ids;
        assert_int_equal(cllm_tokenizer_encode(t, buf, n, &ids, &n_ids), CLLM_OK);
        assert_true(n_ids <= n);
        for (size_t i = 0; i < n_ids; i++) {
            assert_true(ids[i] >= 0 && ids[i] < eot); /* never a special token */
            merged_somewhere += ids[i] >= 256;
        }
        uint8_t *back;
        size_t n_back;
        assert_int_equal(cllm_tokenizer_decode(t, ids, n_ids, &back, &n_back), CLLM_OK);
        assert_int_equal(n_back, n);
        if (n) assert_memory_equal(back, buf, n);
        free(ids);
        free(back);
    }
    assert_true(merged_somewhere > 1000); /* the merges were actually exercised */
    free(buf);
    cllm_tokenizer_free(t);
}

/* Decoding is the concatenation of each id's bytes, for any id sequence. */
static void test_decode_any_ids(void **state) {
    (void)state;
    cllm_tokenizer *t = small_text_tokenizer(300);
    int vocab = cllm_tokenizer_vocab_size(t);
    cllm_rng r;
    cllm_rng_seed(&r, 7);
    int32_t ids[500];
    for (int i = 0; i < 500; i++) ids[i] = (int32_t)cllm_rng_below(&r, (uint64_t)vocab);
    uint8_t *out;
    size_t n;
    assert_int_equal(cllm_tokenizer_decode(t, ids, 500, &out, &n), CLLM_OK);
    size_t at = 0;
    for (int i = 0; i < 500; i++) {
        size_t len;
        const uint8_t *p = cllm_tokenizer_token_bytes(t, ids[i], &len);
        assert_non_null(p);
        assert_true(at + len <= n);
        if (len) assert_memory_equal(out + at, p, len);
        at += len;
    }
    assert_int_equal(at, n);
    free(out);
    size_t len = 99;
    assert_non_null(cllm_tokenizer_token_bytes(t, cllm_tokenizer_eot(t), &len));
    assert_int_equal(len, 0);
    assert_null(cllm_tokenizer_token_bytes(t, vocab, &len));
    assert_null(cllm_tokenizer_token_bytes(t, -1, &len));
    int32_t bad[2] = {5, vocab};
    assert_int_equal(cllm_tokenizer_decode(t, bad, 2, &out, &n), CLLM_ERR_INPUT);
    bad[1] = -3;
    assert_int_equal(cllm_tokenizer_decode(t, bad, 2, &out, &n), CLLM_ERR_INPUT);
    cllm_tokenizer_free(t);
}

static void assert_same_tokenizer(const cllm_tokenizer *a, const cllm_tokenizer *b) {
    assert_int_equal(cllm_tokenizer_vocab_size(a), cllm_tokenizer_vocab_size(b));
    assert_int_equal(cllm_tokenizer_n_merges(a), cllm_tokenizer_n_merges(b));
    for (int i = 0; i < cllm_tokenizer_n_merges(a); i++) {
        int32_t la, ra, lb, rb;
        cllm_tokenizer_merge(a, i, &la, &ra);
        cllm_tokenizer_merge(b, i, &lb, &rb);
        assert_int_equal(la, lb);
        assert_int_equal(ra, rb);
    }
    static const char text[] = "To be, or not to be, that is the question:\n\xff\x00 Whether 'tis nobler";
    size_t n = sizeof text - 1;
    int32_t *ia, *ib;
    size_t na, nb;
    assert_int_equal(cllm_tokenizer_encode(a, (const uint8_t *)text, n, &ia, &na), CLLM_OK);
    assert_int_equal(cllm_tokenizer_encode(b, (const uint8_t *)text, n, &ib, &nb), CLLM_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(ia, ib, na * sizeof *ia);
    free(ia);
    free(ib);
}

static void test_save_load_round_trip(void **state) {
    (void)state;
    cllm_tokenizer *t = small_text_tokenizer(512);
    char *dir = make_temp_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/tok.bin", dir);
    assert_int_equal(cllm_tokenizer_save(t, path), CLLM_OK);
    cllm_tokenizer *back = NULL;
    assert_int_equal(cllm_tokenizer_load(path, &back), CLLM_OK);
    assert_same_tokenizer(t, back);
    int32_t *ids;
    size_t n_ids;
    assert_int_equal(cllm_tokenizer_encode(back, (const uint8_t *)"To be, or not to be", 19, &ids, &n_ids), CLLM_OK);
    assert_true(n_ids < 12); /* the loaded merges are really applied */
    free(ids);
    /* Saving over an existing file leaves just that file: no temporary behind. */
    assert_int_equal(cllm_tokenizer_save(back, path), CLLM_OK);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "test \"$(ls -A '%s')\" = tok.bin", dir);
    assert_int_equal(system(cmd), 0);
    /* An unwritable destination is an error and writes nothing. */
    snprintf(path, sizeof path, "%s/missing-folder/tok.bin", dir);
    assert_int_not_equal(cllm_tokenizer_save(t, path), CLLM_OK);
    cllm_tokenizer_free(back);
    assert_int_equal(cllm_tokenizer_load(path, &back), CLLM_ERR_INPUT);
    assert_null(back);
    cllm_tokenizer_free(t);
    remove_tree(dir);
    free(dir);
}

static void assert_rejected(const uint8_t *data, size_t n, const char *message_part) {
    cllm_tokenizer *t = (cllm_tokenizer *)&t; /* must be reset to NULL */
    assert_int_equal(cllm_tokenizer_deserialize(data, n, &t), CLLM_ERR_INPUT);
    assert_null(t);
    if (message_part && !strstr(cllm_last_error(), message_part))
        fail_msg("expected '%s' in '%s'", message_part, cllm_last_error());
}

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Re-seals a forged file with a correct checksum, so that the field checks
 * behind the checksum are what rejects it. */
static void reseal(uint8_t *data, size_t n) {
    uint64_t h = fnv1a64(data, n - 8);
    for (int i = 0; i < 8; i++) data[n - 8 + i] = (uint8_t)(h >> (8 * i));
}

static void test_corrupt_files_are_rejected(void **state) {
    (void)state;
    const char *text = "aaabdaaabac";
    cllm_tokenizer *t = train_on(text, strlen(text), 261);
    uint8_t *good;
    size_t n;
    assert_int_equal(cllm_tokenizer_serialize(t, &good, &n), CLLM_OK);
    assert_int_equal(n, 24 + 4 * 8 + 4 + 13 + 8);
    cllm_tokenizer *ok = NULL;
    assert_int_equal(cllm_tokenizer_deserialize(good, n, &ok), CLLM_OK);
    assert_same_tokenizer(t, ok);
    cllm_tokenizer_free(ok);

    uint8_t *copy = malloc(n + 1);
    for (size_t len = 0; len < n; len++) { /* every truncation, in a buffer of exactly that size */
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, good, len);
        assert_rejected(cut, len, NULL);
        free(cut);
    }
    memcpy(copy, good, n);
    copy[n] = 0;
    assert_rejected(copy, n + 1, "announces"); /* a trailing byte */
    for (size_t i = 0; i < n; i++) {
        for (int flip = 1; flip <= 0x80; flip <<= 7) {
            memcpy(copy, good, n);
            copy[i] ^= (uint8_t)flip;
            assert_rejected(copy, n, NULL);
        }
    }
    memcpy(copy, good, n);
    copy[0] = 'X';
    assert_rejected(copy, n, "magic");

    memcpy(copy, good, n);
    put_u32(copy + 8, 3);
    reseal(copy, n);
    assert_rejected(copy, n, "version 3");

    memcpy(copy, good, n);
    put_u32(copy + 24 + 8 * 2, 259); /* merge 2 (id 258) may only use ids < 258 */
    reseal(copy, n);
    assert_rejected(copy, n, "unknown token 259");

    memcpy(copy, good, n);
    put_u32(copy + 24 + 8 * 3, 97); /* merge 3 := (97,98), the same as merge 1 */
    put_u32(copy + 24 + 8 * 3 + 4, 98);
    reseal(copy, n);
    assert_rejected(copy, n, "twice");

    memcpy(copy, good, n);
    put_u32(copy + 16, 2); /* two specials */
    reseal(copy, n);
    assert_rejected(copy, n, "special");

    memcpy(copy, good, n);
    put_u32(copy + 24 + 8 * 4, 200); /* special name length past the end */
    reseal(copy, n);
    assert_rejected(copy, n, "special");
    free(copy);
    free(good);
    cllm_tokenizer_free(t);
}

/* A forged chain (x,x) -> 256, (256,256) -> 257, ... doubles the token's
 * length each merge; real tokens never exceed a chunk (128 bytes). */
static void test_forged_long_tokens_are_rejected(void **state) {
    (void)state;
    int n_merges = 40;
    size_t n = 24 + 8 * (size_t)n_merges + 4 + 13 + 8;
    uint8_t *data = calloc(1, n);
    memcpy(data, "CLLM-BPE", 8);
    put_u32(data + 8, 1);
    put_u32(data + 12, (uint32_t)n_merges);
    put_u32(data + 16, 1);
    put_u32(data + 20, (uint32_t)(n - 32));
    for (int i = 0; i < n_merges; i++) {
        put_u32(data + 24 + 8 * i, i == 0 ? 'x' : (uint32_t)(255 + i));
        put_u32(data + 28 + 8 * i, i == 0 ? 'x' : (uint32_t)(255 + i));
    }
    put_u32(data + 24 + 8 * n_merges, 13);
    memcpy(data + 28 + 8 * n_merges, "<|endoftext|>", 13);
    reseal(data, n);
    assert_rejected(data, n, "longer than");
    /* The same file with only 7 doublings (128 bytes) is fine. */
    put_u32(data + 12, 7);
    memmove(data + 24 + 8 * 7, data + 24 + 8 * n_merges, 4 + 13);
    size_t n7 = 24 + 8 * 7 + 4 + 13 + 8;
    put_u32(data + 20, (uint32_t)(n7 - 32));
    reseal(data, n7);
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_deserialize(data, n7, &t), CLLM_OK);
    size_t len;
    cllm_tokenizer_token_bytes(t, 262, &len);
    assert_int_equal(len, 128);
    cllm_tokenizer_free(t);
    free(data);
}

static void test_load_errors_name_the_file(void **state) {
    (void)state;
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_load("/nonexistent/tok.bin", &t), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "/nonexistent/tok.bin"));
    char *dir = make_temp_dir();
    char *path = write_file(dir, "junk.tok", "CLLM-BPE\x01\x00", 10);
    assert_int_equal(cllm_tokenizer_load(path, &t), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), path));
    assert_int_equal(cllm_tokenizer_load(dir, &t), CLLM_ERR_INPUT); /* a folder */
    size_t big = 2u << 20;
    char *zeros = calloc(1, big);
    free(write_file(dir, "big.tok", zeros, big));
    free(zeros);
    char big_path[4200];
    snprintf(big_path, sizeof big_path, "%s/big.tok", dir);
    assert_int_equal(cllm_tokenizer_load(big_path, &t), CLLM_ERR_INPUT);
    assert_null(t);
    free(path);
    remove_tree(dir);
    free(dir);
}

/* ---- the command line ---- */

/* Runs `sh -c CMD` where CMD may use $CLLM for the binary and redirect stdin
 * itself (run_cllm fixes stdin to /dev/null); captures stdout and stderr. */
static run_result shell(const char *cmd) {
    char *dir = make_temp_dir();
    size_t len = strlen(cmd) + 2 * strlen(dir) + strlen(CLLM_BIN) + 64;
    char *full = malloc(len);
    snprintf(full, len, "CLLM='%s'; ( %s ) >'%s/o' 2>'%s/e'", CLLM_BIN, cmd, dir, dir);
    int status = system(full);
    run_result r = {WIFEXITED(status) ? WEXITSTATUS(status) : -1, NULL, NULL};
    const char *names[2] = {"o", "e"};
    for (int i = 0; i < 2; i++) {
        snprintf(full, len, "%s/%s", dir, names[i]);
        FILE *f = fopen(full, "rb");
        char *buf = calloc(1, 1 << 16);
        if (f) {
            size_t got = fread(buf, 1, (1 << 16) - 1, f);
            buf[got] = 0;
            fclose(f);
        }
        if (i == 0) r.out = buf;
        else r.err = buf;
    }
    free(full);
    remove_tree(dir);
    free(dir);
    return r;
}

static void test_cli_train_encode_decode(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    char *text = write_file(dir, "in.txt", "hello hello world\n\xff\x00 bytes\n", 27);
    char args[8192];
    /* From another working directory, with no DATA: the built-in corpus. */
    snprintf(args, sizeof args, "tokenizer train --vocab 300 -o '%s/t.tok'", dir);
    run_result r = run_cllm("cd / &&", args);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "1115394 bytes"));
    assert_int_equal(count_lines(r.out), 1);
    run_result_free(&r);
    cllm_tokenizer *t = NULL;
    snprintf(args, sizeof args, "%s/t.tok", dir);
    assert_int_equal(cllm_tokenizer_load(args, &t), CLLM_OK);
    assert_int_equal(cllm_tokenizer_vocab_size(t), 300);

    /* encode: ids one per line, the same as the library's */
    snprintf(args, sizeof args, "\"$CLLM\" tokenizer encode '%s/t.tok' <'%s' >'%s/ids'", dir, text, dir);
    r = shell(args);
    assert_int_equal(r.exit_code, 0);
    run_result_free(&r);
    int32_t *ids;
    size_t n_ids;
    assert_int_equal(cllm_tokenizer_encode(t, (const uint8_t *)"hello hello world\n\xff\x00 bytes\n", 27, &ids, &n_ids),
                     CLLM_OK);
    snprintf(args, sizeof args, "%s/ids", dir);
    FILE *f = fopen(args, "r");
    assert_non_null(f);
    for (size_t i = 0; i < n_ids; i++) {
        long v = -1;
        assert_int_equal(fscanf(f, "%ld", &v), 1);
        assert_int_equal(v, ids[i]);
    }
    long extra;
    assert_int_equal(fscanf(f, "%ld", &extra), EOF);
    fclose(f);
    free(ids);

    /* decode gives the bytes back, NUL and invalid UTF-8 included */
    snprintf(args, sizeof args, "\"$CLLM\" tokenizer decode '%s/t.tok' <'%s/ids' | cmp - '%s'", dir, dir, text);
    r = shell(args);
    assert_int_equal(r.exit_code, 0);
    run_result_free(&r);

    /* malformed line and out-of-range id: exit 2, one line, nothing written */
    const char *bad_inputs[] = {"12\nabc\n", "12\n300\n", "-1\n", "\n", "1 2\n", "99999999999999\n"};
    for (size_t i = 0; i < sizeof bad_inputs / sizeof *bad_inputs; i++) {
        free(write_file(dir, "bad", bad_inputs[i], strlen(bad_inputs[i])));
        snprintf(args, sizeof args, "\"$CLLM\" tokenizer decode '%s/t.tok' <'%s/bad'", dir, dir);
        r = shell(args);
        assert_int_equal(r.exit_code, 2);
        assert_int_equal(count_lines(r.err), 1);
        assert_string_equal(r.out, "");
        run_result_free(&r);
    }
    /* a corrupt tokenizer file: exit 2, one line naming it */
    snprintf(args, sizeof args, "tokenizer encode '%s' </dev/null", text);
    r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, text));
    run_result_free(&r);
    cllm_tokenizer_free(t);
    free(text);
    remove_tree(dir);
    free(dir);
}

static void test_cli_help_and_usage_errors(void **state) {
    (void)state;
    run_result r = run_cllm(NULL, "tokenizer --help");
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "train"));
    assert_non_null(strstr(r.out, "encode"));
    assert_non_null(strstr(r.out, "decode"));
    run_result_free(&r);
    r = run_cllm(NULL, "tokenizer train --help");
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "--vocab"));
    assert_non_null(strstr(r.out, "--out"));
    run_result_free(&r);
    const char *bad[] = {"tokenizer", "tokenizer frobnicate", "tokenizer train", "tokenizer train --vocab 256 -o /tmp/x",
                         "tokenizer train --vocab 65537 -o /tmp/x", "tokenizer encode", "tokenizer decode a b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = run_cllm(NULL, bad[i]);
        assert_int_equal(r.exit_code, 2);
        assert_int_equal(count_lines(r.err), 1);
        run_result_free(&r);
    }
}

/* A tokenizer.bin whose end-of-text token was renamed (checksum fixed up, so
 * only the name check can catch it) is a load error naming the file and the
 * name found, from the library and from the CLI (exit 2, one line). */
/* Found by fuzz_tokenizer_file: a version-2 image of a tokenizer that version
 * 1 can hold (cllm's layout and chunker; cllm writes those as version 1)
 * loads, and saving it gives the version-1 image of the same tokenizer. The
 * version-2 image is built here field by field (docs/TOKENIZER.md). */
static void test_v2_image_of_a_v1_tokenizer_saves_as_v1(void **state) {
    (void)state;
    cllm_tokenizer *t = train_on("abababab cdcdcd abcd abcd", 25, 262);
    uint8_t *v1 = NULL;
    size_t n1 = 0;
    assert_int_equal(cllm_tokenizer_serialize(t, &v1, &n1), CLLM_OK);
    assert_int_equal(v1[8], 1); /* the writer's choice for this layout */
    int vocab = cllm_tokenizer_vocab_size(t), merges = cllm_tokenizer_n_merges(t);
    size_t body = 12 * (size_t)merges;
    for (int32_t id = 0; id < vocab; id++) {
        size_t len;
        cllm_tokenizer_token_text(t, id, &len);
        body += 4 + len;
    }
    size_t n2 = 28 + body + 8;
    uint8_t *v2 = calloc(n2, 1), *q = v2 + 28;
    memcpy(v2, "CLLM-BPE", 8);
    put_u32(v2 + 8, 2);
    put_u32(v2 + 12, CLLM_PRETOK_CLLM);
    put_u32(v2 + 16, (uint32_t)vocab);
    put_u32(v2 + 20, (uint32_t)merges);
    put_u32(v2 + 24, (uint32_t)body);
    for (int32_t id = 0; id < vocab; id++) {
        size_t len;
        const uint8_t *text = cllm_tokenizer_token_text(t, id, &len);
        put_u32(q, (uint32_t)len | (cllm_tokenizer_is_special(t, id) ? 0x80000000u : 0));
        memcpy(q + 4, text, len);
        q += 4 + len;
    }
    for (int i = 0; i < merges; i++, q += 12) {
        int32_t a, b;
        cllm_tokenizer_merge(t, i, &a, &b);
        put_u32(q, (uint32_t)a);
        put_u32(q + 4, (uint32_t)b);
        put_u32(q + 8, (uint32_t)cllm_tokenizer_merge_result(t, i));
    }
    reseal(v2, n2);
    cllm_tokenizer *back = NULL;
    assert_int_equal(cllm_tokenizer_deserialize(v2, n2, &back), CLLM_OK);
    assert_same_tokenizer(t, back);
    uint8_t *again = NULL;
    size_t n_again = 0;
    assert_int_equal(cllm_tokenizer_serialize(back, &again, &n_again), CLLM_OK);
    assert_int_equal(n_again, n1);
    assert_memory_equal(again, v1, n1);
    free(again);
    free(v1);
    free(v2);
    cllm_tokenizer_free(back);
    cllm_tokenizer_free(t);
}

static void test_renamed_special_token_is_refused(void **state) {
    (void)state;
    const char *text = "aaabdaaabac";
    cllm_tokenizer *t = train_on(text, strlen(text), 261);
    uint8_t *good;
    size_t n;
    assert_int_equal(cllm_tokenizer_serialize(t, &good, &n), CLLM_OK);
    size_t name_at = 24 + 4 * 8 + 4;
    assert_memory_equal(good + name_at, "<|endoftext|>", 13);
    uint8_t *copy = malloc(n);
    const char *renamed[] = {"<|endoftxet|>", "<|ENDOFTEXT|>", "<|endoftext|*"};
    for (size_t i = 0; i < sizeof renamed / sizeof *renamed; i++) {
        memcpy(copy, good, n);
        memcpy(copy + name_at, renamed[i], 13);
        reseal(copy, n);
        char want[64];
        snprintf(want, sizeof want, "special token 0 is named \"%s\"", renamed[i]);
        assert_rejected(copy, n, want);
    }
    /* bytes that are not printable are shown escaped, and a shorter name
     * (the body rebuilt around it) is refused too */
    memcpy(copy, good, n);
    copy[name_at + 2] = 0x01;
    reseal(copy, n);
    assert_rejected(copy, n, "named \"<|\\x01ndoftext|>\"");
    /* the input fuzz_tokenizer_file found loading silently: same length, bytes past ASCII */
    memcpy(copy, good, n);
    memcpy(copy + name_at, "<|endofte\x88\x82|>", 13);
    reseal(copy, n);
    assert_rejected(copy, n, "named \"<|endofte\\x88\\x82|>\"");
    size_t short_n = n - 6;
    uint8_t *shorter = malloc(short_n);
    memcpy(shorter, good, name_at - 4);
    put_u32(shorter + 20, (uint32_t)(short_n - 32));
    put_u32(shorter + name_at - 4, 7);
    memcpy(shorter + name_at, "<|eot|>", 7);
    reseal(shorter, short_n);
    assert_rejected(shorter, short_n, "named \"<|eot|>\", version 1 requires \"<|endoftext|>\"");
    free(shorter);

    char *dir = make_temp_dir();
    memcpy(copy, good, n);
    memcpy(copy + name_at, renamed[0], 13);
    reseal(copy, n);
    char *path = write_file(dir, "tokenizer.bin", copy, n);
    cllm_tokenizer *loaded = NULL;
    assert_int_equal(cllm_tokenizer_load(path, &loaded), CLLM_ERR_INPUT);
    assert_null(loaded);
    assert_non_null(strstr(cllm_last_error(), path));
    assert_non_null(strstr(cllm_last_error(), "special token 0"));
    char args[4200];
    snprintf(args, sizeof args, "tokenizer encode '%s'", path);
    run_result r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, path));
    assert_non_null(strstr(r.err, "<|endoftxet|>"));
    run_result_free(&r);
    free(path);
    remove_tree(dir);
    free(dir);
    free(copy);
    free(good);
    cllm_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merges_match_hand_worked_example),
        cmocka_unit_test(test_merges_never_cross_chunks_and_stop_when_done),
        cmocka_unit_test(test_long_runs_split_at_128_bytes),
        cmocka_unit_test(test_vocab_range),
        cmocka_unit_test(test_round_trip_random_bytes),
        cmocka_unit_test(test_decode_any_ids),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_corrupt_files_are_rejected),
        cmocka_unit_test(test_forged_long_tokens_are_rejected),
        cmocka_unit_test(test_load_errors_name_the_file),
        cmocka_unit_test(test_cli_train_encode_decode),
        cmocka_unit_test(test_cli_help_and_usage_errors),
        cmocka_unit_test(test_renamed_special_token_is_refused),
        cmocka_unit_test(test_v2_image_of_a_v1_tokenizer_saves_as_v1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
