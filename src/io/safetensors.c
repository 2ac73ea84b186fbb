/* safetensors reader and writer (see include/cllm/train/safetensors.h). */
#include "cllm/io/safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cllm/base/json.h"
#include "cllm/base/le.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [CLLM_ST_F32] = {"F32", 4}, [CLLM_ST_F64] = {"F64", 8},  [CLLM_ST_F16] = {"F16", 2},
    [CLLM_ST_BF16] = {"BF16", 2}, [CLLM_ST_I64] = {"I64", 8}, [CLLM_ST_U64] = {"U64", 8},
    [CLLM_ST_I32] = {"I32", 4}, [CLLM_ST_U32] = {"U32", 4},  [CLLM_ST_I16] = {"I16", 2},
    [CLLM_ST_U16] = {"U16", 2}, [CLLM_ST_I8] = {"I8", 1},    [CLLM_ST_U8] = {"U8", 1},
    [CLLM_ST_BOOL] = {"BOOL", 1},
};
static const int n_dtypes = (int)(sizeof dtype_info / sizeof dtype_info[0]);

const char *cllm_st_dtype_name(cllm_st_dtype dt) {
    return (int)dt >= 0 && (int)dt < n_dtypes ? dtype_info[dt].name : "?";
}

size_t cllm_st_dtype_size(cllm_st_dtype dt) { return (int)dt >= 0 && (int)dt < n_dtypes ? dtype_info[dt].size : 0; }

static int dtype_from_name(const char *s, cllm_st_dtype *dt) {
    for (int i = 0; i < n_dtypes; i++)
        if (strcmp(dtype_info[i].name, s) == 0) {
            *dt = (cllm_st_dtype)i;
            return 1;
        }
    return 0;
}

/* Element count with overflow detection; 0 on overflow is not ambiguous with
 * a real zero because *ok reports it. */
static size_t shape_numel(int ndim, const int64_t *shape, int *ok) {
    size_t n = 1;
    *ok = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) { *ok = 0; return 0; }
        size_t d = (size_t)shape[i];
        if (d && n > SIZE_MAX / d) { *ok = 0; return 0; }
        n *= d;
    }
    return n;
}

/* ---- writer ---------------------------------------------------------------- */

void cllm_st_writer_init(cllm_st_writer *w) { memset(w, 0, sizeof *w); }

void cllm_st_writer_free(cllm_st_writer *w) {
    for (int i = 0; i < w->n_entries; i++) free(w->entries[i].name);
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->entries);
    free(w->meta_keys);
    free(w->meta_values);
    memset(w, 0, sizeof *w);
}

cllm_status cllm_st_writer_add(cllm_st_writer *w, const char *name, cllm_st_dtype dtype, const void *data,
                               int ndim, const int64_t *shape) {
    if (!name || !*name || strcmp(name, "__metadata__") == 0)
        return cllm_fail(CLLM_ERR_INTERNAL, "safetensors: invalid tensor name '%s'", name ? name : "");
    if (ndim < 0 || ndim > CLLM_ST_MAX_DIMS || cllm_st_dtype_size(dtype) == 0)
        return cllm_fail(CLLM_ERR_INTERNAL, "safetensors: invalid dtype or rank for '%s'", name);
    for (int i = 0; i < w->n_entries; i++)
        if (strcmp(w->entries[i].name, name) == 0)
            return cllm_fail(CLLM_ERR_INTERNAL, "safetensors: tensor '%s' added twice", name);
    int ok;
    size_t numel = shape_numel(ndim, shape, &ok);
    if (!ok || numel > SIZE_MAX / cllm_st_dtype_size(dtype))
        return cllm_fail(CLLM_ERR_INTERNAL, "safetensors: bad shape for '%s'", name);
    if (w->n_entries == w->cap_entries) {
        int ncap = w->cap_entries ? 2 * w->cap_entries : 16;
        cllm_st_entry *e = realloc(w->entries, (size_t)ncap * sizeof *e);
        if (!e) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        w->entries = e;
        w->cap_entries = ncap;
    }
    cllm_st_entry *e = &w->entries[w->n_entries];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->data = data;
    e->nbytes = numel * cllm_st_dtype_size(dtype);
    w->n_entries++;
    return CLLM_OK;
}

