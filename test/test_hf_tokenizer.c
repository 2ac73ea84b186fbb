/* GPT-2 pre-tokenization, tokenizers numbered in any order, tokenizer.bin
 * version 2, and the Hugging Face files: the vocab.json + merges.txt reader
 * and the tokenizer.json reader give back the tokenizer that wrote them.
 * (test/hf_tokenizer_check.py checks the same files from Python against an
 * independent BPE.) Cases that need GPT-2 pre-tokenization print that they
 * skip in a build without libutf8proc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cllm/base/build_config.h"
#include "cllm/base/json.h"
#include "cllm/base/rng.h"
#include "cllm/data/corpus.h"
#include "cllm/data/hf_tokenizer.h"
#include "cllm/data/pretokenize.h"
#include "cllm/data/tokenizer.h"
#include "support.h"

static int skip_without_utf8proc(void) {
    if (CLLM_HAVE_UTF8PROC) return 0;
    printf("SKIP: built without libutf8proc, no GPT-2 pre-tokenization\n");
    return 1;
}

/* A text that exercises every class: accents, CJK, emoji, digits, contractions, runs of spaces, invalid bytes. */
static const char VARIED[] =
    "It's a test; isn't it? They'll've said 'hello' 3 times, 12345 and 3.14.\n\n"
    "caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80\xf0\x9f\x91\x8d  spaces   and\t\ttabs\n"
    "   \n  leading, trailing   \xff\xfe bad \xc3\x28 bytes \xe2\x82 end";

static cllm_tokenizer *train_text(const char *text, size_t n, int vocab, cllm_pretok mode) {
    cllm_corpus c;
    assert_int_equal(cllm_corpus_from_bytes(text, n, "text", &c), CLLM_OK);
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_train_mode(&c, vocab, mode, NULL, &t), CLLM_OK);
    cllm_corpus_free(&c);
    return t;
}

/* Text repeated with variations, so that BPE has plenty to merge. */
static char *varied_corpus(size_t *n) {
    size_t one = strlen(VARIED), reps = 60;
    char *text = malloc(reps * (one + 8) + 1);
    size_t k = 0;
    for (size_t r = 0; r < reps; r++) {
        memcpy(text + k, VARIED, one);
        k += one;
        k += (size_t)sprintf(text + k, " %zu\n", r * 7919 % 1000);
    }
    *n = k;
    return text;
}

static void chunks_are(const char *text, const char *const *expected, int n) {
    size_t len = strlen(text), i = 0;
    int k = 0;
    for (; i < len; k++) {
        size_t end = cllm_pretok_chunk_end(CLLM_PRETOK_GPT2, (const uint8_t *)text, len, i);
        assert_true(end > i && end <= len);
        if (k >= n) fail_msg("%s: more chunks than expected, next '%.*s'", text, (int)(end - i), text + i);
        if (end - i != strlen(expected[k]) || memcmp(text + i, expected[k], end - i) != 0)
            fail_msg("%s: chunk %d is '%.*s', expected '%s'", text, k, (int)(end - i), text + i, expected[k]);
        i = end;
    }
    assert_int_equal(k, n);
}

/* Worked from the pattern by hand (hf_tokenizer_check.py compares every code point with Python's regex). */
static void test_gpt2_pretokenizer_cases(void **state) {
    (void)state;
    if (skip_without_utf8proc()) return;
    static const char *const a[] = {"Hello", ",", " world", "!"};
    chunks_are("Hello, world!", a, 4);
    static const char *const b[] = {"I", "'m", " sure", " they", "'ll", "'ve", " it", "'s", " '", "S"};
    chunks_are("I'm sure they'll've it's 'S", b, 10);
    static const char *const c[] = {"a", " ", " b", "  ", "\n", "c", "   "}; /* the last space starts " b"; at the end the run stays */
    chunks_are("a  b  \nc   ", c, 7);
    static const char *const d[] = {" 123", " 4", ".", "5", " \xe2\x82\xac?!"}; /* the euro sign is a symbol: "other" */
    chunks_are(" 123 4.5 \xe2\x82\xac?!", d, 5);
    static const char *const e[] = {"caf\xc3\xa9", " e", "\xcc\x81", "t"}; /* a combining mark is not a letter */
    chunks_are("caf\xc3\xa9 e\xcc\x81t", e, 4);
    static const char *const f[] = {"x", "\xff\xc3(", " \x80", "y"}; /* invalid bytes: "other" characters */
    chunks_are("x\xff\xc3( \x80y", f, 4);
    /* U+3000 is white space, but only U+0020 joins the word after it */
    static const char *const g[] = {"\xe6\x97\xa5\xe6\x9c\xac", "\xe3\x80\x80", "\xe3\x80\x80", "x"};
    chunks_are("\xe6\x97\xa5\xe6\x9c\xac\xe3\x80\x80\xe3\x80\x80x", g, 4);
}

