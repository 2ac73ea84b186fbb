/* Corpus reader: turns the user's files and folders into one byte buffer.
 *
 * The walk is deterministic (entries sorted byte-wise) so that the same
 * folder always yields the same token stream, and hence the same training
 * run for the same seed. Hidden entries (".git", ".DS_Store") are skipped in
 * folders, and a folder already on the current path is never re-entered, so
 * symlink loops end instead of recursing forever. */
#include "cllm/data/corpus.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cllm/data/embedded.h"

#define BINARY_PROBE_BYTES 8192
#define MAX_DEPTH 256
/* Reads are cut into pieces this large so that a stop request is seen
 * between them even in a file of many gigabytes. */
#define READ_PIECE_BYTES (64u << 20)

/* (dev, inode) of the folders between the walk's root and the current one. */
typedef struct {
    dev_t dev[MAX_DEPTH];
    ino_t ino[MAX_DEPTH];
    int depth;
} folder_path;

typedef struct {
    cllm_corpus *c;
    size_t bytes_cap, docs_cap;
    const cllm_stop_flag *stop; /* NULL: never stopped */
} corpus_builder;

static cllm_status out_of_memory(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory reading the corpus"); }

static cllm_status interrupted(void) {
    return cllm_fail(CLLM_ERR_INTERRUPTED, "interrupted while reading the corpus");
}

static cllm_status reserve_bytes(corpus_builder *b, size_t extra) {
    cllm_corpus *c = b->c;
    if (c->n_bytes + extra <= b->bytes_cap) return CLLM_OK;
    size_t cap = b->bytes_cap ? b->bytes_cap : 1 << 16;
    while (cap < c->n_bytes + extra) cap *= 2;
    uint8_t *p = realloc(c->bytes, cap);
    if (!p) return out_of_memory();
    c->bytes = p;
    b->bytes_cap = cap;
    return CLLM_OK;
}

static cllm_status add_doc(corpus_builder *b, const char *name, size_t offset, size_t length) {
    cllm_corpus *c = b->c;
    if (c->n_docs == b->docs_cap) {
        size_t cap = b->docs_cap ? b->docs_cap * 2 : 16;
        cllm_doc *d = realloc(c->docs, cap * sizeof *d);
        if (!d) return out_of_memory();
        c->docs = d;
        b->docs_cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) return out_of_memory();
    c->docs[c->n_docs++] = (cllm_doc){copy, offset, length};
    return CLLM_OK;
}

static cllm_status read_error(const char *path, int err) {
    return cllm_fail(CLLM_ERR_INPUT, "cannot read %s: %s", path, strerror(err));
}

/* Appends the file's bytes to the corpus, unless its first 8 KiB hold a NUL,
 * in which case it is binary: the bytes are dropped and the file counted. */
static cllm_status read_file(corpus_builder *b, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return read_error(path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return read_error(path, e);
    }
    cllm_corpus *c = b->c;
    size_t start = c->n_bytes;
    /* The size is only a hint: the file may grow or shrink while we read. */
    size_t want = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    for (;;) {
        cllm_status s = cllm_stop_requested(b->stop) ? interrupted() : reserve_bytes(b, want);
        if (s != CLLM_OK) {
            close(fd);
            c->n_bytes = start;
            return s;
        }
        size_t room = b->bytes_cap - c->n_bytes;
        ssize_t got = read(fd, c->bytes + c->n_bytes, room < READ_PIECE_BYTES ? room : READ_PIECE_BYTES);
        if (got < 0) {
            if (errno == EINTR) continue; /* the stop check above runs first */
            int e = errno;
            close(fd);
            c->n_bytes = start;
            return read_error(path, e);
        }
        if (got == 0) break;
        c->n_bytes += (size_t)got;
        want = 4096;
    }
    close(fd);
    size_t length = c->n_bytes - start;
    size_t probe = length < BINARY_PROBE_BYTES ? length : BINARY_PROBE_BYTES;
    if (memchr(c->bytes + start, 0, probe)) {
        c->n_bytes = start;
        c->n_binary_skipped++;
        return CLLM_OK;
    }
    c->n_files_read++;
    if (length == 0) return CLLM_OK; /* an empty file contributes no document */
    return add_doc(b, path, start, length);
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* The folder's visible entries, sorted byte-wise (strcmp on unsigned bytes). */
static cllm_status list_folder(const char *path, char ***names_out, size_t *n_out) {
    DIR *dir = opendir(path);
    if (!dir) return read_error(path, errno);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ".", ".." and hidden entries */
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) goto oom;
            names = p;
        }
        if (!(names[n] = strdup(e->d_name))) goto oom;
        n++;
    }
    if (errno != 0) {
        int err = errno;
        closedir(dir);
        free_names(names, n);
        return read_error(path, err);
    }
    closedir(dir);
    if (n > 1) qsort(names, n, sizeof *names, compare_names);
    *names_out = names;
    *n_out = n;
    return CLLM_OK;
oom:
    closedir(dir);
    free_names(names, n);
    return out_of_memory();
}

