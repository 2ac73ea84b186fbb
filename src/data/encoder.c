/* Parallel, deterministic encoding (include/cllm/data/encoder.h).
 *
 * Why pieces and not documents: a corpus may be one 1 GB file or 100,000
 * small ones. A document of up to 256 KiB is one piece, and the thread that
 * encodes it also scans it for chunks (its scan from 0, as anywhere else).
 * A bigger one is cut into pieces of ~64 KiB at chunk boundaries; only the
 * pre-tokenizer's scan from the start of the document knows where those
 * are, so that scan runs first, on one thread, recording every chunk's end
 * (relative to its piece, 4 bytes a chunk), and the threads encode those
 * chunks. The per-thread memo is only a memo: its hits and misses,
 * and when it is emptied, never change an id. */
#include "cllm/data/encoder.h"

#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

#define DEFAULT_BATCH_BYTES (8u << 20)
#define PIECE_BYTES (64u << 10)
#define WHOLE_DOC_BYTES (4 * PIECE_BYTES) /* documents up to this size are one piece each */
#define SCAN_ITSELF SIZE_MAX              /* piece.first_chunk of such a piece: no recorded chunks */
#define MEMO_SLOTS (1u << 16)          /* per thread; a power of two */
#define MEMO_MAX_ENTRIES (MEMO_SLOTS / 2)
#define MEMO_POOL_BYTES (2u << 20)     /* chunk bytes and ids kept per thread before the memo is emptied */
#define MEMO_MAX_CHUNK 4096            /* longer chunks are encoded without the memo */

static cllm_status oom(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory encoding the corpus"); }

/* One thread's memo of encoded chunks: open addressing on the chunk's hash.
 * A slot holds all a lookup needs besides the pool, where a chunk's bytes
 * are followed by its ids: a hit touches two or three cache lines. */
typedef struct {
    uint64_t hash; /* 0: empty */
    uint32_t off;  /* in the pool: len bytes, then (4-aligned) n_ids int32 */
    uint16_t len, n_ids;
} memo_slot;

typedef struct {
    memo_slot *slots;
    uint8_t *pool;
    size_t n_entries, used;
    cllm_bpe_scratch *scratch; /* the BPE's working memory */
    int failed;                /* out of memory in the BPE */
} __attribute__((aligned(64))) memo; /* a cache line each: the counters change on every miss */

/* Bytes [start, end) of the batch, in document doc; its chunks end at start + chunk_end[first_chunk ..
 * first_chunk + n_chunks). */
typedef struct { size_t start, end, doc, first_chunk, n_chunks; int ends_doc; } piece;

struct cllm_encoder {
    const cllm_tokenizer *tok;
    int threads;
    size_t batch_bytes;
    cllm_ids_sink sink;
    void *sink_ctx;
    memo *memos;                 /* one per thread */
    uint8_t *bytes; size_t n_bytes, bytes_cap;
    size_t *doc_start; size_t n_docs, docs_cap; /* doc d is bytes[doc_start[d] .. doc_start[d+1] or n_bytes) */
    piece *pieces; size_t n_pieces, pieces_cap;
    uint32_t *chunk_end; size_t n_chunks, chunks_cap; /* relative to the piece's start */
    int32_t *ids; size_t ids_cap;
};

static void memo_free(memo *m) {
    free(m->slots);
    free(m->pool);
    cllm_bpe_scratch_free(m->scratch);
}

static int memo_init(memo *m) {
    m->slots = calloc(MEMO_SLOTS, sizeof *m->slots);
    m->pool = malloc(MEMO_POOL_BYTES);
    m->scratch = cllm_bpe_scratch_create();
    m->n_entries = m->used = 0;
    m->failed = 0;
    return m->slots && m->pool && m->scratch;
}

/* The BPE of a chunk; on out of memory the memo is marked failed and the chunk gives no ids. */
static size_t bpe(const cllm_tokenizer *t, memo *m, const uint8_t *c, size_t len, int32_t *out) {
    size_t n = cllm_tokenizer_encode_chunk(t, m->scratch, c, len, out);
    if (n != SIZE_MAX) return n;
    m->failed = 1;
    return 0;
}

static void memo_clear(memo *m) {
    memset(m->slots, 0, MEMO_SLOTS * sizeof *m->slots);
    m->n_entries = m->used = 0;
}

/* A memo key only (equal keys are compared byte for byte), so speed matters more than quality: eight bytes
 * per multiplication. Never 0, which marks an empty slot. */
static uint64_t chunk_hash(const uint8_t *c, size_t len) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ len, w;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, c + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, c + i, len - i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    return h ? h : 1;
}

