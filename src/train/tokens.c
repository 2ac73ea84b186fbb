/* A run's token stream (include/cllm/train/tokens.h). */
#include "cllm/train/tokens.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cllm/data/encoder.h"
#include "cllm/train/runfolder.h"

static cllm_status oom(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory"); }

static void progress(const cllm_run_tokens_options *o, uint64_t done, uint64_t total) {
    if (o->progress.fn) o->progress.fn(o->progress.ctx, done, total);
}

static void note_corpus(cllm_run_tokens *rt, const cllm_corpus_reader *r) {
    rt->corpus_hash = r->hash;
    rt->corpus_bytes = r->n_bytes;
    rt->n_docs = r->n_docs;
    rt->n_files_read = r->n_files_read;
    rt->n_binary_skipped = r->n_binary_skipped;
}

cllm_status cllm_run_tokenizer_train(const cllm_corpus_files *files, const char *const *paths, int n_paths,
                                     int vocab, cllm_pretok pretok, const cllm_run_tokens_options *o,
                                     cllm_tokenizer **tok, cllm_run_tokens *rt) {
    *tok = NULL;
    cllm_tokenizer_trainer *b;
    cllm_status s = cllm_tokenizer_trainer_create(vocab, pretok, o->stop, &b);
    if (s != CLLM_OK) return s;
    cllm_corpus_reader r;
    cllm_corpus_reader_init(&r, files, o->stop);
    for (;;) {
        cllm_corpus_doc doc;
        if ((s = cllm_corpus_reader_next(&r, &doc)) != CLLM_OK || !doc.bytes) break;
        if ((s = cllm_tokenizer_trainer_add(b, doc.bytes, doc.length)) != CLLM_OK) break;
        progress(o, r.n_bytes, files->total_bytes);
    }
    if (s == CLLM_OK) s = cllm_corpus_no_text(&r, paths, n_paths);
    note_corpus(rt, &r);
    cllm_corpus_reader_free(&r);
    if (s != CLLM_OK) {
        cllm_tokenizer_trainer_free(b);
        return s;
    }
    return cllm_tokenizer_trainer_finish(b, tok);
}

static void use_cache(cllm_run_tokens *rt) {
    rt->ids = rt->cache.ids;
    rt->id_bytes = rt->cache.info.id_bytes;
    rt->n_tokens = rt->cache.info.n_tokens;
}

static char *tokens_path(const char *dir) { return cllm_path_join(dir, CLLM_RUN_TOKENS_FILE); }

cllm_status cllm_run_tokens_build(const char *dir, const cllm_corpus_files *files, const cllm_tokenizer *tok,
                                  const cllm_run_tokens_options *o, cllm_run_tokens *rt) {
    char *path = tokens_path(dir);
    if (!path) return oom();
    int have_figures = rt->corpus_bytes > 0;
    uint64_t hash = rt->corpus_hash, bytes = rt->corpus_bytes;
    cllm_status s = rt->pending ? CLLM_OK : cllm_token_cache_begin(path, cllm_tokenizer_vocab_size(tok), &rt->pending);
    free(path);
    if (s == CLLM_OK) s = cllm_token_cache_encode(rt->pending, files, tok, o->threads, o->stop, &o->progress, &rt->cache);
    if (s != CLLM_OK) {
        cllm_token_cache_abort(rt->pending);
        rt->pending = NULL;
        return s;
    }
    const cllm_token_cache_info *in = &rt->cache.info;
    if (have_figures && (in->corpus_hash != hash || in->corpus_bytes != bytes))
        return cllm_fail(CLLM_ERR_INPUT, "the training data changed while it was read (%llu bytes, then %llu): "
                         "start again once it stays put", (unsigned long long)bytes,
                         (unsigned long long)in->corpus_bytes);
    rt->corpus_hash = in->corpus_hash;
    rt->corpus_bytes = in->corpus_bytes;
    rt->n_docs = in->n_docs;
    use_cache(rt);
    return CLLM_OK;
}

cllm_status cllm_run_tokens_begin(const char *dir, int vocab, cllm_run_tokens *rt) {
    char *path = tokens_path(dir);
    if (!path) return oom();
    cllm_status s = cllm_token_cache_begin(path, vocab, &rt->pending);
    free(path);
    return s;
}

cllm_status cllm_run_tokens_commit(cllm_run_tokens *rt) {
    if (!rt->pending) return CLLM_OK;
    cllm_token_cache_writer *w = rt->pending;
    rt->pending = NULL;
    return cllm_token_cache_commit(w);
}

/* The hash of the data as it is on disk now, read once. */
static cllm_status hash_files(const cllm_corpus_files *files, const cllm_run_tokens_options *o, cllm_run_tokens *rt) {
    cllm_corpus_reader r;
    cllm_corpus_reader_init(&r, files, o->stop);
    cllm_status s;
    for (;;) {
        cllm_corpus_doc doc;
        if ((s = cllm_corpus_reader_next(&r, &doc)) != CLLM_OK || !doc.bytes) break;
        progress(o, r.n_bytes, files->total_bytes);
    }
    note_corpus(rt, &r);
    cllm_corpus_reader_free(&r);
    return s;
}

static cllm_status changed(cllm_run_tokens *rt) {
    rt->changed = 1;
    return cllm_fail(CLLM_ERR_INPUT, "the data changed since run.json was written");
}

typedef struct { int32_t *v; size_t n, cap; } id_vec;

static cllm_status append_ids(void *ctx, const int32_t *ids, size_t n) {
    id_vec *a = ctx;
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 1 << 16;
        while (cap < a->n + n) cap *= 2;
        int32_t *p = realloc(a->v, cap * sizeof *p);
        if (!p) return oom();
        a->v = p;
        a->cap = cap;
    }
    memcpy(a->v + a->n, ids, n * sizeof *ids);
    a->n += n;
    return CLLM_OK;
}

