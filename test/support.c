#include "support.h"

#include "cllm/base/rng.h"
#include "cllm/data/embedded.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

unsigned char *read_whole_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!buf) {
        fclose(f);
        return NULL;
    }
    *n = fread(buf, 1, (size_t)len, f);
    buf[*n] = '\0';
    fclose(f);
    return buf;
}

static char *slurp(const char *path) {
    size_t n;
    char *text = (char *)read_whole_file(path, &n);
    return text ? text : strdup("");
}

run_result run_cllm(const char *env, const char *args) { return run_cllm_with(env, args, NULL); }

void run_result_free(run_result *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

int count_lines(const char *s) {
    int n = 0;
    for (const char *p = s; *p; p++)
        if (*p == '\n') n++;
    if (*s && s[strlen(s) - 1] != '\n') n++;
    return n;
}

char *make_temp_dir(void) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    char *path = malloc(strlen(base) + 32);
    sprintf(path, "%s/cllm-test-XXXXXX", base);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        abort();
    }
    return path;
}

void remove_tree(const char *path) {
    char *cmd = malloc(strlen(path) + 16);
    sprintf(cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", path);
    free(cmd);
}

char *write_file(const char *dir, const char *name, const void *data, size_t n) {
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    /* create parent folders */
    for (char *p = path + strlen(dir) + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        abort();
    }
    if (n && fwrite(data, 1, n, f) != n) abort();
    fclose(f);
    return path;
}

run_result run_cllm_with(const char *prefix, const char *args, const char *stdin_path) {
    run_result r = {0};
    char *dir = make_temp_dir();
    const char *in = stdin_path ? stdin_path : "/dev/null";
    size_t len = strlen(dir) * 2 + strlen(args) + (prefix ? strlen(prefix) : 0) + strlen(CLLM_BIN) + strlen(in) + 64;
    char *cmd = malloc(len);
    snprintf(cmd, len, "%s '%s' %s >'%s/out' 2>'%s/err' <'%s'", prefix ? prefix : "", CLLM_BIN, args, dir, dir, in);
    int status = system(cmd);
    if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) r.exit_code = 128 + WTERMSIG(status);
    else r.exit_code = -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/out", dir);
    r.out = slurp(path);
    snprintf(path, sizeof path, "%s/err", dir);
    r.err = slurp(path);
    remove_tree(dir);
    free(dir);
    free(cmd);
    return r;
}

void copy_tree(const char *src, const char *dst) {
    char *cmd = malloc(strlen(src) + strlen(dst) + 16);
    sprintf(cmd, "cp -a '%s' '%s'", src, dst);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot copy %s to %s\n", src, dst);
        abort();
    }
    free(cmd);
}

char *path_in(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

int path_exists(const char *dir, const char *name) {
    char *p = path_in(dir, name);
    struct stat sb;
    int ok = lstat(p, &sb) == 0;
    free(p);
    return ok;
}

char *write_word_corpus(const char *dir, const char *name) {
    static const char *words[] = {"the", "king", "shall", "speak", "of", "love", "and", "war", "to", "my",
                                  "lord", "now", "good", "night", "sweet", "prince", "what", "is", "honour", "air"};
    size_t cap = 16384, n = 0;
    char *text = malloc(cap);
    uint64_t x = 12345;
    while (n < 12000) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        n += (size_t)snprintf(text + n, cap - n, "%s%s", words[(x >> 33) % 20], (x >> 40) % 9 == 0 ? ".\n" : " ");
    }
    char *path = write_file(dir, name, text, n);
    free(text);
    return path;
}

/* The built-in text cut into documents of random sizes (1 byte to 300 KB, so
 * that some are cut into pieces), with raw bytes mixed in: NUL, invalid UTF-8,
 * long runs of one byte and of spaces. 0, or -1 if it could not be made. */
int make_awkward_corpus(cllm_corpus *out) {
    size_t n;
    const uint8_t *text = cllm_default_corpus(&n);
    uint8_t *bytes = malloc(n + 4096);
    memcpy(bytes, text, n);
    for (size_t i = 0; i < 1000; i++) bytes[n + i] = (uint8_t)(i * 37);    /* every byte value, NUL included */
    memset(bytes + n + 1000, 'a', 1500);                                    /* a run longer than a chunk */
    memset(bytes + n + 2500, ' ', 1596);                                    /* and of spaces */
    n += 4096;
    cllm_corpus c;
    if (cllm_corpus_from_bytes(bytes, n, "all", &c) != CLLM_OK) return -1;
    free(bytes);
    /* re-cut into documents */
    cllm_rng rng;
    cllm_rng_seed(&rng, 99);
    size_t cap = 64, at = 0;
    c.docs[0].name[0] = '\0';
    cllm_doc *docs = malloc(cap * sizeof *docs);
    size_t k = 0;
    while (at < n) {
        size_t len = k % 7 == 3 ? 300000 : 1 + (size_t)cllm_rng_below(&rng, 20000);
        if (len > n - at) len = n - at;
        if (k == cap) docs = realloc(docs, (cap *= 2) * sizeof *docs);
        docs[k++] = (cllm_doc){strdup("doc"), at, len};
        at += len;
    }
    free(c.docs[0].name);
    free(c.docs);
    c.docs = docs;
    c.n_docs = k;
    *out = c;
    return 0;
}
