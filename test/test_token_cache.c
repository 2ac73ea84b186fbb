/* The token cache: the file round-trips (ids equal to the one-document
 * encoder's, windows equal to those over the stream in memory), every kind of
 * damage or staleness is caught, the documented format reads; through the
 * binary, --resume rebuilds a bad cache and eval works around it, and the
 * cache is byte-identical at 1 and 3 threads. (The encoder's own tests:
 * test_encoder.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cllm/data/corpus.h"
#include "cllm/data/dataset.h"
#include "cllm/data/token_cache.h"
#include "cllm/data/tokenizer.h"
#include "support.h"

/* ---- a corpus of awkward documents ---------------------------------------------------- */

typedef struct {
    cllm_corpus corpus;
    cllm_tokenizer *tok;
} fixture;

/* The shared corpus of awkward documents (support.c). */
static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (make_awkward_corpus(&f->corpus) != 0) return -1;
    if (cllm_tokenizer_train(&f->corpus, 600, &f->tok) != CLLM_OK) return -1;
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

/* The reference: each document through cllm_tokenizer_encode, then EOT. */
static int32_t *reference_stream(const fixture *f, size_t *n) {
    int32_t *out = malloc((f->corpus.n_bytes + f->corpus.n_docs) * sizeof *out);
    size_t k = 0;
    for (size_t d = 0; d < f->corpus.n_docs; d++) {
        int32_t *ids;
        size_t m;
        assert_int_equal(cllm_tokenizer_encode(f->tok, f->corpus.bytes + f->corpus.docs[d].offset,
                                               f->corpus.docs[d].length, &ids, &m),
                         CLLM_OK);
        memcpy(out + k, ids, m * sizeof *ids);
        free(ids);
        k += m;
        out[k++] = cllm_tokenizer_eot(f->tok);
    }
    *n = k;
    return out;
}

/* ---- the file ----------------------------------------------------------------------------- */

/* The fixture's documents as files of a folder (names sort in document order), listed. */
static char *write_documents(const fixture *f, cllm_corpus_files *files) {
    char *dir = make_temp_dir();
    for (size_t d = 0; d < f->corpus.n_docs; d++) {
        char name[32];
        snprintf(name, sizeof name, "data/%06zu.txt", d);
        free(write_file(dir, name, f->corpus.bytes + f->corpus.docs[d].offset, f->corpus.docs[d].length));
    }
    char *data = path_in(dir, "data");
    const char *paths[1] = {data};
    assert_int_equal(cllm_corpus_list(paths, 1, NULL, files), CLLM_OK);
    free(data);
    return dir;
}

/* Builds dir/tokens.bin from the files and commits it. */
static char *build_cache(const fixture *f, const char *dir, const cllm_corpus_files *files, int threads) {
    char *path = path_in(dir, "tokens.bin");
    cllm_token_cache_writer *w;
    cllm_token_cache c;
    assert_int_equal(cllm_token_cache_build(path, files, f->tok, threads, NULL, NULL, &w, &c), CLLM_OK);
    assert_false(access(path, F_OK) == 0); /* not committed yet */
    assert_int_equal(cllm_token_cache_commit(w), CLLM_OK);
    cllm_token_cache_close(&c);
    return path;
}

/* read_upto of hold_validation: positions never go back. */
static void note_position(void *ctx, size_t pos) {
    size_t *upto = ctx;
    assert_true(pos >= upto[0]);
    upto[0] = pos;
    upto[1]++;
}

