/* The data-parallel engine. Design, determinism and deadlock-freedom proofs:
 * docs/ENGINE.md. In short:
 *  - micro-batch i is computed into a pooled buffer; the buffers are combined
 *    along a fixed pairwise tree over micro-batch indices, node (lo, hi) =
 *    node (lo, mid) + node (mid, hi), the result in the left child's buffer;
 *  - a node whose two children are complete is merged by one OpenMP task per
 *    segment (streaming) or after all compute (streaming off); a worker that
 *    finds no free buffer claims merge segments itself;
 *  - the root is never merged: each thread, as the owner of its segments,
 *    folds the root's two children straight into the update;
 *  - the only atomics are per-node counters, per-buffer busy flags and
 *    per-leaf done flags: hand-over points, never gradient or parameter data;
 *  - with several ranks (comm->size > 1), each rank computes one node of the
 *    same global tree (its block of micro-batch indices), the spans move as
 *    data, and each rank folds the upper tree over the span it owns ("ranks"
 *    below). */
#include "cllm/dist/engine.h"

#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "cllm/kernels/kernels.h"
#include "cllm/dist/segments.h"

typedef struct {
    int lo, mid, hi;
    int parent;      /* internal node index, -1 for the root */
    int left, right; /* child node index, or -(leaf + 1) for a leaf */
} tree_node;

/* Floats per chunk of the owners' fold of unmerged nodes: a multiple of
 * CLLM_SQ_CHUNK (so the sums of squares keep their grid), small enough that
 * one temporary per tree level stays in L1. */
#define FOLD_CHUNK 512

/* Per-node hand-over counters, one cache line each so that two nodes being
 * merged at once do not bounce a line between threads. */
typedef struct {
    _Alignas(CLLM_ALIGN) int ready; /* children complete: 0, 1, 2 */
    int next_seg;                   /* next segment to claim for the merge */
    int segs_done;                  /* segments merged */
    double ready_at, done_at;
} node_state;

/* Per-thread accounting, written only by its thread (plain stores). */
typedef struct {
    _Alignas(CLLM_ALIGN) double compute;
    double zero, merge, update;
    double fold_end; /* when this owner's fold of unmerged nodes ended (0: none) */
    int64_t atomics, extra, waits;
} thread_acct;

struct cllm_engine {
    size_t n_params;
    int M, n_threads, spt, S, NB, streaming; /* micro-batches, workers, segments per worker, segments, buffers */
    int team_threads; /* threads per worker's team (nested OpenMP); 1: flat */
    int worker_level; /* omp_get_level() of the workers during a step */
    int compute_overwrites; /* the job writes whole buffers: no zeroing */
    int n_nodes, root; /* internal nodes (M - 1), root = n_nodes - 1; root = -1 when M == 1 */
    tree_node *nodes;
    int *leaf_parent;
    int *room; /* room[L]: how far past the lowest incomplete leaf L a worker may start */
    cllm_segment *segs;
    float *buf_mem;
    float **bufs;
    int fold_levels; /* temporaries per thread for the owners' fold */
    float *fold_tmp; /* threads x team_threads x fold_levels x FOLD_CHUNK */
    const cllm_kernel_table *kern;
    const cllm_comm *comm;

    /* ranks: this rank computes global micro-batches [first_micro,
     * first_micro + M) of M_global; block_lo/hi: every rank's block, nodes of
     * the global tree in index order. Segments are S_local per rank's span,
     * S = R x S_local in all; this rank updates [own_seg, own_seg + S_local). */
    int R, M_global, first_micro, S_local, own_seg;
    int *block_lo, *block_hi;
    size_t own_begin, own_end;
    float *recv; /* R x own length: every rank's partial sum of this rank's span */
    int *span_folded; /* per destination rank: segments of its span folded this step (hand-over counters) */
    int *span_sent;   /* per destination rank: sent (primary thread only) */
    int n_sent;
    cllm_status send_status; /* the first failed send, on the primary thread */
    double comm_time; /* seconds in the step's exchanges, after the ranks' agreement */
    double wait_time; /* seconds in the agreement: waiting for the slowest rank's compute */
    uint64_t sent_before; /* comm->bytes_sent at the step's start */

    /* per-step state */
    node_state *ns;
    int *buf_busy, *leaf_buf, *leaf_done, *pending;
    int post_phase;
    float *losses;
    double *compute_end, *sq, *sort_scratch;
    float scale;
    double reduced_at; /* gradient fully reduced (and its norm known), seconds since t0 */
    thread_acct *acct;
    cllm_engine_node_trace *trace;
    double t0;
    const cllm_engine_job *job;
    int failed;              /* a compute of this step failed: no update */
    cllm_status fail_status; /* the first failure's status and message */
    char fail_msg[512];
};

/* ---- the tree ---------------------------------------------------------- */

static int largest_pow2_below(int n) { /* n >= 2 */
    int p = 1;
    while (p * 2 < n) p *= 2;
    return p;
}

/* Builds node (lo, hi) and its subtree children first; returns its index, or
 * -(leaf + 1) for a leaf. */
static int build_tree(cllm_engine *e, int lo, int hi, int *next) {
    if (hi - lo == 1) return -(lo + 1);
    int mid = lo + largest_pow2_below(hi - lo);
    int left = build_tree(e, lo, mid, next);
    int right = build_tree(e, mid, hi, next);
    int id = (*next)++;
    e->nodes[id] = (tree_node){lo, mid, hi, -1, left, right};
    int children[2] = {left, right};
    for (int c = 0; c < 2; c++) {
        if (children[c] < 0) e->leaf_parent[-children[c] - 1] = id;
        else e->nodes[children[c]].parent = id;
    }
    return id;
}

/* Buffers that completed subtrees hold once every possible merge is done,
 * when leaves [0, L) are complete: the maximal nodes covering [0, L), the
 * root counting as its two children because it is never merged. */
static int held_by_prefix(int lo, int hi, int L, int is_root) {
    if (L <= lo) return 0;
    if (L >= hi && !is_root) return 1;
    if (hi - lo == 1) return 1;
    int mid = lo + largest_pow2_below(hi - lo);
    return held_by_prefix(lo, mid, L, 0) + held_by_prefix(mid, hi, L, 0);
}

/* ---- atomics (all counted) --------------------------------------------- */

