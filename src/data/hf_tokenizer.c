/* Hugging Face tokenizer files, written and read (include/cllm/data/hf_tokenizer.h).
 *
 * GPT-2's byte-to-unicode map: a token's bytes are written as one character
 * per byte, the byte itself for the printable ranges 0x21..0x7e,
 * 0xa1..0xac and 0xae..0xff, and U+0100 + n for the n-th of the other 68
 * bytes in byte order (space 0x20 is U+0120 'Ġ'). So no token text holds a
 * space, and a merges line "left right" splits unambiguously. */
#include "cllm/data/hf_tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cllm/base/json.h"

#define MAX_HF_FILE (64u << 20) /* GPT-2's tokenizer.json is 1.4 MB */

const char *const cllm_hf_tokenizer_files[CLLM_HF_TOKENIZER_N_FILES] = {
    "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"};

static cllm_status oom(void) { return cllm_fail(CLLM_ERR_INTERNAL, "out of memory"); }

/* The last error with "context: " before it (copied first: cllm_fail writes where cllm_last_error reads). */
static cllm_status with_context(cllm_status st, const char *context) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", cllm_last_error());
    return cllm_fail(st, "%s: %s", context, msg);
}

/* ---- the byte alphabet ----------------------------------------------------------------- */

static int byte_to_cp(int b) {
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) return b;
    if (b <= 0x20) return 0x100 + b;
    if (b <= 0xa0) return 0x100 + 33 + (b - 0x7f);
    return 0x100 + 33 + 34; /* 0xad */
}

static int cp_to_byte(int cp) {
    if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xac) || (cp >= 0xae && cp <= 0xff)) return cp;
    if (cp >= 0x100 && cp <= 0x120) return cp - 0x100;
    if (cp >= 0x121 && cp <= 0x142) return cp - 0x121 + 0x7f;
    if (cp == 0x143) return 0xad;
    return -1;
}

/* bytes[0..n) in byte-level form, NUL-terminated, into out (2n + 1 bytes). */
static void to_byte_level(const uint8_t *bytes, size_t n, char *out) {
    char *o = out;
    for (size_t i = 0; i < n; i++) {
        int cp = byte_to_cp(bytes[i]);
        if (cp < 0x80) {
            *o++ = (char)cp;
        } else {
            *o++ = (char)(0xc0 | cp >> 6);
            *o++ = (char)(0x80 | (cp & 0x3f));
        }
    }
    *o = '\0';
}

/* The bytes of a byte-level string s (UTF-8, NUL-terminated) into out
 * (strlen(s) bytes at most); -1 if a character is outside the alphabet. */
