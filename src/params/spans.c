/* Owned spans (include/cllm/params/spans.h). */
#include "cllm/params/spans.h"

#include <stdlib.h>

/* The group of element i: that of its tensor, or for padding that of the
 * tensor before it (the first tensor's for padding before any). */
static int group_at(const cllm_param_extent *t, int n, size_t i, int *cursor) {
    while (*cursor + 1 < n && t[*cursor + 1].offset <= i) (*cursor)++;
    return t[*cursor].decay;
}

/* The end of the run of elements from i on that share i's group. */
static size_t run_end(const cllm_param_extent *t, int n, size_t i, size_t end, int *cursor) {
    int g = group_at(t, n, i, cursor);
    int c = *cursor;
    while (c + 1 < n && t[c + 1].decay == g) c++;
    size_t stop = c + 1 < n ? t[c + 1].offset : end;
    return stop < end ? stop : end;
}

cllm_status cllm_spans_of_range(const cllm_param_extent *tensors, int n_tensors, size_t begin, size_t end,
                                cllm_span_list *out) {
    out->spans = NULL;
    out->n = 0;
    if (begin >= end) return CLLM_OK;
    CLLM_ASSERT(n_tensors > 0);
    int cap = 8;
    out->spans = malloc((size_t)cap * sizeof *out->spans);
    if (!out->spans) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    int cursor = 0;
    for (size_t pos = begin; pos < end;) {
        int g = group_at(tensors, n_tensors, pos, &cursor);
        size_t stop = run_end(tensors, n_tensors, pos, end, &cursor);
        CLLM_ASSERT(stop > pos);
        if (out->n == cap) {
            cap *= 2;
            cllm_span *grown = realloc(out->spans, (size_t)cap * sizeof *grown);
            if (!grown) {
                cllm_span_list_free(out);
                return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
            }
            out->spans = grown;
        }
        out->spans[out->n++] = (cllm_span){pos, stop, g};
        pos = stop;
    }
    return CLLM_OK;
}

void cllm_span_list_free(cllm_span_list *l) {
    free(l->spans);
    l->spans = NULL;
    l->n = 0;
}
