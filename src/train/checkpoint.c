/* Run folders: config.json + model.safetensors (+ tokenizer.bin). */
#include "cllm/train/checkpoint.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cllm/base/build_config.h"
#include "cllm/base/json.h"
#include "cllm/base/memory.h"
#include "cllm/data/hf_tokenizer.h"
#include "cllm/io/safetensors.h"


cllm_status cllm_make_dirs(const char *dir) {
    char *copy = strdup(dir);
    if (!copy) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    /* Create each prefix in turn; EEXIST is fine, anything else names the folder. */
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(copy, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            cllm_status st = cllm_fail(e == ENOSPC || e == EIO ? CLLM_ERR_INTERNAL : CLLM_ERR_INPUT,
                                       "cannot create folder %s: %s", copy, strerror(e));
            free(copy);
            return st;
        }
        *p = saved;
        if (saved == '\0') break;
    }
    free(copy);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return cllm_fail(CLLM_ERR_INPUT, "%s is not a folder", dir);
    return CLLM_OK;
}

/* ---- saving ---------------------------------------------------------------- */

static char *config_json(const gpt2_config *c, int32_t eot_id) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int ok = cllm_json_appendf(
        &buf, &len, &cap,
        "{\n"
        "  \"model_type\": \"gpt2\",\n"
        "  \"architectures\": [\"GPT2LMHeadModel\"],\n"
        "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_embd\": %d,\n"
        "  \"n_positions\": %d,\n  \"n_ctx\": %d,\n  \"vocab_size\": %d,\n"
        "  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
        "  \"activation_function\": \"gelu_new\",\n"
        "  \"layer_norm_epsilon\": 1e-05,\n"
        "  \"tie_word_embeddings\": true,\n"
        "  \"resid_pdrop\": 0.0,\n  \"embd_pdrop\": 0.0,\n  \"attn_pdrop\": 0.0,\n"
        /* The rest of what GPT2Config reads, at the values cllm's model has (so that
           transformers never falls back on a default that could differ). */
        "  \"n_inner\": null,\n  \"initializer_range\": 0.02,\n  \"scale_attn_weights\": true,\n"
        "  \"scale_attn_by_inverse_layer_idx\": false,\n  \"reorder_and_upcast_attn\": false,\n"
        "  \"use_cache\": true,\n  \"summary_type\": \"cls_index\",\n  \"summary_use_proj\": true,\n"
        "  \"summary_activation\": null,\n  \"summary_proj_to_labels\": true,\n  \"summary_first_dropout\": 0.1,\n"
        "  \"torch_dtype\": \"float32\",\n"
        "  \"cllm_version\": \"%s\"\n"
        "}\n",
        c->n_layer, c->n_head, c->n_embd, c->seq_len, c->seq_len, c->vocab_size, (int)eot_id, (int)eot_id,
        CLLM_VERSION);
    if (!ok) {
        free(buf);
        return NULL;
    }
    return buf;
}

static cllm_status write_model_tensors(const char *path, const gpt2_model *m, const char *const (*metadata)[2],
                                       int n_meta) {
    cllm_st_writer w;
    cllm_st_writer_init(&w);
    cllm_status st = cllm_st_writer_metadata(&w, "format", "pt");
    for (int i = 0; st == CLLM_OK && i < n_meta; i++) st = cllm_st_writer_metadata(&w, metadata[i][0], metadata[i][1]);
    for (int i = 0; st == CLLM_OK && i < m->n_tensors; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        st = cllm_st_writer_add(&w, t->name, CLLM_ST_F32, m->params + t->offset, t->ndim, t->shape);
    }
    if (st == CLLM_OK) st = cllm_st_writer_write(&w, path);
    cllm_st_writer_free(&w);
    return st;
}

