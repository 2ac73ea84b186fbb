/* A run folder exported for other programs: GGUF for llama.cpp.
 *
 * The GGUF file (docs/INTEROP.md) is what llama.cpp's convert_hf_to_gguf.py
 * makes of a Hugging Face GPT-2:
 *   general.architecture = gpt2; gpt2.context_length, embedding_length,
 *   feed_forward_length (4 x embd), block_count, attention.head_count (u32),
 *   attention.layer_norm_epsilon (f32 1e-5); general.file_type 0 (all F32)
 *   or 1 (mostly F16).
 *   Tensors under llama.cpp's GPT-2 names, dims in ggml order (fastest first):
 *     token_embd.weight [C, V]            <- transformer.wte.weight [V, C]
 *     position_embd.weight [C, T]         <- transformer.wpe.weight [T, C]
 *     blk.N.attn_norm.{weight,bias} [C]   <- h.N.ln_1
 *     blk.N.attn_qkv.weight [C, 3C]       <- h.N.attn.c_attn.weight [C, 3C] transposed
 *     blk.N.attn_qkv.bias [3C]
 *     blk.N.attn_output.weight [C, C]     <- h.N.attn.c_proj.weight transposed
 *     blk.N.attn_output.bias [C]
 *     blk.N.ffn_norm.{weight,bias} [C]    <- h.N.ln_2
 *     blk.N.ffn_up.weight [C, 4C]         <- h.N.mlp.c_fc.weight [C, 4C] transposed
 *     blk.N.ffn_up.bias [4C]
 *     blk.N.ffn_down.weight [4C, C]       <- h.N.mlp.c_proj.weight [4C, C] transposed
 *     blk.N.ffn_down.bias [C]
 *     output_norm.{weight,bias} [C]       <- transformer.ln_f
 *   (Conv1D weights are stored [in, out]; transposed, each output's weights
 *   are one contiguous row, as ggml's matrix product wants.) The output
 *   layer is tied to token_embd and not stored: llama.cpp uses token_embd.
 *   With F16, the 2-D weights become binary16 (round to nearest even) except
 *   position_embd; norms, biases and position_embd stay F32, as the
 *   converter leaves them.
 *   Tokenizer: tokenizer.ggml.model = gpt2, pre = gpt-2, tokens (each token's
 *   bytes in GPT-2's byte-to-unicode form; the end-of-text token as
 *   "<|endoftext|>"), token_type (1 normal, 3 control for end-of-text),
 *   merges ("left right" in the same form, in merge order),
 *   bos_token_id = eos_token_id = the end-of-text id. */
#ifndef CLLM_TRAIN_EXPORT_H
#define CLLM_TRAIN_EXPORT_H

#include "cllm/base/common.h"

typedef enum { CLLM_EXPORT_F32, CLLM_EXPORT_F16 } cllm_export_dtype;

typedef struct {
    int n_tensors, n_f16;
    int n_tokens, n_merges;
    uint64_t bytes; /* the file's size */
} cllm_export_summary;

/* Loads the run folder `run_dir` (model and tokenizer, fully validated) and
 * writes `path` crash-safely. A tokenizer that does not pre-tokenize as
 * GPT-2 does, or that the Hugging Face files cannot express either (two
 * tokens of the same text), cannot be reproduced by llama.cpp:
 * CLLM_ERR_INPUT saying so and how to retrain. summary may be NULL. */
cllm_status cllm_export_gguf(const char *run_dir, const char *path, cllm_export_dtype dtype,
                             cllm_export_summary *summary);

#endif
