/* cllm_export_gguf: a run folder as the GGUF file llama.cpp loads (see
 * include/cllm/train/export.h for the names, shapes and types). */
#include "cllm/train/export.h"

#include <stdlib.h>
#include <string.h>

#include "cllm/data/hf_tokenizer.h"
#include "cllm/io/gguf.h"
#include "cllm/train/checkpoint.h"

#define LAYER_NORM_EPS 1e-5f
#define GGUF_TOKEN_NORMAL 1
#define GGUF_TOKEN_CONTROL 3
#define FILE_TYPE_ALL_F32 0u
#define FILE_TYPE_MOSTLY_F16 1u

/* ---- the vocabulary as strings -------------------------------------------------------------------- */

/* Every token's text and every merge's "left right", each list in one arena. */
typedef struct {
    char *token_arena, *merge_arena;
    const char **tokens, **merges;
    size_t *token_len, *merge_len;
    int32_t *types;
    int n_tokens, n_merges;
} vocab_strings;

static void vocab_free(vocab_strings *v) {
    free(v->token_arena);
    free(v->merge_arena);
    free(v->tokens);
    free(v->merges);
    free(v->token_len);
    free(v->merge_len);
    free(v->types);
    memset(v, 0, sizeof *v);
}

/* Token texts as the Hugging Face files write them (byte-to-unicode form, a
 * special token's name as it is), each merge as "left right" of those. */
static cllm_status build_vocab(const cllm_tokenizer *tok, vocab_strings *v) {
    memset(v, 0, sizeof *v);
    v->n_tokens = cllm_tokenizer_vocab_size(tok);
    v->n_merges = cllm_tokenizer_n_merges(tok);
    char *text = malloc(CLLM_HF_TOKEN_TEXT_MAX);
    v->tokens = malloc((size_t)v->n_tokens * sizeof *v->tokens);
    v->token_len = malloc((size_t)v->n_tokens * sizeof *v->token_len);
    v->types = malloc((size_t)v->n_tokens * sizeof *v->types);
    v->merges = malloc(((size_t)v->n_merges + 1) * sizeof *v->merges);
    v->merge_len = malloc(((size_t)v->n_merges + 1) * sizeof *v->merge_len);
    int ok = text && v->tokens && v->token_len && v->types && v->merges && v->merge_len;
    size_t total = 0;
    for (int32_t id = 0; ok && id < v->n_tokens; id++) {
        cllm_hf_token_text(tok, id, text);
        v->token_len[id] = strlen(text);
        total += v->token_len[id];
    }
    ok = ok && (v->token_arena = malloc(total + 1)) != NULL;
    size_t used = 0;
    for (int32_t id = 0; ok && id < v->n_tokens; id++) {
        cllm_hf_token_text(tok, id, text);
        v->tokens[id] = v->token_arena + used;
        memcpy(v->token_arena + used, text, v->token_len[id]);
        used += v->token_len[id];
        v->types[id] = cllm_tokenizer_is_special(tok, id) ? GGUF_TOKEN_CONTROL : GGUF_TOKEN_NORMAL;
    }
    free(text);
    total = 0;
    for (int i = 0; ok && i < v->n_merges; i++) {
        int32_t left, right;
        cllm_tokenizer_merge(tok, i, &left, &right);
        v->merge_len[i] = v->token_len[left] + 1 + v->token_len[right];
        total += v->merge_len[i];
    }
    ok = ok && (v->merge_arena = malloc(total + 1)) != NULL;
    used = 0;
    for (int i = 0; ok && i < v->n_merges; i++) {
        int32_t left, right;
        cllm_tokenizer_merge(tok, i, &left, &right);
        char *m = v->merge_arena + used;
        memcpy(m, v->tokens[left], v->token_len[left]);
        m[v->token_len[left]] = ' ';
        memcpy(m + v->token_len[left] + 1, v->tokens[right], v->token_len[right]);
        v->merges[i] = m;
        used += v->merge_len[i];
    }
    if (!ok) {
        vocab_free(v);
        return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    }
    return CLLM_OK;
}