static inline int atomic_inc(int *x, thread_acct *a) {
    int old;
#pragma omp atomic capture seq_cst
    old = (*x)++;
    a->atomics++;
    return old;
}

static inline int atomic_swap_one(int *x, thread_acct *a) {
    int old;
#pragma omp atomic capture seq_cst
    {
        old = *x;
        *x = 1;
    }
    a->atomics++;
    return old;
}

/* Constant stores only: gcc 12 flags the value parameter of a generic
 * store as unused under `omp atomic write`. */
static inline void atomic_store_0(int *x, thread_acct *a) {
#pragma omp atomic write seq_cst
    *x = 0;
    a->atomics++;
}

static inline void atomic_store_1(int *x, thread_acct *a) {
#pragma omp atomic write seq_cst
    *x = 1;
    a->atomics++;
}

/* Polling reads are not hand-overs; only the task's acquire of a node's
 * readiness is, and merge_segment counts that one itself. */
static inline int atomic_load(const int *x) {
    int v;
#pragma omp atomic read seq_cst
    v = *x;
    return v;
}

static inline void cpu_relax(void) { sched_yield(); }

/* The calling worker: its thread number at the workers' level, also when
 * the caller is a thread of a region its team opened (a team member never
 * runs the engine's own code today, but the worker's account and scratch
 * then stay its worker's). */
static int worker_id(const cllm_engine *e) { return omp_get_ancestor_thread_num(e->worker_level); }

static thread_acct *my_acct(cllm_engine *e) { return &e->acct[worker_id(e)]; }

/* ---- teams ------------------------------------------------------------- */

/* left += right over n floats on the calling worker's team: element-wise,
 * so any split gives the same bits. Blocks of whole cache lines. */
static void team_sum(const cllm_engine *e, float *left, const float *right, size_t n) {
    size_t lines = (n + 15) / 16;
    int threads = e->team_threads > 1 && n >= ((size_t)1 << 16) ? e->team_threads : 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t lo = lines * (size_t)t / (size_t)nt * 16, hi = lines * (size_t)(t + 1) / (size_t)nt * 16;
        if (hi > n) hi = n;
        if (lo < hi) {
            const float *srcs[2] = {left + lo, right + lo};
            e->kern->sum(left + lo, srcs, 2, hi - lo);
        }
    }
}

/* ---- merging ----------------------------------------------------------- */

static void child_complete(cllm_engine *e, int parent);

static void node_complete(cllm_engine *e, int n, thread_acct *a) {
    const tree_node *t = &e->nodes[n];
    e->ns[n].done_at = cllm_now() - e->t0;
    atomic_store_0(&e->buf_busy[e->leaf_buf[t->mid]], a); /* right child's buffer back to the pool */
    child_complete(e, t->parent);
}

/* Claims one segment of node n's merge and folds right into left there.
 * Returns 0 when every segment was already claimed. `extra` marks claims by
 * a helping worker, which a task would otherwise have made. */
static int merge_segment(cllm_engine *e, int n, int extra) {
    thread_acct *a = my_acct(e);
    /* Acquire: makes both children's gradients visible to this thread. */
    int ready = atomic_load(&e->ns[n].ready);
    a->atomics++;
    int s = ready == 2 ? atomic_inc(&e->ns[n].next_seg, a) : e->S;
    if (extra) a->extra += ready == 2 ? 2 : 1; /* the node's task does its own read and claim regardless */
    int worked = 0;
    if (s < e->S) {
        double t = cllm_now();
        const tree_node *tn = &e->nodes[n];
        const cllm_segment *seg = &e->segs[s];
        float *left = e->bufs[e->leaf_buf[tn->lo]] + seg->begin;
        const float *right = e->bufs[e->leaf_buf[tn->mid]] + seg->begin;
        team_sum(e, left, right, seg->end - seg->begin);
        a->merge += cllm_now() - t;
        if (atomic_inc(&e->ns[n].segs_done, a) == e->S - 1) node_complete(e, n, a);
        worked = 1;
    }
    return worked;
}

static void spawn_merge(cllm_engine *e, int n) {
    e->ns[n].ready_at = cllm_now() - e->t0;
    for (int s = 0; s < e->S; s++) {
#pragma omp task firstprivate(e, n)
        merge_segment(e, n, 0);
    }
}

static int all_leaves_done(cllm_engine *e) {
    for (int i = e->M - 1; i >= 0; i--)
        if (!atomic_load(&e->leaf_done[i])) return 0;
    return 1;
}

/* One child of `parent` is complete. The thread completing the second child
 * starts the parent's merge (the root is left to the owners). Once every
 * micro-batch is computed there is no compute left to hide a merge behind:
 * the node is left to the owners, who fold all unmerged nodes in one pass
 * (each buffer read once) instead of one read-modify-write pass per level. */
static void child_complete(cllm_engine *e, int parent) {
    if (parent < 0) return;
    thread_acct *a = my_acct(e);
    if (atomic_inc(&e->ns[parent].ready, a) != 1 || parent == e->root) return;
    if (e->streaming && all_leaves_done(e)) {
        e->ns[parent].ready_at = cllm_now() - e->t0;
        return;
    }
    if (e->streaming || atomic_load(&e->post_phase)) spawn_merge(e, parent);
}

/* A starved worker does merge work itself: libgomp's taskyield runs no
 * tasks, and a worker inside the loop reaches no other scheduling point.
 * Returns whether it found any. */
static int help_merge(cllm_engine *e) {
    int found = 0;
    for (int n = 0; n < e->n_nodes; n++) {
        if (n == e->root) continue;
        if (atomic_load(&e->ns[n].ready) != 2 || atomic_load(&e->ns[n].next_seg) >= e->S) continue;
        while (merge_segment(e, n, 1)) found = 1;
    }
    return found;
}

/* ---- workers ------------------------------------------------------------ */

/* Micro-batch i may start only while i < L + room[L], L the lowest incomplete
 * leaf: this bounds the buffers in use (docs/ENGINE.md, "Why it cannot
 * deadlock"). *low caches L; it only grows. */
static void wait_for_window(cllm_engine *e, int i, int *low) {
    thread_acct *a = my_acct(e);
    for (;;) {
        while (*low < e->M && atomic_load(&e->leaf_done[*low])) (*low)++;
        if (i < *low + e->room[*low]) return;
        a->waits++;
        if (!help_merge(e)) cpu_relax();
    }
}

