/* tokenizer.bin: the file format of cllm's tokenizer (docs/TOKENIZER.md).
 *
 * Version 1 (all integers little-endian), written for a tokenizer in cllm's
 * own layout (ids 0..255 the bytes, 256 + i merge i, then EOT) with the cllm
 * chunker, which is what every version-1 file was trained with:
 *
 *   offset  size          field
 *   0       8             magic "CLLM-BPE"
 *   8       4   u32       version = 1
 *   12      4   u32       n_merges (vocab = 256 + n_merges + n_special <= 65536)
 *   16      4   u32       n_special (version 1: exactly 1, the end-of-document token)
 *   20      4   u32       body_bytes: length of the body that follows
 *   24      8*n_merges    merges: (u32 left, u32 right) for ids 256, 257, ...;
 *                         both parts must be ids < the merge's own id, and no
 *                         pair may appear twice
 *   ...                   specials: (u32 name_len in 1..64, name bytes) each;
 *                         ids follow the merges in this order
 *                         (no token may span more than 128 bytes: merges
 *                         never cross a pre-split chunk)
 *   24+body_bytes  8 u64  FNV-1a 64 of every byte before it (header + body)
 *
 * Version 2, for every other tokenizer (GPT-2 pre-tokenization, or tokens
 * numbered in another order, as in OpenAI's GPT-2 files):
 *
 *   0       8             magic "CLLM-BPE"
 *   8       4   u32       version = 2
 *   12      4   u32       pre-tokenizer: 0 the cllm chunker, 1 GPT-2
 *   16      4   u32       n_tokens (257..65536)
 *   20      4   u32       n_merges
 *   24      4   u32       body_bytes
 *   28      ...           per token, in id order: u32 (length | 0x80000000 for
 *                         a special token), then its bytes (a special token's
 *                         name); then per merge, in priority order: u32 left,
 *                         u32 right, u32 result
 *   28+body_bytes  8 u64  FNV-1a 64 of every byte before it
 *
 * Loading checks the size, magic, version, checksum and every field
 * (cllm_tokenizer_build checks what the tokens and merges must satisfy), and
 * rejects anything else with CLLM_ERR_INPUT; it never trusts a length before
 * checking it against the bytes actually present. */
#include "cllm/data/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cllm/base/le.h"

#define V1_HEADER 24
#define V2_HEADER 28
#define CHECKSUM_BYTES 8
#define V1_MAX_TOKEN 128
#define MAX_SPECIAL_NAME 64
#define SPECIAL_BIT 0x80000000u
#define MAX_FILE_BYTES                                                                                              \
    ((size_t)V2_HEADER + (size_t)CLLM_TOKENIZER_MAX_VOCAB * (4 + CLLM_TOKENIZER_MAX_TOKEN_BYTES) +                  \
     (size_t)CLLM_TOKENIZER_MAX_VOCAB * 12 + CHECKSUM_BYTES)
static const char MAGIC[8] = {'C', 'L', 'L', 'M', '-', 'B', 'P', 'E'};