static long from_byte_level(const char *s, uint8_t *out) {
    const unsigned char *p = (const unsigned char *)s;
    long n = 0;
    while (*p) {
        int cp;
        if (*p < 0x80) {
            cp = *p++;
        } else if ((*p & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) {
            cp = (p[0] & 0x1f) << 6 | (p[1] & 0x3f);
            p += 2;
        } else {
            return -1;
        }
        int b = cp_to_byte(cp);
        if (b < 0) return -1;
        out[n++] = (uint8_t)b;
    }
    return n;
}

/* ---- writing --------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    int ok;
} text_buf;

static void put_text(text_buf *b, const char *s) {
    b->ok = b->ok && cllm_json_appendf(&b->buf, &b->len, &b->cap, "%s", s);
}
static void put_string(text_buf *b, const char *s) {
    b->ok = b->ok && cllm_json_append_string(&b->buf, &b->len, &b->cap, s);
}
static void put_int(text_buf *b, long v) { b->ok = b->ok && cllm_json_appendf(&b->buf, &b->len, &b->cap, "%ld", v); }

void cllm_hf_token_text(const cllm_tokenizer *t, int32_t id, char *out) {
    size_t len;
    const uint8_t *p = cllm_tokenizer_token_text(t, id, &len);
    if (cllm_tokenizer_is_special(t, id)) {
        memcpy(out, p, len);
        out[len] = '\0';
    } else {
        to_byte_level(p, len, out);
    }
}

#define TOKEN_STRING_MAX CLLM_HF_TOKEN_TEXT_MAX

/* Special names must be valid JSON text: printable ASCII (cllm's own is). */
static int plain_name(const uint8_t *p, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (p[i] < 0x20 || p[i] >= 0x7f) return 0;
    return 1;
}

static int strcmp_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int cllm_hf_tokenizer_expressible(const cllm_tokenizer *t, char *why, size_t n) {
    if (cllm_tokenizer_pretokenizer(t) != CLLM_PRETOK_GPT2) {
        snprintf(why, n, "the %s pre-tokenizer has no tokenizer.json equivalent (train with --pretokenize gpt2)",
                 cllm_pretok_name(cllm_tokenizer_pretokenizer(t)));
        return 0;
    }
    /* Every vocabulary key distinct: sort the ids by text and compare neighbours. */
    int vocab = cllm_tokenizer_vocab_size(t);
    char **keys = calloc((size_t)vocab, sizeof *keys);
    char *scratch = malloc(TOKEN_STRING_MAX); /* one token's text; each key keeps only its length */
    int ok = keys != NULL && scratch != NULL;
    for (int32_t id = 0; ok && id < vocab; id++) {
        size_t len;
        const uint8_t *p = cllm_tokenizer_token_text(t, id, &len);
        if (cllm_tokenizer_is_special(t, id) && !plain_name(p, len)) {
            snprintf(why, n, "special token %d's name is not printable ASCII", (int)id);
            ok = 0;
            break;
        }
        cllm_hf_token_text(t, id, scratch);
        keys[id] = strdup(scratch);
        if (!keys[id]) {
            snprintf(why, n, "out of memory");
            ok = 0;
        }
    }
    if (!keys || !scratch) snprintf(why, n, "out of memory");
    free(scratch);
    if (ok) {
        qsort(keys, (size_t)vocab, sizeof *keys, strcmp_ptr);
        for (int i = 1; ok && i < vocab; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                snprintf(why, n, "two tokens have the same text \"%.40s\"", keys[i]);
                ok = 0;
            }
    }
    for (int i = 0; keys && i < vocab; i++) free(keys[i]);
    free(keys);
    return ok;
}

/* The model's vocabulary as a JSON object, keys in id order. */
static void put_vocab(text_buf *b, const cllm_tokenizer *t, char *key) {
    put_text(b, "{");
    for (int32_t id = 0; id < cllm_tokenizer_vocab_size(t); id++) {
        cllm_hf_token_text(t, id, key);
        put_text(b, id ? ",\n" : "\n");
        put_string(b, key);
        put_text(b, ": ");
        put_int(b, id);
    }
    put_text(b, "\n}");
}

/* Merge i as "left right" into out. */
static void merge_line(const cllm_tokenizer *t, int i, char *out) {
    int32_t left, right;
    cllm_tokenizer_merge(t, i, &left, &right);
    cllm_hf_token_text(t, left, out);
    size_t k = strlen(out);
    out[k] = ' ';
    cllm_hf_token_text(t, right, out + k + 1);
}

static void put_added_token(text_buf *b, const char *name, int32_t id, int with_id) {
    if (with_id) {
        put_text(b, "{\"id\": ");
        put_int(b, id);
        put_text(b, ", \"content\": ");
    } else {
        put_text(b, "{\"content\": ");
    }
    put_string(b, name);
    put_text(b, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                "\"special\": true}");
}

static void build_tokenizer_json(text_buf *b, const cllm_tokenizer *t, char *key) {
    put_text(b, "{\n\"version\": \"1.0\",\n\"truncation\": null,\n\"padding\": null,\n\"added_tokens\": [");
    int first = 1;
    for (int32_t id = 0; id < cllm_tokenizer_vocab_size(t); id++) {
        if (!cllm_tokenizer_is_special(t, id)) continue;
        cllm_hf_token_text(t, id, key);
        put_text(b, first ? "\n" : ",\n");
        put_added_token(b, key, id, 1);
        first = 0;
    }
    put_text(b, "\n],\n\"normalizer\": null,\n"
                "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
                "\"use_regex\": true},\n"
                "\"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": false, "
                "\"use_regex\": true},\n"
                "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
                "\"use_regex\": true},\n"
                "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, "
                "\"continuing_subword_prefix\": \"\", \"end_of_word_suffix\": \"\", \"fuse_unk\": false,\n"
                "\"vocab\": ");
    put_vocab(b, t, key);
    put_text(b, ",\n\"merges\": [");
    for (int i = 0; i < cllm_tokenizer_n_merges(t); i++) {
        merge_line(t, i, key);
        put_text(b, i ? ",\n" : "\n");
        put_string(b, key);
    }
    put_text(b, "\n]}\n}\n");
}

static void build_merges_txt(text_buf *b, const cllm_tokenizer *t, char *line) {
    put_text(b, "#version: 0.2\n");
    for (int i = 0; i < cllm_tokenizer_n_merges(t); i++) {
        merge_line(t, i, line);
        put_text(b, line);
        put_text(b, "\n");
    }
}

static void build_config(text_buf *b, const cllm_tokenizer *t, char *key, int model_max_length) {
    cllm_hf_token_text(t, cllm_tokenizer_eot(t), key);
    put_text(b, "{\n\"tokenizer_class\": \"GPT2Tokenizer\",\n\"add_prefix_space\": false,\n"
                "\"add_bos_token\": false,\n\"clean_up_tokenization_spaces\": false,\n\"errors\": \"replace\",\n"
                "\"model_max_length\": ");
    put_int(b, model_max_length);
    static const char *const roles[] = {"bos_token", "eos_token", "unk_token"};
    for (int i = 0; i < 3; i++) {
        put_text(b, ",\n\"");
        put_text(b, roles[i]);
        put_text(b, "\": ");
        put_string(b, key);
    }
    put_text(b, ",\n\"added_tokens_decoder\": {");
    int first = 1;
    for (int32_t id = 0; id < cllm_tokenizer_vocab_size(t); id++) {
        if (!cllm_tokenizer_is_special(t, id)) continue;
        char num[16];
        snprintf(num, sizeof num, "%d", (int)id);
        cllm_hf_token_text(t, id, key);
        put_text(b, first ? "\n" : ",\n");
        put_string(b, num);
        put_text(b, ": ");
        put_added_token(b, key, id, 0);
        first = 0;
    }
    put_text(b, "\n}\n}\n");
}

static void build_special_map(text_buf *b, const cllm_tokenizer *t, char *key) {
    cllm_hf_token_text(t, cllm_tokenizer_eot(t), key);
    put_text(b, "{\"bos_token\": ");
    put_string(b, key);
    put_text(b, ", \"eos_token\": ");
    put_string(b, key);
    put_text(b, ", \"unk_token\": ");
    put_string(b, key);
    put_text(b, "}\n");
}

cllm_status cllm_hf_tokenizer_write(const cllm_tokenizer *t, const char *dir, int model_max_length) {
    char why[160];
    if (!cllm_hf_tokenizer_expressible(t, why, sizeof why))
        return cllm_fail(CLLM_ERR_INPUT, "no Hugging Face tokenizer files: %s", why);
    char *key = malloc(2 * TOKEN_STRING_MAX + 2); /* a merge line: two token strings and a space */
    if (!key) return oom();
    cllm_status st = CLLM_OK;
    for (int f = 0; st == CLLM_OK && f < CLLM_HF_TOKENIZER_N_FILES; f++) {
        text_buf b = {NULL, 0, 0, 1};
        switch (f) {
        case 0: build_tokenizer_json(&b, t, key); break;
        case 1:
            put_vocab(&b, t, key);
            put_text(&b, "\n");
            break;
        case 2: build_merges_txt(&b, t, key); break;
        case 3: build_config(&b, t, key, model_max_length); break;
        default: build_special_map(&b, t, key); break;
        }
        char *path = b.ok ? cllm_path_join(dir, cllm_hf_tokenizer_files[f]) : NULL;
        st = path ? cllm_write_file_atomic(path, b.buf, b.len) : oom();
        free(path);
        free(b.buf);
    }
    free(key);
    return st;
}

/* ---- reading --------------------------------------------------------------------------- */

/* Vocabulary key -> id, open addressing over FNV hashes; keys are borrowed. */
typedef struct {
    const char **keys;
    int32_t *ids;
    size_t cap;
} key_map;

static size_t key_slot(const key_map *m, const char *key) {
    size_t mask = m->cap - 1, i = (size_t)cllm_fnv1a64(key, strlen(key), CLLM_FNV1A64_OFFSET) & mask;
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & mask;
    return i;
}

static int32_t key_get(const key_map *m, const char *key) {
    size_t i = key_slot(m, key);
    return m->keys[i] ? m->ids[i] : -1;
}

static void key_map_free(key_map *m) {
    free(m->keys);
    free(m->ids);
}

/* What the parser gathers before building: per id its key (NULL: not
 * seen yet) and whether it is special, and the merges as key pairs. */
typedef struct {
    int n_tokens;
    const char **key;
    uint8_t *special;
    key_map map;
    int32_t *merges; /* 3 per merge */
    int n_merges;
} hf_parts;

static void parts_free(hf_parts *p) {
    free(p->key);
    free(p->special);
    key_map_free(&p->map);
    free(p->merges);
}

/* ids 0..n_tokens-1 from the vocabulary object (and the added tokens, which
 * may name ids past it): sizes everything. */
static cllm_status read_vocab(const cllm_json *vocab, const cllm_json *added, hf_parts *p) {
    if (!vocab || vocab->type != CLLM_JSON_OBJECT) return cllm_fail(CLLM_ERR_INPUT, "the vocabulary is not a JSON object");
    int64_t max_id = -1;
    for (size_t i = 0; i < vocab->length; i++) {
        const cllm_json *v = &vocab->items[i];
        if (v->type != CLLM_JSON_NUMBER || !v->is_integer || v->integer < 0 || v->integer >= CLLM_TOKENIZER_MAX_VOCAB)
            return cllm_fail(CLLM_ERR_INPUT, "vocabulary entry \"%.40s\" has no id in 0..%d", vocab->keys[i],
                             CLLM_TOKENIZER_MAX_VOCAB - 1);
        if (v->integer > max_id) max_id = v->integer;
    }
    for (size_t i = 0; added && i < added->length; i++) {
        const cllm_json *id = cllm_json_get(&added->items[i], "id");
        if (id && id->type == CLLM_JSON_NUMBER && id->is_integer && id->integer > max_id &&
            id->integer < CLLM_TOKENIZER_MAX_VOCAB)
            max_id = id->integer;
    }
    p->n_tokens = (int)(max_id + 1);
    if (p->n_tokens < CLLM_TOKENIZER_MIN_VOCAB)
        return cllm_fail(CLLM_ERR_INPUT, "%d tokens: byte-level BPE needs at least %d", p->n_tokens,
                         CLLM_TOKENIZER_MIN_VOCAB);
    p->key = calloc((size_t)p->n_tokens, sizeof *p->key);
    p->special = calloc((size_t)p->n_tokens, 1);
    p->map.cap = 64;
    while (p->map.cap < 2 * vocab->length) p->map.cap *= 2;
    p->map.keys = calloc(p->map.cap, sizeof *p->map.keys);
    p->map.ids = malloc(p->map.cap * sizeof *p->map.ids);
    if (!p->key || !p->special || !p->map.keys || !p->map.ids) return oom();
    for (size_t i = 0; i < vocab->length; i++) {
        int32_t id = (int32_t)vocab->items[i].integer;
        if (p->key[id])
            return cllm_fail(CLLM_ERR_INPUT, "id %d is given to both \"%.40s\" and \"%.40s\"", (int)id, p->key[id],
                             vocab->keys[i]);
        p->key[id] = vocab->keys[i];
        size_t slot = key_slot(&p->map, vocab->keys[i]); /* keys are distinct: the JSON reader refuses duplicates */
        p->map.keys[slot] = vocab->keys[i];
        p->map.ids[slot] = id;
    }
    return CLLM_OK;
}

/* tokenizer.json's added_tokens: special ones flagged; their ids may be
 * past the model's vocabulary or equal to an entry with the same text. */
static cllm_status read_added(const cllm_json *added, hf_parts *p) {
    for (size_t i = 0; added && i < added->length; i++) {
        const cllm_json *a = &added->items[i];
        const cllm_json *id = cllm_json_get(a, "id"), *content = cllm_json_get(a, "content");
        const cllm_json *special = cllm_json_get(a, "special");
        if (!id || id->type != CLLM_JSON_NUMBER || !id->is_integer || id->integer < 0 || id->integer >= p->n_tokens ||
            !content || content->type != CLLM_JSON_STRING || content->length == 0)
            return cllm_fail(CLLM_ERR_INPUT, "added token %zu needs an \"id\" and a non-empty \"content\"", i);
        if (!special || special->type != CLLM_JSON_BOOL || !special->boolean)
            return cllm_fail(CLLM_ERR_INPUT, "added token \"%.40s\" is not special: cllm matches no added tokens in text",
                             content->string);
        int32_t k = (int32_t)id->integer;
        if (p->key[k] && strcmp(p->key[k], content->string) != 0)
            return cllm_fail(CLLM_ERR_INPUT, "added token \"%.40s\" has id %d, which the vocabulary gives to \"%.40s\"",
                             content->string, (int)k, p->key[k]);
        p->key[k] = content->string;
        p->special[k] = 1;
    }
    return CLLM_OK;
}

/* One merge "left right" (two keys) -> a triple of ids. */
static cllm_status add_merge(hf_parts *p, const char *left, const char *right, size_t index) {
    int32_t a = key_get(&p->map, left), b = key_get(&p->map, right);
    if (a < 0 || b < 0)
        return cllm_fail(CLLM_ERR_INPUT, "merge %zu: \"%.40s\" is not in the vocabulary", index, a < 0 ? left : right);
    size_t la = strlen(left), lb = strlen(right);
    char *joined = malloc(la + lb + 1);
    if (!joined) return oom();
    memcpy(joined, left, la);
    memcpy(joined + la, right, lb + 1);
    int32_t r = key_get(&p->map, joined);
    cllm_status st = r < 0 ? cllm_fail(CLLM_ERR_INPUT, "merge %zu: its result \"%.40s\" is not in the vocabulary", index,
                                       joined)
                           : CLLM_OK;
    free(joined);
    if (st != CLLM_OK) return st;
    p->merges[3 * p->n_merges] = a;
    p->merges[3 * p->n_merges + 1] = b;
    p->merges[3 * p->n_merges + 2] = r;
    p->n_merges++;
    return CLLM_OK;
}

/* "left right" with exactly one space, both sides non-empty; split in place. */
static cllm_status split_merge(char *line, size_t index, char **right) {
    char *sp = strchr(line, ' ');
    if (!sp || sp == line || !sp[1] || strchr(sp + 1, ' '))
        return cllm_fail(CLLM_ERR_INPUT, "merge %zu \"%.40s\" is not two tokens separated by one space", index, line);
    *sp = '\0';
    *right = sp + 1;
    return CLLM_OK;
}

static cllm_status read_json_merges(const cllm_json *merges, hf_parts *p) {
    if (!merges || merges->type != CLLM_JSON_ARRAY) return cllm_fail(CLLM_ERR_INPUT, "\"merges\" is not an array");
    if (merges->length > (size_t)p->n_tokens)
        return cllm_fail(CLLM_ERR_INPUT, "%zu merges for %d tokens", merges->length, p->n_tokens);
    p->merges = malloc((3 * merges->length + 1) * sizeof *p->merges);
    if (!p->merges) return oom();
    for (size_t i = 0; i < merges->length; i++) {
        const cllm_json *m = &merges->items[i];
        cllm_status st;
        if (m->type == CLLM_JSON_STRING) { /* "left right", the older form */
            char *right = NULL;
            if ((st = split_merge(m->string, i, &right)) == CLLM_OK) st = add_merge(p, m->string, right, i);
        } else if (m->type == CLLM_JSON_ARRAY && m->length == 2 && m->items[0].type == CLLM_JSON_STRING &&
                   m->items[1].type == CLLM_JSON_STRING) {
            st = add_merge(p, m->items[0].string, m->items[1].string, i);
        } else {
            st = cllm_fail(CLLM_ERR_INPUT, "merge %zu is neither \"left right\" nor [\"left\", \"right\"]", i);
        }
        if (st != CLLM_OK) return st;
    }
    return CLLM_OK;
}

/* Every id's bytes, then cllm_tokenizer_build. */
static cllm_status build_from_parts(hf_parts *p, cllm_tokenizer **out) {
    size_t total = 0;
    for (int id = 0; id < p->n_tokens; id++) {
        if (!p->key[id]) return cllm_fail(CLLM_ERR_INPUT, "no token has id %d (ids must be 0..%d without gaps)", id,
                                          p->n_tokens - 1);
        total += strlen(p->key[id]);
    }
    uint8_t *text = malloc(total + 1);
    size_t *off = malloc((size_t)p->n_tokens * sizeof *off), *len = malloc((size_t)p->n_tokens * sizeof *len);
    cllm_status st = text && off && len ? CLLM_OK : oom();
    size_t at = 0;
    for (int id = 0; st == CLLM_OK && id < p->n_tokens; id++) {
        off[id] = at;
        if (p->special[id]) {
            len[id] = strlen(p->key[id]);
            memcpy(text + at, p->key[id], len[id]);
        } else {
            long n = from_byte_level(p->key[id], text + at);
            if (n <= 0)
                st = cllm_fail(CLLM_ERR_INPUT, "token %d \"%.40s\" is not in GPT-2's byte-to-unicode alphabet", id,
                               p->key[id]);
            len[id] = n > 0 ? (size_t)n : 0;
        }
        at += len[id];
    }
    if (st == CLLM_OK) {
        cllm_tokenizer_parts parts = {CLLM_PRETOK_GPT2, p->n_tokens, text, off, len, p->special, p->n_merges, p->merges};
        st = cllm_tokenizer_build(&parts, out);
    }
    free(text);
    free(off);
    free(len);
    return st;
}

static int is_null_or(const cllm_json *v, cllm_json_type type) { return !v || v->type == CLLM_JSON_NULL || v->type == type; }

/* What cllm can reproduce: no normalizer, ByteLevel with GPT-2's regex and
 * no prefix space, a plain BPE model. */
static cllm_status check_pipeline(const cllm_json *root, const cllm_json *model) {
    const cllm_json *norm = cllm_json_get(root, "normalizer"), *pre = cllm_json_get(root, "pre_tokenizer");
    if (norm && norm->type != CLLM_JSON_NULL) return cllm_fail(CLLM_ERR_INPUT, "a normalizer is not supported");
    const cllm_json *type = pre ? cllm_json_get(pre, "type") : NULL;
    if (!type || type->type != CLLM_JSON_STRING || strcmp(type->string, "ByteLevel") != 0)
        return cllm_fail(CLLM_ERR_INPUT, "the pre_tokenizer must be ByteLevel (GPT-2's)");
    const cllm_json *prefix = cllm_json_get(pre, "add_prefix_space"), *regex = cllm_json_get(pre, "use_regex");
    if (prefix && (prefix->type != CLLM_JSON_BOOL || prefix->boolean))
        return cllm_fail(CLLM_ERR_INPUT, "ByteLevel with add_prefix_space is not supported");
    if (regex && (regex->type != CLLM_JSON_BOOL || !regex->boolean))
        return cllm_fail(CLLM_ERR_INPUT, "ByteLevel without use_regex is not supported");
    const cllm_json *mtype = cllm_json_get(model, "type");
    if (!mtype || mtype->type != CLLM_JSON_STRING || strcmp(mtype->string, "BPE") != 0)
        return cllm_fail(CLLM_ERR_INPUT, "the model must be BPE");
    const cllm_json *dropout = cllm_json_get(model, "dropout"), *fallback = cllm_json_get(model, "byte_fallback");
    const cllm_json *prefix_sub = cllm_json_get(model, "continuing_subword_prefix");
    const cllm_json *suffix = cllm_json_get(model, "end_of_word_suffix");
    if (!is_null_or(dropout, CLLM_JSON_NULL)) return cllm_fail(CLLM_ERR_INPUT, "BPE dropout is not supported");
    if (fallback && (fallback->type != CLLM_JSON_BOOL || fallback->boolean))
        return cllm_fail(CLLM_ERR_INPUT, "byte_fallback is not supported");
    if (!is_null_or(prefix_sub, CLLM_JSON_STRING) || (prefix_sub && prefix_sub->type == CLLM_JSON_STRING && prefix_sub->length) ||
        !is_null_or(suffix, CLLM_JSON_STRING) || (suffix && suffix->type == CLLM_JSON_STRING && suffix->length))
        return cllm_fail(CLLM_ERR_INPUT, "subword prefixes and suffixes are not supported");
    return CLLM_OK;
}

cllm_status cllm_hf_tokenizer_parse_json(const char *text, size_t n, cllm_tokenizer **out) {
    *out = NULL;
    cllm_json *root = NULL;
    cllm_status st = cllm_json_parse(text, n, &root);
    if (st != CLLM_OK) return st;
    hf_parts p;
    memset(&p, 0, sizeof p);
    const cllm_json *model = cllm_json_get(root, "model"), *added = cllm_json_get(root, "added_tokens");
    if (root->type != CLLM_JSON_OBJECT || !model || model->type != CLLM_JSON_OBJECT)
        st = cllm_fail(CLLM_ERR_INPUT, "not a tokenizer.json (no \"model\" object)");
    if (st == CLLM_OK && added && added->type != CLLM_JSON_ARRAY && added->type != CLLM_JSON_NULL)
        st = cllm_fail(CLLM_ERR_INPUT, "\"added_tokens\" is not an array");
    if (added && added->type != CLLM_JSON_ARRAY) added = NULL;
    if (st == CLLM_OK) st = check_pipeline(root, model);
    if (st == CLLM_OK) st = read_vocab(cllm_json_get(model, "vocab"), added, &p);
    if (st == CLLM_OK) st = read_added(added, &p);
    if (st == CLLM_OK) st = read_json_merges(cllm_json_get(model, "merges"), &p);
    if (st == CLLM_OK) st = build_from_parts(&p, out);
    parts_free(&p);
    cllm_json_free(root);
    return st;
}

cllm_status cllm_hf_tokenizer_parse_vocab_merges(const char *vocab, size_t n_vocab, const char *merges,
                                                 size_t n_merges, cllm_tokenizer **out) {
    *out = NULL;
    cllm_json *root = NULL;
    cllm_status st = cllm_json_parse(vocab, n_vocab, &root);
    if (st != CLLM_OK) return with_context(st, "vocab.json");
    hf_parts p;
    memset(&p, 0, sizeof p);
    st = read_vocab(root, NULL, &p);
    /* GPT-2's files carry no list of specials: <|endoftext|> is the one. */
    int32_t eot = st == CLLM_OK ? key_get(&p.map, CLLM_TOKENIZER_EOT_NAME) : -1;
    if (eot >= 0) p.special[eot] = 1;
    if (st != CLLM_OK) st = with_context(st, "vocab.json");
    /* merges.txt: an optional "#version" line, then one "left right" per line. */
    char *copy = st == CLLM_OK ? malloc(n_merges + 1) : NULL;
    if (st == CLLM_OK && (!copy || !(p.merges = malloc((3 * (size_t)p.n_tokens + 3) * sizeof *p.merges)))) st = oom();
    size_t line_no = 0;
    for (size_t i = 0; st == CLLM_OK && i < n_merges;) {
        const char *nl = memchr(merges + i, '\n', n_merges - i);
        size_t end = nl ? (size_t)(nl - merges) : n_merges, len = end - i;
        line_no++;
        int has_nul = memchr(merges + i, '\0', len) != NULL;
        memcpy(copy, merges + i, len);
        copy[len] = '\0';
        if (len && copy[len - 1] == '\r') copy[--len] = '\0';
        i = end + 1;
        if (has_nul) st = cllm_fail(CLLM_ERR_INPUT, "a NUL byte");
        else if (line_no == 1 && strncmp(copy, "#version", 8) == 0) continue;
        else if (len == 0 && !nl) continue;
        else if (p.n_merges >= p.n_tokens)
            st = cllm_fail(CLLM_ERR_INPUT, "merges.txt line %zu: more merges than tokens", line_no);
        else {
            char *right = NULL;
            if ((st = split_merge(copy, (size_t)p.n_merges, &right)) == CLLM_OK)
                st = add_merge(&p, copy, right, (size_t)p.n_merges);
        }
        if (st != CLLM_OK) {
            char context[48];
            snprintf(context, sizeof context, "merges.txt line %zu", line_no);
            st = with_context(st, context);
        }
    }
    if (st == CLLM_OK) st = build_from_parts(&p, out);
    free(copy);
    parts_free(&p);
    cllm_json_free(root);
    return st;
}

/* A whole file (at most MAX_HF_FILE bytes), malloc'd with a NUL after it. */
static cllm_status read_file(const char *path, char **out, size_t *n) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cllm_fail(CLLM_ERR_INPUT, "cannot read %s: %s", path, strerror(errno));
    struct stat sb;
    cllm_status st = CLLM_OK;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) st = cllm_fail(CLLM_ERR_INPUT, "%s: not a regular file", path);
    else if (sb.st_size > (off_t)MAX_HF_FILE) st = cllm_fail(CLLM_ERR_INPUT, "%s: larger than %u MiB", path, MAX_HF_FILE >> 20);
    char *buf = st == CLLM_OK ? malloc((size_t)sb.st_size + 1) : NULL;
    if (st == CLLM_OK && !buf) st = oom();
    if (st == CLLM_OK && fread(buf, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size)
        st = cllm_fail(CLLM_ERR_INPUT, "cannot read %s", path);
    fclose(f);
    if (st != CLLM_OK) {
        free(buf);
        return st;
    }
    buf[sb.st_size] = '\0';
    *out = buf;
    *n = (size_t)sb.st_size;
    return CLLM_OK;
}

