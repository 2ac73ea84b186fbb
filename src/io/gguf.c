/* GGUF v3 writer (see include/cllm/io/gguf.h for the layout). */
#include "cllm/io/gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/base/le.h"

static cllm_status oom(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory writing GGUF"); }

/* ---- checks the spec and ggml's reader make ---------------------------------------------------- */

/* Well-formed UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (len == 0 || i + len > n) return 0;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_of_len[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += len;
    }
    return 1;
}

/* `lower_snake_case` segments separated by single dots, at most 65535 bytes. */
static int valid_key(const char *key) {
    size_t n = strlen(key);
    if (n == 0 || n > 65535 || key[0] == '.' || key[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = key[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (c == '.' && key[i + 1] != '.');
        if (!ok) return 0;
    }
    return 1;
}

/* ---- the serialised metadata ------------------------------------------------------------------- */

static int put_bytes(cllm_gguf_bytes *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *p = realloc(b->data, cap);
        if (!p) return 0;
        b->data = p;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    return 1;
}

static int put_u32(cllm_gguf_bytes *out, uint32_t v) {
    uint8_t b[4];
    cllm_put_le32(b, v);
    return put_bytes(out, b, 4);
}

static int put_u64(cllm_gguf_bytes *out, uint64_t v) {
    uint8_t b[8];
    cllm_put_le64(b, v);
    return put_bytes(out, b, 8);
}

static int put_string(cllm_gguf_bytes *out, const char *s, size_t n) { return put_u64(out, n) && put_bytes(out, s, n); }

/* Starts a KV: checks the key, remembers it, writes it and the value type.
 * On failure the section is left as it was. */
static cllm_status begin_kv(cllm_gguf_writer *w, const char *key, cllm_gguf_value_type type, size_t *mark) {
    if (!valid_key(key))
        return cllm_fail(CLLM_ERR_INTERNAL, "GGUF: metadata key '%s' is not lower_snake_case segments joined by '.'",
                         key);
    if (strcmp(key, "general.alignment") == 0)
        return cllm_fail(CLLM_ERR_INTERNAL, "GGUF: general.alignment is the writer's (set it at init)");
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->keys[i], key) == 0)
            return cllm_fail(CLLM_ERR_INTERNAL, "GGUF: metadata key '%s' added twice", key);
    char **keys = realloc(w->keys, (size_t)(w->n_kv + 1) * sizeof *keys);
    if (!keys) return oom();
    w->keys = keys;
    *mark = w->kv.len;
    if (!put_string(&w->kv, key, strlen(key)) || !put_u32(&w->kv, (uint32_t)type)) {
        w->kv.len = *mark;
        return oom();
    }
    return CLLM_OK;
}

/* Ends a KV begun at `mark`: ok != 0 keeps it, else the bytes are dropped. */
static cllm_status end_kv(cllm_gguf_writer *w, const char *key, size_t mark, int ok) {
    char *copy = ok ? strdup(key) : NULL;
    if (!copy) {
        w->kv.len = mark;
        return oom();
    }
    w->keys[w->n_kv++] = copy;
    return CLLM_OK;
}

cllm_status cllm_gguf_writer_init(cllm_gguf_writer *w, uint32_t alignment) {
    memset(w, 0, sizeof *w);
    if (alignment == 0 || alignment % 8 != 0)
        return cllm_fail(CLLM_ERR_INTERNAL, "GGUF: alignment %u is not a positive multiple of 8", alignment);
    w->alignment = alignment;
    return CLLM_OK;
}

void cllm_gguf_writer_free(cllm_gguf_writer *w) {
    for (uint64_t i = 0; i < w->n_kv; i++) free(w->keys[i]);
    for (int i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->keys);
    free(w->tensors);
    free(w->kv.data);
    memset(w, 0, sizeof *w);
}

static cllm_status add_scalar(cllm_gguf_writer *w, const char *key, cllm_gguf_value_type type, uint64_t bits,
                              int nbytes) {
    size_t mark;
    cllm_status st = begin_kv(w, key, type, &mark);
    if (st != CLLM_OK) return st;
    uint8_t b[8];
    cllm_put_le64(b, bits); /* the value's low nbytes bytes, little-endian */
    return end_kv(w, key, mark, put_bytes(&w->kv, b, (size_t)nbytes));
}

cllm_status cllm_gguf_add_u32(cllm_gguf_writer *w, const char *key, uint32_t value) {
    return add_scalar(w, key, CLLM_GGUF_UINT32, value, 4);
}

cllm_status cllm_gguf_add_f32(cllm_gguf_writer *w, const char *key, float value) {
    uint32_t bits;
    memcpy(&bits, &value, 4);
    return add_scalar(w, key, CLLM_GGUF_FLOAT32, bits, 4);
}

cllm_status cllm_gguf_add_bool(cllm_gguf_writer *w, const char *key, int value) {
    return add_scalar(w, key, CLLM_GGUF_BOOL, value ? 1 : 0, 1);
}

cllm_status cllm_gguf_add_string(cllm_gguf_writer *w, const char *key, const char *value) {
    size_t n = strlen(value);
    if (!valid_utf8((const unsigned char *)value, n))
        return cllm_fail(CLLM_ERR_INTERNAL, "GGUF: the value of '%s' is not valid UTF-8", key);
    size_t mark;
    cllm_status st = begin_kv(w, key, CLLM_GGUF_STRING, &mark);
    if (st != CLLM_OK) return st;
    return end_kv(w, key, mark, put_string(&w->kv, value, n));
}

cllm_status cllm_gguf_add_string_array(cllm_gguf_writer *w, const char *key, const char *const *strings,
                                       const size_t *lens, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (!valid_utf8((const unsigned char *)strings[i], lens[i]))
            return cllm_fail(CLLM_ERR_INTERNAL, "GGUF: element %llu of '%s' is not valid UTF-8", (unsigned long long)i,
                             key);
    size_t mark;
    cllm_status st = begin_kv(w, key, CLLM_GGUF_ARRAY, &mark);
    if (st != CLLM_OK) return st;
    int ok = put_u32(&w->kv, CLLM_GGUF_STRING) && put_u64(&w->kv, n);
    for (uint64_t i = 0; ok && i < n; i++) ok = put_string(&w->kv, strings[i], lens[i]);
    return end_kv(w, key, mark, ok);
}

cllm_status cllm_gguf_add_i32_array(cllm_gguf_writer *w, const char *key, const int32_t *values, uint64_t n) {
    size_t mark;
    cllm_status st = begin_kv(w, key, CLLM_GGUF_ARRAY, &mark);
    if (st != CLLM_OK) return st;
    int ok = put_u32(&w->kv, CLLM_GGUF_INT32) && put_u64(&w->kv, n);
    for (uint64_t i = 0; ok && i < n; i++) ok = put_u32(&w->kv, (uint32_t)values[i]);
    return end_kv(w, key, mark, ok);
}

/* ---- tensors ------------------------------------------------------------------------------------ */

static uint64_t align_up(uint64_t x, uint32_t a) { return x + (a - x % a) % a; }

static size_t type_size(cllm_ggml_type t) { return t == CLLM_GGML_F32 ? 4 : t == CLLM_GGML_F16 ? 2 : 0; }

cllm_status cllm_gguf_add_tensor(cllm_gguf_writer *w, const char *name, cllm_ggml_type type, int n_dims,
                                 const uint64_t *dims, const void *data) {
    size_t nlen = strlen(name);
    if (nlen == 0 || nlen > CLLM_GGUF_MAX_NAME || !valid_utf8((const unsigned char *)name, nlen))
        return cllm_fail(CLLM_ERR_INTERNAL, "GGUF: tensor name '%s' is empty, longer than %d bytes or not UTF-8",
                         name, CLLM_GGUF_MAX_NAME);
    if (n_dims < 1 || n_dims > CLLM_GGUF_MAX_DIMS || type_size(type) == 0)
        return cllm_fail(CLLM_ERR_INTERNAL, "GGUF: tensor '%s' has %d dims or an unknown type", name, n_dims);
    for (int i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return cllm_fail(CLLM_ERR_INTERNAL, "GGUF: tensor '%s' added twice", name);
    uint64_t numel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (dims[d] == 0 || numel > UINT64_MAX / dims[d])
            return cllm_fail(CLLM_ERR_INTERNAL, "GGUF: tensor '%s' has a zero or overflowing dimension", name);
        numel *= dims[d];
    }
    if (numel > SIZE_MAX / type_size(type)) return cllm_fail(CLLM_ERR_INTERNAL, "GGUF: tensor '%s' is too big", name);
    if (w->n_tensors == w->cap_tensors) {
        int cap = w->cap_tensors ? 2 * w->cap_tensors : 16;
        cllm_gguf_tensor *t = realloc(w->tensors, (size_t)cap * sizeof *t);
        if (!t) return oom();
        w->tensors = t;
        w->cap_tensors = cap;
    }
    cllm_gguf_tensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return oom();
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) t->dims[d] = dims[d];
    t->type = type;
    t->data = data;
    t->nbytes = (size_t)numel * type_size(type);
    t->offset = align_up(w->data_bytes, w->alignment);
    w->data_bytes = t->offset + t->nbytes;
    w->n_tensors++;
    return CLLM_OK;
}

