/* Run folders and model checkpoints.
 *
 * A run folder holds (see README):
 *   config.json            Hugging Face GPT2Config keys (model_type gpt2, n_layer, n_head, n_embd,
 *                          n_positions, n_ctx, vocab_size, bos/eos_token_id = EOT, gelu_new, ...)
 *   model.safetensors      tensors named and shaped as Hugging Face GPT-2, lm_head tied (not stored)
 *   tokenizer.bin          cllm_tokenizer_save
 *   optimizer.safetensors  run.json  metrics.jsonl  loss.png   (written by the trainer)
 *
 * Every file is written crash-safely (temporary file, fsync, rename, fsync
 * folder), so an interrupted save leaves the previous checkpoint loadable.
 * Loading validates everything and names the file and the problem. */
#ifndef CLLM_TRAIN_CHECKPOINT_H
#define CLLM_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "cllm/base/common.h"
#include "cllm/data/tokenizer.h"
#include "cllm/models/gpt2.h"

#define CLLM_CONFIG_FILE "config.json"
#define CLLM_MODEL_FILE "model.safetensors"
#define CLLM_TOKENIZER_FILE "tokenizer.bin"
#define CLLM_OPTIMIZER_FILE "optimizer.safetensors"
#define CLLM_RUN_FILE "run.json"

/* cllm_path_join (dir/name) lives in cllm/common.h. */

/* Creates dir and its parents if missing (like mkdir -p). */
cllm_status cllm_make_dirs(const char *dir);

/* Writes model.safetensors then config.json, each crash-safely, creating dir
 * if needed. Tensors come straight from the flat buffer via the model's
 * table. metadata: n_meta (key, value) pairs added to the safetensors
 * "__metadata__" (besides "format":"pt"), e.g. the step, so the trainer can
 * pair a model with its optimizer state; may be NULL. */
cllm_status cllm_checkpoint_save_model_meta(const char *dir, const gpt2_model *m, int32_t eot_id,
                                            const char *const (*metadata)[2], int n_meta);
cllm_status cllm_checkpoint_save_model(const char *dir, const gpt2_model *m, int32_t eot_id);

/* Reads and validates DIR/config.json: required positive integers n_layer,
 * n_head, n_embd, n_positions, vocab_size; n_embd % n_head == 0; and, when
 * given, model_type gpt2, the tanh GELU (gelu_new or gelu_pytorch_tanh),
 * n_ctx == n_positions, tied embeddings, layer_norm_epsilon 1e-5, n_inner
 * null or 4 n_embd, scale_attn_weights true, scale_attn_by_inverse_layer_idx
 * and add_cross_attention false (keys that do not change the function, such
 * as the dropout rates, are not checked); and a model small enough to load into the memory available now
 * (CLLM_ERR_INPUT with both figures otherwise). eot_id may be NULL; it is -1
 * when the file has no eos_token_id. */
cllm_status cllm_checkpoint_read_config(const char *dir, gpt2_config *cfg, int32_t *eot_id);

/* Creates *m from config.json and fills it from model.safetensors, checking
 * every tensor's name, dtype and shape against the config (missing, extra or
 * mismatched: CLLM_ERR_INPUT naming it) BEFORE the parameters are allocated,
 * so a wrong config.json costs no memory. Reads what Hugging Face GPT-2
 * savers write: F32, F16 or BF16 tensors (converted exactly), names with or
 * without "transformer.", lm_head.weight when it equals wte (tied; otherwise
 * refused, naming the first element that differs), and the causal-mask
 * buffers h.N.attn.bias / h.N.attn.masked_bias of older transformers
 * (ignored, as transformers does). A NaN or +-Inf parameter is
 * CLLM_ERR_INPUT naming the tensor and the element (finite values, however
 * large, load). On failure *m is left empty. */
cllm_status cllm_checkpoint_load_model(const char *dir, gpt2_model *m);

/* The same into a model already created (parameters allocated) for the
 * config DIR/config.json describes: DIR/model.safetensors replaces its
 * parameters, with the same checks. On failure the parameters are partly
 * overwritten: the caller discards the model. what (may be NULL) gets a few
 * words on the file's layout ("BF16 tensors (widened exactly to F32), names
 * without transformer., lm_head.weight = wte"). */
cllm_status cllm_checkpoint_fill_model(const char *dir, gpt2_model *m, char *what, size_t what_len);

/* CLLM_OK when x[0..n) are all finite; else CLLM_ERR_INPUT "<path>: tensor
 * <tensor> holds NaN at element i of n ...". For every loader of float
 * tensors (model weights, optimizer moments). */
cllm_status cllm_check_finite(const char *path, const char *tensor, const float *x, size_t n);

/* The model and the tokenizer of a run folder, checked against each other
 * (vocabulary size, end-of-text id). A run's tokenizer is its tokenizer.bin;
 * a folder that is not a cllm run (no run.json: a Hugging Face GPT-2) and
 * has no tokenizer.bin gives its tokenizer.json or vocab.json + merges.txt. A missing folder or file is one clear
 * CLLM_ERR_INPUT. On failure nothing is left allocated. */
cllm_status cllm_run_load(const char *dir, gpt2_model *m, cllm_tokenizer **tokenizer);

#endif