cllm_status cllm_st_writer_metadata(cllm_st_writer *w, const char *key, const char *value) {
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta_keys[i], key) == 0)
            return cllm_fail(CLLM_ERR_INTERNAL, "safetensors: metadata key '%s' added twice", key);
    if (w->n_meta == w->cap_meta) {
        int ncap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **k = realloc(w->meta_keys, (size_t)ncap * sizeof *k);
        if (!k) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        w->meta_keys = k;
        char **v = realloc(w->meta_values, (size_t)ncap * sizeof *v);
        if (!v) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        w->meta_values = v;
        w->cap_meta = ncap;
    }
    w->meta_keys[w->n_meta] = strdup(key);
    w->meta_values[w->n_meta] = strdup(value);
    if (!w->meta_keys[w->n_meta] || !w->meta_values[w->n_meta]) {
        free(w->meta_keys[w->n_meta]);
        free(w->meta_values[w->n_meta]);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    w->n_meta++;
    return CLLM_OK;
}

/* The header JSON, space-padded so that the byte buffer starts 8-aligned. */
static char *build_header(const cllm_st_writer *w, size_t *out_len) {
    char *buf = NULL;
    size_t len = 0, cap = 0, offset = 0;
    int ok = cllm_json_appendf(&buf, &len, &cap, "{");
    for (int i = 0; ok && i < w->n_entries; i++) {
        const cllm_st_entry *e = &w->entries[i];
        ok &= cllm_json_appendf(&buf, &len, &cap, "%s", i ? "," : "");
        ok &= cllm_json_append_string(&buf, &len, &cap, e->name);
        ok &= cllm_json_appendf(&buf, &len, &cap, ":{\"dtype\":\"%s\",\"shape\":[", cllm_st_dtype_name(e->dtype));
        for (int d = 0; ok && d < e->ndim; d++)
            ok &= cllm_json_appendf(&buf, &len, &cap, "%s%lld", d ? "," : "", (long long)e->shape[d]);
        ok &= cllm_json_appendf(&buf, &len, &cap, "],\"data_offsets\":[%zu,%zu]}", offset, offset + e->nbytes);
        offset += e->nbytes;
    }
    if (ok && w->n_meta) {
        ok &= cllm_json_appendf(&buf, &len, &cap, "%s\"__metadata__\":{", w->n_entries ? "," : "");
        for (int i = 0; ok && i < w->n_meta; i++) {
            ok &= cllm_json_appendf(&buf, &len, &cap, "%s", i ? "," : "");
            ok &= cllm_json_append_string(&buf, &len, &cap, w->meta_keys[i]);
            ok &= cllm_json_appendf(&buf, &len, &cap, ":");
            ok &= cllm_json_append_string(&buf, &len, &cap, w->meta_values[i]);
        }
        ok &= cllm_json_appendf(&buf, &len, &cap, "}");
    }
    ok = ok && cllm_json_appendf(&buf, &len, &cap, "}");
    while (ok && len % 8 != 0) ok = cllm_json_appendf(&buf, &len, &cap, " ");
    if (!ok) {
        free(buf);
        return NULL;
    }
    *out_len = len;
    return buf;
}

static int64_t debug_fail_bytes = -1;
static int debug_fail_mode = 0;

void cllm_st_debug_fail_after(int64_t bytes, int mode) {
    debug_fail_bytes = bytes;
    debug_fail_mode = mode;
}

typedef struct {
    FILE *f;
    int64_t written;
} sink;

/* fwrite that honours the test hook; returns 0 on failure. */
static int sink_write(sink *s, const void *data, size_t n) {
    if (debug_fail_bytes >= 0 && s->written + (int64_t)n > debug_fail_bytes) {
        size_t part = (size_t)(debug_fail_bytes - s->written);
        if (part) fwrite(data, 1, part, s->f);
        if (debug_fail_mode == 1) {
            fflush(s->f);
            _exit(99);
        }
        errno = EIO;
        return 0;
    }
    if (n && fwrite(data, 1, n, s->f) != n) return 0;
    s->written += (int64_t)n;
    return 1;
}

