/* Pre-tokenizers: GPT-2's pattern over UTF-8 (libutf8proc's categories) and
 * the cllm version-1 chunker (include/cllm/data/pretokenize.h). */
#include "cllm/data/pretokenize.h"

#include <string.h>

#include "cllm/base/build_config.h"

#if CLLM_HAVE_UTF8PROC
#include <utf8proc.h>
#endif

#define CLLM_CHUNK_MAX 128 /* the version-1 chunker's cap, in bytes */

enum { CLASS_LETTER, CLASS_NUMBER, CLASS_SPACE, CLASS_OTHER };

int cllm_pretok_available(cllm_pretok mode) {
    return mode == CLLM_PRETOK_CLLM || (mode == CLLM_PRETOK_GPT2 && CLLM_HAVE_UTF8PROC);
}

cllm_status cllm_pretok_require(cllm_pretok mode) {
    if (cllm_pretok_available(mode)) return CLLM_OK;
    return cllm_fail(CLLM_ERR_INPUT, "GPT-2 pre-tokenization needs libutf8proc, which this cllm was built without: "
                     "install libutf8proc-dev and rebuild (or use --pretokenize cllm)");
}

cllm_pretok cllm_pretok_default(void) { return CLLM_HAVE_UTF8PROC ? CLLM_PRETOK_GPT2 : CLLM_PRETOK_CLLM; }

static const char *const names[CLLM_PRETOK_COUNT] = {"cllm", "gpt2"};

const char *cllm_pretok_name(cllm_pretok mode) {
    return (unsigned)mode < CLLM_PRETOK_COUNT ? names[mode] : "unknown";
}

int cllm_pretok_from_name(const char *name) {
    for (int i = 0; i < CLLM_PRETOK_COUNT; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

/* ---- the version-1 chunker ------------------------------------------------------------- */

static int v1_class(uint8_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return CLASS_LETTER;
    if (c >= '0' && c <= '9') return CLASS_NUMBER;
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f') return CLASS_SPACE;
    return CLASS_OTHER;
}

static size_t v1_run_end(const uint8_t *s, size_t n, size_t i, int cls) {
    while (i < n && v1_class(s[i]) == cls) i++;
    return i;
}

/* Runs are scanned no further than the cap, so a long run costs linear time. */
static size_t v1_chunk_end(const uint8_t *s, size_t n, size_t i) {
    size_t stop = n - i > CLLM_CHUNK_MAX ? i + CLLM_CHUNK_MAX : n;
    int cls = v1_class(s[i]);
    if (s[i] == ' ' && i + 1 < stop && v1_class(s[i + 1]) != CLASS_SPACE)
        return v1_run_end(s, stop, i + 1, v1_class(s[i + 1]));
    if (cls != CLASS_SPACE) return v1_run_end(s, stop, i, cls);
    size_t end = v1_run_end(s, stop, i, CLASS_SPACE);
    /* Leave a final space to the word that follows, as in " the". */
    if (end < n && v1_class(s[end]) != CLASS_SPACE && end - i >= 2 && s[end - 1] == ' ') end--;
    return end;
}

/* ---- GPT-2 ----------------------------------------------------------------------------- */

#if CLLM_HAVE_UTF8PROC
/* Length of the valid UTF-8 sequence at s[i] with its code point, or 0 when
 * s[i] does not start one (strict: no overlong forms, no surrogates, nothing
 * above U+10FFFF, as Python's decoder). */
static size_t utf8_decode(const uint8_t *s, size_t n, size_t i, int32_t *cp) {
    uint8_t c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else return 0;
    if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return 0;
    int32_t v = c & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[i + k] & 0x3f);
    }
    *cp = v;
    return len;
}

static int codepoint_class(int32_t cp) {
    if ((cp >= 9 && cp <= 13) || cp == 0x85) return CLASS_SPACE;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return CLASS_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return CLASS_NUMBER;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return CLASS_SPACE; /* with 9..13 and U+0085: Unicode's White_Space, \s */
    default: return CLASS_OTHER;
    }
}

/* The character at s[i]: its class, and its length in bytes (an invalid
 * byte is a one-byte character of class OTHER). */
static int char_at(const uint8_t *s, size_t n, size_t i, size_t *len) {
    if (s[i] < 0x80) {
        *len = 1;
        uint8_t c = s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CLASS_LETTER;
        if (c >= '0' && c <= '9') return CLASS_NUMBER;
        if (c == ' ' || (c >= 9 && c <= 13)) return CLASS_SPACE;
        return CLASS_OTHER;
    }
    int32_t cp;
    *len = utf8_decode(s, n, i, &cp);
    if (*len == 0) {
        *len = 1;
        return CLASS_OTHER;
    }
    return codepoint_class(cp);
}

static size_t gpt2_run_end(const uint8_t *s, size_t n, size_t i, int cls) {
    size_t len;
    while (i < n && char_at(s, n, i, &len) == cls) i += len;
    return i;
}

/* 's 't 're 've 'm 'll 'd at s[i] == '\'': the contraction's length, or 0. */
static size_t contraction(const uint8_t *s, size_t n, size_t i) {
    if (i + 1 >= n) return 0;
    uint8_t a = s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (i + 2 >= n) return 0;
    uint8_t b = s[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* The alternatives in the pattern's order; the first that matches at i wins. */
static size_t gpt2_chunk_end(const uint8_t *s, size_t n, size_t i) {
    size_t len, c;
    if (s[i] == '\'' && (c = contraction(s, n, i)) != 0) return i + c;
    int cls = char_at(s, n, i, &len);
    /* " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+": a space joins the run after it. */
    if (s[i] == ' ' && i + 1 < n) {
        size_t next_len;
        int next = char_at(s, n, i + 1, &next_len);
        if (next != CLASS_SPACE) return gpt2_run_end(s, n, i + 1, next);
    }
    if (cls != CLASS_SPACE) return gpt2_run_end(s, n, i, cls);
    /* "\s+(?!\S)": the whole run at the end of the text; before anything
     * else, the run without its last character (that one then starts the
     * next chunk, a space joining the word after it); "\s+": a run of one. */
    size_t end = i, last = i;
    while (end < n && char_at(s, n, end, &len) == CLASS_SPACE) {
        last = end;
        end += len;
    }
    if (end == n || last == i) return end;
    return last;
}
#endif

size_t cllm_pretok_chunk_end(cllm_pretok mode, const uint8_t *s, size_t n, size_t i) {
#if CLLM_HAVE_UTF8PROC
    if (mode == CLLM_PRETOK_GPT2) return gpt2_chunk_end(s, n, i);
#endif
    CLLM_ASSERT(mode == CLLM_PRETOK_CLLM);
    return v1_chunk_end(s, n, i);
}
