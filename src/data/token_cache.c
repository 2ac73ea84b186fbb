/* The token cache file (include/cllm/data/token_cache.h).
 *
 * Format, version 1 (integers little-endian):
 *
 *   offset  size  field
 *   0       8     magic "CLLM-TOK"
 *   8       4     u32 version = 1
 *   12      4     u32 id_bytes: 2 (uint16 ids) or 4 (uint32 ids)
 *   16      8     u64 tokenizer hash: FNV-1a 64 of the tokenizer's file image
 *   24      8     u64 corpus hash: FNV-1a 64 of every document's bytes, concatenated in reading order
 *   32      8     u64 corpus bytes
 *   40      8     u64 document count
 *   48      8     u64 token count n
 *   56      8     u64 ids checksum (below)
 *   64      56    zero
 *   120     8     u64 FNV-1a 64 of bytes 0..119
 *   128     n * id_bytes   the ids: every document's tokens followed by one end-of-text id
 *
 * The file is exactly 128 + n * id_bytes bytes; the ids start 128 bytes in,
 * aligned for any id width once mapped. The ids checksum is FNV-1a's step
 * taken on 8-byte little-endian words instead of bytes (the last 0-7 bytes
 * one at a time), eight times fewer multiplications over a file of
 * gigabytes. Checking reads the file with pread, not through the map, so
 * that a check of the whole file does not count against the process's
 * resident memory. */
#include "cllm/data/token_cache.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cllm/base/le.h"
#include "cllm/data/encoder.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the token cache maps little-endian ids as they are: a big-endian host needs a byte swap here"
#endif

#define HEADER_BYTES 128
#define HEADER_SUM_AT 120
#define FORMAT_VERSION 1u
#define FNV_PRIME 0x100000001b3ULL
#define CHECK_PIECE_BYTES (4u << 20)
static const char MAGIC[8] = {'C', 'L', 'L', 'M', '-', 'T', 'O', 'K'};

static cllm_status oom(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory in the token cache"); }


/* ---- the ids checksum, fed in pieces of any length ----------------------------------- */

typedef struct {
    uint64_t h;
    uint8_t carry[8];
    int n_carry;
} ids_sum;

static void sum_init(ids_sum *s) { memset(s, 0, sizeof *s), s->h = CLLM_FNV1A64_OFFSET; }

static void sum_add(ids_sum *s, const uint8_t *p, size_t n) {
    while (n > 0 && s->n_carry > 0) {
        s->carry[s->n_carry++] = *p++;
        n--;
        if (s->n_carry == 8) {
            s->h = (s->h ^ cllm_get_le64(s->carry)) * FNV_PRIME;
            s->n_carry = 0;
        }
    }
    uint64_t h = s->h;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * FNV_PRIME;
    }
    s->h = h;
    for (; n > 0; n--) s->carry[s->n_carry++] = *p++;
}

static uint64_t sum_end(const ids_sum *s) {
    uint64_t h = s->h;
    for (int i = 0; i < s->n_carry; i++) h = (h ^ s->carry[i]) * FNV_PRIME;
    return h;
}

/* ---- header --------------------------------------------------------------------------- */

static void header_write(uint8_t *p, const cllm_token_cache_info *in, uint64_t ids_checksum) {
    memset(p, 0, HEADER_BYTES);
    memcpy(p, MAGIC, 8);
    cllm_put_le32(p + 8, FORMAT_VERSION);
    cllm_put_le32(p + 12, (uint32_t)in->id_bytes);
    cllm_put_le64(p + 16, in->tokenizer_hash);
    cllm_put_le64(p + 24, in->corpus_hash);
    cllm_put_le64(p + 32, in->corpus_bytes);
    cllm_put_le64(p + 40, in->n_docs);
    cllm_put_le64(p + 48, in->n_tokens);
    cllm_put_le64(p + 56, ids_checksum);
    cllm_put_le64(p + HEADER_SUM_AT, cllm_fnv1a64(p, HEADER_SUM_AT, CLLM_FNV1A64_OFFSET));
}

static cllm_status corrupt(const char *path, const char *what) {
    return cllm_fail(CLLM_ERR_INPUT, "%s: corrupt token cache: %s", path, what);
}

