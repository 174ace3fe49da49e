// infer.h: the inference API: a loaded model's batched prefill, then one token at a time
// (infer/decode.c, decode_one.c, prefill_bf16.c implement it).
//
// An infer_ctx borrows a model (parameter table and arena, e.g. an mo_checkpoint's) and
// owns a KV cache for up to `max_batch` sequences of `max_seq` positions plus every
// scratch buffer it will need, all allocated by infer_new: prefill and decode allocate
// nothing.
//
// - Prefill runs B prompts of T tokens each through the training kernels (one GEMM per
//   weight over all B*T rows, the causal attention kernel, the grouped per-expert GEMMs
//   over the tokens routed to each expert), stores K and V of every position in the
//   cache and returns the logits of each prompt's last position.
// - Decode feeds one token to each of several sequences, each at its own position: the
//   products become matrix-vector ones for a single sequence (kernels/gemv.h),
//   attention reads the cache, and only the experts the tokens chose are computed.
//
// The math is docs/design.md section 3's exactly (tests compare it with the training forward).
// `infer_restrict_experts` limits routing to a subset of experts, to probe what an
// expert learned: the router's probabilities are renormalized over the allowed experts
// before the top-k.
#ifndef MONOLITH_INFER_H
#define MONOLITH_INFER_H

#include "engine/model.h"
#include "engine/params.h"
#include "infer/kvcache.h"

typedef struct infer_ctx infer_ctx;

// A context for the model (pt, params), both borrowed and left unchanged, for up to
// max_batch sequences of up to max_seq positions (0: the model's max_seq_len, which
// is also the upper limit). Returns NULL with a one-line message for bad sizes or out
// of memory.
infer_ctx *infer_new(const mo_param_table *pt, const float *params, int max_batch, int max_seq);
void infer_free(infer_ctx *s);

int infer_max_seq(const infer_ctx *s);
int infer_max_batch(const infer_ctx *s);
// Positions filled in sequence b (its prompt and the tokens decoded so far).
int infer_seq_len(const infer_ctx *s, int b);
// The KV cache (for tests and tools that inspect it).
const kv_cache *infer_kv(const infer_ctx *s);

// The weights the products of prefill and decode use.
typedef enum {
    INFER_WEIGHTS_F32 = 0,  // the model's float32 parameters, as borrowed (the default)
    INFER_WEIGHTS_INT8 = 1, // 8-bit copies, quantized from them (kernels/gemv.h: blocks of 32 columns,
                            // one float scale each); the embedding table, norms and routers stay fp32
} infer_weights;

// Switches the weights of every matrix product: INT8 quantizes the model's weights
// (attention, routed, shared and dense FFNs, output) into buffers the context owns
// (about 0.28x the float32 size, made once here), F32 frees them. Decode then streams
// 1.125 bytes per weight instead of 4; prefill multiplies by the weights the 8-bit ones
// stand for (dequantized one tensor at a time), so both compute the same model. Returns
// 0, or -1 with a message when out of memory. The KV cache is kept (call it before a
// prefill).
int infer_set_weights(infer_ctx *s, infer_weights w);
infer_weights infer_get_weights(const infer_ctx *s);

// Chooses the arithmetic of the products with many rows (prefill, and decode of several
// sequences at once): MO_PRECISION_FP32 (the default, the reference) runs them in fp32
// (sgemm); MO_PRECISION_BF16 rounds both inputs of each to bf16 and accumulates and
// stores in fp32 (kernels/bf16.h), at about twice the fp32 rate on CPUs with
// AVX512_BF16. The weights are rounded once, here, into bf16 copies the context owns
// (2 bytes per weight of the attention, FFN and output matrices; with 8-bit weights, the
// values those stand for; infer_set_weights makes them again), the activations into
// scratch before each product. The KV cache keeps K and V in bf16 (kvcache.h: half the
// bytes a decode step reads for attention); the prompt's own attention uses them as
// computed. The routers, norms, the attention arithmetic and the products of the
// single-sequence decode step (matrix-vector products, fp32 or 8-bit) are unchanged.
// Changing the precision empties the KV cache (call it before a prefill). Switching
// back to fp32 frees the copies and gives bitwise the fp32 results again. Returns 0, or
// -1 with a message when the CPU has no AVX512_BF16 or when out of memory: a failed
// switch to bf16 leaves the products in fp32 and the KV cache as it was, a failed switch
// to fp32 (no memory for the fp32 cache) changes nothing.
int infer_set_precision(infer_ctx *s, mo_precision p);
mo_precision infer_get_precision(const infer_ctx *s);