/* ---- the file ----------------------------------------------------------------------------------- */

/* Everything before the data section: header, metadata (with
 * general.alignment last), tensor infos, padding. */
static cllm_status build_head(const cllm_gguf_writer *w, cllm_gguf_bytes *head) {
    memset(head, 0, sizeof *head);
    int ok = put_bytes(head, CLLM_GGUF_MAGIC, 4) && put_u32(head, CLLM_GGUF_VERSION) &&
             put_u64(head, (uint64_t)w->n_tensors) && put_u64(head, w->n_kv + 1) &&
             put_bytes(head, w->kv.data, w->kv.len);
    static const char align_key[] = "general.alignment";
    ok = ok && put_string(head, align_key, sizeof align_key - 1) && put_u32(head, CLLM_GGUF_UINT32) &&
         put_u32(head, w->alignment);
    for (int i = 0; ok && i < w->n_tensors; i++) {
        const cllm_gguf_tensor *t = &w->tensors[i];
        ok = put_string(head, t->name, strlen(t->name)) && put_u32(head, (uint32_t)t->n_dims);
        for (int d = 0; ok && d < t->n_dims; d++) ok = put_u64(head, t->dims[d]);
        ok = ok && put_u32(head, (uint32_t)t->type) && put_u64(head, t->offset);
    }
    static const unsigned char zeros[256];
    size_t pad = (size_t)(align_up(head->len, w->alignment) - head->len);
    while (ok && pad) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        ok = put_bytes(head, zeros, k);
        pad -= k;
    }
    if (!ok) {
        free(head->data);
        return oom();
    }
    return CLLM_OK;
}