cllm_status cllm_checkpoint_save_model_meta(const char *dir, const gpt2_model *m, int32_t eot_id,
                                            const char *const (*metadata)[2], int n_meta) {
    if (eot_id < 0 || eot_id >= m->cfg.vocab_size)
        return cllm_fail(CLLM_ERR_INTERNAL, "end-of-text id %d outside the vocabulary of %d", (int)eot_id,
                         m->cfg.vocab_size);
    cllm_status st = cllm_make_dirs(dir);
    if (st != CLLM_OK) return st;
    char *model_path = cllm_path_join(dir, CLLM_MODEL_FILE);
    char *config_path = cllm_path_join(dir, CLLM_CONFIG_FILE);
    char *config = config_json(&m->cfg, eot_id);
    if (!model_path || !config_path || !config) {
        st = cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    } else {
        /* Model first: if we die between the two files, config.json still
         * describes the same shapes whenever the run continues one model. */
        st = write_model_tensors(model_path, m, metadata, n_meta);
        if (st == CLLM_OK) st = cllm_write_file_atomic(config_path, config, strlen(config));
    }
    free(model_path);
    free(config_path);
    free(config);
    return st;
}

cllm_status cllm_checkpoint_save_model(const char *dir, const gpt2_model *m, int32_t eot_id) {
    return cllm_checkpoint_save_model_meta(dir, m, eot_id, NULL, 0);
}

/* ---- loading --------------------------------------------------------------- */

/* A required positive integer member; *out untouched on error. */
static cllm_status config_int(const char *path, const cllm_json *cfg, const char *key, int required, int *out) {
    const cllm_json *v = cllm_json_get(cfg, key);
    if (!v) return required ? cllm_fail(CLLM_ERR_INPUT, "%s: missing \"%s\"", path, key) : CLLM_OK;
    if (v->type != CLLM_JSON_NUMBER || !v->is_integer || v->integer < 0 || v->integer > (1 << 30))
        return cllm_fail(CLLM_ERR_INPUT, "%s: \"%s\" must be an integer in 0..%d", path, key, 1 << 30);
    *out = (int)v->integer;
    return CLLM_OK;
}

static cllm_status config_expect_string(const char *path, const cllm_json *cfg, const char *key, const char *want) {
    const cllm_json *v = cllm_json_get(cfg, key);
    if (!v) return CLLM_OK;
    if (v->type != CLLM_JSON_STRING || strcmp(v->string, want) != 0)
        return cllm_fail(CLLM_ERR_INPUT, "%s: \"%s\" must be \"%s\" (the only kind cllm implements)", path, key, want);
    return CLLM_OK;
}

/* A boolean GPT2Config key that, when present, must have the value cllm's
 * model computes. */
static cllm_status config_expect_bool(const char *path, const cllm_json *cfg, const char *key, int want,
                                      const char *why) {
    const cllm_json *v = cllm_json_get(cfg, key);
    if (!v || (v->type == CLLM_JSON_BOOL && v->boolean == want)) return CLLM_OK;
    return cllm_fail(CLLM_ERR_INPUT, "%s: \"%s\" must be %s (%s)", path, key, want ? "true" : "false", why);
}

/* gelu_new and gelu_pytorch_tanh are one function, the tanh approximation
 * cllm computes; "gelu" (erf) and the others are not. */
static cllm_status config_check_activation(const char *path, const cllm_json *cfg) {
    const cllm_json *v = cllm_json_get(cfg, "activation_function");
    if (!v) return CLLM_OK;
    if (v->type == CLLM_JSON_STRING && (strcmp(v->string, "gelu_new") == 0 || strcmp(v->string, "gelu_pytorch_tanh") == 0))
        return CLLM_OK;
    return cllm_fail(CLLM_ERR_INPUT,
                     "%s: \"activation_function\" must be \"gelu_new\" or \"gelu_pytorch_tanh\" (the tanh GELU, the "
                     "only one cllm implements)", path);
}

/* n_inner: null or absent means 4 x n_embd, the only MLP width cllm has. */
static cllm_status config_check_inner(const char *path, const cllm_json *cfg, const gpt2_config *c) {
    const cllm_json *v = cllm_json_get(cfg, "n_inner");
    if (!v || v->type == CLLM_JSON_NULL) return CLLM_OK;
    if (v->type == CLLM_JSON_NUMBER && v->is_integer && v->integer == 4 * (int64_t)c->n_embd) return CLLM_OK;
    return cllm_fail(CLLM_ERR_INPUT, "%s: \"n_inner\" must be null or 4 x n_embd = %d (cllm's MLP is 4 times as wide)",
                     path, 4 * c->n_embd);
}

