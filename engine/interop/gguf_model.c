// gguf_model.c: monolith checkpoints as llama.cpp `llama` / `deepseek` GGUF models, and back.
#include "engine/interop/gguf_model.h"

#include "data/tokenizer.h"
#include "engine/base/error.h"
#include "engine/interop/bpe_vocab.h"
#include "engine/interop/export_routing.h"
#include "engine/interop/gguf.h"
#include "engine/interop/gguf_types.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// llama.cpp token types (llama_token_type).
enum { TT_NORMAL = 1, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5 };

static int leading_dense(const mo_config *c) {
    int n = 0;
    while (n < c->n_layers && !c->moe_layers[n]) n++;
    return n;
}

int gguf_choose_arch(const mo_config *c, char arch[16]) {
    int n_moe = config_n_moe_layers(c), lead = leading_dense(c);
    if (n_moe == 0) {
        snprintf(arch, 16, "llama");  // llama without experts: dense SwiGLU layers
        return 0;
    }
    if (c->norm_topk == 1) {
        if (c->n_shared_experts > 0)
            return mo_errorf("n_shared_experts %d with norm_topk 1: llama.cpp's llama MoE has no shared experts and "
                             "its deepseek (v1) does not renormalize the top-k gates, so no GGUF architecture holds "
                             "this model exactly",
                             c->n_shared_experts);
        if (n_moe != c->n_layers)
            return mo_errorf("moe_layers has %d dense layers with norm_topk 1: llama.cpp's llama MoE makes every layer "
                             "MoE and its deepseek (v1) does not renormalize the top-k gates, so no GGUF architecture "
                             "holds this model exactly",
                             c->n_layers - n_moe);
        snprintf(arch, 16, "llama");
        return 0;
    }
    if (lead + n_moe != c->n_layers) {
        int l = lead;
        while (c->moe_layers[l]) l++;
        return mo_errorf("moe_layers: dense layer %d follows a MoE layer; llama.cpp's deepseek (the architecture for "
                         "norm_topk 0) has dense layers only before the first MoE layer",
                         l);
    }
    if (c->n_heads * c->head_dim != c->d_model)
        return mo_errorf("head_dim %d: n_heads x head_dim = %d differs from d_model %d, and llama.cpp's deepseek (the "
                         "architecture for norm_topk 0) needs them equal",
                         c->head_dim, c->n_heads * c->head_dim, c->d_model);
    snprintf(arch, 16, "deepseek");
    return 0;
}

// ---------------------------------------------------------------- the tensor map

// One GGUF tensor: where its values come from in the parameter table. Shared-expert
// blocks of `deepseek` are `units` wide in the file and n_shared*d_ff_shared in the table
// (the rest zero); a layer without shared experts has param -1 (all zero).
typedef struct {
    char name[48];
    int param;  // table index or -1
    int n_dims;
    int64_t ne[3];
    int shared;  // 0 plain, 1 shared gate/up [units, d], 2 shared down [d, units]
    int layer;
    int keep_f32;  // norms and routers stay F32 in every file
} tmap;