static int acquire_buffer(cllm_engine *e, int i) {
    thread_acct *a = my_acct(e);
    for (;;) {
        for (int k = 0; k < e->NB; k++) {
            /* Start at i's own slot: with as many buffers as micro-batches no
             * two workers ever race for a flag. */
            int b = (i + k) % e->NB;
            if (atomic_load(&e->buf_busy[b])) continue;
            if (atomic_swap_one(&e->buf_busy[b], a) == 0) return b;
            a->extra++;
        }
        a->waits++;
        if (!help_merge(e)) cpu_relax();
    }
}

/* The first failing worker keeps its message (cllm_fail's buffer is its
 * thread's own); the step goes on to its end, so no worker waits forever on
 * a buffer the failed one would have handed over, and the owners skip the
 * update. */
static void record_failure(cllm_engine *e, cllm_status st) {
    int first;
#pragma omp atomic capture seq_cst
    {
        first = e->failed;
        e->failed = 1;
    }
    if (first) return;
    e->fail_status = st;
    snprintf(e->fail_msg, sizeof e->fail_msg, "%s", cllm_last_error());
}

static void compute_micro(cllm_engine *e, int i, int *low) {
    thread_acct *a = my_acct(e);
    wait_for_window(e, i, low);
    int b = acquire_buffer(e, i);
    e->leaf_buf[i] = b;
    double t = cllm_now();
    if (!e->compute_overwrites) memset(e->bufs[b], 0, e->n_params * sizeof(float));
    double t1 = cllm_now();
    cllm_status st = e->job->compute(e->job->ctx, e->first_micro + i, worker_id(e), e->bufs[b], &e->losses[i]);
    if (st != CLLM_OK) record_failure(e, st);
    double t2 = cllm_now();
    a->zero += t1 - t;
    a->compute += t2 - t1;
    e->compute_end[i] = t2 - e->t0;
    atomic_store_1(&e->leaf_done[i], a);
    child_complete(e, e->leaf_parent[i]);
}

/* Streaming off: merges that became ready during compute were left for now.
 * Collected before any is spawned, so that a merge completing meanwhile and
 * spawning its parent cannot make the parent appear twice. */
static void spawn_pending(cllm_engine *e) {
    int np = 0;
    for (int n = 0; n < e->n_nodes; n++)
        if (n != e->root && atomic_load(&e->ns[n].ready) == 2) e->pending[np++] = n;
#pragma omp atomic write seq_cst
    e->post_phase = 1;
    for (int p = 0; p < np; p++) spawn_merge(e, e->pending[p]);
}

/* ---- the owners' update -------------------------------------------------- */

/* After the barrier a non-root node is either fully merged by tasks or was
 * never started (left to the owners, see child_complete). */
static int node_merged(const cllm_engine *e, int n) { return e->ns[n].segs_done == e->S; }

/* A child whose value sits complete in one buffer: a leaf or a merged node. */
static int child_direct(const cllm_engine *e, int code) { return code < 0 || node_merged(e, code); }

static const float *child_buffer(const cllm_engine *e, int code) {
    int leaf = code < 0 ? -code - 1 : e->nodes[code].lo;
    return e->bufs[e->leaf_buf[leaf]];
}

/* Value of a child over [off, off + len) (len <= FOLD_CHUNK): its buffer if
 * it is complete, else left + right evaluated recursively into tmp level
 * `lvl` (the left subtree uses levels above lvl, the right one levels above
 * lvl + 1, so neither overwrites the other's result). Element for element
 * this is the same left + right as the tasks' merges, so the bits are too. */
static const float *fold_child(const cllm_engine *e, int code, size_t off, size_t len, int lvl, float *tmp) {
    if (child_direct(e, code)) return child_buffer(e, code) + off;
    const tree_node *t = &e->nodes[code];
    const float *srcs[2] = {fold_child(e, t->left, off, len, lvl + 1, tmp),
                            fold_child(e, t->right, off, len, lvl + 2, tmp)};
    float *out = tmp + (size_t)lvl * FOLD_CHUNK;
    e->kern->sum(out, srcs, 2, len);
    return out;
}

/* Folds the root's two children into the root's left buffer over a segment,
 * chunk by chunk, with per-chunk squares when sq is set. */
static void fold_root_chunked(const cllm_engine *e, const cllm_segment *seg, float *tmp, double *sq) {
    const tree_node *r = &e->nodes[e->root];
    float *dst = (float *)child_buffer(e, r->left);
    for (size_t off = seg->begin; off < seg->end; off += FOLD_CHUNK) {
        size_t len = seg->end - off < FOLD_CHUNK ? seg->end - off : FOLD_CHUNK;
        const float *srcs[2] = {fold_child(e, r->left, off, len, 0, tmp), fold_child(e, r->right, off, len, 1, tmp)};
        if (sq) e->kern->sum_sq(dst + off, srcs, 2, len, sq + off / CLLM_SQ_CHUNK);
        else e->kern->sum(dst + off, srcs, 2, len);
    }
}

/* Whether the root's children are complete buffers (every non-root merge ran
 * as a task): then, without clipping, the fused sum + update can read them. */
static int root_children_direct(const cllm_engine *e) {
    if (e->M == 1) return 1;
    const tree_node *r = &e->nodes[e->root];
    return child_direct(e, r->left) && child_direct(e, r->right);
}

static int root_sources(const cllm_engine *e, const float **srcs) {
    if (e->M == 1) {
        srcs[0] = child_buffer(e, -1);
        return 1;
    }
    srcs[0] = child_buffer(e, e->nodes[e->root].left);
    srcs[1] = child_buffer(e, e->nodes[e->root].right);
    return 2;
}

/* What an owner does to one of its segments in each phase of the update. */
typedef enum { OWNER_FOLD, OWNER_UPDATE, OWNER_SQUARES } owner_phase;