static int write_zeros(FILE *f, uint64_t n) {
    static const unsigned char zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (fwrite(zeros, 1, k, f) != k) return 0;
        n -= k;
    }
    return 1;
}

cllm_status cllm_gguf_write(const cllm_gguf_writer *w, const char *path) {
    cllm_gguf_bytes head;
    cllm_status st = build_head(w, &head);
    if (st != CLLM_OK) return st;
    cllm_atomic_file af;
    st = cllm_atomic_open(&af, path);
    if (st != CLLM_OK) {
        free(head.data);
        return st;
    }
    int ok = fwrite(head.data, 1, head.len, af.f) == head.len;
    free(head.data);
    uint64_t pos = 0;
    for (int i = 0; ok && i < w->n_tensors; i++) {
        const cllm_gguf_tensor *t = &w->tensors[i];
        ok = write_zeros(af.f, t->offset - pos) && fwrite(t->data, 1, t->nbytes, af.f) == t->nbytes;
        pos = t->offset + t->nbytes;
    }
    /* The last tensor is padded too: ggml's reader takes the data section as the padded sizes' sum. */
    ok = ok && write_zeros(af.f, align_up(pos, w->alignment) - pos);
    if (!ok) {
        int e = errno;
        cllm_atomic_abort(&af);
        return cllm_fail(CLLM_ERR_INTERNAL, "cannot write %s: %s", path, strerror(e));
    }
    return cllm_atomic_commit(&af);
}

uint64_t cllm_gguf_file_size(const cllm_gguf_writer *w) {
    cllm_gguf_bytes head;
    if (build_head(w, &head) != CLLM_OK) return 0;
    free(head.data);
    return (uint64_t)head.len + align_up(w->data_bytes, w->alignment);
}

/* ---- binary16 ----------------------------------------------------------------------------------- */

uint16_t cllm_f16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((a >> 13) & 0x3ffu); /* NaN, quiet */
    /* 65520 lies halfway between the largest half, 65504, and 2^16: to even is up, to infinity. */
    if (a >= 0x477ff000u) return sign | 0x7c00u;
    if (a >= 0x38800000u) { /* a normal half (|x| >= 2^-14): rebias the exponent, round 13 bits off */
        uint32_t m = a - (112u << 23);
        m += 0xfffu + ((m >> 13) & 1u);
        return sign | (uint16_t)(m >> 13);
    }
    /* A subnormal half, in units of 2^-24; 2^-25 and below round to zero (2^-25 is the tie, to even 0). */
    if (a <= 0x33000000u) return sign;
    uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u;
    int shift = (int)(126 - e); /* 14..24 */
    uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return sign | (uint16_t)q;
}