static int map_tensors(const mo_param_table *pt, const char *arch, int units, tmap **out) {
    const mo_config *c = &pt->cfg;
    int deepseek = !strcmp(arch, "deepseek"), n = 0;
    tmap *m = calloc((size_t)pt->n + 3 * (size_t)c->n_layers, sizeof *m);
    if (!m) return mo_errorf("out of memory for the tensor map");
    static const char *const names[PK_COUNT] = {
        [PK_TOK_EMBEDDINGS] = "token_embd", [PK_NORM] = "output_norm",      [PK_OUTPUT] = "output",
        [PK_ATTN_NORM] = "attn_norm",       [PK_WQ] = "attn_q",             [PK_WK] = "attn_k",
        [PK_WV] = "attn_v",                 [PK_WO] = "attn_output",        [PK_FFN_NORM] = "ffn_norm",
        [PK_ROUTER] = "ffn_gate_inp",       [PK_W1] = "ffn_gate_exps",      [PK_W3] = "ffn_up_exps",
        [PK_W2] = "ffn_down_exps",          [PK_SHARED_W1] = "ffn_gate_shexp", [PK_SHARED_W3] = "ffn_up_shexp",
        [PK_SHARED_W2] = "ffn_down_shexp",  [PK_DENSE_W1] = "ffn_gate",     [PK_DENSE_W3] = "ffn_up",
        [PK_DENSE_W2] = "ffn_down"};
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        if (t->no_grad) continue;  // router_bias: all zero (export_check_routing); imported as 0
        tmap *e = &m[n++];
        e->param = i, e->layer = t->layer, e->n_dims = t->rank;
        if (t->layer < 0)
            snprintf(e->name, sizeof e->name, "%s.weight", names[t->kind]);
        else
            snprintf(e->name, sizeof e->name, "blk.%d.%s.weight", t->layer, names[t->kind]);
        for (int d = 0; d < t->rank; d++) e->ne[d] = t->shape[t->rank - 1 - d];
        e->keep_f32 = t->is_norm || t->kind == PK_ROUTER;
        if (t->kind == PK_SHARED_W1 || t->kind == PK_SHARED_W3) e->shared = 1, e->ne[1] = units;
        if (t->kind == PK_SHARED_W2) e->shared = 2, e->ne[0] = units;
        // A deepseek MoE layer without shared experts: a zero shared expert after the router's experts.
        if (deepseek && t->kind == PK_W2 && c->n_shared_experts == 0) {
            static const int kinds[3] = {PK_SHARED_W1, PK_SHARED_W3, PK_SHARED_W2};
            for (int k = 0; k < 3; k++) {
                tmap *z = &m[n++];
                z->param = -1, z->layer = t->layer, z->n_dims = 2, z->shared = k == 2 ? 2 : 1;
                snprintf(z->name, sizeof z->name, "blk.%d.%s.weight", t->layer, names[kinds[k]]);
                z->ne[0] = k == 2 ? units : c->d_model;
                z->ne[1] = k == 2 ? c->d_model : units;
            }
        }
    }
    *out = m;
    return n;
}

static size_t map_numel(const tmap *e) {
    size_t n = 1;
    for (int d = 0; d < e->n_dims; d++) n *= (size_t)e->ne[d];
    return n;
}

// The file's values of e from the table (zero units added for shared blocks).
static float *gather(const tmap *e, const mo_param_table *pt, const float *params) {
    size_t n = map_numel(e);
    float *v = calloc(n, sizeof *v);
    if (!v) {
        mo_errorf("out of memory for tensor %s", e->name);
        return NULL;
    }
    if (e->param < 0) return v;
    const float *src = params + pt->t[e->param].offset;
    const mo_tensor *t = &pt->t[e->param];
    if (e->shared == 2) {  // [d, w] rows into [d, units] rows
        size_t w = (size_t)t->shape[1];
        for (int64_t r = 0; r < e->ne[1]; r++) memcpy(v + (size_t)r * e->ne[0], src + r * w, w * sizeof *v);
    } else {
        memcpy(v, src, t->numel * sizeof *v);  // shared gate/up: the table's rows first, zero rows after
    }
    return v;
}

// The table's values of e from the file's (decoded) values; the padding must be zero.
static int scatter(const tmap *e, const mo_param_table *pt, float *params, const float *v, const char *origin) {
    size_t n = map_numel(e);
    const mo_tensor *t = e->param >= 0 ? &pt->t[e->param] : NULL;
    float *dst = t ? params + t->offset : NULL;
    size_t kept = t ? t->numel : 0;
    for (size_t i = 0; i < n; i++) {
        int inside = 0;
        if (t && e->shared == 2)
            inside = (int64_t)(i % (size_t)e->ne[0]) < t->shape[1];
        else if (t)
            inside = i < kept;
        if (!inside && v[i] != 0.0f)
            return mo_errorf("%s: tensor %s has non-zero weights in the padding that the monolith.* keys declare",
                             origin, e->name);
    }
    if (!t) return 0;
    if (e->shared == 2) {
        size_t w = (size_t)t->shape[1];
        for (int64_t r = 0; r < e->ne[1]; r++) memcpy(dst + r * w, v + (size_t)r * e->ne[0], w * sizeof *v);
    } else {
        memcpy(dst, v, kept * sizeof *v);
    }
    return 0;
}

// ---------------------------------------------------------------- export