static void test_cache_round_trip(void **state) {
    fixture *f = *state;
    cllm_corpus_files files;
    char *dir = write_documents(f, &files);
    char *path = build_cache(f, dir, &files, 3);
    cllm_token_cache c;
    int vocab = cllm_tokenizer_vocab_size(f->tok);
    assert_int_equal(cllm_token_cache_open(path, vocab, cllm_tokenizer_eot(f->tok), &c), CLLM_OK);
    size_t n_ref;
    int32_t *ref = reference_stream(f, &n_ref);
    assert_int_equal(c.info.id_bytes, 2); /* vocabulary 600 fits uint16 */
    assert_int_equal(c.info.n_tokens, n_ref);
    assert_int_equal(c.info.n_docs, f->corpus.n_docs);
    assert_int_equal(c.info.corpus_bytes, f->corpus.n_bytes);
    assert_true(c.info.corpus_hash == cllm_fnv1a64(f->corpus.bytes, f->corpus.n_bytes, CLLM_FNV1A64_OFFSET));
    uint64_t th;
    assert_int_equal(cllm_token_cache_tokenizer_hash(f->tok, &th), CLLM_OK);
    assert_true(c.info.tokenizer_hash == th);
    const uint16_t *ids = c.ids;
    for (size_t i = 0; i < n_ref; i++)
        if (ids[i] != (uint16_t)ref[i]) fail_msg("id %zu: %u in the cache, %d encoded", i, ids[i], ref[i]);
    /* The windows over the map are those over the in-memory stream. */
    cllm_dataset a, b;
    assert_int_equal(cllm_dataset_from_ids(c.ids, 2, c.info.n_tokens, 37, 0.1, 5, &a), CLLM_OK);
    assert_int_equal(cllm_dataset_from_ids(ref, 4, n_ref, 37, 0.1, 5, &b), CLLM_OK);
    assert_int_equal(a.n_train, b.n_train);
    int32_t in_a[37], tg_a[37], in_b[37], tg_b[37];
    for (uint64_t w = 0; w < 3 * a.n_train; w += 101) {
        cllm_dataset_train_window(&a, w, in_a, tg_a);
        cllm_dataset_train_window(&b, w, in_b, tg_b);
        assert_memory_equal(in_a, in_b, sizeof in_a);
        assert_memory_equal(tg_a, tg_b, sizeof tg_a);
    }
    /* Validation windows held in memory are those read from the map, and the pass reports its progress in order. */
    size_t upto[2] = {0, 0};
    assert_int_equal(cllm_dataset_hold_validation(&a, note_position, upto), CLLM_OK);
    assert_non_null(a.val_ids);
    assert_int_equal(upto[0], a.n_tokens);
    for (size_t w = 0; w < a.n_val; w++) {
        cllm_dataset_val_window(&a, w, in_a, tg_a);
        cllm_dataset_val_window(&b, w, in_b, tg_b);
        assert_memory_equal(in_a, in_b, sizeof in_a);
        assert_memory_equal(tg_a, tg_b, sizeof tg_a);
    }
    cllm_dataset_free(&a);
    cllm_dataset_free(&b);
    /* Handing pages back changes nothing that is read afterwards. */
    cllm_token_cache_release(&c, 0, c.info.n_tokens);
    for (size_t i = 0; i < n_ref; i += 997) assert_int_equal(ids[i], (uint16_t)ref[i]);
    cllm_token_cache_close(&c);
    free(ref);
    free(path);
    cllm_corpus_files_free(&files);
    remove_tree(dir);
    free(dir);
}

static void expect_refused(const char *path, int vocab, int32_t eot, const char *phrase) {
    cllm_token_cache c;
    assert_int_equal(cllm_token_cache_open(path, vocab, eot, &c), CLLM_ERR_INPUT);
    if (!strstr(cllm_last_error(), phrase)) fail_msg("'%s' does not say '%s'", cllm_last_error(), phrase);
    assert_null(c.map);
}

static void damage(const char *path, const uint8_t *orig, size_t n, size_t at, uint8_t xor_with, size_t keep) {
    uint8_t *copy = malloc(n);
    memcpy(copy, orig, n);
    if (at < n) copy[at] ^= xor_with;
    FILE *fp = fopen(path, "wb");
    fwrite(copy, 1, keep, fp);
    fclose(fp);
    free(copy);
}

/* Every kind of damage is refused, naming the file. */
static void test_damaged_cache_is_refused(void **state) {
    fixture *f = *state;
    cllm_corpus_files files;
    char *dir = write_documents(f, &files);
    char *path = build_cache(f, dir, &files, 2);
    size_t n;
    uint8_t *orig = read_whole_file(path, &n);
    int vocab = cllm_tokenizer_vocab_size(f->tok);
    int32_t eot = cllm_tokenizer_eot(f->tok);
    damage(path, orig, n, n, 0, 64);
    expect_refused(path, vocab, eot, "truncated header");
    damage(path, orig, n, n, 0, n - 2);
    expect_refused(path, vocab, eot, "truncated?");
    damage(path, orig, n, 0, 0x20, n);
    expect_refused(path, vocab, eot, "not a cllm token cache");
    damage(path, orig, n, 40, 1, n); /* a header field */
    expect_refused(path, vocab, eot, "header checksum");
    damage(path, orig, n, n / 2, 0x10, n); /* one id */
    expect_refused(path, vocab, eot, "ids checksum");
    damage(path, orig, n, n, 0, n);
    expect_refused(path, 300, eot, "outside the vocabulary of 300"); /* another tokenizer's size */
    expect_refused(path, vocab, 7, "end-of-text ids");
    assert_non_null(strstr(cllm_last_error(), path));
    unlink(path);
    expect_refused(path, vocab, eot, "cannot read");
    free(orig);
    free(path);
    cllm_corpus_files_free(&files);
    remove_tree(dir);
    free(dir);
}

