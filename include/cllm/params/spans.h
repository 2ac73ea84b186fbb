/* Owned spans: the pieces of a range of the flat parameter buffer that the
 * optimizer updates with one setting each (weight decay on or off).
 *
 * Computed once, when the engine's segments are known, so that a step's
 * update is a walk over a short precomputed list instead of a search of the
 * tensor table. Adjacent tensors of the same group form one span; the
 * alignment padding between tensors joins the span before it (its gradient
 * and moments are always zero, so its parameters stay exactly 0 under either
 * setting). */
#ifndef CLLM_PARAMS_SPANS_H
#define CLLM_PARAMS_SPANS_H

#include <stddef.h>

#include "cllm/base/common.h"

/* What a span needs of a tensor: where it lies and its optimizer group. */
typedef struct {
    size_t offset, numel;
    int decay; /* 1: AdamW decays it; 0: biases, LayerNorm weights, embeddings */
} cllm_param_extent;

typedef struct {
    size_t begin, end; /* [begin, end) in floats */
    int decay;
} cllm_span;

typedef struct {
    cllm_span *spans;
    int n;
} cllm_span_list;

/* The spans of [begin, end), given the tensors in increasing offset order
 * (non-overlapping). Every element of the range is in exactly one span. */
cllm_status cllm_spans_of_range(const cllm_param_extent *tensors, int n_tensors, size_t begin, size_t end,
                                cllm_span_list *out);
void cllm_span_list_free(cllm_span_list *l);

#endif