/* No chunk limit: 5000 letters are one chunk, as in GPT-2 (the cllm chunker cuts at 128). */
static void test_gpt2_chunks_have_no_limit(void **state) {
    (void)state;
    if (skip_without_utf8proc()) return;
    size_t n = 5000;
    uint8_t *s = malloc(n);
    memset(s, 'a', n);
    assert_int_equal(cllm_pretok_chunk_end(CLLM_PRETOK_GPT2, s, n, 0), n);
    assert_int_equal(cllm_pretok_chunk_end(CLLM_PRETOK_CLLM, s, n, 0), 128);
    free(s);
}

static void assert_same_tokenizer(const cllm_tokenizer *a, const cllm_tokenizer *b) {
    assert_int_equal(cllm_tokenizer_vocab_size(a), cllm_tokenizer_vocab_size(b));
    assert_int_equal(cllm_tokenizer_n_merges(a), cllm_tokenizer_n_merges(b));
    assert_int_equal(cllm_tokenizer_eot(a), cllm_tokenizer_eot(b));
    assert_int_equal(cllm_tokenizer_pretokenizer(a), cllm_tokenizer_pretokenizer(b));
    for (int32_t id = 0; id < cllm_tokenizer_vocab_size(a); id++) {
        size_t la, lb;
        const uint8_t *pa = cllm_tokenizer_token_text(a, id, &la), *pb = cllm_tokenizer_token_text(b, id, &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(pa, pb, la);
        assert_int_equal(cllm_tokenizer_is_special(a, id), cllm_tokenizer_is_special(b, id));
    }
    for (int i = 0; i < cllm_tokenizer_n_merges(a); i++) {
        int32_t l1, r1, l2, r2;
        cllm_tokenizer_merge(a, i, &l1, &r1);
        cllm_tokenizer_merge(b, i, &l2, &r2);
        assert_int_equal(l1, l2);
        assert_int_equal(r1, r2);
        assert_int_equal(cllm_tokenizer_merge_result(a, i), cllm_tokenizer_merge_result(b, i));
    }
}

static void assert_same_ids(const cllm_tokenizer *a, const cllm_tokenizer *b, const uint8_t *text, size_t n) {
    int32_t *ia, *ib;
    size_t na, nb;
    assert_int_equal(cllm_tokenizer_encode(a, text, n, &ia, &na), CLLM_OK);
    assert_int_equal(cllm_tokenizer_encode(b, text, n, &ib, &nb), CLLM_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(ia, ib, na * sizeof *ia);
    free(ia);
    free(ib);
}

/* The writer's files read back, by both readers, as the tokenizer that wrote them. */
static void test_hf_files_read_back_as_written(void **state) {
    (void)state;
    if (skip_without_utf8proc()) return;
    size_t n;
    char *text = varied_corpus(&n);
    cllm_tokenizer *t = train_text(text, n, 700, CLLM_PRETOK_GPT2);
    char why[160];
    assert_true(cllm_hf_tokenizer_expressible(t, why, sizeof why));
    char *dir = make_temp_dir();
    assert_int_equal(cllm_hf_tokenizer_write(t, dir, 64), CLLM_OK);
    for (int f = 0; f < CLLM_HF_TOKENIZER_N_FILES; f++) assert_true(path_exists(dir, cllm_hf_tokenizer_files[f]));

    cllm_tokenizer *from_json = NULL, *from_vocab = NULL;
    assert_int_equal(cllm_hf_tokenizer_load(dir, &from_json), CLLM_OK); /* tokenizer.json first */
    char *json = path_in(dir, "tokenizer.json");
    unlink(json);
    assert_int_equal(cllm_hf_tokenizer_load(dir, &from_vocab), CLLM_OK); /* then vocab.json + merges.txt */
    assert_same_tokenizer(t, from_json);
    assert_same_tokenizer(t, from_vocab);
    assert_same_ids(t, from_json, (const uint8_t *)text, n);
    assert_same_ids(t, from_vocab, (const uint8_t *)text, n);
    cllm_rng rng;
    cllm_rng_seed(&rng, 11);
    uint8_t noise[3001];
    for (size_t i = 0; i < sizeof noise; i++) noise[i] = (uint8_t)(cllm_rng_next(&rng) >> 56);
    assert_same_ids(t, from_vocab, noise, sizeof noise);
    free(json);
    cllm_tokenizer_free(from_json);
    cllm_tokenizer_free(from_vocab);
    cllm_tokenizer_free(t);
    free(text);
    remove_tree(dir);
    free(dir);
}

/* A tokenizer with the cllm chunker cannot be expressed: no file is written. */
static void test_cllm_chunker_gets_no_hf_files(void **state) {
    (void)state;
    size_t n;
    char *text = varied_corpus(&n);
    cllm_tokenizer *t = train_text(text, n, 300, CLLM_PRETOK_CLLM);
    char why[160];
    assert_false(cllm_hf_tokenizer_expressible(t, why, sizeof why));
    assert_non_null(strstr(why, "--pretokenize gpt2"));
    char *dir = make_temp_dir();
    assert_int_equal(cllm_hf_tokenizer_write(t, dir, 64), CLLM_ERR_INPUT);
    assert_false(path_exists(dir, "tokenizer.json"));
    cllm_tokenizer_free(t);
    free(text);
    remove_tree(dir);
    free(dir);
}

/* The same tokenizer with its ids in another order (the bytes last, merges
 * reversed in id, EOT first): it encodes to the renumbered ids, and
 * tokenizer.bin version 2 holds it exactly. */
static void test_any_numbering_round_trips_version_2(void **state) {
    (void)state;
    size_t n;
    char *text = varied_corpus(&n);
    cllm_tokenizer *t = train_text(text, n, 400, CLLM_PRETOK_CLLM);
    int vocab = cllm_tokenizer_vocab_size(t), n_merges = cllm_tokenizer_n_merges(t);
    int32_t *new_id = malloc((size_t)vocab * sizeof *new_id);
    for (int32_t id = 0; id < vocab; id++) new_id[id] = (int32_t)(vocab - 1 - id);
    size_t *off = malloc((size_t)vocab * sizeof *off), *len = malloc((size_t)vocab * sizeof *len);
    uint8_t *special = malloc((size_t)vocab), *pool = malloc((size_t)vocab * 200);
    int32_t *merges = malloc((size_t)n_merges * 3 * sizeof *merges);
    size_t at = 0;
    for (int32_t id = 0; id < vocab; id++) {
        size_t l;
        const uint8_t *p = cllm_tokenizer_token_text(t, id, &l);
        int32_t k = new_id[id];
        off[k] = at;
        len[k] = l;
        memcpy(pool + at, p, l);
        at += l;
        special[k] = (uint8_t)cllm_tokenizer_is_special(t, id);
    }
    for (int i = 0; i < n_merges; i++) {
        int32_t a, b;
        cllm_tokenizer_merge(t, i, &a, &b);
        merges[3 * i] = new_id[a];
        merges[3 * i + 1] = new_id[b];
        merges[3 * i + 2] = new_id[cllm_tokenizer_merge_result(t, i)];
    }
    cllm_tokenizer_parts parts = {CLLM_PRETOK_CLLM, vocab, pool, off, len, special, n_merges, merges};
    cllm_tokenizer *r = NULL;
    assert_int_equal(cllm_tokenizer_build(&parts, &r), CLLM_OK);
    assert_int_equal(cllm_tokenizer_eot(r), 0);

    int32_t *ids, *rids;
    size_t n_ids, n_rids;
    assert_int_equal(cllm_tokenizer_encode(t, (const uint8_t *)text, n, &ids, &n_ids), CLLM_OK);
    assert_int_equal(cllm_tokenizer_encode(r, (const uint8_t *)text, n, &rids, &n_rids), CLLM_OK);
    assert_int_equal(n_ids, n_rids);
    for (size_t i = 0; i < n_ids; i++) assert_int_equal(rids[i], new_id[ids[i]]);

    uint8_t *data;
    size_t size;
    assert_int_equal(cllm_tokenizer_serialize(r, &data, &size), CLLM_OK);
    assert_int_equal(data[8], 2); /* not cllm's own layout: version 2 */
    cllm_tokenizer *back = NULL;
    assert_int_equal(cllm_tokenizer_deserialize(data, size, &back), CLLM_OK);
    assert_same_tokenizer(r, back);
    for (size_t cut = 0; cut < size; cut += 1 + cut / 7) { /* truncations and flipped bytes are refused */
        cllm_tokenizer *bad = NULL;
        assert_int_equal(cllm_tokenizer_deserialize(data, cut, &bad), CLLM_ERR_INPUT);
        data[cut] ^= 0x10;
        assert_int_equal(cllm_tokenizer_deserialize(data, size, &bad), CLLM_ERR_INPUT);
        data[cut] ^= 0x10;
        assert_null(bad);
    }
    /* The cllm layout itself stays version 1, as every earlier file. */
    uint8_t *v1;
    size_t n_v1;
    assert_int_equal(cllm_tokenizer_serialize(t, &v1, &n_v1), CLLM_OK);
    assert_int_equal(v1[8], 1);
    free(v1);
    free(data);
    free(ids);
    free(rids);
    cllm_tokenizer_free(back);
    cllm_tokenizer_free(r);
    cllm_tokenizer_free(t);
    free(new_id);
    free(off);
    free(len);
    free(special);
    free(pool);
    free(merges);
    free(text);
}

/* A GPT-2 tokenizer's file records its mode and loads with it. */
static void test_version_2_records_the_pretokenizer(void **state) {
    (void)state;
    if (skip_without_utf8proc()) return;
    size_t n;
    char *text = varied_corpus(&n);
    cllm_tokenizer *t = train_text(text, n, 500, CLLM_PRETOK_GPT2);
    char *dir = make_temp_dir(), *path = path_in(dir, "tokenizer.bin");
    assert_int_equal(cllm_tokenizer_save(t, path), CLLM_OK);
    cllm_tokenizer *back = NULL;
    assert_int_equal(cllm_tokenizer_load(path, &back), CLLM_OK);
    assert_int_equal(cllm_tokenizer_pretokenizer(back), CLLM_PRETOK_GPT2);
    assert_same_tokenizer(t, back);
    assert_same_ids(t, back, (const uint8_t *)text, n);
    cllm_tokenizer_free(back);
    cllm_tokenizer_free(t);
    free(path);
    free(text);
    remove_tree(dir);
    free(dir);
}

/* GPT-2 mode: long runs make long chunks, yet no token passes the cap, and
 * no two tokens have the same bytes (a tokenizer.json vocabulary needs that). */
static void test_gpt2_training_keeps_tokens_short_and_distinct(void **state) {
    (void)state;
    if (skip_without_utf8proc()) return;
    size_t n = 0, cap = 1 << 20;
    char *text = malloc(cap);
    for (int r = 0; r < 40; r++) {
        memset(text + n, ' ', 3000); /* runs of spaces, merged into ever longer tokens */
        n += 3000;
        n += (size_t)sprintf(text + n, "x%d aaaa%d ", r, r);
        memset(text + n, 'a', 2500);
        n += 2500;
        text[n++] = '\n';
    }
    cllm_tokenizer *t = train_text(text, n, 2000, CLLM_PRETOK_GPT2);
    for (int32_t id = 0; id < cllm_tokenizer_vocab_size(t); id++) {
        size_t len;
        cllm_tokenizer_token_text(t, id, &len);
        assert_true(len <= CLLM_TOKENIZER_MAX_TOKEN_BYTES);
    }
    char why[160];
    assert_true(cllm_hf_tokenizer_expressible(t, why, sizeof why)); /* distinct texts */
    int32_t *ids;
    size_t n_ids;
    assert_int_equal(cllm_tokenizer_encode(t, (const uint8_t *)text, n, &ids, &n_ids), CLLM_OK);
    uint8_t *back;
    size_t n_back;
    assert_int_equal(cllm_tokenizer_decode(t, ids, n_ids, &back, &n_back), CLLM_OK);
    assert_int_equal(n_back, n);
    assert_memory_equal(back, text, n);
    free(back);
    free(ids);
    cllm_tokenizer_free(t);
    free(text);
}

/* What cllm_tokenizer_build refuses, each with its reason. */
static void test_build_refuses_inconsistent_parts(void **state) {
    (void)state;
    uint8_t text[257 + 13];
    size_t off[258], len[258];
    uint8_t special[258] = {0};
    for (int b = 0; b < 256; b++) {
        text[b] = (uint8_t)b;
        off[b] = (size_t)b;
        len[b] = 1;
    }
    text[256] = 'a';
    text[257] = 'b';
    off[256] = 256; /* token 256 = "ab" */
    len[256] = 2;
    memcpy(text + 258, "<|endoftext|>", 12); /* only 12 bytes fit: the name is set per case below */
    off[257] = 258;
    len[257] = 12;
    special[257] = 1;
    int32_t merge[3] = {'a', 'b', 256};
    cllm_tokenizer_parts p = {CLLM_PRETOK_CLLM, 258, text, off, len, special, 1, merge};
    cllm_tokenizer *t = NULL;
    assert_int_equal(cllm_tokenizer_build(&p, &t), CLLM_ERR_INPUT); /* "<|endoftext|" is not the EOT name */
    assert_non_null(strstr(cllm_last_error(), "no special token named"));
    uint8_t full[258 + 13];
    memcpy(full, text, 258);
    memcpy(full + 258, "<|endoftext|>", 13);
    len[257] = 13;
    p.text = full;
    assert_int_equal(cllm_tokenizer_build(&p, &t), CLLM_OK);
    cllm_tokenizer_free(t);
    int32_t wrong[3] = {'a', 'c', 256};
    p.merges = wrong;
    assert_int_equal(cllm_tokenizer_build(&p, &t), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "not its two parts joined"));
    int32_t uses_special[3] = {'a', 257, 256};
    p.merges = uses_special;
    assert_int_equal(cllm_tokenizer_build(&p, &t), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "special"));
    p.merges = merge;
    len['q'] = 0;
    assert_int_equal(cllm_tokenizer_build(&p, &t), CLLM_ERR_INPUT);
    len['q'] = 1;
    full['q'] = 'r'; /* two tokens for 'r', none for 'q' */
    assert_int_equal(cllm_tokenizer_build(&p, &t), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), "no token for the byte 0x71"));
    assert_null(t);
}