static int put_tokenizer(gguf_writer *w, const mo_checkpoint *ck) {
    const mo_tokenizer_blob *b = &ck->tokenizer;
    if (!b->present)
        return mo_errorf("the checkpoint has no tokenizer (/tokenizer); train on a token set first, or add one with "
                         "`monolith data` so that llama.cpp can read its text");
    bpe_vocab v;
    if (bpe_vocab_from_blob(b, &v)) return -1;
    // tokenizer.ggml.tokens lists every id: the ranks' texts, the special tokens, then
    // the rows past the tokenizer (vocab_size may be padded) as unused.
    int V = ck->table.cfg.vocab_size, R = v.n_ranks, TV = tok_vocab_size(v.tok), rc = -1;
    const char **tokens = calloc((size_t)V, sizeof *tokens);
    char **pads = calloc((size_t)V, sizeof *pads);
    int32_t *types = calloc((size_t)V, sizeof *types);
    if (!tokens || !pads || !types) {
        mo_errorf("out of memory for the vocabulary");
        goto done;
    }
    if (TV > V) {
        mo_errorf("the tokenizer has %d ids but vocab_size is %d", TV, V);
        goto done;
    }
    for (int i = 0; i < V; i++) {
        if (i < R) {
            tokens[i] = v.tokens[i];
            types[i] = TT_NORMAL;
        } else if (i < TV) {
            tokens[i] = tok_special_name(v.tok, i - R);
            types[i] = TT_CONTROL;
        } else {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%d]", i);
            if (!(tokens[i] = pads[i] = strdup(pad))) {
                mo_errorf("out of memory for the vocabulary");
                goto done;
            }
            types[i] = TT_UNUSED;
        }
    }
    int eot = tok_eot(v.tok);
    if (gguf_w_str(w, "tokenizer.ggml.model", "gpt2") || gguf_w_str(w, "tokenizer.ggml.pre", "gpt-2") ||
        gguf_w_arr_str(w, "tokenizer.ggml.tokens", tokens, (uint64_t)V) ||
        gguf_w_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)V) ||
        gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v.merges, (uint64_t)v.n_merges) ||
        gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 0) || gguf_w_bool(w, "tokenizer.ggml.add_eos_token", 0))
        goto done;
    if (eot >= 0 && (gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)eot) ||
                     gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eot)))
        goto done;
    rc = 0;
done:
    for (int i = 0; pads && i < V; i++) free(pads[i]);
    free(tokens), free(pads), free(types);
    bpe_vocab_free(&v);
    return rc;
}

static int put_hparams(gguf_writer *w, const mo_config *c, const char *arch, int shared_count) {
    char k[96];
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", arch, s), k)
    int deepseek = !strcmp(arch, "deepseek"), n_moe = config_n_moe_layers(c);
    int ff = n_moe == c->n_layers ? c->d_ff : c->d_ff_dense;
    if (gguf_w_str(w, "general.architecture", arch) || gguf_w_str(w, "general.name", "monolith") ||
        gguf_w_u32(w, KEY("context_length"), (uint32_t)c->max_seq_len) ||
        gguf_w_u32(w, KEY("embedding_length"), (uint32_t)c->d_model) ||
        gguf_w_u32(w, KEY("block_count"), (uint32_t)c->n_layers) ||
        gguf_w_u32(w, KEY("feed_forward_length"), (uint32_t)ff) ||
        gguf_w_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads) ||
        gguf_w_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads) ||
        gguf_w_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim) ||
        gguf_w_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim) ||
        gguf_w_u32(w, KEY("rope.dimension_count"), (uint32_t)c->head_dim) ||
        gguf_w_f32(w, KEY("rope.freq_base"), (float)c->rope_theta) ||
        gguf_w_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)c->norm_eps) ||
        gguf_w_u32(w, KEY("vocab_size"), (uint32_t)c->vocab_size))
        return -1;
    if (n_moe && (gguf_w_u32(w, KEY("expert_count"), (uint32_t)c->n_experts) ||
                  gguf_w_u32(w, KEY("expert_used_count"), (uint32_t)c->top_k)))
        return -1;
    if (deepseek && (gguf_w_u32(w, KEY("leading_dense_block_count"), (uint32_t)leading_dense(c)) ||
                     gguf_w_u32(w, KEY("expert_feed_forward_length"), (uint32_t)c->d_ff) ||
                     gguf_w_u32(w, KEY("expert_shared_count"), (uint32_t)shared_count) ||
                     gguf_w_f32(w, KEY("expert_weights_scale"), 1.0f)))
        return -1;