// Bytes of weights one single-token decode step reads: the matrices a token passes
// through (attention, router, its k routed experts, shared or dense FFN, output) at
// their current precision, plus its embedding row and the norms; for the memory
// roofline of the benchmark.
double infer_decode_weight_bytes(const infer_ctx *s);
// Bytes of K and V a step reads for `positions` cached positions of its sequence, at the
// cache's storage (4 bytes an element, 2 with --precision bf16).
double infer_decode_kv_bytes(const infer_ctx *s, double positions);
// The buffer of the matrices decode reads at their current precision: the model's float32
// arena, or the 8-bit copies of --weights int8 (*bytes of them); for the benchmark's page
// checks.
const void *infer_weight_buffer(const infer_ctx *s, size_t *bytes);

// Decode's matrix-vector products alone, to tell the kernels' share of a decode step's
// time from the rest (`bench infer` prints it; infer/decode_probe.c): the products of
// INFER_PROBE_TOKENS tokens, the matrices a single-sequence decode step reads (q, k, v,
// wo, the gate, up and down of k experts chosen in turn so that successive tokens read
// different experts as decode's do, shared or dense FFNs, the output) at the current
// weights, with nothing between them, on the threads decode uses, in one of these modes:
typedef enum {
    INFER_PROBE_READ,      // a plain read (a sum) of the same bytes, each thread one contiguous share of every
                           // step as decode reads them: the products' roofline
    INFER_PROBE_PRODUCTS,  // the products in guided chunks the threads take as they go (decode's until
                           // 2026-12-07, kept for comparison), no meetings
    INFER_PROBE_HALVES,    // the products, each thread one contiguous share of every step (decode's), no meetings
    INFER_PROBE_MEETINGS,  // `halves` meeting where decode meets (33 times a bench-S token on 2 threads)
    INFER_PROBE_REGIONS,   // the same in a parallel region a token, as decode forks one
    INFER_PROBE_STREAM,    // `halves` with the fp32 rows one after the other (decode's until 2026-12-07,
                           // MONOLITH_GEMV_PAIRS=0; kernels/gemv.h) instead of in pairs
    INFER_PROBE_MODES
} infer_probe_mode;
#define INFER_PROBE_TOKENS 16
// Sets *gbs to the rate the mode read the weights at (10^9 bytes a second) and, when not
// NULL, *bytes to the bytes it read a token (infer_decode_weight_bytes but the router,
// norms and embedding row). Returns 0, or -1 with a message when out of memory or when a
// layer's token passes through more than 13 FFNs.
int infer_probe(infer_ctx *s, infer_probe_mode mode, double *gbs, double *bytes);
// The mode's name for tables: "read", "products", "halves", "meetings", "regions".
const char *infer_probe_name(infer_probe_mode mode);

// Restricts routing in every MoE layer to experts[0..n) (n = 0: all experts again). A
// token then takes the top min(k, allowed) of the allowed experts, with the router's
// probabilities renormalized over them. Returns 0, or -1 naming an expert id outside
// [0, n_experts) or a model without MoE layers.
int infer_restrict_experts(infer_ctx *s, const int *experts, int n);

// Prefills sequences first .. first+B-1 with tokens[B, T] (T >= 1 tokens each; the
// sequences restart at position 0) and writes the logits of each one's last position to
// logits[B, vocab_size]. Returns 0, or -1 with a one-line message: T longer than
// max_seq ("prompt of N tokens is longer than ..."), sequences outside the batch, or a
// token id outside the vocabulary.
int infer_prefill(infer_ctx *s, int first, int B, int T, const int *tokens, float *logits);

// Feeds tokens[i] to sequence seqs[i] (seqs NULL: sequence i) for i < B, each at the
// next position of its own sequence, and writes logits[B, vocab_size]. The B sequences
// must be distinct. Returns 0, or -1 with a message if a sequence is full (max_seq
// positions), a sequence index is out of range or repeated, or a token id is outside
// the vocabulary.
int infer_decode(infer_ctx *s, int B, const int *seqs, const int *tokens, float *logits);

// Routing of row `row` of the last infer_decode call (the row-th sequence fed) in layer
// `layer`: sets *experts and *gates (may be NULL) to its choices, best first, and
// returns how many there are (min(k, allowed experts)), or 0 for a dense layer or a row
// that the last call did not have.
int infer_routing(const infer_ctx *s, int row, int layer, const int **experts, const float **gates);

#endif