cllm_status cllm_st_writer_write(const cllm_st_writer *w, const char *path) {
    size_t hlen = 0;
    char *header = build_header(w, &hlen);
    if (!header) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    uint8_t len_bytes[8];
    cllm_put_le64(len_bytes, hlen);

    cllm_atomic_file af;
    cllm_status st = cllm_atomic_open(&af, path);
    if (st != CLLM_OK) {
        free(header);
        return st;
    }
    sink s = {af.f, 0};
    int ok = sink_write(&s, len_bytes, 8) && sink_write(&s, header, hlen);
    for (int i = 0; ok && i < w->n_entries; i++) ok = sink_write(&s, w->entries[i].data, w->entries[i].nbytes);
    free(header);
    if (!ok) {
        int e = errno;
        cllm_atomic_abort(&af);
        return cllm_fail(CLLM_ERR_INTERNAL, "cannot write %s: %s", path, strerror(e));
    }
    return cllm_atomic_commit(&af);
}

/* ---- reader ---------------------------------------------------------------- */

void cllm_st_close(cllm_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++) free((char *)f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    cllm_free(f->bytes);
    free(f->path);
    memset(f, 0, sizeof *f);
}

#define BAD(...) cllm_fail(CLLM_ERR_INPUT, __VA_ARGS__)

static cllm_status read_metadata(cllm_st_file *f, const cllm_json *meta) {
    if (meta->type != CLLM_JSON_OBJECT) return BAD("%s: __metadata__ is not an object", f->path);
    f->meta_keys = calloc(meta->length + 1, sizeof *f->meta_keys);
    f->meta_values = calloc(meta->length + 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < meta->length; i++) {
        if (meta->items[i].type != CLLM_JSON_STRING)
            return BAD("%s: __metadata__ value of '%s' is not a string", f->path, meta->keys[i]);
        f->meta_keys[f->n_meta] = strdup(meta->keys[i]);
        f->meta_values[f->n_meta] = strdup(meta->items[i].string);
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_values[f->n_meta - 1])
            return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    return CLLM_OK;
}

/* A JSON array of non-negative integers, at most `max` of them. */
static int read_uint_array(const cllm_json *a, int64_t *out, int max, int *count) {
    if (!a || a->type != CLLM_JSON_ARRAY || a->length > (size_t)max) return 0;
    for (size_t i = 0; i < a->length; i++) {
        const cllm_json *v = &a->items[i];
        if (v->type != CLLM_JSON_NUMBER || !v->is_integer || v->integer < 0) return 0;
        out[i] = v->integer;
    }
    *count = (int)a->length;
    return 1;
}

static cllm_status read_tensor_entry(cllm_st_file *f, const char *name, const cllm_json *info,
                                     size_t buffer_size, int64_t offsets[2]) {
    if (!*name) return BAD("%s: a tensor has an empty name", f->path);
    if (info->type != CLLM_JSON_OBJECT) return BAD("%s: entry of tensor '%s' is not an object", f->path, name);
    for (size_t k = 0; k < info->length; k++)
        if (strcmp(info->keys[k], "dtype") && strcmp(info->keys[k], "shape") && strcmp(info->keys[k], "data_offsets"))
            return BAD("%s: tensor '%s' has unknown field '%s'", f->path, name, info->keys[k]);
    const cllm_json *dt = cllm_json_get(info, "dtype");
    cllm_st_tensor *t = &f->tensors[f->n_tensors];
    if (!dt || dt->type != CLLM_JSON_STRING) return BAD("%s: tensor '%s' has no dtype", f->path, name);
    if (!dtype_from_name(dt->string, &t->dtype))
        return BAD("%s: tensor '%s' has unknown dtype '%s'", f->path, name, dt->string);
    if (!read_uint_array(cllm_json_get(info, "shape"), t->shape, CLLM_ST_MAX_DIMS, &t->ndim))
        return BAD("%s: tensor '%s' has a malformed shape (want up to %d non-negative integers)", f->path, name,
                   CLLM_ST_MAX_DIMS);
    int n_off = 0;
    if (!read_uint_array(cllm_json_get(info, "data_offsets"), offsets, 2, &n_off) || n_off != 2)
        return BAD("%s: tensor '%s' has malformed data_offsets (want [begin,end])", f->path, name);
    if (offsets[0] > offsets[1] || (uint64_t)offsets[1] > buffer_size)
        return BAD("%s: tensor '%s' data_offsets [%lld,%lld] lie outside the %zu-byte buffer", f->path, name,
                   (long long)offsets[0], (long long)offsets[1], buffer_size);
    int ok;
    t->numel = shape_numel(t->ndim, t->shape, &ok);
    size_t esize = cllm_st_dtype_size(t->dtype);
    if (!ok || t->numel > SIZE_MAX / esize || t->numel * esize != (size_t)(offsets[1] - offsets[0]))
        return BAD("%s: tensor '%s' shape needs %s bytes but data_offsets span %lld", f->path, name,
                   ok && t->numel <= SIZE_MAX / esize ? "a different number of" : "too many",
                   (long long)(offsets[1] - offsets[0]));
    t->nbytes = t->numel * esize;
    t->name = strdup(name);
    if (!t->name) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    f->n_tensors++;
    return CLLM_OK;
}

