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

/* The walk's product: the regular files, in order, with their sizes then. */
typedef struct {
    cllm_corpus_files *f;
    size_t cap;
    const cllm_stop_flag *stop; /* NULL: never stopped */
} list_builder;

static cllm_status out_of_memory(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory reading the corpus"); }

static cllm_status interrupted(void) {
    return cllm_fail(CLLM_ERR_INTERRUPTED, "interrupted while reading the corpus");
}

static cllm_status read_error(const char *path, int err) {
    return cllm_fail(CLLM_ERR_INPUT, "cannot read %s: %s", path, strerror(err));
}

static cllm_status add_file(list_builder *b, const char *path, const struct stat *st) {
    cllm_corpus_files *f = b->f;
    if (f->n_files == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        char **p = realloc(f->paths, cap * sizeof *p);
        if (!p) return out_of_memory();
        f->paths = p;
        b->cap = cap;
    }
    if (!(f->paths[f->n_files] = strdup(path))) return out_of_memory();
    f->n_files++;
    f->total_bytes += st->st_size > 0 ? (uint64_t)st->st_size : 0;
    return CLLM_OK;
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

static cllm_status walk(list_builder *b, const char *path, folder_path *fp);

/* One entry found inside a folder: recurse into folders, read regular files,
 * and quietly pass over what cannot hold text (dangling links, sockets, fifos:
 * reading a fifo would block forever). */
static cllm_status visit_entry(list_builder *b, const char *path, folder_path *fp) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return CLLM_OK; /* dangling symlink */
        return read_error(path, errno);
    }
    if (S_ISDIR(st.st_mode)) {
        if (on_current_path(fp, &st)) return CLLM_OK; /* symlink loop */
        return walk(b, path, fp);
    }
    if (S_ISREG(st.st_mode)) return add_file(b, path, &st);
    return CLLM_OK;
}

static cllm_status walk(list_builder *b, const char *path, folder_path *fp) {
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
static cllm_status list_path(list_builder *b, const char *path, folder_path *fp) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return cllm_fail(CLLM_ERR_INPUT, "%s: no such file or folder", path);
        return read_error(path, errno);
    }
    if (S_ISDIR(st.st_mode)) return walk(b, path, fp);
    if (S_ISREG(st.st_mode)) return add_file(b, path, &st);
    return cllm_fail(CLLM_ERR_INPUT, "%s: not a regular file or folder", path);
}

cllm_status cllm_corpus_list(const char *const *paths, int n_paths, const cllm_stop_flag *stop,
                             cllm_corpus_files *out) {
    memset(out, 0, sizeof *out);
    if (n_paths <= 0) {
        out->builtin = 1;
        size_t n;
        cllm_default_corpus(&n);
        out->total_bytes = n;
        return CLLM_OK;
    }
    list_builder b = {out, 0, stop};
    folder_path *fp = calloc(1, sizeof *fp);
    cllm_status s = fp ? CLLM_OK : out_of_memory();
    for (int i = 0; s == CLLM_OK && i < n_paths; i++)
        s = cllm_stop_requested(stop) ? interrupted() : list_path(&b, paths[i], fp);
    free(fp);
    if (s != CLLM_OK) cllm_corpus_files_free(out);
    return s;
}

void cllm_corpus_files_free(cllm_corpus_files *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_files; i++) free(f->paths[i]);
    free(f->paths);
    memset(f, 0, sizeof *f);
}

/* ---- the reader: one document at a time ------------------------------------------ */

void cllm_corpus_reader_init(cllm_corpus_reader *r, const cllm_corpus_files *files, const cllm_stop_flag *stop) {
    memset(r, 0, sizeof *r);
    r->files = files;
    r->stop = stop;
    r->hash = CLLM_FNV1A64_OFFSET;
}

void cllm_corpus_reader_free(cllm_corpus_reader *r) {
    if (!r) return;
    free(r->buf);
    r->buf = NULL;
    r->cap = 0;
}

static cllm_status reserve(cllm_corpus_reader *r, size_t need) {
    if (need <= r->cap) return CLLM_OK;
    size_t cap = r->cap ? r->cap : 1 << 16;
    while (cap < need) cap *= 2;
    uint8_t *p = realloc(r->buf, cap);
    if (!p) return out_of_memory();
    r->buf = p;
    r->cap = cap;
    return CLLM_OK;
}

/* The whole file into r->buf; *len its length. */
static cllm_status read_whole(cllm_corpus_reader *r, const char *path, size_t *len) {
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return read_error(path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return read_error(path, e);
    }
    /* The size is only a hint: the file may grow or shrink while we read. */
    size_t want = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, n = 0;
    for (;;) {
        cllm_status s = cllm_stop_requested(r->stop) ? interrupted() : reserve(r, n + want);
        if (s != CLLM_OK) {
            close(fd);
            return s;
        }
        size_t room = r->cap - n;
        ssize_t got = read(fd, r->buf + n, room < READ_PIECE_BYTES ? room : READ_PIECE_BYTES);
        if (got < 0) {
            if (errno == EINTR) continue; /* the stop check above runs first */
            int e = errno;
            close(fd);
            return read_error(path, e);
        }
        if (got == 0) break;
        n += (size_t)got;
        want = 4096;
    }
    close(fd);
    *len = n;
    return CLLM_OK;
}

