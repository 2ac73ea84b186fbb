/* The safetensors format, read and written exactly:
 *
 *   8 bytes      N, the header length, unsigned little-endian
 *   N bytes      JSON: {"NAME":{"dtype":"F32","shape":[...],"data_offsets":[BEGIN,END]},...,
 *                       "__metadata__":{"key":"value",...}}  padded with spaces to a multiple of 8
 *   rest         the byte buffer; offsets are relative to its start
 *
 * The writer lays tensors out contiguously in the order they were added and
 * writes the file crash-safely (temporary file, fsync, rename, fsync folder).
 * The reader validates everything before handing out a pointer: sizes,
 * header JSON, dtypes, shapes, offsets, no gaps or overlaps. It never reads
 * outside the file. */
#ifndef CLLM_IO_SAFETENSORS_H
#define CLLM_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"

typedef enum {
    CLLM_ST_F32,
    CLLM_ST_F64,
    CLLM_ST_F16,
    CLLM_ST_BF16,
    CLLM_ST_I64,
    CLLM_ST_U64,
    CLLM_ST_I32,
    CLLM_ST_U32,
    CLLM_ST_I16,
    CLLM_ST_U16,
    CLLM_ST_I8,
    CLLM_ST_U8,
    CLLM_ST_BOOL
} cllm_st_dtype;

#define CLLM_ST_MAX_DIMS 8

const char *cllm_st_dtype_name(cllm_st_dtype dt);
size_t cllm_st_dtype_size(cllm_st_dtype dt);

/* ---- writer ---------------------------------------------------------------- */

typedef struct {
    char *name;
    cllm_st_dtype dtype;
    int ndim;
    int64_t shape[CLLM_ST_MAX_DIMS];
    const void *data; /* borrowed: must stay valid until cllm_st_writer_write */
    size_t nbytes;
} cllm_st_entry;

typedef struct {
    cllm_st_entry *entries;
    int n_entries, cap_entries;
    char **meta_keys, **meta_values;
    int n_meta, cap_meta;
} cllm_st_writer;

void cllm_st_writer_init(cllm_st_writer *w);
/* Records a tensor by pointer (no copy). Names must be unique and not
 * "__metadata__"; ndim 0..CLLM_ST_MAX_DIMS (0 = scalar, one element). */
cllm_status cllm_st_writer_add(cllm_st_writer *w, const char *name, cllm_st_dtype dtype, const void *data,
                               int ndim, const int64_t *shape);
/* Adds a string pair to "__metadata__" (keys unique). */
cllm_status cllm_st_writer_metadata(cllm_st_writer *w, const char *key, const char *value);
/* Writes the file crash-safely: the previous file at `path` stays intact
 * until the new one is complete. */
cllm_status cllm_st_writer_write(const cllm_st_writer *w, const char *path);
void cllm_st_writer_free(cllm_st_writer *w);

/* ---- reader ---------------------------------------------------------------- */

typedef struct {
    const char *name;
    cllm_st_dtype dtype;
    int ndim;
    int64_t shape[CLLM_ST_MAX_DIMS];
    size_t numel;
    const void *data; /* inside the file's buffer; NOT necessarily aligned: memcpy out */
    size_t nbytes;
} cllm_st_tensor;

typedef struct {
    char *path;
    unsigned char *bytes; /* the whole file */
    size_t size;
    cllm_st_tensor *tensors;
    int n_tensors;
    char **meta_keys, **meta_values;
    int n_meta;
} cllm_st_file;

/* Reads and validates the whole file. Any violation is CLLM_ERR_INPUT with a
 * message naming the file and the problem; *f is left empty (safe to close). */
cllm_status cllm_st_open(const char *path, cllm_st_file *f);
/* Same checks on bytes already in memory (copied); `label` names it in messages. */
cllm_status cllm_st_parse(const void *bytes, size_t n, const char *label, cllm_st_file *f);
const cllm_st_tensor *cllm_st_find(const cllm_st_file *f, const char *name);
const char *cllm_st_metadata(const cllm_st_file *f, const char *key); /* NULL if absent */
void cllm_st_close(cllm_st_file *f);

/* ---- conversion on read -------------------------------------------------------- */

/* Whether cllm_st_to_f32 reads this dtype: F32, F16 and BF16, whose every
 * value (subnormals, infinities and NaN payloads included) is a float. */
int cllm_st_converts_to_f32(cllm_st_dtype dt);
/* t's numel elements as float32 into dst (aligned or not; t->data needs no
 * alignment): F32 copied, F16 and BF16 widened exactly. Another dtype is
 * CLLM_ERR_INPUT naming the file (f->path), the tensor and its dtype. */
cllm_status cllm_st_to_f32(const cllm_st_file *f, const cllm_st_tensor *t, float *dst);
/* The same for elements [first, first + count) of t (within numel). */
cllm_status cllm_st_to_f32_range(const cllm_st_file *f, const cllm_st_tensor *t, size_t first, size_t count,
                                 float *dst);
/* The exact widenings themselves, one element (IEEE binary16 and bfloat16 bits). */
float cllm_st_f16_to_f32(uint16_t h);
float cllm_st_bf16_to_f32(uint16_t b);

/* Test hook for crash-safety tests: after `bytes` bytes of the next writes,
 * the writer stops. mode 0: it fails cleanly (temporary file removed, error
 * returned); mode 1: the process _exit(99)s mid-write, leaving the temporary
 * file behind as a real crash would. bytes < 0 disables the hook. */
void cllm_st_debug_fail_after(int64_t bytes, int mode);

#endif