static cllm_status header_read(const char *path, const uint8_t *p, uint64_t file_bytes, cllm_token_cache_info *out,
                               uint64_t *ids_checksum) {
    if (memcmp(p, MAGIC, 8) != 0) return cllm_fail(CLLM_ERR_INPUT, "%s: not a cllm token cache (bad magic)", path);
    if (cllm_get_le64(p + HEADER_SUM_AT) != cllm_fnv1a64(p, HEADER_SUM_AT, CLLM_FNV1A64_OFFSET))
        return corrupt(path, "header checksum mismatch");
    uint32_t version = cllm_get_le32(p + 8);
    if (version != FORMAT_VERSION)
        return cllm_fail(CLLM_ERR_INPUT, "%s: token cache version %u (this cllm reads version %u)", path, version,
                         FORMAT_VERSION);
    uint32_t id_bytes = cllm_get_le32(p + 12);
    if (id_bytes != 2 && id_bytes != 4) return corrupt(path, "ids are neither 2 nor 4 bytes");
    *out = (cllm_token_cache_info){
        .tokenizer_hash = cllm_get_le64(p + 16), .corpus_hash = cllm_get_le64(p + 24), .corpus_bytes = cllm_get_le64(p + 32),
        .n_docs = cllm_get_le64(p + 40), .n_tokens = cllm_get_le64(p + 48), .id_bytes = (int)id_bytes,
    };
    *ids_checksum = cllm_get_le64(p + 56);
    if (out->n_tokens > (file_bytes - HEADER_BYTES) / id_bytes || HEADER_BYTES + out->n_tokens * id_bytes != file_bytes) {
        char msg[128];
        snprintf(msg, sizeof msg, "%llu bytes, the header announces %llu tokens (truncated?)",
                 (unsigned long long)file_bytes, (unsigned long long)out->n_tokens);
        return corrupt(path, msg);
    }
    return CLLM_OK;
}

/* One pass over the ids with pread: checksum, range, end-of-text count. */
static cllm_status check_ids(const char *path, int fd, const cllm_token_cache_info *in, uint64_t want_sum, int vocab,
                             int32_t eot) {
    uint64_t left = in->n_tokens * (uint64_t)in->id_bytes, at = HEADER_BYTES, eots = 0;
    uint8_t *buf = malloc(left < CHECK_PIECE_BYTES ? (size_t)left + 1 : CHECK_PIECE_BYTES);
    if (!buf) return oom();
    ids_sum sum;
    sum_init(&sum);
    uint32_t max_id = 0;
    cllm_status st = CLLM_OK;
    while (left > 0 && st == CLLM_OK) {
        size_t want = left < CHECK_PIECE_BYTES ? (size_t)left : CHECK_PIECE_BYTES;
        ssize_t got = pread(fd, buf, want, (off_t)at);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0 || (size_t)got % (size_t)in->id_bytes) {
            st = got < 0 ? cllm_fail(CLLM_ERR_INPUT, "cannot read %s: %s", path, strerror(errno))
                         : corrupt(path, "shorter than its header says");
            break;
        }
        sum_add(&sum, buf, (size_t)got);
        size_t n = (size_t)got / (size_t)in->id_bytes;
        if (in->id_bytes == 2) {
            const uint16_t *v = (const uint16_t *)buf;
            for (size_t i = 0; i < n; i++) {
                max_id = v[i] > max_id ? v[i] : max_id;
                eots += v[i] == (uint32_t)eot;
            }
        } else {
            const uint32_t *v = (const uint32_t *)buf;
            for (size_t i = 0; i < n; i++) {
                max_id = v[i] > max_id ? v[i] : max_id;
                eots += v[i] == (uint32_t)eot;
            }
        }
        at += (uint64_t)got;
        left -= (uint64_t)got;
    }
    free(buf);
    if (st != CLLM_OK) return st;
    if (sum_end(&sum) != want_sum) return corrupt(path, "ids checksum mismatch");
    if (in->n_tokens > 0 && max_id >= (uint32_t)vocab) {
        char msg[96];
        snprintf(msg, sizeof msg, "id %u outside the vocabulary of %d", max_id, vocab);
        return corrupt(path, msg);
    }
    if (eots != in->n_docs) return corrupt(path, "the end-of-text ids do not match the document count");
    return CLLM_OK;
}

static cllm_status map_ids(const char *path, int fd, const cllm_token_cache_info *in, cllm_token_cache *out) {
    size_t bytes = HEADER_BYTES + (size_t)in->n_tokens * (size_t)in->id_bytes;
    void *map = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return cllm_fail(CLLM_ERR_INTERNAL, "cannot map %s: %s", path, strerror(errno));
    /* Windows are read at random places: read-ahead would only fill memory with tokens not asked for. */
    madvise(map, bytes, MADV_RANDOM);
    out->info = *in;
    out->map = map;
    out->map_bytes = bytes;
    out->ids = (const uint8_t *)map + HEADER_BYTES;
    return CLLM_OK;
}