#undef KEY
    // What llama.cpp's keys cannot carry, for an exact round trip (import reads these).
    return gguf_w_u32(w, "monolith.n_experts", (uint32_t)c->n_experts) ||
                   gguf_w_u32(w, "monolith.top_k", (uint32_t)c->top_k) ||
                   gguf_w_u32(w, "monolith.d_ff", (uint32_t)c->d_ff) ||
                   gguf_w_u32(w, "monolith.n_shared_experts", (uint32_t)c->n_shared_experts) ||
                   gguf_w_u32(w, "monolith.d_ff_shared", (uint32_t)c->d_ff_shared) ||
                   gguf_w_f64(w, "monolith.norm_eps", c->norm_eps) ||
                   gguf_w_f64(w, "monolith.rope_theta", c->rope_theta) ||
                   gguf_w_f64(w, "monolith.aux_coef", c->aux_coef) || gguf_w_f64(w, "monolith.z_coef", c->z_coef)
               ? -1
               : 0;
}

int gguf_export(const mo_checkpoint *ck, uint32_t type, const char *path, gguf_export_info *info) {
    const mo_param_table *pt = &ck->table;
    const mo_config *c = &pt->cfg;
    gguf_export_info dummy;
    if (!info) info = &dummy;
    memset(info, 0, sizeof *info);
    if (type != GGML_T_F32 && type != GGML_T_F16 && type != GGML_T_BF16 && type != GGML_T_Q8_0)
        return mo_errorf("tensor type %s: monolith writes F32, F16, BF16 and Q8_0", ggml_type_name(type));
    if (gguf_choose_arch(c, info->arch) || export_check_routing(pt, ck->params, "GGUF (llama.cpp's llama and deepseek v1)")) return -1;
    int deepseek = !strcmp(info->arch, "deepseek");
    // deepseek's shared block is expert_shared_count x d_ff units: round up, at least one.
    int shared = c->n_shared_experts * c->d_ff_shared, shared_count = deepseek ? (shared + c->d_ff - 1) / c->d_ff : 0;
    if (deepseek && shared_count == 0) shared_count = 1;
    int units = shared_count * c->d_ff;
    info->shared_padded = deepseek ? units - shared : 0;
    gguf_writer *w = gguf_writer_new();
    tmap *m = NULL;
    int n = -1, rc = -1;
    if (!w || put_hparams(w, c, info->arch, shared_count) || put_tokenizer(w, ck)) goto done;
    if ((n = map_tensors(pt, info->arch, units, &m)) < 0) goto done;
    for (int i = 0; i < n; i++) {
        const tmap *e = &m[i];
        uint32_t t = e->keep_f32 ? GGML_T_F32 : type;
        if (t == GGML_T_Q8_0 && e->ne[0] % 32) t = GGML_T_F32, info->tensors_fallback++;
        float *v = gather(e, pt, ck->params);
        size_t nb;
        void *data = v ? ggml_encode(t, v, map_numel(e), &nb) : NULL;
        free(v);
        if (!data || gguf_w_tensor(w, e->name, e->n_dims, e->ne, t, data, nb)) goto done;
    }
    info->n_tensors = n;
    rc = gguf_write(w, path);
done:
    free(m);
    gguf_writer_free(w);
    return rc;
}

// ---------------------------------------------------------------- import

// The shortest decimal that rounds to the same float: 1e-5 stored as f32 reads back as
// 1e-5, not 9.99999974738e-06.
static double shortest(double f32) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, f32);
        if ((float)strtod(buf, NULL) == (float)f32) return strtod(buf, NULL);
    }
    return f32;
}

static int get_u(const gguf_file *g, const char *arch, const char *key, int64_t *v, int required, int64_t max) {
    char k[96];
    snprintf(k, sizeof k, "%s%s%s", arch ? arch : "", arch ? "." : "", key);
    const gguf_kv *kv = gguf_find(g, k);
    if (kv && kv->type == GGUF_VT_ARRAY)
        return mo_errorf("%s: key %s is a per-layer array; monolith reads one value for all layers", g->origin, k);
    if (gguf_get_int(g, k, v, required)) return -1;
    if (kv && (*v < 0 || *v > max))
        return mo_errorf("%s: key %s is %lld, outside [0, %lld]", g->origin, k, (long long)*v, (long long)max);
    return 0;
}