static cllm_status oom(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory in the tokenizer"); }
static cllm_status corrupt(const char *what) { return cllm_fail(CLLM_ERR_INPUT, "corrupt tokenizer file: %s", what); }


/* cllm's own layout with the cllm chunker: what version 1 can hold. */
static int fits_version_1(const cllm_tokenizer *t) {
    int n_merges = cllm_tokenizer_n_merges(t), vocab = cllm_tokenizer_vocab_size(t);
    if (cllm_tokenizer_pretokenizer(t) != CLLM_PRETOK_CLLM || vocab != 256 + n_merges + 1) return 0;
    for (int32_t b = 0; b < 256; b++) {
        size_t len;
        const uint8_t *p = cllm_tokenizer_token_text(t, b, &len);
        if (len != 1 || p[0] != b || cllm_tokenizer_is_special(t, b)) return 0;
    }
    for (int i = 0; i < n_merges; i++)
        if (cllm_tokenizer_merge_result(t, i) != 256 + i) return 0;
    return cllm_tokenizer_eot(t) == vocab - 1;
}

static uint8_t *seal(uint8_t *p, uint8_t *end) {
    cllm_put_le64(end, cllm_fnv1a64(p, (size_t)(end - p), CLLM_FNV1A64_OFFSET));
    return p;
}

static cllm_status serialize_v1(const cllm_tokenizer *t, uint8_t **data, size_t *n) {
    int n_merges = cllm_tokenizer_n_merges(t);
    size_t name_len = strlen(CLLM_TOKENIZER_EOT_NAME);
    size_t body = 8 * (size_t)n_merges + 4 + name_len;
    uint8_t *p = malloc(V1_HEADER + body + CHECKSUM_BYTES);
    if (!p) return oom();
    memcpy(p, MAGIC, 8);
    cllm_put_le32(p + 8, 1);
    cllm_put_le32(p + 12, (uint32_t)n_merges);
    cllm_put_le32(p + 16, 1);
    cllm_put_le32(p + 20, (uint32_t)body);
    uint8_t *q = p + V1_HEADER;
    for (int i = 0; i < n_merges; i++, q += 8) {
        int32_t a, b;
        cllm_tokenizer_merge(t, i, &a, &b);
        cllm_put_le32(q, (uint32_t)a);
        cllm_put_le32(q + 4, (uint32_t)b);
    }
    cllm_put_le32(q, (uint32_t)name_len);
    memcpy(q + 4, CLLM_TOKENIZER_EOT_NAME, name_len);
    *data = seal(p, q + 4 + name_len);
    *n = V1_HEADER + body + CHECKSUM_BYTES;
    return CLLM_OK;
}

static cllm_status serialize_v2(const cllm_tokenizer *t, uint8_t **data, size_t *n) {
    int vocab = cllm_tokenizer_vocab_size(t), n_merges = cllm_tokenizer_n_merges(t);
    size_t body = 12 * (size_t)n_merges;
    for (int32_t id = 0; id < vocab; id++) {
        size_t len;
        cllm_tokenizer_token_text(t, id, &len);
        body += 4 + len;
    }
    uint8_t *p = malloc(V2_HEADER + body + CHECKSUM_BYTES);
    if (!p) return oom();
    memcpy(p, MAGIC, 8);
    cllm_put_le32(p + 8, 2);
    cllm_put_le32(p + 12, (uint32_t)cllm_tokenizer_pretokenizer(t));
    cllm_put_le32(p + 16, (uint32_t)vocab);
    cllm_put_le32(p + 20, (uint32_t)n_merges);
    cllm_put_le32(p + 24, (uint32_t)body);
    uint8_t *q = p + V2_HEADER;
    for (int32_t id = 0; id < vocab; id++) {
        size_t len;
        const uint8_t *text = cllm_tokenizer_token_text(t, id, &len);
        cllm_put_le32(q, (uint32_t)len | (cllm_tokenizer_is_special(t, id) ? SPECIAL_BIT : 0));
        memcpy(q + 4, text, len);
        q += 4 + len;
    }
    for (int i = 0; i < n_merges; i++, q += 12) {
        int32_t a, b;
        cllm_tokenizer_merge(t, i, &a, &b);
        cllm_put_le32(q, (uint32_t)a);
        cllm_put_le32(q + 4, (uint32_t)b);
        cllm_put_le32(q + 8, (uint32_t)cllm_tokenizer_merge_result(t, i));
    }
    *data = seal(p, q);
    *n = V2_HEADER + body + CHECKSUM_BYTES;
    return CLLM_OK;
}

cllm_status cllm_tokenizer_serialize(const cllm_tokenizer *t, uint8_t **data, size_t *n) {
    return fits_version_1(t) ? serialize_v1(t, data, n) : serialize_v2(t, data, n);
}

/* Magic, version, size and checksum; *version is 1 or 2 on success. */
static cllm_status check_envelope(const uint8_t *data, size_t n, uint32_t *version) {
    if (n == 0) return corrupt("empty file");
    if (memcmp(data, MAGIC, n < 8 ? n : 8) != 0)
        return cllm_fail(CLLM_ERR_INPUT, "not a cllm tokenizer file (bad magic)");
    if (n < 12) return corrupt("truncated header");
    *version = cllm_get_le32(data + 8);
    if (*version != 1 && *version != 2)
        return cllm_fail(CLLM_ERR_INPUT, "unsupported tokenizer file version %u (this cllm reads versions 1 and 2)",
                         *version);
    size_t header = *version == 1 ? V1_HEADER : V2_HEADER;
    if (n < header) return corrupt("truncated header");
    uint32_t body = cllm_get_le32(data + header - 4);
    if ((uint64_t)body + header + CHECKSUM_BYTES != n) {
        char msg[128];
        snprintf(msg, sizeof msg, "%zu bytes but the header announces %llu (truncated?)", n,
                 (unsigned long long)body + header + CHECKSUM_BYTES);
        return corrupt(msg);
    }
    if (cllm_get_le64(data + n - CHECKSUM_BYTES) != cllm_fnv1a64(data, n - CHECKSUM_BYTES, CLLM_FNV1A64_OFFSET))
        return corrupt("checksum mismatch");
    return CLLM_OK;
}

/* name[0..len) for a message: printable ASCII as is, anything else as \xHH. */
static void printable_name(const uint8_t *name, uint32_t len, char *out, size_t n) {
    size_t k = 0;
    for (uint32_t i = 0; i < len && k + 5 < n; i++)
        k += (size_t)(name[i] >= 0x20 && name[i] < 0x7f && name[i] != '"'
                          ? snprintf(out + k, n - k, "%c", name[i])
                          : snprintf(out + k, n - k, "\\x%02x", name[i]));
    out[k] = '\0';
}

/* Version 1 has one special token and it is the end-of-document token: a
 * file naming it otherwise (hand-edited, or from another tool) would load a
 * tokenizer whose last id means something cllm does not implement. */
static cllm_status check_v1_special(const uint8_t *p, size_t left) {
    if (left < 4) return corrupt("truncated special token");
    uint32_t len = cllm_get_le32(p);
    if (len == 0 || len > MAX_SPECIAL_NAME || len > left - 4) return corrupt("bad special token name length");
    if (len != strlen(CLLM_TOKENIZER_EOT_NAME) || memcmp(p + 4, CLLM_TOKENIZER_EOT_NAME, len) != 0) {
        char got[4 * MAX_SPECIAL_NAME + 1], msg[6 * MAX_SPECIAL_NAME];
        printable_name(p + 4, len, got, sizeof got);
        snprintf(msg, sizeof msg, "special token 0 is named \"%s\", version 1 requires \"%s\"", got,
                 CLLM_TOKENIZER_EOT_NAME);
        return corrupt(msg);
    }
    if (left != 4 + len) return corrupt("trailing bytes after the special tokens");
    return CLLM_OK;
}

/* Version-1 merges: parts smaller than the merge's own id, no token longer
 * than a chunk. Fills pairs (2 per merge). */
static cllm_status read_v1_merges(const uint8_t *p, uint32_t n_merges, int32_t *pairs) {
    uint64_t *len = malloc((256 + (size_t)n_merges) * sizeof *len);
    if (!len) return oom();
    for (int b = 0; b < 256; b++) len[b] = 1;
    cllm_status s = CLLM_OK;
    for (uint32_t i = 0; i < n_merges && s == CLLM_OK; i++) {
        uint32_t a = cllm_get_le32(p + 8 * (size_t)i), b = cllm_get_le32(p + 8 * (size_t)i + 4);
        if (a >= 256 + i || b >= 256 + i) {
            char msg[96];
            snprintf(msg, sizeof msg, "merge %u refers to unknown token %u", i, a >= 256 + i ? a : b);
            s = corrupt(msg);
            break;
        }
        len[256 + i] = len[a] + len[b];
        if (len[256 + i] > V1_MAX_TOKEN) s = corrupt("a merge builds a token longer than 128 bytes");
        pairs[2 * i] = (int32_t)a;
        pairs[2 * i + 1] = (int32_t)b;
    }
    free(len);
    return s;
}

static cllm_status deserialize_v1(const uint8_t *data, size_t n, cllm_tokenizer **out) {
    uint32_t n_merges = cllm_get_le32(data + 12);
    size_t body = n - V1_HEADER - CHECKSUM_BYTES;
    if (cllm_get_le32(data + 16) != 1) return corrupt("version 1 has exactly one special token");
    if (n_merges > (uint32_t)(CLLM_TOKENIZER_MAX_VOCAB - 256 - 1)) return corrupt("too many merges");
    if ((uint64_t)n_merges * 8 > body) return corrupt("merge table longer than the file");
    cllm_status s = check_v1_special(data + V1_HEADER + 8 * (size_t)n_merges, body - 8 * (size_t)n_merges);
    if (s != CLLM_OK) return s;
    int32_t *pairs = malloc(((size_t)n_merges + 1) * 2 * sizeof *pairs);
    if (!pairs) return oom();
    s = read_v1_merges(data + V1_HEADER, n_merges, pairs);
    if (s == CLLM_OK) s = cllm_tokenizer_build_from_pairs(pairs, (int)n_merges, CLLM_PRETOK_CLLM, out);
    free(pairs);
    return s;
}

static cllm_status deserialize_v2(const uint8_t *data, size_t n, cllm_tokenizer **out) {
    uint32_t pretok = cllm_get_le32(data + 12), n_tokens = cllm_get_le32(data + 16), n_merges = cllm_get_le32(data + 20);
    if (pretok >= CLLM_PRETOK_COUNT) return corrupt("unknown pre-tokenizer");
    if (n_tokens < CLLM_TOKENIZER_MIN_VOCAB || n_tokens > CLLM_TOKENIZER_MAX_VOCAB) return corrupt("bad token count");
    if (n_merges > n_tokens) return corrupt("more merges than tokens");
    const uint8_t *p = data + V2_HEADER, *end = data + n - CHECKSUM_BYTES;
    size_t *off = malloc(n_tokens * sizeof *off), *len = malloc(n_tokens * sizeof *len);
    uint8_t *special = malloc(n_tokens);
    int32_t *merges = malloc(((size_t)n_merges * 3 + 1) * sizeof *merges);
    cllm_status s = off && len && special && merges ? CLLM_OK : oom();
    for (uint32_t id = 0; s == CLLM_OK && id < n_tokens; id++) {
        if (end - p < 4) {
            s = corrupt("truncated token table");
            break;
        }
        uint32_t word = cllm_get_le32(p);
        len[id] = word & ~SPECIAL_BIT;
        special[id] = (word & SPECIAL_BIT) != 0;
        if (len[id] > (size_t)(end - p - 4)) s = corrupt("a token runs past the end of the file");
        off[id] = (size_t)(p + 4 - data);
        p += 4 + (s == CLLM_OK ? len[id] : 0);
    }
    if (s == CLLM_OK && (size_t)(end - p) != 12 * (size_t)n_merges)
        s = corrupt("the merge table does not fill the rest of the file");
    for (size_t i = 0; s == CLLM_OK && i < 3 * (size_t)n_merges; i++) {
        uint32_t v = cllm_get_le32(p + 4 * i);
        merges[i] = v < n_tokens ? (int32_t)v : -1;
    }
    if (s == CLLM_OK) {
        cllm_tokenizer_parts parts = {(cllm_pretok)pretok, (int)n_tokens, data, off, len, special, (int)n_merges, merges};
        s = cllm_tokenizer_build(&parts, out);
    }
    free(off);
    free(len);
    free(special);
    free(merges);
    return s;
}

cllm_status cllm_tokenizer_deserialize(const uint8_t *data, size_t n, cllm_tokenizer **out) {
    *out = NULL;
    uint32_t version = 0;
    cllm_status s = check_envelope(data, n, &version);
    if (s != CLLM_OK) return s;
    return version == 1 ? deserialize_v1(data, n, out) : deserialize_v2(data, n, out);
}

cllm_status cllm_tokenizer_save(const cllm_tokenizer *t, const char *path) {
    uint8_t *data;
    size_t n;
    cllm_status s = cllm_tokenizer_serialize(t, &data, &n);
    if (s != CLLM_OK) return s;
    s = cllm_write_file_atomic(path, data, n);
    free(data);
    return s;
}

/* The whole file, refusing one larger than max without reading all of it. */
static cllm_status read_whole(FILE *f, const char *path, size_t max, uint8_t **out, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) return oom();
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap || len > max) break;
        cap *= 2;
        uint8_t *p = realloc(buf, cap);
        if (!p) free(buf);
        buf = p;
    }
    if (ferror(f)) {
        free(buf);
        return cllm_fail(CLLM_ERR_INPUT, "cannot read %s", path);
    }
    if (len > max) {
        free(buf);
        return cllm_fail(CLLM_ERR_INPUT, "%s: too large to be a cllm tokenizer file", path);
    }
    *out = buf;
    *n = len;
    return CLLM_OK;
}

cllm_status cllm_tokenizer_load(const char *path, cllm_tokenizer **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cllm_fail(CLLM_ERR_INPUT, "cannot read %s: %s", path, strerror(errno));
    uint8_t *data = NULL;
    size_t n = 0;
    cllm_status s = read_whole(f, path, MAX_FILE_BYTES, &data, &n);
    fclose(f);
    if (s != CLLM_OK) return s;
    if ((s = cllm_tokenizer_deserialize(data, n, out)) != CLLM_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", cllm_last_error());
        s = cllm_fail(s, "%s: %s", path, msg);
    }
    free(data);
    return s;
}