static void owner_segment(cllm_engine *e, int s, owner_phase phase, const float *const *srcs, int k, float *tmp) {
    const cllm_engine_job *job = e->job;
    const cllm_segment *seg = &e->segs[s];
    if (seg->end == seg->begin) return;
    if (phase == OWNER_FOLD) {
        fold_root_chunked(e, seg, tmp, NULL);
    } else if (phase == OWNER_UPDATE) {
        job->update(job->ctx, s, seg->begin, seg->end, srcs, k, e->scale);
    } else if (k == 2) {
        fold_root_chunked(e, seg, tmp, e->sq);
    } else {
        const float *part[1] = {srcs[0] + seg->begin};
        e->kern->sum_sq((float *)srcs[0] + seg->begin, part, 1, seg->end - seg->begin,
                        e->sq + seg->begin / CLLM_SQ_CHUNK);
    }
}

/* Worker tid's segments (tid, tid + team, ...) in one phase, split over its
 * team's threads, each with its own fold temporaries. Segments are
 * independent and element-wise, so which thread runs which changes no bit. */
static void owner_phase_run(cllm_engine *e, int tid, int team, owner_phase phase, const float *const *srcs, int k) {
    int mine = tid < e->S ? (e->S - 1 - tid) / team + 1 : 0;
    int threads = e->team_threads < mine ? e->team_threads : mine;
#pragma omp parallel for num_threads(threads) if (threads > 1) schedule(static, 1)
    for (int j = 0; j < mine; j++) {
        size_t slot = (size_t)tid * (size_t)e->team_threads + (size_t)omp_get_thread_num();
        float *tmp = e->fold_tmp + slot * (size_t)e->fold_levels * FOLD_CHUNK;
        owner_segment(e, tid + j * team, phase, srcs, k, tmp);
    }
}

static void owners_update(cllm_engine *e, int tid, int team) {
    /* Read after the barrier that ends every compute: all threads see the
     * same value and return together (the clipping path has a barrier). */
    if (e->failed) return;
    const cllm_engine_job *job = e->job;
    const float *srcs[2];
    int k = root_sources(e, srcs);
    thread_acct *a = &e->acct[tid];
    double t = cllm_now();
    if (!job->grad_scale) {
        /* Unmerged nodes are folded first; with none, the fused sum + update
         * reads the root's two halves itself. */
        if (!root_children_direct(e)) {
            owner_phase_run(e, tid, team, OWNER_FOLD, srcs, k);
            k = 1;
            a->fold_end = cllm_now() - e->t0;
        }
        owner_phase_run(e, tid, team, OWNER_UPDATE, srcs, k);
        a->update += cllm_now() - t;
        return;
    }
    /* Clipping needs the whole gradient's norm first: owners fold the root
     * (and any node left unmerged) into srcs[0] with per-chunk squares, one
     * thread adds the chunks in index order (independent of the
     * segmentation), then owners update. With M = 1 the gradient is one
     * buffer and only its squares are taken. */
    owner_phase_run(e, tid, team, OWNER_SQUARES, srcs, k);
    a->update += cllm_now() - t;
#pragma omp barrier
#pragma omp single
    {
        size_t chunks = cllm_sq_chunks(e->n_params);
        double norm2 = e->comm->norm2(e->comm, e->sq, chunks);
        e->sq[chunks] = norm2;
        e->scale = job->grad_scale(job->ctx, norm2);
        e->reduced_at = cllm_now() - e->t0;
    }
    t = cllm_now();
    owner_phase_run(e, tid, team, OWNER_UPDATE, srcs, 1);
    a->update += cllm_now() - t;
}

/* ---- ranks ------------------------------------------------------------------
 *
 * Several ranks share a step: the global tree over M_global micro-batches is
 * cut into R nodes (rank_blocks), and rank r computes node r with the local
 * engine above (the subtree of node (lo, hi) is the tree over hi - lo leaves:
 * `mid` depends only on the width). Its partial sum moves as data: span q of
 * it to rank q (comm->exchange_send, as soon as the span is folded). Rank q
 * then adds the R partials of its span along the tree's upper nodes, exactly the additions one process would do
 * (element for element left + right), takes the norm's chunk squares in the
 * root's fold, and updates its span; the parameters are all-gathered. */

/* The R nodes cutting the tree over M leaves: start from the root, split
 * the widest node (the lowest on ties) until there are R; in index order.
 * Needs 1 <= R <= M. */
static void rank_blocks(int M, int R, int *lo, int *hi) {
    int n = 1;
    lo[0] = 0, hi[0] = M;
    while (n < R) {
        int w = 0;
        for (int i = 1; i < n; i++)
            if (hi[i] - lo[i] > hi[w] - lo[w]) w = i;
        CLLM_ASSERT(hi[w] - lo[w] >= 2);
        for (int i = n; i > w + 1; i--) lo[i] = lo[i - 1], hi[i] = hi[i - 1];
        lo[w + 1] = lo[w] + largest_pow2_below(hi[w] - lo[w]);
        hi[w + 1] = hi[w];
        hi[w] = lo[w + 1];
        n++;
    }
}

/* This rank's block, span and segment numbers (one rank: everything). */
static cllm_status ranks_setup(cllm_engine *e, const cllm_engine_config *cfg) {
    const cllm_comm *c = e->comm;
    e->R = c->size;
    e->M_global = cfg->n_micro;
    if (e->R > e->M_global)
        return cllm_fail(CLLM_ERR_INPUT, "%d ranks but %d micro-batches per step: every rank needs at least one "
                         "(raise --batch or --grad-accum, or lower --micro)", e->R, e->M_global);
    e->block_lo = cllm_alloc((size_t)e->R * sizeof(int));
    e->block_hi = cllm_alloc((size_t)e->R * sizeof(int));
    if (!e->block_lo || !e->block_hi) return cllm_fail(CLLM_ERR_INTERNAL, "engine: out of memory");
    rank_blocks(e->M_global, e->R, e->block_lo, e->block_hi);
    e->first_micro = e->block_lo[c->rank];
    e->M = e->block_hi[c->rank] - e->first_micro;
    e->S = e->R * e->S_local;
    e->own_seg = c->rank * e->S_local;
    cllm_comm_span(c, e->n_params, c->rank, &e->own_begin, &e->own_end);
    return CLLM_OK;
}

static float *local_partial(const cllm_engine *e) {
    return (float *)(e->M > 1 ? child_buffer(e, e->nodes[e->root].left) : child_buffer(e, -1));
}