/* ---- tensors -------------------------------------------------------------------------------------- */

/* One tensor of the file: where it comes from and how it is stored. */
typedef struct {
    const char *hf;   /* the run's name, after "transformer." or "transformer.h.N." */
    const char *gguf; /* llama.cpp's, after "" or "blk.N." */
    int transpose;    /* Conv1D [in, out] -> rows of outputs */
} tensor_map;

static const tensor_map top_tensors[] = {
    {"wte.weight", "token_embd.weight", 0},     {"wpe.weight", "position_embd.weight", 0},
    {"ln_f.weight", "output_norm.weight", 0},   {"ln_f.bias", "output_norm.bias", 0},
};

static const tensor_map block_tensors[] = {
    {"ln_1.weight", "attn_norm.weight", 0},       {"ln_1.bias", "attn_norm.bias", 0},
    {"attn.c_attn.weight", "attn_qkv.weight", 1}, {"attn.c_attn.bias", "attn_qkv.bias", 0},
    {"attn.c_proj.weight", "attn_output.weight", 1}, {"attn.c_proj.bias", "attn_output.bias", 0},
    {"ln_2.weight", "ffn_norm.weight", 0},        {"ln_2.bias", "ffn_norm.bias", 0},
    {"mlp.c_fc.weight", "ffn_up.weight", 1},      {"mlp.c_fc.bias", "ffn_up.bias", 0},
    {"mlp.c_proj.weight", "ffn_down.weight", 1},  {"mlp.c_proj.bias", "ffn_down.bias", 0},
};

#define N_TOP (int)(sizeof top_tensors / sizeof top_tensors[0])
#define N_BLOCK (int)(sizeof block_tensors / sizeof block_tensors[0])

/* What llama.cpp's converter keeps in F32 whatever the file type: anything
 * 1-D (norms, biases) and the position embedding. */
static int stays_f32(const char *gguf_name, int ndim) {
    return ndim == 1 || strcmp(gguf_name, "position_embd.weight") == 0;
}

typedef struct {
    void **owned; /* converted copies, freed after the write */
    int n_owned;
} buffers;

static void buffers_free(buffers *b) {
    for (int i = 0; i < b->n_owned; i++) free(b->owned[i]);
    free(b->owned);
    memset(b, 0, sizeof *b);
}

/* rows x cols of x (rows of the first `rows` only), transposed or not, as
 * float or binary16. Returns x itself when nothing changes. */
static const void *stored_data(const float *x, int64_t rows, int64_t cols, int transpose, int f16, buffers *b) {
    if (!transpose && !f16) return x;
    size_t n = (size_t)rows * (size_t)cols;
    void *out = malloc(n * (f16 ? 2 : 4));
    void **owned = realloc(b->owned, ((size_t)b->n_owned + 1) * sizeof *owned);
    if (!out || !owned) {
        free(out);
        if (owned) b->owned = owned;
        return NULL;
    }
    b->owned = owned;
    b->owned[b->n_owned++] = out;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            /* transposed: element (c, r) of the output is x[r][c] */
            size_t to = transpose ? (size_t)c * (size_t)rows + (size_t)r : (size_t)r * (size_t)cols + (size_t)c;
            float v = x[(size_t)r * (size_t)cols + (size_t)c];
            if (f16) ((uint16_t *)out)[to] = cllm_f16_from_f32(v);
            else ((float *)out)[to] = v;
        }
    return out;
}

