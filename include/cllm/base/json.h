/* A small strict JSON reader for the files cllm reads back: safetensors
 * headers, config.json and run.json.
 *
 * Strict means RFC 8259 and nothing more (no comments, no trailing commas, no
 * NaN, no duplicate keys in an object, no "\u0000" inside strings since names
 * are used as C strings). Nesting is limited so that a hostile file cannot
 * exhaust the stack. The input need not be NUL-terminated and is never read
 * past its length. */
#ifndef CLLM_BASE_JSON_H
#define CLLM_BASE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "cllm/base/common.h"

typedef enum {
    CLLM_JSON_NULL,
    CLLM_JSON_BOOL,
    CLLM_JSON_NUMBER,
    CLLM_JSON_STRING,
    CLLM_JSON_ARRAY,
    CLLM_JSON_OBJECT
} cllm_json_type;

typedef struct cllm_json cllm_json;
struct cllm_json {
    cllm_json_type type;
    int boolean;        /* BOOL */
    double number;      /* NUMBER */
    int is_integer;     /* NUMBER written without fraction or exponent and within int64 */
    int64_t integer;    /* NUMBER, when is_integer */
    char *string;       /* STRING: decoded, NUL-terminated */
    size_t length;      /* STRING: bytes; ARRAY/OBJECT: number of items */
    cllm_json *items;   /* ARRAY/OBJECT values, in document order */
    char **keys;        /* OBJECT keys, parallel to items */
};

#define CLLM_JSON_MAX_DEPTH 64

/* Parses text[0..n) (one value, surrounded by optional whitespace). On error
 * returns CLLM_ERR_INPUT with a message "<what> at byte <offset>" (the caller
 * prefixes the file name); *out is NULL then. */
cllm_status cllm_json_parse(const char *text, size_t n, cllm_json **out);
void cllm_json_free(cllm_json *v);

/* Member of an object by key, or NULL (also NULL when v is not an object). */
const cllm_json *cllm_json_get(const cllm_json *v, const char *key);

/* Reads a whole file and parses it. A missing file is CLLM_ERR_INPUT
 * "<path>: no such file"; a parse error names the path. */
cllm_status cllm_json_parse_file(const char *path, cllm_json **out);

/* Appends s to buf as a JSON string literal with quotes and escapes; buf
 * grows as needed (*cap bytes allocated, *len used). Returns 0 on OOM. */
int cllm_json_append_string(char **buf, size_t *len, size_t *cap, const char *s);
/* printf-style append to a growing buffer; 0 on OOM. */
int cllm_json_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The one way cllm writes a JSON number: v with `digits` significant digits
 * (1..17; 17 round-trips a double), or null when v is NaN or +-Inf, which
 * JSON cannot represent. snprintf-like: writes at most n bytes including the
 * NUL and returns the length of the full text (at most 24 + digits). */
int cllm_json_format_number(char *buf, size_t n, double v, int digits);
/* The same, appended to a growing buffer; 0 on OOM. */
int cllm_json_append_number(char **buf, size_t *len, size_t *cap, double v, int digits);

#endif