/* Settings cllm does not implement otherwise must not be silently ignored.
 * The keys are GPT2Config's; those that do not change the function the
 * model computes (dropout rates, which cllm's training does not apply,
 * initializer_range, use_cache, the summary_* keys, ...) are not checked. */
static cllm_status config_check_fixed_settings(const char *path, const cllm_json *root, const gpt2_config *cfg) {
    cllm_status st = config_expect_string(path, root, "model_type", "gpt2");
    if (st == CLLM_OK) st = config_check_activation(path, root);
    if (st == CLLM_OK) st = config_check_inner(path, root, cfg);
    if (st == CLLM_OK) st = config_expect_bool(path, root, "scale_attn_weights", 1, "cllm divides by sqrt(head size)");
    if (st == CLLM_OK)
        st = config_expect_bool(path, root, "scale_attn_by_inverse_layer_idx", 0, "cllm does not scale by layer");
    if (st == CLLM_OK) st = config_expect_bool(path, root, "add_cross_attention", 0, "cllm has no cross-attention");
    if (st != CLLM_OK) return st;
    int n_ctx = cfg->seq_len;
    if ((st = config_int(path, root, "n_ctx", 0, &n_ctx)) != CLLM_OK) return st;
    if (n_ctx != cfg->seq_len) return cllm_fail(CLLM_ERR_INPUT, "%s: n_ctx %d differs from n_positions %d", path,
                                                n_ctx, cfg->seq_len);
    const cllm_json *tie = cllm_json_get(root, "tie_word_embeddings");
    if (tie && (tie->type != CLLM_JSON_BOOL || !tie->boolean))
        return cllm_fail(CLLM_ERR_INPUT, "%s: tie_word_embeddings must be true (cllm ties lm_head to wte)", path);
    const cllm_json *eps = cllm_json_get(root, "layer_norm_epsilon");
    if (eps && (eps->type != CLLM_JSON_NUMBER || eps->number < 0.99e-5 || eps->number > 1.01e-5))
        return cllm_fail(CLLM_ERR_INPUT, "%s: layer_norm_epsilon must be 1e-05 (the one cllm's LayerNorm uses)", path);
    return CLLM_OK;
}

/* A config whose model this machine cannot hold is refused before anything
 * is allocated, and before gpt2_config_validate's limits, so that an absurd
 * size is answered with the figures. Loading holds the parameters and
 * model.safetensors (read whole) at the same time. A file smaller than the
 * parameters would be cannot be what config.json describes: say so, since
 * that, not the machine, is then the likely problem. */
static cllm_status config_fits_memory(const char *dir, const char *path, const gpt2_config *cfg) {
    double params = gpt2_param_count_estimate(cfg), model_bytes = params * sizeof(float), file_bytes = 0;
    char *model_path = cllm_path_join(dir, CLLM_MODEL_FILE);
    struct stat sb;
    if (model_path && stat(model_path, &sb) == 0) file_bytes = (double)sb.st_size;
    free(model_path);
    uint64_t avail = cllm_memory_available();
    if (avail == 0 || model_bytes + file_bytes <= (double)avail) return CLLM_OK;
    char need[32], have[32], held[32], hint[160] = "";
    cllm_format_bytes(model_bytes + file_bytes, need, sizeof need);
    cllm_format_bytes((double)avail, have, sizeof have);
    cllm_format_bytes(file_bytes, held, sizeof held);
    if (file_bytes > 0 && file_bytes < model_bytes)
        snprintf(hint, sizeof hint, "; %s holds only %s, so config.json does not describe it", CLLM_MODEL_FILE, held);
    return cllm_fail(CLLM_ERR_INPUT, "%s describes a model of %.3g parameters: loading it needs %s, %s available%s",
                     path, params, need, have, hint);
}