/* Primary thread: sends every span whose segments are all folded and that
 * has not left yet (the transfer then runs while the fold goes on). */
static void ranks_send_ready(cllm_engine *e, const float *partial) {
    for (int q = 0; q < e->R; q++) {
        if (e->span_sent[q] || atomic_load(&e->span_folded[q]) < e->S_local) continue;
        e->span_sent[q] = 1;
        e->n_sent++;
        cllm_status st = e->comm->exchange_send(e->comm, partial, e->n_params, q, e->recv);
        if (st != CLLM_OK && e->send_status == CLLM_OK) e->send_status = st;
    }
    if (e->n_sent < e->R) e->comm->exchange_poll(e->comm);
}

/* After the local tree: this rank's node of the global tree, folded into
 * one buffer (the local root's left child's) segment by segment, the spans
 * in the order the ranks' right-hand neighbours come (rank r first folds
 * rank r + 1's span, so the ranks do not all send to one rank at once, and
 * its own last). The primary thread, which alone calls MPI, sends each span
 * as soon as its last segment is folded and keeps the transfers moving while
 * it folds its share; it returns once every span has left. */
static void ranks_fold_local(cllm_engine *e, const float *partial, int tid, int team) {
    float *tmp = e->fold_tmp + (size_t)tid * (size_t)e->fold_levels * FOLD_CHUNK;
    thread_acct *a = &e->acct[tid];
    int rank = e->comm->rank;
    double t = cllm_now();
    for (int k = tid; k < e->S; k += team) {
        int s = (k + (rank + 1) * e->S_local) % e->S;
        if (e->M > 1) fold_root_chunked(e, &e->segs[s], tmp, NULL);
        atomic_inc(&e->span_folded[s / e->S_local], a);
        if (tid == 0) ranks_send_ready(e, partial);
    }
    a->merge += cllm_now() - t;
    if (tid != 0) return;
    while (e->n_sent < e->R) {
        ranks_send_ready(e, partial);
        if (e->n_sent < e->R) cpu_relax();
    }
}

/* Node (lo, hi) of the upper tree over [off, off + len) of this rank's span:
 * a rank's block is its received partial, others left + right into tmp level
 * lvl (levels as in fold_child). */
static const float *upper_value(const cllm_engine *e, int lo, int hi, size_t off, size_t len, int lvl, float *tmp) {
    for (int r = 0; r < e->R; r++)
        if (e->block_lo[r] == lo && e->block_hi[r] == hi)
            return e->recv + (size_t)r * (e->own_end - e->own_begin) + (off - e->own_begin);
    int mid = lo + largest_pow2_below(hi - lo);
    const float *srcs[2] = {upper_value(e, lo, mid, off, len, lvl + 1, tmp),
                            upper_value(e, mid, hi, off, len, lvl + 2, tmp)};
    float *out = tmp + (size_t)lvl * FOLD_CHUNK;
    e->kern->sum(out, srcs, 2, len);
    return out;
}

/* The global root over this rank's span, into `dst` (the partial's buffer,
 * whose own span was copied out by the exchange), chunks split over the team;
 * with squares per CLLM_SQ_CHUNK for the norm when sq is set. */
static void ranks_fold_upper(cllm_engine *e, float *dst, int with_sq, int tid, int team) {
    float *tmp = e->fold_tmp + (size_t)tid * (size_t)e->fold_levels * FOLD_CHUNK;
    int mid = largest_pow2_below(e->M_global);
    double t = cllm_now();
    size_t chunks = (e->own_end - e->own_begin + FOLD_CHUNK - 1) / FOLD_CHUNK;
    for (size_t j = (size_t)tid; j < chunks; j += (size_t)team) {
        size_t off = e->own_begin + j * FOLD_CHUNK;
        size_t len = e->own_end - off < FOLD_CHUNK ? e->own_end - off : FOLD_CHUNK;
        const float *srcs[2] = {upper_value(e, 0, mid, off, len, 0, tmp),
                                upper_value(e, mid, e->M_global, off, len, 1, tmp)};
        if (with_sq) e->kern->sum_sq(dst + off, srcs, 2, len, e->sq + off / CLLM_SQ_CHUNK);
        else e->kern->sum(dst + off, srcs, 2, len);
    }
    e->acct[tid].merge += cllm_now() - t;
}

/* The ranks agree that every compute succeeded (or all fail), exchange the
 * spans, fold, take the norm, and update this rank's span. */
static cllm_status ranks_reduce_update(cllm_engine *e, const cllm_engine_job *job) {
    const cllm_comm *c = e->comm;
    double t = cllm_now();
    int failed_rank = c->first_flagged(c, e->failed);
    double t_agreed = cllm_now();
    e->wait_time = t_agreed - t;
    t = t_agreed;
    if (failed_rank >= 0) {
        if (e->failed) return cllm_fail(e->fail_status, "%s", e->fail_msg);
        return cllm_fail(CLLM_ERR_INTERNAL, "rank %d failed in this step (its message is on its stderr): no update "
                         "applied", failed_rank);
    }
    float *partial = local_partial(e);
    cllm_status st = c->exchange_begin(c, e->n_params, e->recv);
    if (st != CLLM_OK) return st;
    memset(e->span_folded, 0, sizeof(int) * (size_t)e->R);
    memset(e->span_sent, 0, sizeof(int) * (size_t)e->R);
    e->n_sent = 0;
    e->send_status = CLLM_OK;
    double t_fold = cllm_now();
#pragma omp parallel num_threads(e->n_threads)
    ranks_fold_local(e, partial, omp_get_thread_num(), omp_get_num_threads());
    double t_end = cllm_now();
    st = c->exchange_end(c);
    /* Exchanges: before the fold, and whatever of the transfers the fold did not hide. */
    e->comm_time += (t_fold - t) + (cllm_now() - t_end);
    if (st == CLLM_OK) st = e->send_status;
    if (st != CLLM_OK) return st;
    int with_sq = job->grad_scale != NULL;
#pragma omp parallel num_threads(e->n_threads)
    ranks_fold_upper(e, partial, with_sq, omp_get_thread_num(), omp_get_num_threads());
    if (with_sq) {
        t = cllm_now();
        size_t first = e->own_begin / CLLM_SQ_CHUNK, n = cllm_sq_chunks(e->own_end) - first;
        double norm2 = c->norm2(c, e->sq + first, n);
        e->comm_time += cllm_now() - t;
        e->sq[cllm_sq_chunks(e->n_params)] = norm2;
        e->scale = job->grad_scale(job->ctx, norm2);
    }
    e->reduced_at = cllm_now() - e->t0;
    const float *srcs[1] = {partial};
#pragma omp parallel num_threads(e->n_threads)
    {
        int tid = omp_get_thread_num(), team = omp_get_num_threads();
        double t0 = cllm_now();
        for (int s = e->own_seg + tid; s < e->own_seg + e->S_local; s += team)
            if (e->segs[s].end > e->segs[s].begin)
                job->update(job->ctx, s, e->segs[s].begin, e->segs[s].end, srcs, 1, e->scale);
        e->acct[tid].update += cllm_now() - t0;
    }
    return CLLM_OK;
}

