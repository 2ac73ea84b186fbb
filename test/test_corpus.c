/* Corpus reader: walk order, skipping (hidden, binary, symlink loops), the
 * default corpus, and every bad-input case, through the library and the binary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cllm/data/corpus.h"
#include "cllm/data/embedded.h"
#include "support.h"

static void put(const char *dir, const char *name, const char *text) {
    free(write_file(dir, name, text, strlen(text)));
}

static void link_to(const char *dir, const char *name, const char *target) {
    char *p = path_in(dir, name);
    assert_int_equal(symlink(target, p), 0);
    free(p);
}

static void assert_doc(const cllm_corpus *c, size_t i, const char *dir, const char *name, const char *text) {
    char *expected_name = path_in(dir, name);
    assert_true(i < c->n_docs);
    assert_string_equal(c->docs[i].name, expected_name);
    assert_int_equal(c->docs[i].length, strlen(text));
    assert_memory_equal(c->bytes + c->docs[i].offset, text, strlen(text));
    free(expected_name);
}

static cllm_status load_one(const char *path, cllm_corpus *c) {
    const char *paths[1] = {path};
    return cllm_corpus_load(paths, 1, c);
}

/* A binary file: a NUL inside the first 8 KiB. A NUL after 8 KiB does not count. */
static void put_binary(const char *dir, const char *name, size_t nul_at, size_t size) {
    char *buf = malloc(size);
    memset(buf, 'x', size);
    buf[nul_at] = '\0';
    free(write_file(dir, name, buf, size));
    free(buf);
}

static void test_walk_order_and_skipping(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    put(dir, "b.txt", "bee\n");
    put(dir, "a.txt", "ay\n");
    put(dir, "A.txt", "capital\n");
    put(dir, "sub/c.txt", "sea\n");
    put(dir, "sub2/z.txt", "zed \xff\xfe invalid utf-8\n");
    put(dir, ".hidden.txt", "hidden file\n");
    put(dir, ".git/config", "hidden folder\n");
    put(dir, "sub/.cache/x.txt", "hidden nested folder\n");
    put(dir, "empty.txt", "");
    put_binary(dir, "bin.dat", 100, 5000);
    put_binary(dir, "late-nul.txt", 9000, 9001);
    link_to(dir, "loop", ".");          /* points at the walk's root */
    link_to(dir, "sub/up", "..");       /* points at an ancestor */
    link_to(dir, "dangling", "nowhere"); /* leads nowhere: ignored */

    cllm_corpus c;
    assert_int_equal(load_one(dir, &c), CLLM_OK);
    /* Byte-wise order: 'A' (0x41) < 'a' < 'b' < "bin.dat" < "empty.txt" < "late..." < "sub" < "sub2". */
    assert_int_equal(c.n_docs, 6);
    assert_doc(&c, 0, dir, "A.txt", "capital\n");
    assert_doc(&c, 1, dir, "a.txt", "ay\n");
    assert_doc(&c, 2, dir, "b.txt", "bee\n");
    assert_true(c.docs[3].length == 9001);
    assert_string_equal(strrchr(c.docs[3].name, '/'), "/late-nul.txt");
    assert_doc(&c, 4, dir, "sub/c.txt", "sea\n");
    assert_doc(&c, 5, dir, "sub2/z.txt", "zed \xff\xfe invalid utf-8\n");
    assert_int_equal(c.n_binary_skipped, 1);
    assert_int_equal(c.n_files_read, 7); /* six documents and the empty file */
    size_t total = 0;
    for (size_t i = 0; i < c.n_docs; i++) {
        assert_int_equal(c.docs[i].offset, total); /* concatenated in order, nothing in between */
        total += c.docs[i].length;
    }
    assert_int_equal(c.n_bytes, total);
    cllm_corpus_free(&c);
    remove_tree(dir);
    free(dir);
}

static void test_files_and_folders_mixed_in_given_order(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    put(dir, "z.txt", "last name, first given\n");
    put(dir, "d/.hidden-but-named", "named explicitly\n");
    put(dir, "d/y.txt", "why\n");
    char *z = path_in(dir, "z.txt"), *d = path_in(dir, "d"), *h = path_in(dir, "d/.hidden-but-named");
    const char *paths[3] = {z, d, h};
    cllm_corpus c;
    assert_int_equal(cllm_corpus_load(paths, 3, &c), CLLM_OK);
    assert_int_equal(c.n_docs, 3);
    assert_doc(&c, 0, dir, "z.txt", "last name, first given\n");
    assert_doc(&c, 1, dir, "d/y.txt", "why\n");
    assert_doc(&c, 2, dir, "d/.hidden-but-named", "named explicitly\n");
    cllm_corpus_free(&c);
    free(z);
    free(d);
    free(h);
    remove_tree(dir);
    free(dir);
}