/* A file made by the documented format alone, with uint32 ids, opens and reads back. */
static void test_documented_format_with_uint32_ids(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    uint8_t file[128 + 5 * 4] = {0};
    memcpy(file, "CLLM-TOK", 8);
    file[8] = 1;  /* version */
    file[12] = 4; /* id_bytes */
    file[40] = 2; /* documents */
    file[48] = 5; /* tokens */
    const uint32_t ids[5] = {70000, 99999, 5, 99999, 1};
    memcpy(file + 128, ids, sizeof ids);
    uint64_t h = CLLM_FNV1A64_OFFSET; /* FNV-1a's step on 8-byte words, the last 4 bytes one at a time */
    for (int i = 0; i < 2; i++) {
        uint64_t w;
        memcpy(&w, file + 128 + 8 * i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
    }
    for (int i = 16; i < 20; i++) h = (h ^ file[128 + i]) * 0x100000001b3ULL;
    memcpy(file + 56, &h, 8);
    uint64_t hs = cllm_fnv1a64(file, 120, CLLM_FNV1A64_OFFSET);
    memcpy(file + 120, &hs, 8);
    char *path = write_file(dir, "tokens.bin", file, sizeof file);
    cllm_token_cache c;
    assert_int_equal(cllm_token_cache_open(path, 100000, 99999, &c), CLLM_OK);
    assert_int_equal(c.info.id_bytes, 4);
    assert_int_equal(c.info.n_tokens, 5);
    cllm_dataset d;
    assert_int_equal(cllm_dataset_from_ids(c.ids, 4, 5, 2, 0, 1, &d), CLLM_OK);
    int32_t got[5];
    cllm_dataset_read(&d, 0, 5, got);
    for (int i = 0; i < 5; i++) assert_int_equal(got[i], (int32_t)ids[i]);
    cllm_dataset_free(&d);
    cllm_token_cache_close(&c);
    free(path);
    remove_tree(dir);
    free(dir);
}

static void test_stale_cache_is_told_apart(void **state) {
    (void)state;
    cllm_token_cache_info have = {1, 2, 3, 4, 5, 2}, want = have;
    char why[96];
    assert_true(cllm_token_cache_matches(&have, &want, why, sizeof why));
    want.tokenizer_hash = 9;
    assert_false(cllm_token_cache_matches(&have, &want, why, sizeof why));
    assert_string_equal(why, "made with another tokenizer");
    want = have;
    want.corpus_bytes = 9;
    assert_false(cllm_token_cache_matches(&have, &want, why, sizeof why));
    assert_string_equal(why, "made from data of another size");
    want = have;
    want.corpus_hash = 9;
    assert_false(cllm_token_cache_matches(&have, &want, why, sizeof why));
    assert_string_equal(why, "made from other data of the same size");
}

/* ---- through the binary --------------------------------------------------------------------- */

#define TINY_RUN "--preset tiny --vocab 300 --seq 16 --batch 4 --sample-tokens 0 --eval-every 0"

/* The loss `cllm eval DIR` prints, and its stderr in *err (malloc'd). */
static double eval_loss(const char *dir, char **err) {
    char args[512];
    snprintf(args, sizeof args, "eval %s --json", dir);
    run_result r = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(r.exit_code, 0);
    const char *p = strstr(r.out, "\"loss\":");
    assert_non_null(p);
    double loss = atof(p + 7);
    *err = r.err;
    r.err = NULL;
    run_result_free(&r);
    return loss;
}

/* A damaged cache: eval says so and encodes in memory (same loss); --resume rebuilds it (the same bytes) and goes
   on. A missing one (a folder of an earlier cllm) is the same. */
static void test_resume_rebuilds_and_eval_works_around_a_bad_cache(void **state) {
    (void)state;
    char *tmp = make_temp_dir();
    char *data = write_word_corpus(tmp, "words.txt");
    char *dir = path_in(tmp, "run");
    char args[1024];
    snprintf(args, sizeof args, "train %s " TINY_RUN " --steps 4 --stop-after 2 --out %s", data, dir);
    run_result r = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(r.exit_code, 0);
    run_result_free(&r);
    char *cache = path_in(dir, "tokens.bin");
    size_t n;
    uint8_t *good = read_whole_file(cache, &n);
    assert_non_null(good);
    char *err;
    double loss = eval_loss(dir, &err);
    assert_string_equal(err, "");
    free(err);
    for (int k = 0; k < 2; k++) {
        if (k == 0) damage(cache, good, n, n - 3, 0x01, n); /* one id */
        else unlink(cache);
        double again = eval_loss(dir, &err);
        assert_true(again == loss);
        assert_int_equal(count_lines(err), 1);
        assert_non_null(strstr(err, k == 0 ? "ids checksum" : "is missing"));
        assert_non_null(strstr(err, "encoded the data in memory"));
        free(err);
        size_t m;
        uint8_t *still = read_whole_file(cache, &m); /* eval never writes the folder */
        if (k == 0) assert_memory_not_equal(still, good, n);
        else assert_null(still);
        free(still);
    }
    snprintf(args, sizeof args, "train --resume %s --stop-after %d", dir, 3);
    r = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(count_lines(r.err), 1);
    assert_non_null(strstr(r.err, "is missing: rebuilt it"));
    run_result_free(&r);
    size_t m;
    uint8_t *rebuilt = read_whole_file(cache, &m);
    assert_int_equal(m, n);
    assert_memory_equal(rebuilt, good, n);
    free(rebuilt);
    damage(cache, good, n, 100, 0x01, n); /* the header */
    snprintf(args, sizeof args, "train --resume %s", dir);
    r = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.err, "header checksum"));
    assert_non_null(strstr(r.err, "rebuilt it"));
    run_result_free(&r);
    rebuilt = read_whole_file(cache, &m);
    assert_memory_equal(rebuilt, good, n);
    free(rebuilt);
    /* A resume with a good cache says nothing about it. */
    snprintf(args, sizeof args, "train --resume %s --steps 5", dir);
    r = run_cllm("OMP_NUM_THREADS=2", args);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.err, "");
    run_result_free(&r);
    free(good);
    free(cache);
    free(data);
    free(dir);
    remove_tree(tmp);
    free(tmp);
}