typedef struct {
    int64_t begin, end;
    int index;
} span;

static int compare_spans(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->index - y->index;
}

/* Sorted by begin, the spans must tile [0, buffer_size) exactly: this rules
 * out overlaps (aliasing) and gaps (unaccounted bytes) in one pass. */
static cllm_status check_tiling(cllm_st_file *f, span *spans, int n, size_t buffer_size) {
    qsort(spans, (size_t)n, sizeof *spans, compare_spans);
    int64_t expect = 0;
    for (int i = 0; i < n; i++) {
        const char *name = f->tensors[spans[i].index].name;
        if (spans[i].begin < expect)
            return BAD("%s: tensor '%s' overlaps tensor '%s'", f->path, name, f->tensors[spans[i - 1].index].name);
        if (spans[i].begin > expect)
            return BAD("%s: %lld unused bytes before tensor '%s'", f->path, (long long)(spans[i].begin - expect), name);
        expect = spans[i].end;
    }
    if ((uint64_t)expect != buffer_size)
        return BAD("%s: the data buffer has %zu bytes but the tensors cover %lld", f->path, buffer_size,
                   (long long)expect);
    return CLLM_OK;
}

static cllm_status read_header(cllm_st_file *f, const cllm_json *h, size_t data_start) {
    size_t buffer_size = f->size - data_start;
    if (h->type != CLLM_JSON_OBJECT) return BAD("%s: header is not a JSON object", f->path);
    f->tensors = calloc(h->length + 1, sizeof *f->tensors);
    span *spans = calloc(h->length + 1, sizeof *spans);
    if (!f->tensors || !spans) {
        free(spans);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    cllm_status st = CLLM_OK;
    for (size_t i = 0; st == CLLM_OK && i < h->length; i++) {
        if (strcmp(h->keys[i], "__metadata__") == 0) {
            st = read_metadata(f, &h->items[i]);
            continue;
        }
        int64_t off[2];
        st = read_tensor_entry(f, h->keys[i], &h->items[i], buffer_size, off);
        if (st == CLLM_OK) {
            int k = f->n_tensors - 1;
            spans[k] = (span){off[0], off[1], k};
            f->tensors[k].data = f->bytes + data_start + off[0];
        }
    }
    if (st == CLLM_OK) st = check_tiling(f, spans, f->n_tensors, buffer_size);
    free(spans);
    return st;
}

static cllm_status parse_owned(cllm_st_file *f) {
    if (f->size < 8) return BAD("%s: truncated: %zu bytes, not even the 8-byte header length", f->path, f->size);
    uint64_t n = cllm_get_le64((const uint8_t *)f->bytes);
    if (n > f->size - 8)
        return BAD("%s: header length %llu runs past the end of the %zu-byte file (truncated or not safetensors)",
                   f->path, (unsigned long long)n, f->size);
    if (n < 2 || f->bytes[8] != '{') return BAD("%s: header does not start with a JSON object", f->path);
    cllm_json *h = NULL;
    cllm_status st = cllm_json_parse((const char *)f->bytes + 8, (size_t)n, &h);
    if (st != CLLM_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", cllm_last_error());
        return cllm_fail(st, "%s: header is not valid JSON: %s", f->path, msg);
    }
    st = read_header(f, h, 8 + (size_t)n);
    cllm_json_free(h);
    return st;
}

cllm_status cllm_st_parse(const void *bytes, size_t n, const char *label, cllm_st_file *f) {
    memset(f, 0, sizeof *f);
    f->path = strdup(label);
    f->bytes = cllm_alloc(n ? n : 1);
    if (!f->path || !f->bytes) {
        cllm_st_close(f);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    if (n) memcpy(f->bytes, bytes, n);
    f->size = n;
    cllm_status st = parse_owned(f);
    if (st != CLLM_OK) cllm_st_close(f);
    return st;
}

cllm_status cllm_st_open(const char *path, cllm_st_file *f) {
    memset(f, 0, sizeof *f);
    struct stat sb;
    if (stat(path, &sb) != 0) return BAD("%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return BAD("%s: not a regular file", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return BAD("%s: %s", path, strerror(errno));
    f->path = strdup(path);
    f->size = (size_t)sb.st_size;
    f->bytes = cllm_alloc(f->size ? f->size : 1);
    if (!f->path || !f->bytes) {
        fclose(fp);
        cllm_st_close(f);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory reading %s", path);
    }
    size_t got = fread(f->bytes, 1, f->size, fp);
    fclose(fp);
    if (got != f->size) {
        cllm_st_close(f);
        return BAD("%s: could not read the whole file", path);
    }
    cllm_status st = parse_owned(f);
    if (st != CLLM_OK) cllm_st_close(f);
    return st;
}

const cllm_st_tensor *cllm_st_find(const cllm_st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *cllm_st_metadata(const cllm_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

/* ---- conversion on read ------------------------------------------------------ */

static float f32_from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* binary16: 1 sign, 5 exponent (bias 15), 10 fraction bits. Every value has
 * an exact float: normals rebias the exponent, subnormals (fraction x 2^-24)
 * are normalised, infinities and NaNs keep their fraction bits as the top of
 * float's (a quiet NaN stays quiet, a payload stays the same payload). */
float cllm_st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, frac = h & 0x3ffu;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | frac << 13);
    if (exp != 0) return f32_from_bits(sign | (exp + 127 - 15) << 23 | frac << 13);
    if (frac == 0) return f32_from_bits(sign);
    int shift = 0; /* bring the leading 1 of a subnormal to bit 10 */
    while (!(frac & 0x400u)) {
        frac <<= 1;
        shift++;
    }
    return f32_from_bits(sign | (uint32_t)(127 - 15 + 1 - shift) << 23 | (frac & 0x3ffu) << 13);
}

/* bfloat16 is the top half of a float: exact by construction. */
float cllm_st_bf16_to_f32(uint16_t b) { return f32_from_bits((uint32_t)b << 16); }

int cllm_st_converts_to_f32(cllm_st_dtype dt) { return dt == CLLM_ST_F32 || dt == CLLM_ST_F16 || dt == CLLM_ST_BF16; }

cllm_status cllm_st_to_f32_range(const cllm_st_file *f, const cllm_st_tensor *t, size_t first, size_t count,
                                 float *dst) {
    if (!cllm_st_converts_to_f32(t->dtype))
        return BAD("%s: tensor %s is %s, cllm reads F32, F16 or BF16", f->path, t->name, cllm_st_dtype_name(t->dtype));
    if (first > t->numel || count > t->numel - first)
        return cllm_fail(CLLM_ERR_INTERNAL, "%s: elements %zu..%zu of tensor %s are past its %zu", f->path, first,
                         first + count, t->name, t->numel);
    const unsigned char *p = (const unsigned char *)t->data + first * cllm_st_dtype_size(t->dtype);
    if (t->dtype == CLLM_ST_F32) {
        memcpy(dst, p, count * sizeof(float)); /* the format is little-endian, as is every target cllm builds for */
        return CLLM_OK;
    }
    float (*widen)(uint16_t) = t->dtype == CLLM_ST_F16 ? cllm_st_f16_to_f32 : cllm_st_bf16_to_f32;
    for (size_t i = 0; i < count; i++) dst[i] = widen((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
    return CLLM_OK;
}

cllm_status cllm_st_to_f32(const cllm_st_file *f, const cllm_st_tensor *t, float *dst) {
    return cllm_st_to_f32_range(f, t, 0, t->numel, dst);
}
