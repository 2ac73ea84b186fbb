#include "cllm/dist/segments.h"

void cllm_segments_split(size_t n, int count, size_t grain, cllm_segment *out) {
    if (grain == 0) grain = 1;
    size_t grains = (n + grain - 1) / grain;
    /* Grain boundaries distributed as evenly as integer division allows:
     * segment s gets grains [floor(s*G/S), floor((s+1)*G/S)). */
    for (int s = 0; s < count; s++) {
        size_t g0 = grains * (size_t)s / (size_t)count;
        size_t g1 = grains * (size_t)(s + 1) / (size_t)count;
        size_t b = g0 * grain, e = g1 * grain;
        out[s].begin = b < n ? b : n;
        out[s].end = e < n ? e : n;
    }
}
