/* GGUF version 3 writer, as ggml's docs/gguf.md specifies the format (all
 * integers little-endian):
 *
 *   u32 magic "GGUF"  u32 version 3  u64 tensor_count  u64 metadata_kv_count
 *   metadata_kv_count times: string key, u32 value_type, value
 *   tensor_count times:      string name, u32 n_dims, u64 dims[n_dims] (ggml order:
 *                            dims[0] varies fastest), u32 ggml_type, u64 offset
 *   zero padding to a multiple of ALIGNMENT
 *   tensor data: each tensor at its offset (relative to here, a multiple of
 *   ALIGNMENT), zero padding after each tensor to the next multiple (the
 *   last included: ggml's reader wants offset[i] == the padded sizes before
 *   it, and a data section of their sum)
 *
 * A string is a u64 byte length then that many bytes of UTF-8, no NUL. An
 * array value is u32 element type, u64 count, then the elements. ALIGNMENT
 * is the u32 value of `general.alignment`, which the writer always emits
 * (last among the metadata).
 *
 * The writer collects metadata (serialised as it is added) and tensors (by
 * pointer, already in their file type), checks what the spec and ggml's
 * reader require (keys: ASCII `lower_snake_case` segments joined by '.',
 * unique; tensor names unique, shorter than 64 bytes; at most 4 dims; every
 * string valid UTF-8), and writes the file crash-safely (temporary file,
 * fsync, rename). A violation is the caller's bug: CLLM_ERR_INTERNAL naming it. */
#ifndef CLLM_IO_GGUF_H
#define CLLM_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"

#define CLLM_GGUF_MAGIC "GGUF"
#define CLLM_GGUF_VERSION 3u
#define CLLM_GGUF_DEFAULT_ALIGNMENT 32u
#define CLLM_GGUF_MAX_DIMS 4
#define CLLM_GGUF_MAX_NAME 63 /* bytes of a tensor name: ggml's GGML_MAX_NAME (64) counts the NUL */

/* The ggml tensor types this writer stores (values from the spec's ggml_type). */
typedef enum { CLLM_GGML_F32 = 0, CLLM_GGML_F16 = 1 } cllm_ggml_type;

/* Metadata value types (the spec's gguf_metadata_value_type). */
typedef enum {
    CLLM_GGUF_UINT8 = 0,
    CLLM_GGUF_INT8 = 1,
    CLLM_GGUF_UINT16 = 2,
    CLLM_GGUF_INT16 = 3,
    CLLM_GGUF_UINT32 = 4,
    CLLM_GGUF_INT32 = 5,
    CLLM_GGUF_FLOAT32 = 6,
    CLLM_GGUF_BOOL = 7,
    CLLM_GGUF_STRING = 8,
    CLLM_GGUF_ARRAY = 9,
    CLLM_GGUF_UINT64 = 10,
    CLLM_GGUF_INT64 = 11,
    CLLM_GGUF_FLOAT64 = 12
} cllm_gguf_value_type;

typedef struct {
    char *name;
    int n_dims;
    uint64_t dims[CLLM_GGUF_MAX_DIMS];
    cllm_ggml_type type;
    const void *data; /* borrowed: must stay valid until cllm_gguf_write */
    size_t nbytes;
    uint64_t offset;  /* in the data section, a multiple of the alignment */
} cllm_gguf_tensor;

typedef struct {
    unsigned char *data;
    size_t len, cap;
} cllm_gguf_bytes;

typedef struct {
    uint32_t alignment;
    cllm_gguf_bytes kv; /* the metadata section, serialised as it is added */
    uint64_t n_kv;
    char **keys;
    cllm_gguf_tensor *tensors;
    int n_tensors, cap_tensors;
    uint64_t data_bytes; /* end of the last tensor in the data section */
} cllm_gguf_writer;

/* alignment: a multiple of 8 (the spec), e.g. CLLM_GGUF_DEFAULT_ALIGNMENT. */
cllm_status cllm_gguf_writer_init(cllm_gguf_writer *w, uint32_t alignment);
void cllm_gguf_writer_free(cllm_gguf_writer *w);

cllm_status cllm_gguf_add_string(cllm_gguf_writer *w, const char *key, const char *value);
cllm_status cllm_gguf_add_u32(cllm_gguf_writer *w, const char *key, uint32_t value);
cllm_status cllm_gguf_add_f32(cllm_gguf_writer *w, const char *key, float value);
cllm_status cllm_gguf_add_bool(cllm_gguf_writer *w, const char *key, int value);
/* An array of n strings; strings[i] has lens[i] bytes (no NUL needed). */
cllm_status cllm_gguf_add_string_array(cllm_gguf_writer *w, const char *key, const char *const *strings,
                                       const size_t *lens, uint64_t n);
cllm_status cllm_gguf_add_i32_array(cllm_gguf_writer *w, const char *key, const int32_t *values, uint64_t n);

/* A tensor of `type` with dims in ggml order (dims[0] the contiguous one),
 * data its numel elements in that type, little-endian. Offsets are assigned
 * in the order tensors are added. */
cllm_status cllm_gguf_add_tensor(cllm_gguf_writer *w, const char *name, cllm_ggml_type type, int n_dims,
                                 const uint64_t *dims, const void *data);

/* Writes the file crash-safely: the previous file at `path` stays intact
 * until the new one is complete. An unwritable place is CLLM_ERR_INPUT; a
 * failed write (full disk, file-size limit) CLLM_ERR_INTERNAL, with no
 * temporary left behind. */
cllm_status cllm_gguf_write(const cllm_gguf_writer *w, const char *path);
/* The size of the file cllm_gguf_write would write now (0 on out of memory). */
uint64_t cllm_gguf_file_size(const cllm_gguf_writer *w);

/* IEEE binary16 bits nearest to x, ties to even (what numpy's astype(float16)
 * and ggml's converter give): overflow to infinity, subnormals kept, NaN
 * stays NaN (quiet, sign kept). */
uint16_t cllm_f16_from_f32(float x);

#endif