/* The JSON reader still finds a duplicate key in an object of thousands (now with a hash set). */
static void test_json_duplicates_in_big_objects(void **state) {
    (void)state;
    for (int dup = 0; dup < 2; dup++) {
        size_t cap = 1 << 20, k = 0;
        char *s = malloc(cap);
        k += (size_t)sprintf(s + k, "{");
        for (int i = 0; i < 5000; i++) k += (size_t)sprintf(s + k, "%s\"key%d\": %d", i ? "," : "", i, i);
        if (dup) k += (size_t)sprintf(s + k, ",\"key4321\": 0");
        k += (size_t)sprintf(s + k, "}");
        cllm_json *v = NULL;
        assert_int_equal(cllm_json_parse(s, k, &v), dup ? CLLM_ERR_INPUT : CLLM_OK);
        if (dup) assert_non_null(strstr(cllm_last_error(), "duplicate key"));
        else assert_int_equal(v->length, 5000);
        cllm_json_free(v);
        free(s);
    }
}

/* Runs of both modes from the command line: the files each folder gets, what the summary says,
 * run.json's record, --resume refusing a new --pretokenize, and a run.json from before the
 * setting existed resuming with the cllm chunker. */
static void test_run_folders_of_both_modes(void **state) {
    (void)state;
    char *dir = make_temp_dir(), args[4096];
    snprintf(args, sizeof args, "train --preset tiny --steps 2 --sample-tokens 0 --pretokenize cllm --out '%s/old'", dir);
    run_result r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "tokenizer.bin only, no Hugging Face files: the cllm pre-tokenizer"));
    run_result_free(&r);
    char *old = path_in(dir, "old");
    assert_true(path_exists(old, "tokenizer.bin"));
    for (int f = 0; f < CLLM_HF_TOKENIZER_N_FILES; f++) assert_false(path_exists(old, cllm_hf_tokenizer_files[f]));
    /* run.json as an earlier version wrote it: no "pretokenize" key; --resume still works */
    char *run_json = path_in(old, "run.json");
    size_t n;
    char *text = (char *)read_whole_file(run_json, &n), *key = strstr(text, "\"pretokenize\": \"cllm\",");
    assert_non_null(key);
    memmove(key, key + strlen("\"pretokenize\": \"cllm\","), strlen(key + strlen("\"pretokenize\": \"cllm\",")) + 1);
    free(write_file(old, "run.json", text, strlen(text)));
    free(text);
    snprintf(args, sizeof args, "train --resume '%s' --steps 3 --sample-tokens 0", old);
    r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 0);
    run_result_free(&r);
    snprintf(args, sizeof args, "train --resume '%s' --steps 4 --pretokenize gpt2", old);
    r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 2);
    assert_non_null(strstr(r.err, "--pretokenize cannot change with --resume"));
    run_result_free(&r);
    if (!skip_without_utf8proc()) {
        snprintf(args, sizeof args, "train --preset tiny --steps 2 --sample-tokens 0 --out '%s/new'", dir);
        r = run_cllm(NULL, args);
        assert_int_equal(r.exit_code, 0);
        assert_non_null(strstr(r.out, "gpt2 pre-tokenization; tokenizer.bin and Hugging Face tokenizer.json"));
        run_result_free(&r);
        char *fresh = path_in(dir, "new");
        for (int f = 0; f < CLLM_HF_TOKENIZER_N_FILES; f++) assert_true(path_exists(fresh, cllm_hf_tokenizer_files[f]));
        char *json = path_in(fresh, "run.json");
        text = (char *)read_whole_file(json, &n);
        assert_non_null(strstr(text, "\"pretokenize\": \"gpt2\""));
        free(text);
        free(json);
        /* the folder's tokenizer.bin and its Hugging Face files give the same ids */
        cllm_tokenizer *bin = NULL, *hf = NULL;
        assert_int_equal(cllm_tokenizer_load_any(fresh, &bin), CLLM_OK);
        assert_int_equal(cllm_hf_tokenizer_load(fresh, &hf), CLLM_OK);
        assert_same_tokenizer(bin, hf);
        cllm_tokenizer_free(bin);
        cllm_tokenizer_free(hf);
        free(fresh);
    }
    free(run_json);
    free(old);
    remove_tree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2_pretokenizer_cases),
        cmocka_unit_test(test_gpt2_chunks_have_no_limit),
        cmocka_unit_test(test_hf_files_read_back_as_written),
        cmocka_unit_test(test_cllm_chunker_gets_no_hf_files),
        cmocka_unit_test(test_any_numbering_round_trips_version_2),
        cmocka_unit_test(test_version_2_records_the_pretokenizer),
        cmocka_unit_test(test_gpt2_training_keeps_tokens_short_and_distinct),
        cmocka_unit_test(test_build_refuses_inconsistent_parts),
        cmocka_unit_test(test_json_duplicates_in_big_objects),
        cmocka_unit_test(test_run_folders_of_both_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