static int on_current_path(const folder_path *fp, const struct stat *st) {
    for (int i = 0; i < fp->depth; i++)
        if (fp->dev[i] == st->st_dev && fp->ino[i] == st->st_ino) return 1;
    return 0;
}

static cllm_status walk(corpus_builder *b, const char *path, folder_path *fp);

/* One entry found inside a folder: recurse into folders, read regular files,
 * and quietly pass over what cannot hold text (dangling links, sockets, fifos:
 * reading a fifo would block forever). */
static cllm_status visit_entry(corpus_builder *b, const char *path, folder_path *fp) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return CLLM_OK; /* dangling symlink */
        return read_error(path, errno);
    }
    if (S_ISDIR(st.st_mode)) {
        if (on_current_path(fp, &st)) return CLLM_OK; /* symlink loop */
        return walk(b, path, fp);
    }
    if (S_ISREG(st.st_mode)) return read_file(b, path);
    return CLLM_OK;
}

static cllm_status walk(corpus_builder *b, const char *path, folder_path *fp) {
    struct stat st;
    if (stat(path, &st) != 0) return read_error(path, errno);
    if (fp->depth == MAX_DEPTH)
        return cllm_fail(CLLM_ERR_INPUT, "%s: folders nested more than %d deep", path, MAX_DEPTH);
    fp->dev[fp->depth] = st.st_dev;
    fp->ino[fp->depth] = st.st_ino;
    fp->depth++;
    char **names = NULL;
    size_t n = 0;
    cllm_status s = list_folder(path, &names, &n);
    for (size_t i = 0; s == CLLM_OK && i < n; i++) {
        if (cllm_stop_requested(b->stop)) {
            s = interrupted();
            break;
        }
        char *child = cllm_path_join(path, names[i]);
        s = child ? visit_entry(b, child, fp) : out_of_memory();
        free(child);
    }
    free_names(names, n);
    fp->depth--;
    return s;
}

/* A path the user named: must exist; a file is read even if hidden, since
 * the user asked for it by name. */
static cllm_status load_path(corpus_builder *b, const char *path, folder_path *fp) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return cllm_fail(CLLM_ERR_INPUT, "%s: no such file or folder", path);
        return read_error(path, errno);
    }
    if (S_ISDIR(st.st_mode)) return walk(b, path, fp);
    if (S_ISREG(st.st_mode)) return read_file(b, path);
    return cllm_fail(CLLM_ERR_INPUT, "%s: not a regular file or folder", path);
}

static cllm_status load_default(corpus_builder *b) {
    size_t n;
    const uint8_t *bytes = cllm_default_corpus(&n);
    cllm_status s = reserve_bytes(b, n);
    if (s != CLLM_OK) return s;
    memcpy(b->c->bytes, bytes, n);
    b->c->n_bytes = n;
    b->c->n_files_read = 1;
    return add_doc(b, CLLM_DEFAULT_CORPUS_NAME, 0, n);
}

static cllm_status no_text_error(const cllm_corpus *c, const char *const *paths, int n_paths) {
    return cllm_fail(CLLM_ERR_INPUT, "no text in %s%s (%zu empty text files, %zu binary files skipped)",
                     paths[0], n_paths > 1 ? " and the other paths" : "", c->n_files_read, c->n_binary_skipped);
}

cllm_status cllm_corpus_load(const char *const *paths, int n_paths, cllm_corpus *out) {
    return cllm_corpus_load_stoppable(paths, n_paths, NULL, out);
}

cllm_status cllm_corpus_load_stoppable(const char *const *paths, int n_paths, const cllm_stop_flag *stop,
                                       cllm_corpus *out) {
    memset(out, 0, sizeof *out);
    corpus_builder b = {out, 0, 0, stop};
    cllm_status s = CLLM_OK;
    if (n_paths <= 0) {
        s = load_default(&b);
    } else {
        folder_path *fp = calloc(1, sizeof *fp);
        if (!fp) s = out_of_memory();
        for (int i = 0; s == CLLM_OK && i < n_paths; i++)
            s = cllm_stop_requested(stop) ? interrupted() : load_path(&b, paths[i], fp);
        free(fp);
        if (s == CLLM_OK && out->n_bytes == 0) s = no_text_error(out, paths, n_paths);
    }
    if (s != CLLM_OK) cllm_corpus_free(out);
    return s;
}

cllm_status cllm_corpus_from_bytes(const void *bytes, size_t n, const char *name, cllm_corpus *out) {
    memset(out, 0, sizeof *out);
    if (n == 0) return cllm_fail(CLLM_ERR_INPUT, "%s: no text", name);
    corpus_builder b = {out, 0, 0, NULL};
    cllm_status s = reserve_bytes(&b, n);
    if (s == CLLM_OK) {
        memcpy(out->bytes, bytes, n);
        out->n_bytes = n;
        out->n_files_read = 1;
        s = add_doc(&b, name, 0, n);
    }
    if (s != CLLM_OK) cllm_corpus_free(out);
    return s;
}

void cllm_corpus_free(cllm_corpus *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_docs; i++) free(c->docs[i].name);
    free(c->docs);
    free(c->bytes);
    memset(c, 0, sizeof *c);
}
