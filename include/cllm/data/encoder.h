/* Parallel, deterministic encoding of a stream of documents.
 *
 * Documents are gathered into batches of a few MiB. In each batch a
 * sequential scan of the pre-tokenizer (cllm_tokenizer's chunks, found from
 * the start of every document) cuts every document into pieces of about
 * 64 KiB that begin and end at chunk boundaries; the pieces are BPE-encoded
 * on all OpenMP threads, each thread memoising the chunks it has seen; the
 * ids are put back in piece order, every document followed by one EOT. A
 * piece's ids depend only on its own chunks, so the stream is the same for
 * any thread count: the one cllm_dataset_tokenize makes. */
#ifndef CLLM_DATA_ENCODER_H
#define CLLM_DATA_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/data/tokenizer.h"

/* Receives the ids of each encoded batch, in stream order; a failure stops the encoder and is returned. */
typedef cllm_status (*cllm_ids_sink)(void *ctx, const int32_t *ids, size_t n);

typedef struct cllm_encoder cllm_encoder;
/* threads <= 0: omp_get_max_threads(). batch_bytes 0: the default (8 MiB). */
cllm_status cllm_encoder_create(const cllm_tokenizer *t, int threads, size_t batch_bytes, cllm_ids_sink sink,
                                void *sink_ctx, cllm_encoder **out);
/* One document (copied). Encodes and hands on a batch once enough bytes are gathered. */
cllm_status cllm_encoder_add(cllm_encoder *e, const uint8_t *bytes, size_t n);
/* Encodes what is gathered. */
cllm_status cllm_encoder_flush(cllm_encoder *e);
void cllm_encoder_free(cllm_encoder *e);

#endif