void cllm_engine_owned(const cllm_engine *e, size_t *begin, size_t *end) {
    *begin = e->own_begin;
    *end = e->own_end;
}

void cllm_engine_block(const cllm_engine *e, int *first_micro, int *n_micro) {
    *first_micro = e->first_micro;
    *n_micro = e->M;
}

/* ---- create / free -------------------------------------------------------- */

int64_t cllm_engine_atomics_formula(int n_micro, int segments) {
    int64_t M = n_micro, S = segments;
    if (M <= 1) return 2;
    return 4 * M - 2 + (M - 2) * (3 * S + 1);
}

int64_t cllm_engine_atomics_expected(int n_micro, int segments, int folded_nodes) {
    /* A node the owners fold makes none of its 3S task atomics, no buffer
     * release and no child-complete on its parent. */
    return cllm_engine_atomics_formula(n_micro, segments) - (int64_t)folded_nodes * (3 * (int64_t)segments + 2);
}

/* Depth of the tree over n leaves: the left subtree is the larger one. */
static int tree_depth(int n) { return n <= 1 ? 0 : 1 + tree_depth(largest_pow2_below(n)); }

static cllm_status validate(const cllm_engine_config *cfg) {
    if (!cfg) return cllm_fail(CLLM_ERR_INPUT, "engine: no configuration");
    if (cfg->n_params == 0) return cllm_fail(CLLM_ERR_INPUT, "engine: n_params must be >= 1");
    if (cfg->n_micro < 1 || cfg->n_micro > (1 << 20))
        return cllm_fail(CLLM_ERR_INPUT, "engine: micro-batches per step must be in 1..%d, got %d", 1 << 20, cfg->n_micro);
    if (cfg->segments_per_thread < 0 || cfg->segments_per_thread > 64)
        return cllm_fail(CLLM_ERR_INPUT, "engine: segments per thread must be in 1..64, got %d", cfg->segments_per_thread);
    if (cfg->window < 0 || cfg->window > (1 << 20))
        return cllm_fail(CLLM_ERR_INPUT, "engine: gradient window must be >= 0, got %d", cfg->window);
    if (cfg->teams < 0 || cfg->teams > 4096 || cfg->team_threads < 0 || cfg->team_threads > 4096)
        return cllm_fail(CLLM_ERR_INPUT, "engine: teams and threads per team must be in 0..4096, got %d x %d",
                         cfg->teams, cfg->team_threads);
    return CLLM_OK;
}

/* NB = threads + window, at least enough for progress (one more than the
 * most buffers complete prefixes can hold), never more than M. */
int cllm_engine_pool_buffers(int n_micro, int workers, int window) {
    int dmax = 0;
    for (int L = 0; L < n_micro; L++) {
        int d = held_by_prefix(0, n_micro, L, n_micro > 1);
        if (d > dmax) dmax = d;
    }
    int extra = window > 0 ? window : dmax + 2;
    int nb = workers + extra;
    if (nb < dmax + 1) nb = dmax + 1;
    if (nb > n_micro) nb = n_micro;
    return nb;
}

static void size_pool(cllm_engine *e, int window) {
    int nb = cllm_engine_pool_buffers(e->M, e->n_threads, window);
    e->NB = nb;
    for (int L = 0; L <= e->M; L++) e->room[L] = nb - held_by_prefix(0, e->M, L, e->M > 1);
}

/* Workers (teams) and threads per team: the configured shape, or flat (one
 * worker per OpenMP thread). A team of several threads is a nested region,
 * so the runtime must allow two active levels. */
static void team_shape_apply(cllm_engine *e, const cllm_engine_config *cfg) {
    e->n_threads = cfg->teams > 0 ? cfg->teams : omp_get_max_threads();
    e->team_threads = cfg->team_threads > 0 ? cfg->team_threads : 1;
    if (e->team_threads > 1 && omp_get_max_active_levels() < 2) omp_set_max_active_levels(2);
}

#define ALLOC(field, count)                                                   \
    do {                                                                      \
        e->field = cllm_alloc((size_t)(count) * sizeof(*e->field));           \
        if (!e->field) {                                                      \
            cllm_engine_free(e);                                              \
            return cllm_fail(CLLM_ERR_INTERNAL, "engine: out of memory");     \
        }                                                                     \
    } while (0)