static size_t ids_at(size_t len) { return (len + 3) & ~(size_t)3; }

/* Writes the chunk's ids to out; returns how many. */
static size_t encode_chunk(const cllm_tokenizer *t, memo *m, const uint8_t *c, size_t len, int32_t *out) {
    if (len == 1) {
        out[0] = cllm_tokenizer_byte_id(t, c[0]);
        return 1;
    }
    if (len > MEMO_MAX_CHUNK) return bpe(t, m, c, len, out);
    uint64_t h = chunk_hash(c, len);
    size_t i = (size_t)h & (MEMO_SLOTS - 1);
    for (; m->slots[i].hash; i = (i + 1) & (MEMO_SLOTS - 1)) {
        const memo_slot *sl = &m->slots[i];
        if (sl->hash != h || sl->len != len || memcmp(m->pool + sl->off, c, len) != 0) continue;
        memcpy(out, m->pool + sl->off + ids_at(len), sl->n_ids * sizeof *out);
        return sl->n_ids;
    }
    size_t n = bpe(t, m, c, len, out);
    if (m->failed) return 0;
    size_t need = ids_at(len) + n * sizeof *out;
    if (m->n_entries == MEMO_MAX_ENTRIES || m->used + need > MEMO_POOL_BYTES) {
        memo_clear(m);
        i = (size_t)h & (MEMO_SLOTS - 1);
    }
    m->slots[i] = (memo_slot){h, (uint32_t)m->used, (uint16_t)len, (uint16_t)n};
    memcpy(m->pool + m->used, c, len);
    memcpy(m->pool + m->used + ids_at(len), out, n * sizeof *out);
    m->used += need;
    m->n_entries++;
    return n;
}

cllm_status cllm_encoder_create(const cllm_tokenizer *t, int threads, size_t batch_bytes, cllm_ids_sink sink,
                                void *sink_ctx, cllm_encoder **out) {
    *out = NULL;
    cllm_encoder *e = calloc(1, sizeof *e);
    if (!e) return oom();
    e->tok = t;
    e->threads = threads > 0 ? threads : omp_get_max_threads();
    e->batch_bytes = batch_bytes ? batch_bytes : DEFAULT_BATCH_BYTES;
    e->sink = sink;
    e->sink_ctx = sink_ctx;
    e->memos = cllm_alloc((size_t)e->threads * sizeof *e->memos); /* zeroed, 64-byte aligned */
    int ok = e->memos != NULL;
    for (int i = 0; ok && i < e->threads; i++) ok = memo_init(&e->memos[i]);
    if (!ok) {
        cllm_encoder_free(e);
        return oom();
    }
    *out = e;
    return CLLM_OK;
}