static const char *const gpt2_pres[] = {"gpt-2",      "phi-2",      "jina-es",      "jina-de",    "gigachat",
                                        "jina-v1-en", "jina-v2-es", "jina-v2-de", "jina-v2-code", "roberta-bpe"};

// Merge k of tokenizer.ggml.merges (bpe_vocab_to_blob's bpe_merge_fn).
static const char *merge_at(void *ctx, int k, size_t *len) {
    uint64_t n;
    const char *s = gguf_arr_str(ctx, (uint64_t)k, &n);
    *len = (size_t)n;
    return s;
}

// tokenizer.ggml.* -> the checkpoint's /tokenizer (ranks = normal tokens in id order,
// control tokens after them as special tokens, unused tokens last).
static int read_tokenizer(const gguf_file *g, int V, mo_tokenizer_blob *b) {
    const char *model = gguf_get_str(g, "tokenizer.ggml.model", NULL), *pre;
    if (!model) return -1;
    if (strcmp(model, "gpt2"))
        return mo_errorf("%s: tokenizer.ggml.model is \"%s\"; monolith reads byte-level BPE (\"gpt2\") only (import the "
                         "weights alone with --no-tokenizer)",
                         g->origin, model);
    const gguf_kv *pk = gguf_find(g, "tokenizer.ggml.pre");
    pre = pk && pk->type == GGUF_VT_STRING ? pk->s : "default";
    int ok_pre = 0;
    for (size_t i = 0; i < sizeof gpt2_pres / sizeof *gpt2_pres; i++)
        ok_pre |= pk && strlen(gpt2_pres[i]) == pk->len && !memcmp(gpt2_pres[i], pre, pk->len);
    if (!ok_pre)
        return mo_errorf("%s: tokenizer.ggml.pre is \"%.*s\"; monolith pre-splits text as GPT-2 does (\"gpt-2\") and "
                         "would give other ids (import the weights alone with --no-tokenizer)",
                         g->origin, pk && pk->type == GGUF_VT_STRING ? (int)pk->len : 7, pre);
    const gguf_kv *tk = gguf_find(g, "tokenizer.ggml.tokens"), *ty = gguf_find(g, "tokenizer.ggml.token_type"),
                  *mk = gguf_find(g, "tokenizer.ggml.merges");
    if (!tk || tk->type != GGUF_VT_ARRAY || tk->arr_type != GGUF_VT_STRING)
        return mo_errorf("%s: tokenizer.ggml.tokens is missing or not a list of strings", g->origin);
    if (tk->n != (uint64_t)V)
        return mo_errorf("%s: tokenizer.ggml.tokens has %llu tokens but token_embd.weight has %d rows", g->origin,
                         (unsigned long long)tk->n, V);
    if (ty && (ty->type != GGUF_VT_ARRAY || ty->n != tk->n || ty->arr_type == GGUF_VT_STRING ||
               ty->arr_type == GGUF_VT_FLOAT32 || ty->arr_type == GGUF_VT_FLOAT64))
        return mo_errorf("%s: tokenizer.ggml.token_type must list one integer per token", g->origin);
    if (!mk || mk->type != GGUF_VT_ARRAY || mk->arr_type != GGUF_VT_STRING)
        return mo_errorf("%s: tokenizer.ggml.merges is missing or not a list of strings", g->origin);
    if (mk->n > (uint64_t)INT_MAX)
        return mo_errorf("%s: tokenizer.ggml.merges has %llu merges", g->origin, (unsigned long long)mk->n);
    int rc = -1, R = 0, ns = 0;
    const char **texts = calloc((size_t)V, sizeof *texts);
    size_t *lens = calloc((size_t)V, sizeof *lens);
    char **names = calloc((size_t)V, sizeof *names);
    int64_t *ids = calloc((size_t)V, sizeof *ids);
    if (!texts || !lens || !names || !ids) {
        mo_errorf("%s: out of memory for the vocabulary", g->origin);
        goto done;
    }
    int stage = 0;  // 0 ranks, 1 special tokens, 2 unused
    for (int i = 0; i < V; i++) {
        int64_t type = ty ? gguf_arr_int(ty, (uint64_t)i) : TT_NORMAL;
        uint64_t len;
        const char *s = gguf_arr_str(tk, (uint64_t)i, &len);
        int want = type == TT_NORMAL ? 0 : type == TT_CONTROL || type == TT_USER_DEFINED ? 1 : type == TT_UNUSED ? 2 : -1;
        if (want < 0 || want < stage) {
            mo_errorf("%s: token %d has type %lld after tokens of a later kind: monolith keeps normal tokens first "
                      "(ids = BPE ranks), then control tokens, then unused ones",
                      g->origin, i, (long long)type);
            goto done;
        }
        stage = want;
        if (want == 0) {
            texts[R] = s, lens[R++] = (size_t)len;
        } else if (want == 1) {  // ids R, R + 1, ...: the stages keep them after the ranks
            if (len == 0 || memchr(s, 0, (size_t)len) || !(names[ns] = strndup(s, (size_t)len))) {
                mo_errorf("%s: special token %d is empty or not text", g->origin, i);
                goto done;
            }
            ids[ns++] = i;
        }
    }
    // The merges must be the ones the ranks imply, in order, or llama.cpp and monolith
    // would split text differently (bpe_vocab_to_blob checks).
    rc = bpe_vocab_to_blob(g->origin, texts, lens, R, (const char *const *)names, ids, ns, (int)mk->n, merge_at,
                           (void *)mk, b);
done:
    for (int i = 0; names && i < ns; i++) free(names[i]);
    free(texts), free(lens), free(names), free(ids);
    return rc;
}