static cllm_status add_tensor(cllm_gguf_writer *w, const gpt2_model *m, const char *hf_name, const char *gguf_name,
                              int transpose, int64_t rows_kept, int f16_file, buffers *b, cllm_export_summary *s) {
    const gpt2_tensor *t = gpt2_find_tensor(m, hf_name);
    CLLM_ASSERT(t != NULL);
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    if (rows_kept > 0 && rows_kept < rows) rows = rows_kept;
    int f16 = f16_file && !stays_f32(gguf_name, t->ndim);
    const void *data = stored_data(m->params + t->offset, rows, cols, transpose, f16, b);
    if (!data) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    /* ggml order: the contiguous dimension first. */
    uint64_t dims[2] = {(uint64_t)(transpose ? rows : cols), (uint64_t)(transpose ? cols : rows)};
    s->n_tensors++;
    s->n_f16 += f16;
    return cllm_gguf_add_tensor(w, gguf_name, f16 ? CLLM_GGML_F16 : CLLM_GGML_F32, t->ndim, dims, data);
}

static cllm_status add_tensors(cllm_gguf_writer *w, const gpt2_model *m, int n_vocab, int f16, buffers *b,
                               cllm_export_summary *s) {
    char hf[96], gg[96];
    cllm_status st = CLLM_OK;
    for (int i = 0; i < N_TOP && st == CLLM_OK; i++) {
        snprintf(hf, sizeof hf, "transformer.%s", top_tensors[i].hf);
        /* token_embd: the vocabulary's rows only, should the model's table hold padding rows */
        st = add_tensor(w, m, hf, top_tensors[i].gguf, 0, i == 0 ? n_vocab : 0, f16, b, s);
    }
    for (int l = 0; l < m->cfg.n_layer && st == CLLM_OK; l++)
        for (int i = 0; i < N_BLOCK && st == CLLM_OK; i++) {
            snprintf(hf, sizeof hf, "transformer.h.%d.%s", l, block_tensors[i].hf);
            snprintf(gg, sizeof gg, "blk.%d.%s", l, block_tensors[i].gguf);
            st = add_tensor(w, m, hf, gg, block_tensors[i].transpose, 0, f16, b, s);
        }
    return st;
}

/* ---- metadata ------------------------------------------------------------------------------------- */

static cllm_status add_model_metadata(cllm_gguf_writer *w, const gpt2_config *c, const char *name, int f16) {
    cllm_status st = cllm_gguf_add_string(w, "general.architecture", "gpt2");
    if (st == CLLM_OK && name) st = cllm_gguf_add_string(w, "general.name", name);
    if (st == CLLM_OK) st = cllm_gguf_add_u32(w, "general.file_type", f16 ? FILE_TYPE_MOSTLY_F16 : FILE_TYPE_ALL_F32);
    if (st == CLLM_OK) st = cllm_gguf_add_u32(w, "gpt2.context_length", (uint32_t)c->seq_len);
    if (st == CLLM_OK) st = cllm_gguf_add_u32(w, "gpt2.embedding_length", (uint32_t)c->n_embd);
    if (st == CLLM_OK) st = cllm_gguf_add_u32(w, "gpt2.feed_forward_length", 4u * (uint32_t)c->n_embd);
    if (st == CLLM_OK) st = cllm_gguf_add_u32(w, "gpt2.block_count", (uint32_t)c->n_layer);
    if (st == CLLM_OK) st = cllm_gguf_add_u32(w, "gpt2.attention.head_count", (uint32_t)c->n_head);
    if (st == CLLM_OK) st = cllm_gguf_add_f32(w, "gpt2.attention.layer_norm_epsilon", LAYER_NORM_EPS);
    return st;
}

static cllm_status add_tokenizer_metadata(cllm_gguf_writer *w, const vocab_strings *v, int32_t eot) {
    cllm_status st = cllm_gguf_add_string(w, "tokenizer.ggml.model", "gpt2");
    if (st == CLLM_OK) st = cllm_gguf_add_string(w, "tokenizer.ggml.pre", "gpt-2");
    if (st == CLLM_OK) st = cllm_gguf_add_string_array(w, "tokenizer.ggml.tokens", v->tokens, v->token_len,
                                                       (uint64_t)v->n_tokens);
    if (st == CLLM_OK) st = cllm_gguf_add_i32_array(w, "tokenizer.ggml.token_type", v->types, (uint64_t)v->n_tokens);
    if (st == CLLM_OK) st = cllm_gguf_add_string_array(w, "tokenizer.ggml.merges", v->merges, v->merge_len,
                                                       (uint64_t)v->n_merges);
    if (st == CLLM_OK) st = cllm_gguf_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)eot);
    if (st == CLLM_OK) st = cllm_gguf_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eot);
    return st;
}