cllm_status cllm_run_tokens_in_memory(const cllm_corpus_files *files, const cllm_tokenizer *tok,
                                    const cllm_run_tokens_options *o, cllm_run_tokens *rt) {
    id_vec a = {NULL, 0, 0};
    cllm_encoder *e;
    cllm_status s = cllm_encoder_create(tok, o->threads, 0, append_ids, &a, &e);
    cllm_corpus_reader r;
    cllm_corpus_reader_init(&r, files, o->stop);
    while (s == CLLM_OK) {
        cllm_corpus_doc doc;
        if ((s = cllm_corpus_reader_next(&r, &doc)) != CLLM_OK || !doc.bytes) break;
        s = cllm_encoder_add(e, doc.bytes, doc.length);
        progress(o, r.n_bytes, files->total_bytes);
    }
    if (s == CLLM_OK) s = cllm_encoder_flush(e);
    cllm_encoder_free(e);
    note_corpus(rt, &r);
    cllm_corpus_reader_free(&r);
    if (s != CLLM_OK) {
        free(a.v);
        return s;
    }
    rt->memory = a.v;
    rt->ids = a.v;
    rt->id_bytes = 4;
    rt->n_tokens = a.n;
    return CLLM_OK;
}

/* The cache in the folder, if it is whole and was made from (hash, bytes) with this tokenizer; else a note. */
static int open_matching(const char *path, const cllm_tokenizer *tok, uint64_t expect_hash, uint64_t expect_bytes,
                         cllm_run_tokens *rt) {
    if (access(path, F_OK) != 0) {
        snprintf(rt->note, sizeof rt->note, "%s is missing", path);
        return 0;
    }
    cllm_token_cache_info want = {.corpus_hash = expect_hash, .corpus_bytes = expect_bytes};
    if (cllm_token_cache_open(path, cllm_tokenizer_vocab_size(tok), cllm_tokenizer_eot(tok), &rt->cache) != CLLM_OK) {
        snprintf(rt->note, sizeof rt->note, "%s", cllm_last_error());
        return 0;
    }
    char why[96];
    want.n_docs = rt->cache.info.n_docs; /* checked against the data itself once it is read */
    if (cllm_token_cache_tokenizer_hash(tok, &want.tokenizer_hash) != CLLM_OK ||
        !cllm_token_cache_matches(&rt->cache.info, &want, why, sizeof why)) {
        snprintf(rt->note, sizeof rt->note, "%s is stale (%s)", path, why);
        cllm_token_cache_close(&rt->cache);
        return 0;
    }
    return 1;
}

cllm_status cllm_run_tokens_reuse(const char *dir, const cllm_corpus_files *files, const cllm_tokenizer *tok,
                                  uint64_t expect_hash, uint64_t expect_bytes, int may_write,
                                  const cllm_run_tokens_options *o, cllm_run_tokens *rt) {
    char *path = tokens_path(dir);
    if (!path) return oom();
    int usable = open_matching(path, tok, expect_hash, expect_bytes, rt);
    free(path);
    cllm_status s;
    if (usable) {
        s = hash_files(files, o, rt);
        if (s != CLLM_OK) return s;
        if (rt->corpus_hash != expect_hash || rt->corpus_bytes != expect_bytes) return changed(rt);
        if (rt->n_docs != rt->cache.info.n_docs) {
            /* same bytes, cut into other documents (files split or joined): other EOTs, so other tokens */
            snprintf(rt->note, sizeof rt->note, "%s/%s is stale (made from %llu documents, the data has %zu now)",
                     dir, CLLM_RUN_TOKENS_FILE, (unsigned long long)rt->cache.info.n_docs, rt->n_docs);
            cllm_token_cache_close(&rt->cache);
        } else {
            use_cache(rt);
            return CLLM_OK;
        }
    }
    if (may_write) {
        rt->corpus_bytes = 0; /* no figures to agree with: run.json's are checked below */
        s = cllm_run_tokens_build(dir, files, tok, o, rt);
        if (s == CLLM_OK && (rt->corpus_hash != expect_hash || rt->corpus_bytes != expect_bytes)) {
            cllm_token_cache_abort(rt->pending);
            rt->pending = NULL;
            cllm_token_cache_close(&rt->cache);
            rt->ids = NULL;
            return changed(rt);
        }
        return s == CLLM_OK ? cllm_run_tokens_commit(rt) : s;
    }
    s = cllm_run_tokens_in_memory(files, tok, o, rt);
    if (s == CLLM_OK && (rt->corpus_hash != expect_hash || rt->corpus_bytes != expect_bytes)) return changed(rt);
    return s;
}

void cllm_run_tokens_release(const cllm_run_tokens *rt, size_t from, size_t to) {
    if (rt->cache.map) cllm_token_cache_release(&rt->cache, from, to);
}

void cllm_run_tokens_free(cllm_run_tokens *rt) {
    if (!rt) return;
    cllm_token_cache_abort(rt->pending);
    cllm_token_cache_close(&rt->cache);
    free(rt->memory);
    memset(rt, 0, sizeof *rt);
}