// Refusals of llama.cpp features monolith's model does not have.
static int refuse_extras(const gguf_file *g, const char *arch) {
    static const char *const keys[] = {"rope.scaling.type", "rope.scaling.factor", "attention.clamp_kqv",
                                       "attention.logit_softcapping", "final_logit_softcapping"};
    char k[96];
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        snprintf(k, sizeof k, "%s.%s", arch, keys[i]);
        const gguf_kv *kv = gguf_find(g, k);
        if (!kv) continue;
        if (kv->type == GGUF_VT_STRING && kv->len == 4 && !memcmp(kv->s, "none", 4)) continue;
        if ((kv->type == GGUF_VT_FLOAT32 || kv->type == GGUF_VT_FLOAT64) && (kv->f == 0.0 || kv->f == 1.0)) continue;
        return mo_errorf("%s: key %s is set; monolith's model has no such feature (plain RoPE, no soft-capping)",
                         g->origin, k);
    }
    return 0;
}

static int config_from_gguf(const gguf_file *g, const char *arch, mo_config *c) {
    int64_t ctx = 0, d = 0, L = 0, ff = 0, nh = 0, nkv = -1, E = 0, k = 0, hd = 0, hv = 0, rot = -1;
    double eps = 0, theta = 10000.0;
    config_defaults(c);  // the fields GGUF has no key for keep monolith's defaults (softmax top-k routing)
    if (get_u(g, arch, "context_length", &ctx, 1, 1 << 24) || get_u(g, arch, "embedding_length", &d, 1, 1 << 20) ||
        get_u(g, arch, "block_count", &L, 1, MO_MAX_LAYERS) || get_u(g, arch, "feed_forward_length", &ff, 1, 1 << 24) ||
        get_u(g, arch, "attention.head_count", &nh, 1, 1 << 16) ||
        get_u(g, arch, "attention.head_count_kv", &nkv, 0, 1 << 16) ||
        get_u(g, arch, "expert_count", &E, 0, 65536) || get_u(g, arch, "expert_used_count", &k, 0, 65536) ||
        get_u(g, arch, "attention.key_length", &hd, 0, 1 << 16) ||
        get_u(g, arch, "attention.value_length", &hv, 0, 1 << 16) ||
        get_u(g, arch, "rope.dimension_count", &rot, 0, 1 << 16))
        return -1;
    char key[96];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    if (gguf_get_float(g, key, &eps, 1)) return -1;
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    if (gguf_get_float(g, key, &theta, 0)) return -1;
    if (nh == 0 || d == 0 || L == 0) return mo_errorf("%s: embedding_length, block_count and head_count must be positive", g->origin);
    if (!hd) hd = d / nh;
    if (hv && hv != hd)
        return mo_errorf("%s: attention.value_length %lld differs from key_length %lld; monolith's heads have one size",
                         g->origin, (long long)hv, (long long)hd);
    if (rot >= 0 && rot != hd)
        return mo_errorf("%s: rope.dimension_count %lld differs from the head size %lld; monolith rotates whole heads",
                         g->origin, (long long)rot, (long long)hd);
    c->d_model = (int)d, c->n_layers = (int)L, c->n_heads = (int)nh, c->n_kv_heads = (int)(nkv < 0 ? nh : nkv);
    c->head_dim = (int)hd, c->max_seq_len = (int)ctx, c->norm_eps = shortest(eps), c->rope_theta = shortest(theta);
    c->n_moe_layers_given = c->n_layers;
    c->aux_coef = 0.01, c->z_coef = 0.001;
    if (!strcmp(arch, "llama")) {
        for (int l = 0; l < c->n_layers; l++) c->moe_layers[l] = E > 0;
        c->n_experts = (int)E, c->top_k = (int)k, c->norm_topk = 1;
        if (E > 0)
            c->d_ff = (int)ff;
        else
            c->d_ff_dense = (int)ff;
    } else {  // deepseek
        int64_t lead = 0, ffe = 0, ns = 0;
        double scale = 1.0;
        if (get_u(g, arch, "leading_dense_block_count", &lead, 1, L) ||
            get_u(g, arch, "expert_feed_forward_length", &ffe, 1, 1 << 24) ||
            get_u(g, arch, "expert_shared_count", &ns, 1, 1024))
            return -1;
        snprintf(key, sizeof key, "%s.expert_weights_scale", arch);
        if (gguf_get_float(g, key, &scale, 0)) return -1;  // llama.cpp's deepseek (v1) does not apply it
        for (int l = 0; l < c->n_layers; l++) c->moe_layers[l] = l >= lead;
        c->n_experts = (int)E, c->top_k = (int)k, c->norm_topk = 0, c->d_ff = (int)ffe;
        c->d_ff_dense = lead ? (int)ff : 0;
        c->n_shared_experts = (int)ns, c->d_ff_shared = ns ? (int)ffe : 0;
        if (lead == L) c->n_shared_experts = c->d_ff_shared = 0;
    }
    // monolith's own keys, where they agree with what llama.cpp reads.
    int64_t v;
    double f;
    int n_moe = config_n_moe_layers(c);
    if (!gguf_get_int(g, "monolith.n_shared_experts", &v, 1) && v >= 0 && v <= 1024) {
        int64_t dfs = 0;
        if (!gguf_get_int(g, "monolith.d_ff_shared", &dfs, 1) && dfs >= 0 && dfs <= (1 << 24) && n_moe &&
            v * dfs <= (int64_t)c->n_shared_experts * c->d_ff_shared && !strcmp(arch, "deepseek"))
            c->n_shared_experts = (int)v, c->d_ff_shared = (int)dfs;
    }
    if (n_moe == 0) {
        int64_t ne = 0, tk = 0, dff = 0;
        if (!gguf_get_int(g, "monolith.n_experts", &ne, 1) && !gguf_get_int(g, "monolith.top_k", &tk, 1) &&
            !gguf_get_int(g, "monolith.d_ff", &dff, 1) && ne >= 0 && ne <= 65536 && tk >= 0 && tk <= ne && dff >= 0 &&
            dff <= (1 << 24))
            c->n_experts = (int)ne, c->top_k = (int)tk, c->d_ff = (int)dff;
    }
    if (!gguf_get_float(g, "monolith.norm_eps", &f, 1) && (float)f == (float)c->norm_eps) c->norm_eps = f;
    if (!gguf_get_float(g, "monolith.rope_theta", &f, 1) && (float)f == (float)c->rope_theta) c->rope_theta = f;
    if (!gguf_get_float(g, "monolith.aux_coef", &f, 1)) c->aux_coef = f;
    if (!gguf_get_float(g, "monolith.z_coef", &f, 1)) c->z_coef = f;
    mo_error_clear();
    return 0;
}

