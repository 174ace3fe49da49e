// gguf_model.h: a monolith checkpoint as a llama.cpp GGUF model and back.
//
// Which llama.cpp architecture holds which configuration (docs/design.md, "GGUF"):
//   every layer MoE, no shared experts, norm_topk 1   -> `llama` (its MoE path renormalizes
//                                                        the top-k softmax weights)
//   norm_topk 0, dense layers only leading (any count),
//   shared experts or none, n_heads*head_dim = d_model -> `deepseek` (v1: raw top-k softmax
//                                                        weights, leading dense blocks, one
//                                                        shared SwiGLU per MoE layer)
//   no MoE layer at all                               -> `llama` without experts
// Anything else is refused naming the config field, and so is a router llama.cpp does not
// run (export_routing.h: sigmoid scores, top-p, routed_scale, a nonzero router_bias). Both use RoPE on adjacent pairs
// (llama.cpp's "normal" RoPE), as monolith does, so no weight is permuted.
//
// Exact encodings inside `deepseek`: shared experts (n_shared x d_ff_shared hidden units)
// are one SwiGLU of n_shared*d_ff_shared units, which llama.cpp sizes as
// expert_shared_count x expert_feed_forward_length (= d_ff): the block is padded with zero
// units up to a multiple of d_ff, and a model without shared experts gets one zero shared
// expert. A zero unit contributes silu(0) * 0 = 0 to the output exactly. The monolith.*
// keys record the real sizes so that import removes the padding again.
//
// The tokenizer goes in as llama.cpp's byte-level BPE: tokenizer.ggml.model "gpt2", pre
// "gpt-2" (GPT-2's pre-split, the one data/pretok.h uses), tokens through GPT-2's byte map,
// the merges recovered from the ranks (data/bpe_merges.h), special tokens as control
// tokens, bos = eos = <|endoftext|>, no BOS added on tokenization. Model rows past the
// tokenizer's ids become unused "[PAD<i>]" tokens.
#ifndef MONOLITH_GGUF_MODEL_H
#define MONOLITH_GGUF_MODEL_H

#include "engine/checkpoint.h"

#include <stdint.h>

typedef struct {
    char arch[16];        // "llama" or "deepseek"
    int n_tensors;
    int shared_padded;    // deepseek: zero units added to the shared block (per layer)
    int tensors_fallback; // q8_0: tensors kept in F32 because their rows are not a multiple of 32
} gguf_export_info;

// The llama.cpp architecture that holds `c` exactly, or -1 with mo_error() naming the
// config field that no architecture monolith writes can hold.
int gguf_choose_arch(const mo_config *c, char arch[16]);

// Writes ck (which must carry its tokenizer) to `path` with matrices in `type` (GGML_T_F32,
// F16, BF16 or Q8_0; norms and routers always F32). Returns 0 or -1 (path untouched).
int gguf_export(const mo_checkpoint *ck, uint32_t type, const char *path, gguf_export_info *info);

// Reads a GGUF model of architecture `llama` or `deepseek` into ck (zeroed first; free
// with ckpt_free) with its tokenizer. Tensors F32, F16, BF16 and Q8_0 are dequantized to
// float32. `no_tokenizer` 1 imports the weights of a model whose tokenizer is not GPT-2
// style byte-level BPE (e.g. SentencePiece) without a tokenizer; 0 refuses it by name.
// Returns 0, or -1 with a one-line mo_error() naming the file and the key or tensor.
int gguf_import(const char *path, int no_tokenizer, mo_checkpoint *ck);

#endif