cllm_status cllm_engine_create(const cllm_engine_config *cfg, cllm_engine **out) {
    *out = NULL;
    cllm_status st = validate(cfg);
    if (st != CLLM_OK) return st;
    cllm_engine *e = cllm_alloc(sizeof *e);
    if (!e) return cllm_fail(CLLM_ERR_INTERNAL, "engine: out of memory");
    e->n_params = cfg->n_params;
    e->M = cfg->n_micro;
    team_shape_apply(e, cfg);
    e->spt = cfg->segments_per_thread > 0 ? cfg->segments_per_thread : 1;
    e->S_local = e->n_threads * e->team_threads * e->spt;
    e->streaming = cfg->streaming;
    e->comm = cfg->comm ? cfg->comm : cllm_comm_single();
    e->compute_overwrites = cfg->compute_overwrites != 0;
    e->kern = cfg->kernels ? cfg->kernels : cllm_kernel_table_best();
    st = ranks_setup(e, cfg);
    if (st != CLLM_OK) {
        cllm_engine_free(e);
        return st;
    }
    e->n_nodes = e->M - 1;
    ALLOC(nodes, e->n_nodes + 1);
    ALLOC(leaf_parent, e->M);
    ALLOC(room, e->M + 1);
    int next = 0;
    if (e->M > 1) build_tree(e, 0, e->M, &next);
    else e->leaf_parent[0] = -1;
    e->root = e->M > 1 ? e->n_nodes - 1 : -1;
    size_pool(e, cfg->window);

    ALLOC(segs, e->S);
    for (int r = 0; r < e->R; r++) { /* one rank: the whole vector in S segments */
        size_t b, end;
        cllm_comm_span(e->comm, e->n_params, r, &b, &end);
        cllm_segment *mine = e->segs + (size_t)r * (size_t)e->S_local;
        cllm_segments_split(end - b, e->S_local, CLLM_SEGMENT_GRAIN, mine);
        for (int k = 0; k < e->S_local; k++) mine[k].begin += b, mine[k].end += b;
    }
    /* A tiny vector can leave a rank an empty span: still one float, so the allocation is not of 0 bytes. */
    size_t own = e->own_end - e->own_begin;
    ALLOC(recv, e->R > 1 && own > 0 ? own * (size_t)e->R : 1);
    ALLOC(span_folded, e->R);
    ALLOC(span_sent, e->R);
    /* Each buffer rounded up to whole lines, so every one starts 64-byte aligned. */
    size_t stride = (e->n_params + 15) / 16 * 16;
    if (stride > SIZE_MAX / sizeof(float) / (size_t)e->NB) {
        cllm_engine_free(e);
        return cllm_fail(CLLM_ERR_INPUT, "engine: %zu parameters x %d buffers overflow memory", e->n_params, e->NB);
    }
    ALLOC(buf_mem, stride * (size_t)e->NB);
    ALLOC(bufs, e->NB);
    for (int b = 0; b < e->NB; b++) e->bufs[b] = e->buf_mem + stride * (size_t)b;
    e->fold_levels = 2 * tree_depth(e->M > e->M_global ? e->M : e->M_global) + 2;
    ALLOC(fold_tmp, (size_t)e->n_threads * (size_t)e->team_threads * (size_t)e->fold_levels * FOLD_CHUNK);

    ALLOC(ns, e->n_nodes + 1);
    ALLOC(buf_busy, e->NB);
    ALLOC(leaf_buf, e->M);
    ALLOC(leaf_done, e->M);
    ALLOC(pending, e->n_nodes + 1);
    ALLOC(losses, e->M);
    ALLOC(compute_end, e->M);
    ALLOC(sq, cllm_sq_chunks(e->n_params) + 1);
    ALLOC(sort_scratch, e->n_threads);
    ALLOC(acct, e->n_threads);
    ALLOC(trace, e->n_nodes + 1);
    *out = e;
    return CLLM_OK;
}

void cllm_engine_free(cllm_engine *e) {
    if (!e) return;
    cllm_free(e->nodes);
    cllm_free(e->leaf_parent);
    cllm_free(e->room);
    cllm_free(e->segs);
    cllm_free(e->buf_mem);
    cllm_free(e->bufs);
    cllm_free(e->fold_tmp);
    cllm_free(e->ns);
    cllm_free(e->buf_busy);
    cllm_free(e->leaf_buf);
    cllm_free(e->leaf_done);
    cllm_free(e->pending);
    cllm_free(e->losses);
    cllm_free(e->compute_end);
    cllm_free(e->sq);
    cllm_free(e->sort_scratch);
    cllm_free(e->acct);
    cllm_free(e->trace);
    cllm_free(e->block_lo);
    cllm_free(e->block_hi);
    cllm_free(e->recv);
    cllm_free(e->span_folded);
    cllm_free(e->span_sent);
    cllm_free(e);
}

size_t cllm_engine_buffer_bytes(const cllm_engine *e) {
    return (e->n_params + 15) / 16 * 16 * sizeof(float) * (size_t)e->NB;
}
int cllm_engine_threads(const cllm_engine *e) { return e->n_threads; }
int cllm_engine_team_threads(const cllm_engine *e) { return e->team_threads; }
int cllm_engine_buffers(const cllm_engine *e) { return e->NB; }
int cllm_engine_segments(const cllm_engine *e) { return e->S; }

void cllm_engine_segment(const cllm_engine *e, int s, size_t *begin, size_t *end) {
    CLLM_ASSERT(s >= 0 && s < e->S);
    *begin = e->segs[s].begin;
    *end = e->segs[s].end;
}

/* ---- the step ------------------------------------------------------------- */

static void reset_step_state(cllm_engine *e, const cllm_engine_job *job) {
    memset(e->ns, 0, sizeof(*e->ns) * (size_t)(e->n_nodes + 1));
    memset(e->buf_busy, 0, sizeof(int) * (size_t)e->NB);
    memset(e->leaf_done, 0, sizeof(int) * (size_t)e->M);
    memset(e->acct, 0, sizeof(*e->acct) * (size_t)e->n_threads);
    e->post_phase = 0;
    e->scale = 1.0f;
    e->reduced_at = 0.0;
    e->job = job;
    e->failed = 0;
    e->comm_time = 0.0;
    e->wait_time = 0.0;
    e->sent_before = e->comm->bytes_sent(e->comm);
}

/* When the last of micro-batches [lo, hi) finished computing. */
static double compute_end_of(const cllm_engine *e, int lo, int hi) {
    double last = 0.0;
    for (int i = lo; i < hi; i++)
        if (e->compute_end[i] > last) last = e->compute_end[i];
    return last;
}

/* With clipping the norm's `single` stamped the moment the gradient was
 * reduced. Without, the last merge or owner fold did; a root folded inside
 * the fused sum + update counts as update. */
static void settle_reduced_at(cllm_engine *e, int team) {
    if (e->job->grad_scale || e->R > 1) return; /* already stamped */
    double at = compute_end_of(e, 0, e->M);
    for (int n = 0; n < e->n_nodes; n++)
        if (n != e->root && node_merged(e, n) && e->ns[n].done_at > at) at = e->ns[n].done_at;
    for (int t = 0; t < team; t++)
        if (e->acct[t].fold_end > at) at = e->acct[t].fold_end;
    e->reduced_at = at;
}