static int file_exists(const char *dir, const char *name) {
    char *path = cllm_path_join(dir, name);
    struct stat sb;
    int yes = path && stat(path, &sb) == 0;
    free(path);
    return yes;
}

/* Parses the file(s) and names the one at fault in the message. */
static cllm_status load_tokenizer_json(const char *path, cllm_tokenizer **out) {
    char *text;
    size_t n;
    cllm_status st = read_file(path, &text, &n);
    if (st != CLLM_OK) return st;
    st = cllm_hf_tokenizer_parse_json(text, n, out);
    free(text);
    if (st != CLLM_OK) st = with_context(st, path);
    return st;
}

cllm_status cllm_hf_tokenizer_load(const char *dir, cllm_tokenizer **out) {
    *out = NULL;
    if (file_exists(dir, "tokenizer.json")) {
        char *path = cllm_path_join(dir, "tokenizer.json");
        cllm_status st = path ? load_tokenizer_json(path, out) : oom();
        free(path);
        return st;
    }
    if (!file_exists(dir, "vocab.json") || !file_exists(dir, "merges.txt"))
        return cllm_fail(CLLM_ERR_INPUT, "%s: no tokenizer.json, nor vocab.json + merges.txt", dir);
    char *vpath = cllm_path_join(dir, "vocab.json"), *mpath = cllm_path_join(dir, "merges.txt");
    char *vocab = NULL, *merges = NULL;
    size_t nv = 0, nm = 0;
    cllm_status st = vpath && mpath ? read_file(vpath, &vocab, &nv) : oom();
    if (st == CLLM_OK) st = read_file(mpath, &merges, &nm);
    if (st == CLLM_OK && (st = cllm_hf_tokenizer_parse_vocab_merges(vocab, nv, merges, nm, out)) != CLLM_OK)
        st = with_context(st, dir);
    free(vocab);
    free(merges);
    free(vpath);
    free(mpath);
    return st;
}