static cllm_status parse_config(const char *dir, const char *path, const cllm_json *root, gpt2_config *cfg,
                                int32_t *eot_id) {
    if (root->type != CLLM_JSON_OBJECT) return cllm_fail(CLLM_ERR_INPUT, "%s: not a JSON object", path);
    memset(cfg, 0, sizeof *cfg);
    cllm_status st;
    if ((st = config_int(path, root, "n_layer", 1, &cfg->n_layer)) != CLLM_OK) return st;
    if ((st = config_int(path, root, "n_head", 1, &cfg->n_head)) != CLLM_OK) return st;
    if ((st = config_int(path, root, "n_embd", 1, &cfg->n_embd)) != CLLM_OK) return st;
    if ((st = config_int(path, root, "n_positions", 1, &cfg->seq_len)) != CLLM_OK) return st;
    if ((st = config_int(path, root, "vocab_size", 1, &cfg->vocab_size)) != CLLM_OK) return st;
    if (cfg->n_layer <= 0 || cfg->n_head <= 0 || cfg->n_embd <= 0 || cfg->seq_len <= 0 || cfg->vocab_size <= 0)
        return cllm_fail(CLLM_ERR_INPUT, "%s: n_layer, n_head, n_embd, n_positions and vocab_size must be positive",
                         path);
    if (cfg->n_embd % cfg->n_head != 0)
        return cllm_fail(CLLM_ERR_INPUT, "%s: n_embd %d is not a multiple of n_head %d", path, cfg->n_embd,
                         cfg->n_head);
    if ((st = config_check_fixed_settings(path, root, cfg)) != CLLM_OK) return st;
    int eot = -1;
    if ((st = config_int(path, root, "eos_token_id", 0, &eot)) != CLLM_OK) return st;
    if (eot >= cfg->vocab_size)
        return cllm_fail(CLLM_ERR_INPUT, "%s: eos_token_id %d is outside the vocabulary of %d", path, eot,
                         cfg->vocab_size);
    if (eot_id) *eot_id = eot;
    if ((st = config_fits_memory(dir, path, cfg)) != CLLM_OK) return st;
    st = gpt2_config_validate(cfg);
    if (st != CLLM_OK) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s", cllm_last_error());
        return cllm_fail(CLLM_ERR_INPUT, "%s: %s", path, msg);
    }
    return CLLM_OK;
}

static cllm_status missing_run_file(const char *dir, const char *path) {
    struct stat sb;
    if (stat(dir, &sb) != 0) return cllm_fail(CLLM_ERR_INPUT, "%s: no such run folder", dir);
    if (!S_ISDIR(sb.st_mode)) return cllm_fail(CLLM_ERR_INPUT, "%s is not a run folder", dir);
    if (stat(path, &sb) != 0) return cllm_fail(CLLM_ERR_INPUT, "%s is missing: not a cllm run folder, or an unfinished one", path);
    return CLLM_OK;
}

cllm_status cllm_checkpoint_read_config(const char *dir, gpt2_config *cfg, int32_t *eot_id) {
    char *path = cllm_path_join(dir, CLLM_CONFIG_FILE);
    if (!path) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    cllm_status st = missing_run_file(dir, path);
    cllm_json *root = NULL;
    if (st == CLLM_OK) st = cllm_json_parse_file(path, &root);
    if (st == CLLM_OK) st = parse_config(dir, path, root, cfg, eot_id);
    cllm_json_free(root);
    free(path);
    return st;
}

