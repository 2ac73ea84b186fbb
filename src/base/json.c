/* Strict recursive-descent JSON reader (see include/cllm/train/json.h). */
#include "cllm/base/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const char *s;
    size_t n, pos;
    int depth;
    int failed;
} parser;

static cllm_status parse_error(parser *p, const char *what) {
    p->failed = 1;
    return cllm_fail(CLLM_ERR_INPUT, "%s at byte %zu", what, p->pos);
}

static void skip_space(parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static int peek(const parser *p) { return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1; }

static int expect_literal(parser *p, const char *lit) {
    size_t k = strlen(lit);
    if (p->n - p->pos < k || memcmp(p->s + p->pos, lit, k) != 0) return 0;
    p->pos += k;
    return 1;
}

static int hex_value(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(parser *p, unsigned *out) {
    if (p->n - p->pos < 4) return 0;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value((unsigned char)p->s[p->pos + i]);
        if (h < 0) return 0;
        v = v * 16 + (unsigned)h;
    }
    p->pos += 4;
    *out = v;
    return 1;
}

static size_t put_utf8(char *dst, unsigned cp) {
    if (cp < 0x80) { dst[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        dst[0] = (char)(0xC0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* \uXXXX, with a surrogate pair when the first unit is a high surrogate. */
static cllm_status read_unicode_escape(parser *p, unsigned *cp) {
    unsigned hi;
    if (!read_hex4(p, &hi)) return parse_error(p, "bad \\u escape");
    if (hi >= 0xDC00 && hi <= 0xDFFF) return parse_error(p, "lone low surrogate");
    if (hi >= 0xD800 && hi <= 0xDBFF) {
        unsigned lo;
        if (!expect_literal(p, "\\u") || !read_hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF)
            return parse_error(p, "unpaired surrogate");
        hi = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (hi == 0) return parse_error(p, "\\u0000 in a string");
    *cp = hi;
    return CLLM_OK;
}

/* Decoded strings are never longer than their source, so one allocation of
 * the raw length suffices. */
static cllm_status parse_string(parser *p, char **out, size_t *out_len) {
    if (peek(p) != '"') return parse_error(p, "expected a string");
    p->pos++;
    size_t start = p->pos, end = start;
    while (end < p->n && p->s[end] != '"') end += (p->s[end] == '\\') ? 2 : 1;
    if (end >= p->n) return parse_error(p, "unterminated string");
    char *buf = malloc(end - start + 1);
    if (!buf) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    size_t k = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) {
            free(buf);
            return parse_error(p, "control character in a string");
        }
        if (c != '\\') {
            buf[k++] = (char)c;
            p->pos++;
            continue;
        }
        p->pos++;
        char e = p->s[p->pos++];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e != '\0' && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            buf[k++] = decoded[simple - "\"\\/bfnrt"];
        } else if (e == 'u') {
            unsigned cp = 0;
            cllm_status st = read_unicode_escape(p, &cp);
            /* A \u sequence takes at least 6 source bytes and at most 12 for
             * 4 output bytes, so it always fits. Guard the string end too. */
            if (st == CLLM_OK && p->pos > end) st = parse_error(p, "bad \\u escape");
            if (st != CLLM_OK) {
                free(buf);
                return st;
            }
            k += put_utf8(buf + k, cp);
        } else {
            free(buf);
            return parse_error(p, "bad escape in a string");
        }
    }
    p->pos = end + 1;
    buf[k] = '\0';
    *out = buf;
    if (out_len) *out_len = k;
    return CLLM_OK;
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

static cllm_status parse_number(parser *p, cllm_json *v) {
    size_t start = p->pos;
    int integral = 1;
    if (peek(p) == '-') p->pos++;
    if (peek(p) == '0') {
        p->pos++;
    } else if (is_digit(peek(p))) {
        while (is_digit(peek(p))) p->pos++;
    } else {
        return parse_error(p, "bad number");
    }
    if (peek(p) == '.') {
        integral = 0;
        p->pos++;
        if (!is_digit(peek(p))) return parse_error(p, "bad number");
        while (is_digit(peek(p))) p->pos++;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        integral = 0;
        p->pos++;
        if (peek(p) == '+' || peek(p) == '-') p->pos++;
        if (!is_digit(peek(p))) return parse_error(p, "bad number");
        while (is_digit(peek(p))) p->pos++;
    }
    char tmp[64];
    size_t len = p->pos - start;
    if (len >= sizeof tmp) return parse_error(p, "number too long");
    memcpy(tmp, p->s + start, len);
    tmp[len] = '\0';
    v->type = CLLM_JSON_NUMBER;
    v->number = strtod(tmp, NULL);
    if (integral) {
        errno = 0;
        long long i = strtoll(tmp, NULL, 10);
        if (errno == 0) {
            v->is_integer = 1;
            v->integer = (int64_t)i;
        }
    }
    return CLLM_OK;
}

static cllm_status parse_value(parser *p, cllm_json *v);

/* Grows items/keys geometrically; keys may be NULL for arrays. */
static int push_item(cllm_json *v, size_t *cap, int with_keys) {
    if (v->length < *cap) return 1;
    size_t ncap = *cap ? *cap * 2 : 4;
    cllm_json *items = realloc(v->items, ncap * sizeof *items);
    if (!items) return 0;
    v->items = items;
    if (with_keys) {
        char **keys = realloc(v->keys, ncap * sizeof *keys);
        if (!keys) return 0;
        v->keys = keys;
    }
    *cap = ncap;
    return 1;
}

static cllm_status parse_array(parser *p, cllm_json *v) {
    v->type = CLLM_JSON_ARRAY;
    p->pos++; /* '[' */
    skip_space(p);
    if (peek(p) == ']') {
        p->pos++;
        return CLLM_OK;
    }
    size_t cap = 0;
    for (;;) {
        if (!push_item(v, &cap, 0)) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        cllm_json *item = &v->items[v->length];
        memset(item, 0, sizeof *item);
        v->length++;
        cllm_status st = parse_value(p, item);
        if (st != CLLM_OK) return st;
        skip_space(p);
        int c = peek(p);
        p->pos++;
        if (c == ']') return CLLM_OK;
        if (c != ',') {
            p->pos--;
            return parse_error(p, "expected ',' or ']'");
        }
    }
}

/* The keys seen so far in one object. A small object is searched in place;
 * past SMALL_OBJECT keys (a tokenizer vocabulary has 50,000) an open-
 * addressing set of key indexes keeps the duplicate check linear. */
#define SMALL_OBJECT 32
typedef struct {
    size_t *slots; /* index + 1 of a key of obj, 0 = empty */
    size_t cap;    /* power of two, 0 until the object outgrows SMALL_OBJECT */
} key_set;

static size_t key_hash(const char *key) {
    size_t h = 1469598103934665603ULL & SIZE_MAX;
    for (const unsigned char *c = (const unsigned char *)key; *c; c++) h = (h ^ *c) * 1099511628211ULL;
    return h;
}

/* Inserts keys[i]; 0 when an equal key is there already (or on OOM, *oom set). */
static int key_set_add(key_set *ks, char **keys, size_t i, int *oom) {
    if ((i + 1) * 2 > ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 2 * SMALL_OBJECT * 2;
        size_t *slots = calloc(cap, sizeof *slots);
        if (!slots) {
            *oom = 1;
            return 0;
        }
        for (size_t k = 0; k < ks->cap; k++) {
            if (!ks->slots[k]) continue;
            size_t j = key_hash(keys[ks->slots[k] - 1]) & (cap - 1);
            while (slots[j]) j = (j + 1) & (cap - 1);
            slots[j] = ks->slots[k];
        }
        free(ks->slots);
        ks->slots = slots;
        ks->cap = cap;
    }
    size_t j = key_hash(keys[i]) & (ks->cap - 1);
    for (; ks->slots[j]; j = (j + 1) & (ks->cap - 1))
        if (strcmp(keys[ks->slots[j] - 1], keys[i]) == 0) return 0;
    ks->slots[j] = i + 1;
    return 1;
}

/* Whether obj->keys[n] (just parsed) repeats one of keys[0..n). */
static int repeats_key(const cllm_json *obj, size_t n, key_set *ks, int *oom) {
    if (n < SMALL_OBJECT) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(obj->keys[i], obj->keys[n]) == 0) return 1;
        return 0;
    }
    for (size_t i = ks->cap ? n : 0; i < n; i++) key_set_add(ks, obj->keys, i, oom); /* first use: the earlier keys */
    return !key_set_add(ks, obj->keys, n, oom) && !*oom;
}

static cllm_status parse_members(parser *p, cllm_json *v, size_t *cap, key_set *ks) {
    for (;;) {
        skip_space(p);
        size_t key_pos = p->pos;
        char *key = NULL;
        cllm_status st = parse_string(p, &key, NULL);
        if (st != CLLM_OK) return st;
        if (!push_item(v, cap, 1)) {
            free(key);
            return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        }
        cllm_json *item = &v->items[v->length];
        memset(item, 0, sizeof *item);
        v->keys[v->length] = key;
        int oom = 0;
        if (repeats_key(v, v->length, ks, &oom)) {
            free(key);
            p->pos = key_pos;
            return parse_error(p, "duplicate key");
        }
        if (oom) {
            free(key);
            return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
        }
        v->length++;
        skip_space(p);
        if (peek(p) != ':') return parse_error(p, "expected ':'");
        p->pos++;
        st = parse_value(p, item);
        if (st != CLLM_OK) return st;
        skip_space(p);
        int c = peek(p);
        p->pos++;
        if (c == '}') return CLLM_OK;
        if (c != ',') {
            p->pos--;
            return parse_error(p, "expected ',' or '}'");
        }
    }
}

static cllm_status parse_object(parser *p, cllm_json *v) {
    v->type = CLLM_JSON_OBJECT;
    p->pos++; /* '{' */
    skip_space(p);
    if (peek(p) == '}') {
        p->pos++;
        return CLLM_OK;
    }
    size_t cap = 0;
    key_set ks = {NULL, 0};
    cllm_status st = parse_members(p, v, &cap, &ks);
    free(ks.slots);
    return st;
}

static cllm_status parse_value(parser *p, cllm_json *v) {
    skip_space(p);
    int c = peek(p);
    if (c == '{' || c == '[') {
        if (++p->depth > CLLM_JSON_MAX_DEPTH) return parse_error(p, "nesting too deep");
        cllm_status st = c == '{' ? parse_object(p, v) : parse_array(p, v);
        p->depth--;
        return st;
    }
    if (c == '"') {
        v->type = CLLM_JSON_STRING;
        return parse_string(p, &v->string, &v->length);
    }
    if (c == '-' || is_digit(c)) return parse_number(p, v);
    if (expect_literal(p, "true")) { v->type = CLLM_JSON_BOOL; v->boolean = 1; return CLLM_OK; }
    if (expect_literal(p, "false")) { v->type = CLLM_JSON_BOOL; return CLLM_OK; }
    if (expect_literal(p, "null")) { v->type = CLLM_JSON_NULL; return CLLM_OK; }
    return parse_error(p, c < 0 ? "unexpected end" : "unexpected character");
}

static void free_contents(cllm_json *v) {
    for (size_t i = 0; v->items && i < v->length; i++) free_contents(&v->items[i]);
    if (v->keys)
        for (size_t i = 0; i < v->length; i++) free(v->keys[i]);
    free(v->items);
    free(v->keys);
    free(v->string);
}

void cllm_json_free(cllm_json *v) {
    if (!v) return;
    free_contents(v);
    free(v);
}

cllm_status cllm_json_parse(const char *text, size_t n, cllm_json **out) {
    *out = NULL;
    cllm_json *v = calloc(1, sizeof *v);
    if (!v) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    parser p = {text, n, 0, 0, 0};
    cllm_status st = parse_value(&p, v);
    if (st == CLLM_OK) {
        skip_space(&p);
        if (p.pos != n) st = parse_error(&p, "trailing characters");
    }
    if (st != CLLM_OK) {
        cllm_json_free(v);
        return st;
    }
    *out = v;
    return CLLM_OK;
}

const cllm_json *cllm_json_get(const cllm_json *v, const char *key) {
    if (!v || v->type != CLLM_JSON_OBJECT) return NULL;
    for (size_t i = 0; i < v->length; i++)
        if (strcmp(v->keys[i], key) == 0) return &v->items[i];
    return NULL;
}

cllm_status cllm_json_parse_file(const char *path, cllm_json **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return cllm_fail(CLLM_ERR_INPUT, "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return cllm_fail(CLLM_ERR_INPUT, "%s: not a regular file", path);
    if (sb.st_size > (1 << 26)) return cllm_fail(CLLM_ERR_INPUT, "%s: too large for a JSON settings file", path);
    FILE *f = fopen(path, "rb");
    if (!f) return cllm_fail(CLLM_ERR_INPUT, "%s: %s", path, strerror(errno));
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return cllm_fail(CLLM_ERR_INPUT, "%s: could not read the whole file", path);
    }
    cllm_status st = cllm_json_parse(buf, n, out);
    free(buf);
    if (st != CLLM_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", cllm_last_error());
        return cllm_fail(st, "%s: invalid JSON: %s", path, msg);
    }
    return CLLM_OK;
}

static int reserve(char **buf, size_t *len, size_t *cap, size_t extra) {
    if (*len + extra + 1 <= *cap) return 1;
    size_t ncap = *cap ? *cap : 256;
    while (ncap < *len + extra + 1) ncap *= 2;
    char *nb = realloc(*buf, ncap);
    if (!nb) return 0;
    *buf = nb;
    *cap = ncap;
    return 1;
}

int cllm_json_appendf(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need < 0 || !reserve(buf, len, cap, (size_t)need)) return 0;
    va_start(ap, fmt);
    vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    *len += (size_t)need;
    return 1;
}

int cllm_json_append_string(char **buf, size_t *len, size_t *cap, const char *s) {
    if (!reserve(buf, len, cap, 6 * strlen(s) + 2)) return 0;
    char *o = *buf + *len;
    *o++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *o++ = '\\';
            *o++ = (char)*c;
        } else if (*c < 0x20) {
            o += sprintf(o, "\\u%04x", *c);
        } else {
            *o++ = (char)*c;
        }
    }
    *o++ = '"';
    *o = '\0';
    *len = (size_t)(o - *buf);
    return 1;
}

int cllm_json_format_number(char *buf, size_t n, double v, int digits) {
    /* JSON has no NaN or Infinity; null is what strict readers (Python's
     * json with allow_nan=False, jq, JSON.parse) accept for "no value". */
    if (!isfinite(v)) return snprintf(buf, n, "null");
    return snprintf(buf, n, "%.*g", digits, v);
}

int cllm_json_append_number(char **buf, size_t *len, size_t *cap, double v, int digits) {
    char num[40];
    cllm_json_format_number(num, sizeof num, v, digits);
    return cllm_json_appendf(buf, len, cap, "%s", num);
}