/* Reads files until one holds text: binary files (a NUL in the first 8 KiB)
 * and empty ones are counted and passed over. */
cllm_status cllm_corpus_reader_next(cllm_corpus_reader *r, cllm_corpus_doc *doc) {
    memset(doc, 0, sizeof *doc);
    if (r->files->builtin) {
        if (r->next++ > 0) return CLLM_OK;
        doc->bytes = cllm_default_corpus(&doc->length);
        doc->name = CLLM_DEFAULT_CORPUS_NAME;
    } else {
        for (;;) {
            if (r->next == r->files->n_files) return CLLM_OK;
            if (cllm_stop_requested(r->stop)) return interrupted();
            const char *path = r->files->paths[r->next++];
            size_t len;
            cllm_status s = read_whole(r, path, &len);
            if (s != CLLM_OK) return s;
            size_t probe = len < BINARY_PROBE_BYTES ? len : BINARY_PROBE_BYTES;
            if (memchr(r->buf, 0, probe)) {
                r->n_binary_skipped++;
                continue;
            }
            r->n_files_read++;
            if (len == 0) continue; /* an empty file contributes no document */
            doc->bytes = r->buf;
            doc->length = len;
            doc->name = path;
            break;
        }
    }
    if (r->files->builtin) r->n_files_read = 1;
    r->hash = cllm_fnv1a64(doc->bytes, doc->length, r->hash);
    r->n_bytes += doc->length;
    r->n_docs++;
    return CLLM_OK;
}

cllm_status cllm_corpus_no_text(const cllm_corpus_reader *r, const char *const *paths, int n_paths) {
    if (r->n_bytes > 0) return CLLM_OK;
    return cllm_fail(CLLM_ERR_INPUT, "no text in %s%s (%zu empty text files, %zu binary files skipped)",
                     n_paths > 0 ? paths[0] : CLLM_DEFAULT_CORPUS_NAME, n_paths > 1 ? " and the other paths" : "",
                     r->n_files_read, r->n_binary_skipped);
}

/* ---- the whole corpus in memory, on top of the walk and the reader ------------------ */

typedef struct {
    cllm_corpus *c;
    size_t bytes_cap, docs_cap;
} corpus_builder;

static cllm_status append_doc(corpus_builder *b, const cllm_corpus_doc *doc) {
    cllm_corpus *c = b->c;
    if (c->n_bytes + doc->length > b->bytes_cap) {
        size_t cap = b->bytes_cap ? b->bytes_cap : 1 << 16;
        while (cap < c->n_bytes + doc->length) cap *= 2;
        uint8_t *p = realloc(c->bytes, cap);
        if (!p) return out_of_memory();
        c->bytes = p;
        b->bytes_cap = cap;
    }
    if (c->n_docs == b->docs_cap) {
        size_t cap = b->docs_cap ? b->docs_cap * 2 : 16;
        cllm_doc *d = realloc(c->docs, cap * sizeof *d);
        if (!d) return out_of_memory();
        c->docs = d;
        b->docs_cap = cap;
    }
    char *copy = strdup(doc->name);
    if (!copy) return out_of_memory();
    memcpy(c->bytes + c->n_bytes, doc->bytes, doc->length);
    c->docs[c->n_docs++] = (cllm_doc){copy, c->n_bytes, doc->length};
    c->n_bytes += doc->length;
    return CLLM_OK;
}

cllm_status cllm_corpus_load(const char *const *paths, int n_paths, cllm_corpus *out) {
    return cllm_corpus_load_stoppable(paths, n_paths, NULL, out);
}

cllm_status cllm_corpus_load_stoppable(const char *const *paths, int n_paths, const cllm_stop_flag *stop,
                                       cllm_corpus *out) {
    memset(out, 0, sizeof *out);
    cllm_corpus_files files;
    cllm_status s = cllm_corpus_list(paths, n_paths, stop, &files);
    if (s != CLLM_OK) return s;
    cllm_corpus_reader r;
    cllm_corpus_reader_init(&r, &files, stop);
    corpus_builder b = {out, 0, 0};
    for (;;) {
        cllm_corpus_doc doc;
        if ((s = cllm_corpus_reader_next(&r, &doc)) != CLLM_OK || !doc.bytes) break;
        if ((s = append_doc(&b, &doc)) != CLLM_OK) break;
    }
    if (s == CLLM_OK) s = cllm_corpus_no_text(&r, paths, n_paths);
    out->n_files_read = r.n_files_read;
    out->n_binary_skipped = r.n_binary_skipped;
    cllm_corpus_reader_free(&r);
    cllm_corpus_files_free(&files);
    if (s != CLLM_OK) cllm_corpus_free(out);
    return s;
}

cllm_status cllm_corpus_from_bytes(const void *bytes, size_t n, const char *name, cllm_corpus *out) {
    memset(out, 0, sizeof *out);
    if (n == 0) return cllm_fail(CLLM_ERR_INPUT, "%s: no text", name);
    corpus_builder b = {out, 0, 0};
    cllm_corpus_doc doc = {bytes, n, name};
    cllm_status s = append_doc(&b, &doc);
    out->n_files_read = 1;
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
