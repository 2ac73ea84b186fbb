/* `cllm bench encode`: MB/s of encoding a corpus into its token stream, on
 * one thread and on all OMP_NUM_THREADS threads (the parallel encoder that
 * training uses), next to encoding document by document with
 * cllm_tokenizer_encode (the path before the parallel encoder) measured in
 * the same run, interleaved; plus the tokenizer's training time. The corpus
 * is read into memory first, so that only encoding is timed, not the disk. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cllm/base/common.h"
#include "cllm/cli/commands.h"
#include "cllm/cli/flags.h"
#include "cllm/data/corpus.h"
#include "cllm/data/encoder.h"
#include "cllm/data/tokenizer.h"

enum { PATH_ONE_BY_ONE, PATH_PARALLEL_1, PATH_PARALLEL_ALL, N_PATHS };

typedef struct { uint64_t hash; size_t n; } digest;

/* An order-dependent sum (id times position), cheap enough not to be what is timed: the sink runs on one
   thread between batches, so a costly one would hide the encoder's parallel part. */
static cllm_status digest_ids(void *ctx, const int32_t *ids, size_t n) {
    digest *d = ctx;
    uint64_t h = d->hash, at = d->n + 1;
    for (size_t i = 0; i < n; i++) h += (uint64_t)(uint32_t)ids[i] * (at + i);
    d->hash = h;
    d->n += n;
    return CLLM_OK;
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds for one encoding of the corpus on the path (*cpu: CPU seconds of all threads); *out the stream's
   digest. */
static double encode_once(const cllm_corpus *c, const cllm_tokenizer *t, int path, int threads, digest *out,
                          double *cpu) {
    *out = (digest){CLLM_FNV1A64_OFFSET, 0};
    double t0 = cllm_now(), c0 = cpu_seconds();
    if (path == PATH_ONE_BY_ONE) {
        int32_t eot = cllm_tokenizer_eot(t);
        for (size_t d = 0; d < c->n_docs; d++) {
            int32_t *ids;
            size_t n;
            if (cllm_tokenizer_encode(t, c->bytes + c->docs[d].offset, c->docs[d].length, &ids, &n) != CLLM_OK) return -1;
            digest_ids(out, ids, n);
            digest_ids(out, &eot, 1);
            free(ids);
        }
    } else {
        cllm_encoder *e;
        if (cllm_encoder_create(t, path == PATH_PARALLEL_1 ? 1 : threads, 0, digest_ids, out, &e) != CLLM_OK) return -1;
        cllm_status s = CLLM_OK;
        for (size_t d = 0; s == CLLM_OK && d < c->n_docs; d++)
            s = cllm_encoder_add(e, c->bytes + c->docs[d].offset, c->docs[d].length);
        if (s == CLLM_OK) s = cllm_encoder_flush(e);
        cllm_encoder_free(e);
        if (s != CLLM_OK) return -1;
    }
    *cpu = cpu_seconds() - c0;
    return cllm_now() - t0;
}

int cllm_bench_encode(int argc, char **argv) {
    int vocab = CLLM_TOKENIZER_DEFAULT_VOCAB, repeats = 5, json = 0;
    const cllm_flag flags[] = {
        {"vocab", CLLM_FLAG_INT, &vocab, "N", "tokenizer vocabulary trained on DATA (default 512)",
         CLLM_TOKENIZER_MIN_VOCAB, CLLM_TOKENIZER_MAX_VOCAB, NULL},
        {"repeats", CLLM_FLAG_INT, &repeats, "R", "encodings per path, interleaved; the median is reported (default 5)",
         1, 1000, NULL},
        {"json", CLLM_FLAG_BOOL, &json, NULL, "print one JSON object instead of a table", 1, 0, NULL},
    };
    const cllm_command_spec spec = {
        "bench encode", "[DATA...]",
        "Trains a tokenizer on DATA (files or folders; none: the built-in corpus), then times encoding all of it "
        "into the token stream training uses: document by document with the one-call encoder, and with the "
        "parallel encoder on 1 and on OMP_NUM_THREADS threads, R times each, interleaved; prints median MB/s, the "
        "ratios, and whether every path gave the same ids. DATA is read into memory first.",
        flags, (int)(sizeof flags / sizeof flags[0]), 0, -1};
    char **pos = malloc(((size_t)argc + 1) * sizeof *pos);
    if (!pos) return 1;
    int npos = 0;
    int rc = cllm_flags_exit_code(cllm_flags_parse(&spec, argc, argv, pos, &npos));
    if (rc >= 0) {
        free(pos);
        return rc;
    }
    cllm_corpus c;
    cllm_status s = cllm_corpus_load((const char *const *)pos, npos, &c);
    free(pos);
    if (s != CLLM_OK) {
        fprintf(stderr, "cllm bench encode: %s\n", cllm_last_error());
        return (int)s;
    }
    cllm_tokenizer *t = NULL;
    double t0 = cllm_now();
    s = cllm_tokenizer_train(&c, vocab, &t);
    double train_s = cllm_now() - t0;
    if (s != CLLM_OK) {
        fprintf(stderr, "cllm bench encode: %s\n", cllm_last_error());
        cllm_corpus_free(&c);
        return (int)s;
    }
    int threads = omp_get_max_threads();
    double *times = malloc(2 * (size_t)N_PATHS * (size_t)repeats * sizeof *times), *cpus = times + N_PATHS * repeats;
    digest first[N_PATHS];
    int same = 1;
    for (int r = 0; r < repeats && times; r++)
        for (int p = 0; p < N_PATHS; p++) {
            digest d;
            double sec = encode_once(&c, t, p, threads, &d, &cpus[p * repeats + r]);
            if (sec < 0) {
                fprintf(stderr, "cllm bench encode: %s\n", cllm_last_error());
                free(times);
                cllm_tokenizer_free(t);
                cllm_corpus_free(&c);
                return 1;
            }
            times[p * repeats + r] = sec;
            if (r == 0) first[p] = d;
            same &= d.hash == first[0].hash && d.n == first[0].n;
        }
    if (!times) return 1;
    double mbs[N_PATHS], cpu_mbs[N_PATHS], mb = (double)c.n_bytes / 1e6;
    for (int p = 0; p < N_PATHS; p++) {
        mbs[p] = mb / cllm_median(times + p * repeats, repeats);
        cpu_mbs[p] = mb / cllm_median(cpus + p * repeats, repeats);
    }
    static const char *const names[N_PATHS] = {"one call per document", "parallel encoder, 1 thread",
                                               "parallel encoder, all threads"};
    if (json) {
        printf("{\"bytes\":%zu,\"documents\":%zu,\"tokens\":%zu,\"vocab\":%d,\"threads\":%d,\"repeats\":%d,"
               "\"tokenizer_train_s\":%.3f,\"one_by_one_mbs\":%.2f,\"parallel_1_mbs\":%.2f,\"parallel_all_mbs\":%.2f,"
               "\"one_by_one_mb_per_cpu_s\":%.2f,\"parallel_1_mb_per_cpu_s\":%.2f,\"parallel_all_mb_per_cpu_s\":%.2f,"
               "\"same_ids\":%s}\n",
               c.n_bytes, c.n_docs, first[0].n, cllm_tokenizer_vocab_size(t), threads, repeats, train_s, mbs[0], mbs[1],
               mbs[2], cpu_mbs[0], cpu_mbs[1], cpu_mbs[2], same ? "true" : "false");
    } else {
        printf("cllm bench encode: %.1f MB in %zu documents, %zu tokens (vocab %d), median of %d interleaved runs\n",
               mb, c.n_docs, first[0].n, cllm_tokenizer_vocab_size(t), repeats);
        printf("tokenizer training: %.2f s (%.1f MB/s, one thread)\n\n", train_s, mb / train_s);
        printf("%-32s %8s %10s %8s %14s\n", "path", "threads", "MB/s", "ratio", "MB per CPU-s");
        for (int p = 0; p < N_PATHS; p++)
            printf("%-32s %8d %10.1f %8.2f %14.1f\n", names[p], p == PATH_PARALLEL_ALL ? threads : 1, mbs[p],
                   mbs[p] / mbs[0], cpu_mbs[p]);
        printf("\nsame ids on every path: %s\n", same ? "yes" : "NO");
    }
    free(times);
    cllm_tokenizer_free(t);
    cllm_corpus_free(&c);
    return same ? 0 : 1;
}