/* The cache a run writes is the same file at 1 and 3 threads. */
static void test_cache_file_is_the_same_for_any_thread_count(void **state) {
    (void)state;
    char *tmp = make_temp_dir();
    uint8_t *files[2];
    size_t sizes[2];
    const char *envs[2] = {"OMP_NUM_THREADS=1", "OMP_NUM_THREADS=3"};
    for (int i = 0; i < 2; i++) {
        char name[16], args[512];
        snprintf(name, sizeof name, "run%d", i);
        char *dir = path_in(tmp, name);
        snprintf(args, sizeof args, "train --preset tiny --steps 1 --val-fraction 0 --sample-tokens 0 --out %s", dir);
        run_result r = run_cllm(envs[i], args);
        assert_int_equal(r.exit_code, 0);
        assert_non_null(strstr(r.out, i ? "3 threads" : "1 thread"));
        run_result_free(&r);
        char *cache = path_in(dir, "tokens.bin");
        files[i] = read_whole_file(cache, &sizes[i]);
        assert_non_null(files[i]);
        free(cache);
        free(dir);
    }
    assert_int_equal(sizes[0], sizes[1]);
    assert_memory_equal(files[0], files[1], sizes[0]);
    free(files[0]);
    free(files[1]);
    remove_tree(tmp);
    free(tmp);
}

/* `cllm bench encode` compares the paths' ids as it times them. */
static void test_bench_encode_finds_the_same_ids(void **state) {
    (void)state;
    char *tmp = make_temp_dir();
    char *data = write_word_corpus(tmp, "words.txt");
    char args[512];
    snprintf(args, sizeof args, "bench encode %s --vocab 300 --repeats 1 --json", data);
    run_result r = run_cllm("OMP_NUM_THREADS=3", args);
    assert_int_equal(r.exit_code, 0);
    assert_non_null(strstr(r.out, "\"same_ids\":true"));
    assert_non_null(strstr(r.out, "\"threads\":3"));
    run_result_free(&r);
    free(data);
    remove_tree(tmp);
    free(tmp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_round_trip),
        cmocka_unit_test(test_damaged_cache_is_refused),
        cmocka_unit_test(test_documented_format_with_uint32_ids),
        cmocka_unit_test(test_stale_cache_is_told_apart),
        cmocka_unit_test(test_resume_rebuilds_and_eval_works_around_a_bad_cache),
        cmocka_unit_test(test_cache_file_is_the_same_for_any_thread_count),
        cmocka_unit_test(test_bench_encode_finds_the_same_ids),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
