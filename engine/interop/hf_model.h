// hf_model.h: a monolith checkpoint as a Hugging Face Mixtral folder and back:
// config.json, model.safetensors (or shards model-0000i-of-0000n.safetensors with
// model.safetensors.index.json), generation_config.json; the tokenizer is hf_tokenizer.h's.
//
// Which configs are Mixtral (`model_type: mixtral`, MixtralForCausalLM): every layer MoE
// (moe_layers all 1), no shared experts, norm_topk 1 (Mixtral renormalizes the top-k
// softmax weights). Anything else is refused naming the config field: Mixtral has no dense
// layers, no shared experts and no raw-probability gates. Routers Mixtral does not run
// (export_routing.h) are refused too.
//
// Tensors (HF name <- monolith /model name, per layer L and expert e):
//   model.embed_tokens.weight                             <- tok_embeddings
//   model.layers.L.input_layernorm.weight                 <- layers/L/attn_norm
//   model.layers.L.self_attn.{q,k,v,o}_proj.weight        <- layers/L/attn/w{q,k,v,o}  (q, k permuted)
//   model.layers.L.post_attention_layernorm.weight        <- layers/L/ffn_norm
//   model.layers.L.block_sparse_moe.gate.weight           <- layers/L/moe/router
//   model.layers.L.block_sparse_moe.experts.e.w{1,2,3}.weight <- layers/L/moe/w{1,2,3}[e]
//   model.norm.weight                                     <- norm
//   lm_head.weight                                        <- output
//
// RoPE: monolith rotates adjacent pairs (x[2i], x[2i+1]); HF's Mixtral rotates halves
// (x[i], x[i + hd/2]) with the same frequency theta^(-2i/hd). Within every head of wq and wk,
// HF row j is monolith row perm(j):
//   perm(j) = 2j            for j <  hd/2
//   perm(j) = 2(j - hd/2)+1 for j >= hd/2
// so HF's (q[i], q[i+hd/2]) is monolith's pair i: the same rotation of the same numbers, and
// the attention scores (dot products over a whole head, permuted alike in q and k) are equal.
// wv, wo and everything else are unchanged. Import applies the inverse permutation.
#ifndef MONOLITH_HF_MODEL_H
#define MONOLITH_HF_MODEL_H

#include "engine/checkpoint.h"
#include "engine/interop/safetensors.h"

#include <stdint.h>

#define HF_DEFAULT_SHARD_SIZE ((uint64_t)5 << 30)  // transformers' default max_shard_size, 5 GB

// Row perm(j) of monolith's head is HF's row j (see above).
static inline int hf_rope_perm(int j, int head_dim) {
    return j < head_dim / 2 ? 2 * j : 2 * (j - head_dim / 2) + 1;
}

// 0 if `c` is a Mixtral config, else -1 with mo_error() naming the field and why.
int hf_check_config(const mo_config *c);

typedef struct {
    int n_tensors;
    int n_shards;  // 1: model.safetensors; more: shards + index
    uint64_t bytes;
} hf_export_info;

// Writes config.json, generation_config.json (when ck has a tokenizer: bos/eos ids) and
// the weights into the existing folder `dir` in `dtype` (ST_F32, ST_F16 or ST_BF16). The
// weights go in one model.safetensors when their data fits in shard_size bytes, else in
// shards of at most shard_size bytes (a tensor larger than that gets a shard alone) with
// model.safetensors.index.json; the form not written is removed if an earlier export left
// it. Each file is written atomically. Returns 0, or -1 with mo_error().
int hf_export_model(const mo_checkpoint *ck, const char *dir, st_dtype dtype, uint64_t shard_size,
                    hf_export_info *info);

// Reads config.json and the weights of the Mixtral folder `dir` into ck (zeroed first; free
// with ckpt_free) without a tokenizer. max_seq_len is max_position_embeddings, or the
// sliding window when it is smaller (the attention is exact up to that length), unless
// max_seq_len > 0 overrides it. Refused by name: another model_type, hidden_act other than
// silu, rope_scaling, attention biases, a missing, misshapen or extra tensor, a dtype other
// than F32, F16, BF16, NaN or Inf weights. Returns 0, or -1 with a one-line mo_error().
int hf_import_model(const char *dir, int max_seq_len, mo_checkpoint *ck);

#endif