static int folded_nodes(const cllm_engine *e) {
    int d = 0;
    for (int n = 0; n < e->n_nodes; n++) d += n != e->root && !node_merged(e, n);
    return d;
}

/* Insertion sort: a handful of threads, and qsort may allocate. */
static void fill_stats(cllm_engine *e, int team, double wall, double loss, cllm_engine_stats *st) {
    memset(st, 0, sizeof *st);
    st->threads = team;
    st->wall = wall;
    double busy = 0.0, last_compute = compute_end_of(e, 0, e->M);
    for (int t = 0; t < team; t++) {
        const thread_acct *a = &e->acct[t];
        e->sort_scratch[t] = a->compute;
        st->reduce += a->merge + a->update;
        st->reduce_merge += a->merge;
        st->buffer_zero += a->zero;
        st->atomics += a->atomics;
        st->atomics_extra += a->extra;
        st->waits += a->waits;
        busy += a->compute + a->zero + a->merge + a->update;
    }
    st->compute_median = cllm_median(e->sort_scratch, team);
    st->compute_min = e->sort_scratch[0];
    st->compute_max = e->sort_scratch[team - 1];
    st->loss = loss;
    st->comm = e->comm_time;
    st->comm_share = wall > 0 ? e->comm_time / wall : 0.0;
    st->rank_wait = e->wait_time;
    st->rank_wait_share = wall > 0 ? e->wait_time / wall : 0.0;
    st->comm_bytes = e->comm->bytes_sent(e->comm) - e->sent_before;
    double reduced = e->reduced_at > last_compute ? e->reduced_at : last_compute;
    st->exposed_reduction = reduced - last_compute;
    st->exposed_share = wall > 0 ? st->exposed_reduction / wall : 0.0;
    st->exposed_update = wall > reduced ? wall - reduced : 0.0;
    st->update_share = wall > 0 ? st->exposed_update / wall : 0.0;
    st->folded_nodes = folded_nodes(e);
    st->utilisation = wall > 0 ? busy / (team * wall) : 0.0;
    st->grad_norm = e->job->grad_scale ? sqrt(e->sq[cllm_sq_chunks(e->n_params)]) : 0.0;
}

static void record_trace(cllm_engine *e, double wall) {
    for (int n = 0; n < e->n_nodes; n++) {
        const tree_node *t = &e->nodes[n];
        double ready = e->ns[n].ready_at, done = e->ns[n].done_at;
        if (n != e->root && !node_merged(e, n)) {
            /* Folded by the owners: its inputs were ready when its last leaf
             * was computed, even if a child was itself folded. */
            done = e->reduced_at;
            if (e->ns[n].ready < 2) ready = compute_end_of(e, t->lo, t->hi);
        }
        e->trace[n] = (cllm_engine_node_trace){t->lo, t->mid, t->hi, ready, done};
    }
    if (e->root >= 0) {
        e->trace[e->root].ready_at = compute_end_of(e, 0, e->M);
        e->trace[e->root].done_at = wall;
    }
}

/* One step's work for worker tid of `team`: its micro-batches, the merges,
 * its owned segments. Run by every thread of the workers' region, or, with a
 * single worker called outside any parallel region, by the calling thread
 * with no region at all (the worksharing, barriers and tasks then bind to
 * that one thread): its team's
 * regions are then top-level ones, which the runtime serves from its thread
 * pool, where nested ones start threads (libgomp does, for every region). */
static void worker_step(cllm_engine *e, int tid, int team) {
    /* The nested regions this worker opens (the layers', the merges',
     * the owners') get its team. */
    omp_set_num_threads(e->team_threads);
    int low = 0;
    /* monotonic: each thread runs its iterations in increasing order, on
     * which the progress argument of the window rests. */
#pragma omp for schedule(monotonic : runtime) nowait
    for (int i = 0; i < e->M; i++) compute_micro(e, i, &low);
    if (!e->streaming) {
#pragma omp barrier
#pragma omp single
        spawn_pending(e);
    }
    /* Every merge task of the step completes at this barrier. */
#pragma omp barrier
    if (e->R == 1) owners_update(e, tid, team);
}

cllm_status cllm_engine_step(cllm_engine *e, const cllm_engine_job *job, cllm_engine_stats *stats) {
    if (!job || !job->compute || !job->update) return cllm_fail(CLLM_ERR_INPUT, "engine: job lacks compute or update");
    reset_step_state(e, job);
    int team_size = e->n_threads;
    e->t0 = cllm_now();
    /* Orphaned worksharing binds to the innermost active region: without
     * a region of its own the engine must not be inside someone else's
     * (test_ranks runs one engine per thread of an outer team). */
    int own_region = e->n_threads > 1 || omp_in_parallel();
    e->worker_level = omp_get_level() + own_region;
    if (!own_region) {
        int saved = omp_get_max_threads();
        worker_step(e, 0, 1);
        omp_set_num_threads(saved);
    } else {
#pragma omp parallel num_threads(e->n_threads)
        {
#pragma omp single nowait
            team_size = omp_get_num_threads();
            worker_step(e, omp_get_thread_num(), omp_get_num_threads());
        }
    }
    if (e->R > 1) {
        cllm_status st = ranks_reduce_update(e, job);
        if (st != CLLM_OK) return st;
    } else if (e->failed) {
        return cllm_fail(e->fail_status, "%s", e->fail_msg);
    }
    if (job->params) {
        double t = cllm_now();
        cllm_status st = e->comm->params_updated(e->comm, job->params, e->n_params);
        if (e->R > 1) e->comm_time += cllm_now() - t;
        if (st != CLLM_OK) return st;
    }
    double t = cllm_now();
    double loss = e->comm->mean_loss(e->comm, e->losses, e->M); /* every rank calls it: a collective */
    e->comm_time += e->R > 1 ? cllm_now() - t : 0.0;
    double wall = cllm_now() - e->t0;
    settle_reduced_at(e, team_size);
    record_trace(e, wall);
    if (stats) fill_stats(e, team_size, wall, loss, stats);
    return CLLM_OK;
}

int cllm_engine_trace_nodes(const cllm_engine *e, const cllm_engine_node_trace **nodes) {
    *nodes = e->trace;
    return e->n_nodes;
}

const double *cllm_engine_trace_compute_end(const cllm_engine *e) { return e->compute_end; }