static void shape_text(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? "," : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* How a file names the model's tensors. cllm writes Hugging Face
 * GPT2LMHeadModel's names ("transformer.h.0.ln_1.weight"); a GPT2Model
 * saved on its own has them without the "transformer." prefix. Either is
 * read, one per file. lm_head.weight may be stored (transformers ties it to
 * wte but some savers write it): it must then equal wte, since cllm's
 * output layer is wte itself. Older transformers saved each block's causal
 * mask as a buffer (h.N.attn.bias, h.N.attn.masked_bias): constants of the
 * architecture, not parameters, which transformers itself ignores on load. */
static const char model_prefix[] = "transformer.";
#define LM_HEAD "lm_head.weight"
static const char WTE[] = "transformer.wte.weight";

typedef struct {
    const cllm_st_file *f;
    const char *path;
    int prefixed; /* tensors named "transformer.*" */
} tensor_names;

static tensor_names names_of(const cllm_st_file *f, const char *path) {
    int bare = !cllm_st_find(f, WTE) && cllm_st_find(f, WTE + strlen(model_prefix));
    return (tensor_names){f, path, !bare};
}

/* The file's name of model tensor `name` (which carries the prefix). */
static const char *file_name(const tensor_names *n, const char *name) {
    return n->prefixed ? name : name + strlen(model_prefix);
}

static const cllm_st_tensor *find_tensor(const tensor_names *n, const char *name) {
    return cllm_st_find(n->f, file_name(n, name));
}

/* h.N.attn.bias or h.N.attn.masked_bias of one of the model's layers. */
static int is_attention_buffer(const tensor_names *n, const char *name, int n_layer) {
    if (n->prefixed) {
        if (strncmp(name, model_prefix, strlen(model_prefix)) != 0) return 0;
        name += strlen(model_prefix);
    }
    unsigned layer;
    int end = 0;
    if (sscanf(name, "h.%u.attn.%*[a-z_]%n", &layer, &end) != 1 || name[end] != '\0' || layer >= (unsigned)n_layer)
        return 0;
    const char *last = strrchr(name, '.') + 1;
    return strcmp(last, "bias") == 0 || strcmp(last, "masked_bias") == 0;
}

static cllm_status check_shape(const char *path, const char *name, const cllm_st_tensor *s, int ndim,
                               const int64_t *shape) {
    int same = s->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = s->shape[d] == shape[d];
    if (same) return CLLM_OK;
    char got[96], want[96];
    shape_text(got, sizeof got, s->ndim, s->shape);
    shape_text(want, sizeof want, ndim, shape);
    return cllm_fail(CLLM_ERR_INPUT, "%s: tensor %s has shape %s but config.json implies %s", path, name, got, want);
}

static cllm_status check_dtype(const char *path, const cllm_st_tensor *s) {
    if (cllm_st_converts_to_f32(s->dtype)) return CLLM_OK;
    return cllm_fail(CLLM_ERR_INPUT, "%s: tensor %s is %s, cllm reads F32, F16 or BF16", path, s->name,
                     cllm_st_dtype_name(s->dtype));
}

/* Every tensor of the table present with a float dtype and the right shape,
 * and no tensor the config does not call for. Needs only the table
 * (m->params may be NULL), so a mismatched config.json is refused before the
 * model it describes is allocated. */
static cllm_status check_header(const gpt2_model *m, const tensor_names *n) {
    const char *path = n->path;
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        const cllm_st_tensor *s = find_tensor(n, t->name);
        if (!s)
            return cllm_fail(CLLM_ERR_INPUT, "%s: tensor %s is missing (config.json does not match)", path,
                             file_name(n, t->name));
        cllm_status st = check_dtype(path, s);
        if (st == CLLM_OK) st = check_shape(path, s->name, s, t->ndim, t->shape);
        if (st != CLLM_OK) return st;
    }
    for (int i = 0; i < n->f->n_tensors; i++) {
        const cllm_st_tensor *s = &n->f->tensors[i];
        if (strcmp(s->name, LM_HEAD) == 0) {
            const gpt2_tensor *wte = gpt2_find_tensor(m, WTE);
            cllm_status st = check_dtype(path, s);
            if (st == CLLM_OK) st = check_shape(path, s->name, s, wte->ndim, wte->shape);
            if (st != CLLM_OK) return st;
            continue;
        }
        if (is_attention_buffer(n, s->name, m->cfg.n_layer)) continue;
        const char *model_name = s->name;
        char prefixed[256];
        if (!n->prefixed) {
            snprintf(prefixed, sizeof prefixed, "%s%s", model_prefix, s->name);
            model_name = prefixed;
        }
        if (!gpt2_find_tensor(m, model_name) || (n->prefixed && strncmp(s->name, model_prefix, strlen(model_prefix))))
            return cllm_fail(CLLM_ERR_INPUT, "%s: unexpected tensor %s (not part of the model config.json describes)",
                             path, s->name);
    }
    return CLLM_OK;
}