/* The run folder's last path component, as the model's name (NULL if not UTF-8-clean ASCII-ish). */
static const char *run_name(const char *dir, char *buf, size_t n) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') start--;
    if (len - start == 0 || len - start >= n) return NULL;
    for (size_t i = start; i < len; i++)
        if ((unsigned char)dir[i] < 0x20 || (unsigned char)dir[i] >= 0x7f) return NULL;
    memcpy(buf, dir + start, len - start);
    buf[len - start] = '\0';
    return buf;
}

cllm_status cllm_export_gguf(const char *run_dir, const char *path, cllm_export_dtype dtype,
                             cllm_export_summary *summary) {
    cllm_export_summary s;
    memset(&s, 0, sizeof s);
    gpt2_model m;
    cllm_tokenizer *tok = NULL;
    cllm_status st = cllm_run_load(run_dir, &m, &tok);
    if (st != CLLM_OK) return st;
    char *tok_path = cllm_path_join(run_dir, CLLM_TOKENIZER_FILE);
    if (!tok_path) st = cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    /* llama.cpp's "gpt-2" pre-tokenizer is GPT-2's pattern: another chunking gives other ids. */
    if (st == CLLM_OK && cllm_tokenizer_pretokenizer(tok) != CLLM_PRETOK_GPT2)
        st = cllm_fail(CLLM_ERR_INPUT,
                       "%s splits text with the %s chunker, not GPT-2's pre-tokenization, so llama.cpp could not "
                       "reproduce its token ids; retrain with: cllm train DATA --pretokenize gpt2",
                       tok_path, cllm_pretok_name(cllm_tokenizer_pretokenizer(tok)));
    /* The rest of what the Hugging Face files need too: llama.cpp keeps one id
     * per token text (and aborts on a repeat), its merges are those texts. */
    char why[256];
    if (st == CLLM_OK && !cllm_hf_tokenizer_expressible(tok, why, sizeof why))
        st = cllm_fail(CLLM_ERR_INPUT, "%s cannot be exported for llama.cpp: %s", tok_path, why);
    vocab_strings v;
    memset(&v, 0, sizeof v);
    if (st == CLLM_OK) st = build_vocab(tok, &v);
    cllm_gguf_writer w;
    buffers b = {NULL, 0};
    int f16 = dtype == CLLM_EXPORT_F16;
    char name_buf[256];
    if (st == CLLM_OK) st = cllm_gguf_writer_init(&w, CLLM_GGUF_DEFAULT_ALIGNMENT);
    else memset(&w, 0, sizeof w);
    if (st == CLLM_OK) st = add_model_metadata(&w, &m.cfg, run_name(run_dir, name_buf, sizeof name_buf), f16);
    if (st == CLLM_OK) st = add_tokenizer_metadata(&w, &v, cllm_tokenizer_eot(tok));
    if (st == CLLM_OK) st = add_tensors(&w, &m, v.n_tokens, f16, &b, &s);
    if (st == CLLM_OK) st = cllm_gguf_write(&w, path);
    if (st == CLLM_OK) {
        s.n_tokens = v.n_tokens;
        s.n_merges = v.n_merges;
        s.bytes = cllm_gguf_file_size(&w);
        if (summary) *summary = s;
    }
    buffers_free(&b);
    cllm_gguf_writer_free(&w);
    vocab_free(&v);
    free(tok_path);
    cllm_tokenizer_free(tok);
    gpt2_destroy(&m);
    return st;
}