void cllm_encoder_free(cllm_encoder *e) {
    if (!e) return;
    for (int i = 0; e->memos && i < e->threads; i++) memo_free(&e->memos[i]);
    cllm_free(e->memos);
    free(e->bytes);
    free(e->doc_start);
    free(e->pieces);
    free(e->chunk_end);
    free(e->ids);
    free(e);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static int add_piece(cllm_encoder *e, size_t start, size_t end, size_t doc, int ends_doc, size_t first_chunk) {
    if (!grow((void **)&e->pieces, &e->pieces_cap, e->n_pieces + 1, sizeof *e->pieces)) return 0;
    size_t n_chunks = first_chunk == SCAN_ITSELF ? 0 : e->n_chunks - first_chunk;
    e->pieces[e->n_pieces++] = (piece){start, end, doc, first_chunk, n_chunks, ends_doc};
    return 1;
}

/* The sequential part: every document's chunks, scanned from its start, recorded and cut into pieces. */
static int cut_pieces(cllm_encoder *e) {
    cllm_pretok pretok = cllm_tokenizer_pretokenizer(e->tok);
    e->n_pieces = e->n_chunks = 0;
    for (size_t d = 0; d < e->n_docs; d++) {
        size_t start = e->doc_start[d], end = d + 1 < e->n_docs ? e->doc_start[d + 1] : e->n_bytes;
        if (end - start <= WHOLE_DOC_BYTES) { /* a piece of its own, scanned by the thread that encodes it */
            if (!add_piece(e, start, end, d, 1, SCAN_ITSELF)) return 0;
            continue;
        }
        const uint8_t *s = e->bytes + start;
        size_t n = end - start, from = 0, first = e->n_chunks;
        for (size_t i = 0; i < n;) {
            i = cllm_pretok_chunk_end(pretok, s, n, i);
            if (e->n_chunks == e->chunks_cap &&
                !grow((void **)&e->chunk_end, &e->chunks_cap, e->n_chunks + 1, sizeof *e->chunk_end))
                return 0;
            e->chunk_end[e->n_chunks++] = (uint32_t)(i - from);
            if (i - from >= PIECE_BYTES && i < n) {
                if (!add_piece(e, start + from, start + i, d, 0, first)) return 0;
                from = i;
                first = e->n_chunks;
            }
        }
        if (!add_piece(e, start + from, end, d, 1, first)) return 0;
    }
    return 1;
}

/* Piece p's ids into out (room for end - start ids); returns how many. */
static size_t encode_piece(const cllm_encoder *e, memo *m, const piece *p, int32_t *out) {
    cllm_pretok pretok = cllm_tokenizer_pretokenizer(e->tok);
    const uint8_t *s = e->bytes + p->start;
    if (p->first_chunk == SCAN_ITSELF) { /* a whole document: its scan from 0, here */
        size_t n = p->end - p->start, k = 0;
        for (size_t i = 0; i < n;) {
            size_t end = cllm_pretok_chunk_end(pretok, s, n, i);
            k += encode_chunk(e->tok, m, s + i, end - i, out + k);
            i = end;
        }
        return k;
    }
    const uint32_t *ends = e->chunk_end + p->first_chunk;
    size_t k = 0, i = 0;
    for (size_t c = 0; c < p->n_chunks; c++) {
        k += encode_chunk(e->tok, m, s + i, ends[c] - i, out + k);
        i = ends[c];
    }
    return k;
}

static cllm_status encode_batch(cllm_encoder *e) {
    if (e->n_docs == 0) return CLLM_OK;
    /* A piece of b bytes makes at most b ids, and piece p's room starts at its first byte plus one EOT slot
       per document before it: the pieces write in parallel without overlapping. */
    if (!cut_pieces(e) || !grow((void **)&e->ids, &e->ids_cap, e->n_bytes + e->n_docs, sizeof *e->ids)) return oom();
    size_t *counts = malloc(e->n_pieces * sizeof *counts);
    if (!counts) return oom();
    long n_pieces = (long)e->n_pieces;
#pragma omp parallel for num_threads(e->threads) schedule(dynamic, 1)
    for (long p = 0; p < n_pieces; p++) {
        const piece *pc = &e->pieces[p];
        counts[p] = encode_piece(e, &e->memos[omp_get_thread_num()], pc, e->ids + pc->start + pc->doc);
    }
    int failed = 0;
    for (int i = 0; i < e->threads; i++) failed |= e->memos[i].failed;
    if (failed) {
        free(counts);
        return oom();
    }
    size_t k = 0;
    int32_t eot = cllm_tokenizer_eot(e->tok);
    for (size_t p = 0; p < e->n_pieces; p++) {
        const piece *pc = &e->pieces[p];
        memmove(e->ids + k, e->ids + pc->start + pc->doc, counts[p] * sizeof *e->ids);
        k += counts[p];
        if (pc->ends_doc) e->ids[k++] = eot;
    }
    free(counts);
    e->n_bytes = e->n_docs = 0;
    return e->sink(e->sink_ctx, e->ids, k);
}

cllm_status cllm_encoder_add(cllm_encoder *e, const uint8_t *bytes, size_t n) {
    if (!grow((void **)&e->bytes, &e->bytes_cap, e->n_bytes + n + 1, 1) || /* never NULL once a document came */
        !grow((void **)&e->doc_start, &e->docs_cap, e->n_docs + 1, sizeof *e->doc_start))
        return oom();
    e->doc_start[e->n_docs++] = e->n_bytes;
    if (n) memcpy(e->bytes + e->n_bytes, bytes, n); /* an empty document may come before any byte */
    e->n_bytes += n;
    return e->n_bytes >= e->batch_bytes ? encode_batch(e) : CLLM_OK;
}

cllm_status cllm_encoder_flush(cllm_encoder *e) { return encode_batch(e); }