cllm_status cllm_check_finite(const char *path, const char *tensor, const float *x, size_t n) {
    size_t i = cllm_first_non_finite(x, n);
    if (i == n) return CLLM_OK;
    const char *what = isnan(x[i]) ? "NaN" : x[i] > 0 ? "+Inf" : "-Inf";
    return cllm_fail(CLLM_ERR_INPUT,
                     "%s: tensor %s holds %s at element %zu of %zu (a diverged or damaged checkpoint; "
                     "cllm never saves non-finite values)",
                     path, tensor, what, i, n);
}

/* A stored lm_head.weight must be wte, value for value (after conversion:
 * it may be stored in another dtype), read in slices to need no copy of it. */
static cllm_status check_lm_head_tied(const gpt2_model *m, const tensor_names *n) {
    const cllm_st_tensor *s = cllm_st_find(n->f, LM_HEAD);
    if (!s) return CLLM_OK;
    const float *wte = m->params + gpt2_find_tensor(m, WTE)->offset;
    enum { SLICE = 4096 };
    float buf[SLICE];
    for (size_t at = 0; at < s->numel; at += SLICE) {
        size_t k = s->numel - at < SLICE ? s->numel - at : SLICE;
        cllm_status st = cllm_st_to_f32_range(n->f, s, at, k, buf);
        if (st != CLLM_OK) return st;
        for (size_t j = 0; j < k; j++)
            if (buf[j] != wte[at + j])
                return cllm_fail(CLLM_ERR_INPUT,
                                 "%s: tensor %s differs from %s at element %zu (%g, not %g): cllm ties the output "
                                 "layer to the token embedding and cannot compute an untied one",
                                 n->path, LM_HEAD, file_name(n, WTE), at + j,
                                 (double)buf[j], (double)wte[at + j]);
    }
    return CLLM_OK;
}

/* Converts every tensor (already checked by check_header) into the buffer
 * and refuses non-finite values: NaN or Inf weights only ever produce NaN
 * losses and garbage samples, so they are a load error naming the tensor. */
static cllm_status fill_from_file(gpt2_model *m, const tensor_names *n) {
    for (int i = 0; i < m->n_tensors; i++) {
        const gpt2_tensor *t = &m->tensors[i];
        const cllm_st_tensor *s = find_tensor(n, t->name);
        float *dst = m->params + t->offset;
        cllm_status st = cllm_st_to_f32(n->f, s, dst);
        if (st == CLLM_OK) st = cllm_check_finite(n->path, s->name, dst, t->numel);
        if (st != CLLM_OK) return st;
    }
    return check_lm_head_tied(m, n);
}

/* What the file held, in a few words: the dtypes of the model's tensors
 * (widened on read), and what differs from cllm's own layout. */
static void describe_layout(const gpt2_model *m, const tensor_names *n, char *what, size_t len) {
    int seen[3] = {0}; /* F32, F16, BF16 */
    for (int i = 0; i < m->n_tensors; i++) {
        cllm_st_dtype dt = find_tensor(n, m->tensors[i].name)->dtype;
        seen[dt == CLLM_ST_F32 ? 0 : dt == CLLM_ST_F16 ? 1 : 2] = 1;
    }
    int buffers = 0;
    for (int i = 0; i < n->f->n_tensors; i++) buffers += is_attention_buffer(n, n->f->tensors[i].name, m->cfg.n_layer);
    size_t k = (size_t)snprintf(what, len, "%s%s%s%s tensors%s", seen[0] ? "F32" : "",
                                seen[0] && (seen[1] || seen[2]) ? "+" : "", seen[1] ? "F16" : "",
                                seen[2] ? (seen[1] ? "+BF16" : "BF16") : "",
                                seen[1] || seen[2] ? " (widened exactly to F32)" : "");
    if (!n->prefixed && k < len) k += (size_t)snprintf(what + k, len - k, ", names without %s", model_prefix);
    if (cllm_st_find(n->f, LM_HEAD) && k < len) k += (size_t)snprintf(what + k, len - k, ", %s = wte", LM_HEAD);
    if (buffers && k < len) snprintf(what + k, len - k, ", %d mask buffers ignored", buffers);
}

/* DIR/model.safetensors into m's table: checked against the table first,
 * then, when m has no parameters yet, they are allocated, then filled.
 * what (may be NULL): describe_layout's words. */
