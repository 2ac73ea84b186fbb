/* Helpers shared by the CMocka tests: running the cllm binary and temporary
 * folders. CLLM_BIN, CLLM_SOURCE_DIR and CLLM_SHARED_CORPUS come from CMake. */
#ifndef CLLM_TEST_SUPPORT_H
#define CLLM_TEST_SUPPORT_H

#include <stddef.h>

#include "cllm/data/corpus.h"

typedef struct {
    int exit_code;   /* process exit status, or 128+signal if killed */
    char *out;       /* captured stdout (NUL-terminated, malloc'd) */
    char *err;       /* captured stderr */
} run_result;

/* Runs `sh -c "<env> CLLM_BIN <args>"` with stdin from /dev/null.
 * `env` may be NULL or e.g. "OMP_NUM_THREADS=3". */
run_result run_cllm(const char *env, const char *args);
void run_result_free(run_result *r);

/* The whole file, NUL-terminated (malloc'd, *n bytes without the NUL); NULL if unreadable. */
unsigned char *read_whole_file(const char *path, size_t *n);

/* Number of lines in s (a final line without newline counts). */
int count_lines(const char *s);

/* mkdtemp under $TMPDIR or /tmp; returns a malloc'd path. */
char *make_temp_dir(void);
/* rm -rf path. */
void remove_tree(const char *path);
/* Writes bytes to dir/name, creating parent folders; returns malloc'd full path. */
char *write_file(const char *dir, const char *name, const void *data, size_t n);

/* Like run_cllm, with a shell prefix before the binary (environment
 * assignments through `env`, or wrappers such as `timeout 30`) and stdin from
 * stdin_path (NULL: /dev/null). */
run_result run_cllm_with(const char *prefix, const char *args, const char *stdin_path);
/* cp -a src dst: copies symbolic links as links. */
void copy_tree(const char *src, const char *dst);

/* "dir/name", malloc'd. */
char *path_in(const char *dir, const char *name);
/* dir/name exists (a link counts, even one that leads nowhere). */
int path_exists(const char *dir, const char *name);
/* About 12 KB of varied text in dir/name (20 words, seeded): enough windows
 * of 16 tokens for a 300-token vocabulary. Returns the malloc'd path. */
char *write_word_corpus(const char *dir, const char *name);

/* The built-in text cut into documents of random sizes (1 byte to 300 KB),
 * with NUL, invalid UTF-8 and long runs of one byte and of spaces mixed in:
 * the corpus the encoder and token-cache tests share. 0, or -1 on failure. */
int make_awkward_corpus(cllm_corpus *out);

#endif