cllm_status cllm_token_cache_open(const char *path, int vocab, int32_t eot, cllm_token_cache *out) {
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cllm_fail(CLLM_ERR_INPUT, "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    uint8_t header[HEADER_BYTES];
    cllm_token_cache_info info;
    uint64_t ids_checksum = 0;
    cllm_status s = CLLM_OK;
    if (fstat(fd, &st) != 0) s = cllm_fail(CLLM_ERR_INPUT, "cannot read %s: %s", path, strerror(errno));
    else if (st.st_size < HEADER_BYTES) s = corrupt(path, "truncated header");
    else if (pread(fd, header, HEADER_BYTES, 0) != HEADER_BYTES) s = corrupt(path, "cannot read the header");
    if (s == CLLM_OK) s = header_read(path, header, (uint64_t)st.st_size, &info, &ids_checksum);
    if (s == CLLM_OK) s = check_ids(path, fd, &info, ids_checksum, vocab, eot);
    if (s == CLLM_OK) s = map_ids(path, fd, &info, out);
    close(fd);
    return s;
}

void cllm_token_cache_close(cllm_token_cache *c) {
    if (!c) return;
    if (c->map) munmap(c->map, c->map_bytes);
    memset(c, 0, sizeof *c);
}

void cllm_token_cache_release(const cllm_token_cache *c, size_t from, size_t to) {
    if (!c->map || to <= from) return;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t lo = HEADER_BYTES + from * (size_t)c->info.id_bytes, hi = HEADER_BYTES + to * (size_t)c->info.id_bytes;
    lo = lo / page * page;
    hi = hi < c->map_bytes ? hi / page * page : (c->map_bytes + page - 1) / page * page;
    if (hi > lo) madvise((uint8_t *)c->map + lo, hi - lo, MADV_DONTNEED);
}

int cllm_token_cache_matches(const cllm_token_cache_info *have, const cllm_token_cache_info *want, char *why,
                             size_t n) {
    const char *what = have->tokenizer_hash != want->tokenizer_hash ? "made with another tokenizer"
                       : have->corpus_bytes != want->corpus_bytes   ? "made from data of another size"
                       : have->corpus_hash != want->corpus_hash     ? "made from other data of the same size"
                       : have->n_docs != want->n_docs               ? "made from another number of documents"
                                                                    : NULL;
    if (what && why) snprintf(why, n, "%s", what);
    return what == NULL;
}

cllm_status cllm_token_cache_tokenizer_hash(const cllm_tokenizer *t, uint64_t *hash) {
    uint8_t *image;
    size_t n;
    cllm_status s = cllm_tokenizer_serialize(t, &image, &n);
    if (s != CLLM_OK) return s;
    *hash = cllm_fnv1a64(image, n, CLLM_FNV1A64_OFFSET);
    free(image);
    return CLLM_OK;
}

/* ---- writing ----------------------------------------------------------------------------- */

struct cllm_token_cache_writer {
    cllm_atomic_file af;
    const char *path;
    int id_bytes;
    uint64_t n_tokens;
    ids_sum sum;
    uint8_t *buf;
    size_t buf_cap;
};

static cllm_status write_failed(const cllm_token_cache_writer *w) {
    return cllm_fail(CLLM_ERR_INTERNAL, "cannot write %s: %s", w->path, strerror(errno));
}

/* The encoder's sink: ids to little-endian bytes of id_bytes, appended. */
static cllm_status write_ids(void *ctx, const int32_t *ids, size_t n) {
    cllm_token_cache_writer *w = ctx;
    size_t bytes = n * (size_t)w->id_bytes;
    if (bytes > w->buf_cap) {
        uint8_t *p = realloc(w->buf, bytes);
        if (!p) return oom();
        w->buf = p;
        w->buf_cap = bytes;
    }
    if (w->id_bytes == 2) {
        uint16_t *v = (uint16_t *)w->buf;
        for (size_t i = 0; i < n; i++) v[i] = (uint16_t)ids[i];
    } else {
        memcpy(w->buf, ids, bytes);
    }
    sum_add(&w->sum, w->buf, bytes);
    w->n_tokens += n;
    if (bytes && fwrite(w->buf, 1, bytes, w->af.f) != bytes) return write_failed(w);
    return CLLM_OK;
}

void cllm_token_cache_abort(cllm_token_cache_writer *w) {
    if (!w) return;
    cllm_atomic_abort(&w->af);
    free(w->buf);
    free(w);
}

cllm_status cllm_token_cache_commit(cllm_token_cache_writer *w) {
    cllm_status s = cllm_atomic_commit(&w->af);
    free(w->buf);
    free(w);
    return s;
}

/* Every document of the stream through the encoder into the writer. */
static cllm_status encode_stream(cllm_token_cache_writer *w, const cllm_corpus_files *files, const cllm_tokenizer *t,
                                 int threads, const cllm_stop_flag *stop, const cllm_data_progress *progress,
                                 cllm_corpus_reader *r) {
    cllm_encoder *e;
    cllm_status s = cllm_encoder_create(t, threads, 0, write_ids, w, &e);
    cllm_corpus_reader_init(r, files, stop);
    while (s == CLLM_OK) {
        cllm_corpus_doc doc;
        if ((s = cllm_corpus_reader_next(r, &doc)) != CLLM_OK || !doc.bytes) break;
        s = cllm_encoder_add(e, doc.bytes, doc.length);
        if (progress && progress->fn) progress->fn(progress->ctx, r->n_bytes, files->total_bytes);
    }
    if (s == CLLM_OK) s = cllm_encoder_flush(e);
    cllm_encoder_free(e);
    cllm_corpus_reader_free(r);
    return s;
}

cllm_status cllm_token_cache_begin(const char *path, int vocab, cllm_token_cache_writer **wp) {
    *wp = NULL;
    cllm_token_cache_writer *w = calloc(1, sizeof *w);
    if (!w) return oom();
    w->id_bytes = vocab <= 65536 ? 2 : 4;
    sum_init(&w->sum);
    cllm_status s = cllm_atomic_open(&w->af, path);
    if (s != CLLM_OK) {
        free(w);
        return s;
    }
    w->path = w->af.final_path;
    /* The header's place, written through at once: a folder that cannot take a file says so now. */
    uint8_t header[HEADER_BYTES] = {0};
    if (fwrite(header, 1, HEADER_BYTES, w->af.f) != HEADER_BYTES || fflush(w->af.f) != 0) {
        s = write_failed(w);
        cllm_token_cache_abort(w);
        return s;
    }
    *wp = w;
    return CLLM_OK;
}

cllm_status cllm_token_cache_encode(cllm_token_cache_writer *w, const cllm_corpus_files *files,
                                    const cllm_tokenizer *t, int threads, const cllm_stop_flag *stop,
                                    const cllm_data_progress *progress, cllm_token_cache *out) {
    memset(out, 0, sizeof *out);
    cllm_token_cache_info info = {.id_bytes = w->id_bytes};
    cllm_status s = cllm_tokenizer_vocab_size(t) <= (w->id_bytes == 2 ? 65536 : INT32_MAX)
                        ? cllm_token_cache_tokenizer_hash(t, &info.tokenizer_hash)
                        : cllm_fail(CLLM_ERR_INTERNAL, "%s: the vocabulary outgrew the ids' width", w->path);
    cllm_corpus_reader r;
    if (s == CLLM_OK) s = encode_stream(w, files, t, threads, stop, progress, &r);
    if (s == CLLM_OK) {
        info.corpus_hash = r.hash;
        info.corpus_bytes = r.n_bytes;
        info.n_docs = r.n_docs;
        info.n_tokens = w->n_tokens;
        uint8_t header[HEADER_BYTES];
        header_write(header, &info, sum_end(&w->sum));
        if (fseek(w->af.f, 0, SEEK_SET) != 0 || fwrite(header, 1, HEADER_BYTES, w->af.f) != HEADER_BYTES ||
            fflush(w->af.f) != 0)
            s = write_failed(w);
    }
    if (s == CLLM_OK) { /* the temporary was opened for writing only: map it through a descriptor that reads */
        int fd = open(w->af.tmp_path, O_RDONLY | O_CLOEXEC);
        s = fd < 0 ? cllm_fail(CLLM_ERR_INTERNAL, "cannot read %s: %s", w->af.tmp_path, strerror(errno))
                   : map_ids(w->af.tmp_path, fd, &info, out);
        if (fd >= 0) close(fd);
    }
    return s;
}

cllm_status cllm_token_cache_build(const char *path, const cllm_corpus_files *files, const cllm_tokenizer *t,
                                   int threads, const cllm_stop_flag *stop, const cllm_data_progress *progress,
                                   cllm_token_cache_writer **wp, cllm_token_cache *out) {
    memset(out, 0, sizeof *out);
    cllm_status s = cllm_token_cache_begin(path, cllm_tokenizer_vocab_size(t), wp);
    if (s == CLLM_OK) s = cllm_token_cache_encode(*wp, files, t, threads, stop, progress, out);
    if (s != CLLM_OK) {
        cllm_token_cache_abort(*wp);
        *wp = NULL;
    }
    return s;
}