static cllm_status read_model_file(const char *dir, gpt2_model *m, char *what, size_t what_len) {
    char *path = cllm_path_join(dir, CLLM_MODEL_FILE);
    if (!path) return cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    cllm_status st = missing_run_file(dir, path);
    cllm_st_file f;
    memset(&f, 0, sizeof f);
    if (st == CLLM_OK) st = cllm_st_open(path, &f);
    tensor_names names = names_of(&f, path);
    if (st == CLLM_OK) st = check_header(m, &names);
    if (st == CLLM_OK && !m->params) st = gpt2_alloc_params(m);
    if (st == CLLM_OK) st = fill_from_file(m, &names);
    if (st == CLLM_OK && what) describe_layout(m, &names, what, what_len);
    cllm_st_close(&f);
    free(path);
    return st;
}

/* Order matters for bad input: the config is checked against memory, then
 * against the file's header, and only then is the model allocated. */
cllm_status cllm_checkpoint_load_model(const char *dir, gpt2_model *m) {
    memset(m, 0, sizeof *m);
    gpt2_config cfg;
    cllm_status st = cllm_checkpoint_read_config(dir, &cfg, NULL);
    if (st == CLLM_OK) st = gpt2_describe(m, &cfg);
    if (st == CLLM_OK) st = read_model_file(dir, m, NULL, 0);
    if (st != CLLM_OK) gpt2_destroy(m);
    return st;
}

cllm_status cllm_checkpoint_fill_model(const char *dir, gpt2_model *m, char *what, size_t what_len) {
    CLLM_ASSERT(m->params);
    return read_model_file(dir, m, what, what_len);
}

static int has_file(const char *dir, const char *name) {
    char *path = cllm_path_join(dir, name);
    int yes = path && access(path, F_OK) == 0;
    free(path);
    return yes;
}

/* A folder cllm trained in (run.json); not one from elsewhere. */
static int is_run_folder(const char *dir) { return has_file(dir, CLLM_RUN_FILE); }

static int has_hf_tokenizer(const char *dir) {
    return has_file(dir, "tokenizer.json") || (has_file(dir, "vocab.json") && has_file(dir, "merges.txt"));
}

cllm_status cllm_run_load(const char *dir, gpt2_model *m, cllm_tokenizer **tokenizer) {
    *tokenizer = NULL;
    int32_t eot = -1;
    gpt2_config cfg;
    cllm_status st = cllm_checkpoint_read_config(dir, &cfg, &eot);
    if (st != CLLM_OK) return st;
    st = cllm_checkpoint_load_model(dir, m);
    if (st != CLLM_OK) return st;
    char *path = cllm_path_join(dir, CLLM_TOKENIZER_FILE);
    if (!path) st = cllm_fail(CLLM_ERR_INTERNAL, "out of memory");
    if (st == CLLM_OK && !is_run_folder(dir) && access(path, F_OK) != 0 && has_hf_tokenizer(dir)) {
        st = cllm_hf_tokenizer_load(dir, tokenizer); /* a Hugging Face folder: tokenizer.json or vocab.json + merges.txt */
    } else {
        if (st == CLLM_OK) st = missing_run_file(dir, path); /* a run's own tokenizer is tokenizer.bin */
        if (st == CLLM_OK) st = cllm_tokenizer_load(path, tokenizer);
    }
    if (st == CLLM_OK && cllm_tokenizer_vocab_size(*tokenizer) != cfg.vocab_size)
        st = cllm_fail(CLLM_ERR_INPUT, "%s has %d tokens but config.json says vocab_size %d", path,
                       cllm_tokenizer_vocab_size(*tokenizer), cfg.vocab_size);
    if (st == CLLM_OK && eot >= 0 && cllm_tokenizer_eot(*tokenizer) != eot)
        st = cllm_fail(CLLM_ERR_INPUT, "%s: end-of-text id %d differs from config.json eos_token_id %d", path,
                       cllm_tokenizer_eot(*tokenizer), eot);
    free(path);
    if (st != CLLM_OK) {
        cllm_tokenizer_free(*tokenizer);
        *tokenizer = NULL;
        gpt2_destroy(m);
    }
    return st;
}