cllm_status cllm_tokenizer_load_any(const char *path, cllm_tokenizer **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) return cllm_fail(CLLM_ERR_INPUT, "cannot read %s: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        if (!file_exists(path, "tokenizer.bin") && !file_exists(path, "tokenizer.json") &&
            (!file_exists(path, "vocab.json") || !file_exists(path, "merges.txt")))
            return cllm_fail(CLLM_ERR_INPUT, "%s: no tokenizer.bin, tokenizer.json, nor vocab.json + merges.txt", path);
        if (!file_exists(path, "tokenizer.bin")) return cllm_hf_tokenizer_load(path, out);
        char *bin = cllm_path_join(path, "tokenizer.bin");
        cllm_status st = bin ? cllm_tokenizer_load(bin, out) : oom();
        free(bin);
        return st;
    }
    /* A file: cllm's own format announces itself by its magic. */
    FILE *f = fopen(path, "rb");
    char magic[8] = {0};
    size_t got = f ? fread(magic, 1, sizeof magic, f) : 0;
    if (f) fclose(f);
    if (got == sizeof magic && memcmp(magic, "CLLM-BPE", 8) == 0) return cllm_tokenizer_load(path, out);
    size_t len = strlen(path);
    if (len >= 5 && strcmp(path + len - 5, ".json") == 0) return load_tokenizer_json(path, out);
    return cllm_tokenizer_load(path, out);
}