int gguf_import(const char *path, int no_tokenizer, mo_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    gguf_file g;
    if (gguf_open(&g, path)) return -1;
    int rc = -1, n = 0;
    tmap *m = NULL;
    float *buf = NULL;
    uint64_t alen;
    const char *arch_s = gguf_get_str(&g, "general.architecture", &alen);
    char arch[16];
    if (!arch_s) goto done;
    if (!((alen == 5 && !memcmp(arch_s, "llama", 5)) || (alen == 8 && !memcmp(arch_s, "deepseek", 8)))) {
        mo_errorf("%s: general.architecture is \"%.*s\"; monolith imports \"llama\" (Mixtral-style MoE or dense) and "
                  "\"deepseek\" (v1)",
                  path, (int)(alen > 64 ? 64 : alen), arch_s);
        goto done;
    }
    memcpy(arch, arch_s, alen);
    arch[alen] = 0;
    const gguf_tensor *emb = gguf_find_tensor(&g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) {
        mo_errorf("%s: tensor token_embd.weight is missing or not 2-D", path);
        goto done;
    }
    mo_config c;
    if (refuse_extras(&g, arch) || config_from_gguf(&g, arch, &c)) goto done;
    c.vocab_size = emb->ne[1] > (1 << 24) ? 0 : (int)emb->ne[1];
    if (config_validate(&c)) {
        mo_errorf("%s: the model's keys give an invalid config: %s", path, mo_error());
        goto done;
    }
    char prov[512];
    snprintf(prov, sizeof prov, "{\"created_by\": \"monolith import gguf\", \"architecture\": \"%s\"}", arch);
    if (ckpt_new(ck, &c, 1, prov)) goto done;
    int units = 0;
    if (!strcmp(arch, "deepseek")) {
        int64_t ns = 0, ffe = 0;
        char k1[96], k2[96];
        snprintf(k1, sizeof k1, "%s.expert_shared_count", arch);
        snprintf(k2, sizeof k2, "%s.expert_feed_forward_length", arch);
        gguf_get_int(&g, k1, &ns, 1), gguf_get_int(&g, k2, &ffe, 1);
        units = (int)(ns * ffe);
    }
    if ((n = map_tensors(&ck->table, arch, units, &m)) < 0) goto done;
    int has_output = gguf_find_tensor(&g, "output.weight") != NULL, used = 0;
    for (int i = 0; i < n; i++) {
        tmap *e = &m[i];
        const gguf_tensor *t = gguf_find_tensor(&g, e->name);
        if (!t && !strcmp(e->name, "output.weight") && !has_output) t = emb;  // tied embeddings
        else used += t != NULL;
        if (!t && e->param < 0 && units == 0) continue;  // no shared block in the file, none in the model
        if (!t) {
            mo_errorf("%s: tensor %s is missing", path, e->name);
            goto done;
        }
        int same = (int)t->n_dims == e->n_dims;
        for (int d = 0; same && d < e->n_dims; d++) same = t->ne[d] == e->ne[d];
        if (!same) {
            mo_errorf("%s: tensor %s has shape [%lld, %lld, %lld] (ggml order), the keys say [%lld, %lld, %lld]", path,
                      e->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)e->ne[0],
                      (long long)(e->n_dims > 1 ? e->ne[1] : 1), (long long)(e->n_dims > 2 ? e->ne[2] : 1));
            goto done;
        }
        if (!t->data) {
            mo_errorf("%s: tensor %s has type %s (%u); monolith reads F32, F16, BF16 and Q8_0 (convert the file with "
                      "llama.cpp's llama-quantize to Q8_0, or export F16 from its source)",
                      path, e->name, ggml_type_name(t->type), t->type);
            goto done;
        }
        size_t numel = map_numel(e);
        free(buf);
        if (!(buf = malloc(numel * sizeof *buf))) {
            mo_errorf("%s: out of memory for tensor %s", path, e->name);
            goto done;
        }
        char what[1024];
        snprintf(what, sizeof what, "%s: tensor %s", path, e->name);
        if (ggml_decode(buf, t->type, t->data, numel, what) || scatter(e, &ck->table, ck->params, buf, path))
            goto done;
    }
    if ((uint64_t)used != g.n_tensors) {
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            int known = 0;
            for (int j = 0; j < n && !known; j++) known = !strcmp(m[j].name, g.t[i].name);
            if (!known) {
                mo_errorf("%s: tensor %s is not part of monolith's model (biases, RoPE factors and other extras are "
                          "not read)",
                          path, g.t[i].name);
                goto done;
            }
        }
    }
    if (!no_tokenizer && read_tokenizer(&g, c.vocab_size, &ck->tokenizer)) goto done;
    rc = 0;
done:
    free(m), free(buf);
    gguf_close(&g);
    if (rc) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", mo_error());
        ckpt_free(ck);
        mo_errorf("%s", msg);
    }
    return rc;
}
