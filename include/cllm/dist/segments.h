/* Splitting the flat gradient into thread-owned segments.
 *
 * Boundaries fall on multiples of a grain (a multiple of 16 floats, i.e. of
 * 64-byte cache lines, since every buffer is 64-byte aligned), so no two
 * threads ever write the same cache line. The engine uses CLLM_SEGMENT_GRAIN,
 * a multiple of CLLM_SQ_CHUNK, so that per-chunk sums of squares never
 * straddle two segments and the gradient norm is independent of the thread
 * count. */
#ifndef CLLM_DIST_SEGMENTS_H
#define CLLM_DIST_SEGMENTS_H

#include <stddef.h>

#define CLLM_SEGMENT_GRAIN 256 /* floats: 1 KiB, 16 cache lines */

typedef struct {
    size_t begin, end; /* [begin, end) in floats; may be empty when n is small */
} cllm_segment;

/* Splits [0, n) into `count` >= 1 consecutive segments covering every element
 * exactly once; interior boundaries are multiples of `grain` (>= 1) and
 * segment sizes differ by at most one grain (the last may be shorter). */
void cllm_segments_split(size_t n, int count, size_t grain, cllm_segment *out);

/* The thread that owns segment s of a team of `threads`: round-robin, so
 * every thread owns segments_per_thread of them. */
static inline int cllm_segment_owner(int segment, int threads) { return segment % threads; }

#endif