static void test_default_corpus_is_the_data_file(void **state) {
    (void)state;
    cllm_corpus c;
    assert_int_equal(cllm_corpus_load(NULL, 0, &c), CLLM_OK);
    FILE *f = fopen(CLLM_SOURCE_DIR "/data/tinyshakespeare.txt", "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *expected = malloc(n);
    assert_int_equal(fread(expected, 1, n, f), n);
    fclose(f);
    assert_true(n > 1000000);
    assert_int_equal(c.n_bytes, n);
    assert_int_equal(c.n_docs, 1);
    assert_string_equal(c.docs[0].name, CLLM_DEFAULT_CORPUS_NAME);
    assert_memory_equal(c.bytes, expected, n);
    free(expected);
    cllm_corpus_free(&c);
}

static void expect_input_error(const char *path, const char *message_part) {
    cllm_corpus c;
    memset(&c, 0x5a, sizeof c);
    assert_int_equal(load_one(path, &c), CLLM_ERR_INPUT);
    assert_non_null(strstr(cllm_last_error(), path));
    if (message_part) assert_non_null(strstr(cllm_last_error(), message_part));
    assert_null(c.bytes); /* left empty, so a caller's cllm_corpus_free is harmless */
    assert_int_equal(c.n_docs, 0);
    cllm_corpus_free(&c);
}

static void test_bad_inputs_are_input_errors(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    char *missing = path_in(dir, "no-such-file");
    expect_input_error(missing, "no such file");

    char *empty_dir = path_in(dir, "empty");
    mkdir(empty_dir, 0755);
    expect_input_error(empty_dir, "no text");

    put(dir, "only-binary/a.bin", "");
    put_binary(dir, "only-binary/b.bin", 0, 10);
    char *only_binary = path_in(dir, "only-binary");
    expect_input_error(only_binary, "1 binary files skipped");

    put(dir, "empty-file.txt", "");
    char *empty_file = path_in(dir, "empty-file.txt");
    expect_input_error(empty_file, "no text");

    /* A file that opens but cannot be read, even by root: reading address 0
     * of our own memory fails with EIO. */
    expect_input_error("/proc/self/mem", "cannot read");

    /* A file without read permission (root ignores permissions, so only then). */
    put(dir, "secret.txt", "cannot see me\n");
    char *secret = path_in(dir, "secret.txt");
    chmod(secret, 0);
    if (geteuid() != 0) expect_input_error(secret, "cannot read");

    free(missing);
    free(empty_dir);
    free(only_binary);
    free(empty_file);
    free(secret);
    remove_tree(dir);
    free(dir);
}

static void test_from_bytes(void **state) {
    (void)state;
    cllm_corpus c;
    assert_int_equal(cllm_corpus_from_bytes("a\0b", 3, "mem", &c), CLLM_OK);
    assert_int_equal(c.n_bytes, 3);
    assert_memory_equal(c.bytes, "a\0b", 3);
    assert_string_equal(c.docs[0].name, "mem");
    cllm_corpus_free(&c);
    assert_int_equal(cllm_corpus_from_bytes("", 0, "mem", &c), CLLM_ERR_INPUT);
}

/* Exit 2, exactly one line on stderr, nothing on stdout, no output file. */
static void expect_cli_input_error(const char *args, const char *out_dir) {
    run_result r = run_cllm(NULL, args);
    assert_int_equal(r.exit_code, 2);
    assert_int_equal(count_lines(r.err), 1);
    assert_string_equal(r.out, "");
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", out_dir);
    assert_int_equal(system(cmd), 0); /* no file, not even a temporary one */
    run_result_free(&r);
}

static void test_cli_bad_data_paths(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    char *out = make_temp_dir();
    char args[8192];
    snprintf(args, sizeof args, "tokenizer train /nonexistent -o '%s/x'", out);
    expect_cli_input_error(args, out);
    char *empty = path_in(dir, "empty");
    mkdir(empty, 0755);
    snprintf(args, sizeof args, "tokenizer train '%s' -o '%s/x'", empty, out);
    expect_cli_input_error(args, out);
    put_binary(dir, "bin/x", 3, 10);
    snprintf(args, sizeof args, "tokenizer train '%s/bin' -o '%s/x'", dir, out);
    expect_cli_input_error(args, out);
    snprintf(args, sizeof args, "tokenizer train /proc/self/mem -o '%s/x'", out);
    expect_cli_input_error(args, out);
    snprintf(args, sizeof args, "tokenizer train -o '%s'", out); /* -o names a folder */
    expect_cli_input_error(args, out);
    snprintf(args, sizeof args, "tokenizer train -o '%s/no-such-folder/x'", out);
    expect_cli_input_error(args, out);
    free(empty);
    remove_tree(dir);
    remove_tree(out);
    free(dir);
    free(out);
}

/* The default corpus is built into the binary: a command run from a folder with no data/ anywhere near it
 * still reads all of it. */
static void test_cli_default_corpus_from_any_directory(void **state) {
    (void)state;
    char *dir = make_temp_dir();
    char cd[4200], expect[64];
    snprintf(cd, sizeof cd, "cd '%s' &&", dir);
    run_result r = run_cllm(cd, "tokenizer train --vocab 257 -o tok.bin");
    if (r.exit_code != 0) fail_msg("exit %d, stderr '%s'", r.exit_code, r.err);
    struct stat sb;
    assert_int_equal(stat(CLLM_SOURCE_DIR "/data/tinyshakespeare.txt", &sb), 0);
    snprintf(expect, sizeof expect, "%lld bytes from 1 files", (long long)sb.st_size);
    if (!strstr(r.out, expect)) fail_msg("'%s' not in '%s'", expect, r.out);
    char *tok = path_in(dir, "tok.bin");
    assert_int_equal(stat(tok, &sb), 0);
    free(tok);
    run_result_free(&r);
    remove_tree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_walk_order_and_skipping),
        cmocka_unit_test(test_files_and_folders_mixed_in_given_order),
        cmocka_unit_test(test_default_corpus_is_the_data_file),
        cmocka_unit_test(test_bad_inputs_are_input_errors),
        cmocka_unit_test(test_from_bytes),
        cmocka_unit_test(test_cli_bad_data_paths),
        cmocka_unit_test(test_cli_default_corpus_from_any_directory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
