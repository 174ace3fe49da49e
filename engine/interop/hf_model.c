// hf_model.c: monolith checkpoints as Hugging Face Mixtral folders, and back (hf_model.h).
#include "engine/interop/hf_model.h"

#include "engine/base/error.h"
#include "engine/interop/export_routing.h"
#include "engine/interop/json_io.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HF_CONFIG_MAX ((size_t)1 << 20)  // config.json: a few KB in practice
#define HF_INDEX_MAX ((size_t)64 << 20)  // model.safetensors.index.json: one line per tensor

int hf_check_config(const mo_config *c) {
    for (int l = 0; l < c->n_layers; l++)
        if (!c->moe_layers[l])
            return mo_errorf("moe_layers: layer %d is dense, and Mixtral (the Hugging Face architecture monolith "
                             "writes) has a MoE block in every layer",
                             l);
    if (c->n_shared_experts)
        return mo_errorf("n_shared_experts %d: Mixtral has no shared experts", c->n_shared_experts);
    if (!c->norm_topk)
        return mo_errorf("norm_topk 0: Mixtral renormalizes the top-k router weights (norm_topk 1)");
    return 0;
}

// ---------------------------------------------------------------- the tensor map

typedef struct {
    char name[96];
    int tensor;      // index in the parameter table
    int expert;      // -1: the whole tensor; else expert e's slice
    int perm_heads;  // > 0: q or k, rows permuted within each of this many heads
    int rank;
    int64_t shape[2];
    size_t offset, numel;  // into the arena
} hf_tensor;

static void add(hf_tensor *v, int *n, const mo_param_table *pt, int ti, int e, int perm_heads, const char *fmt, ...)
    MO_PRINTF(7, 8);
static void add(hf_tensor *v, int *n, const mo_param_table *pt, int ti, int e, int perm_heads, const char *fmt, ...) {
    hf_tensor *h = &v[(*n)++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->name, sizeof h->name, fmt, ap);
    va_end(ap);
    const mo_tensor *t = &pt->t[ti];
    h->tensor = ti;
    h->expert = e;
    h->perm_heads = perm_heads;
    h->rank = e >= 0 ? t->rank - 1 : t->rank;
    for (int k = 0; k < h->rank; k++) h->shape[k] = t->shape[k + (e >= 0)];
    h->numel = e >= 0 ? t->expert_numel : t->numel;
    h->offset = t->offset + (e >= 0 ? (size_t)e * t->expert_numel : 0);
}

// The HF tensors of a Mixtral config in file order. Returns the count, or -1 (out of memory).
static int tensor_list(const mo_param_table *pt, hf_tensor **out) {
    const mo_config *c = &pt->cfg;
    int cap = 3 + c->n_layers * (7 + 3 * c->n_experts), n = 0;
    hf_tensor *v = calloc((size_t)cap, sizeof *v);
    if (!v) return mo_errorf("out of memory for %d tensor names", cap);
    add(v, &n, pt, pt->tok_embeddings, -1, 0, "model.embed_tokens.weight");
    for (int l = 0; l < c->n_layers; l++) {
        const mo_layer_ids *L = &pt->layer[l];
        add(v, &n, pt, L->attn_norm, -1, 0, "model.layers.%d.input_layernorm.weight", l);
        add(v, &n, pt, L->wq, -1, c->n_heads, "model.layers.%d.self_attn.q_proj.weight", l);
        add(v, &n, pt, L->wk, -1, c->n_kv_heads, "model.layers.%d.self_attn.k_proj.weight", l);
        add(v, &n, pt, L->wv, -1, 0, "model.layers.%d.self_attn.v_proj.weight", l);
        add(v, &n, pt, L->wo, -1, 0, "model.layers.%d.self_attn.o_proj.weight", l);
        add(v, &n, pt, L->ffn_norm, -1, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        add(v, &n, pt, L->router, -1, 0, "model.layers.%d.block_sparse_moe.gate.weight", l);
        for (int e = 0; e < c->n_experts; e++) {
            add(v, &n, pt, L->w1, e, 0, "model.layers.%d.block_sparse_moe.experts.%d.w1.weight", l, e);
            add(v, &n, pt, L->w2, e, 0, "model.layers.%d.block_sparse_moe.experts.%d.w2.weight", l, e);
            add(v, &n, pt, L->w3, e, 0, "model.layers.%d.block_sparse_moe.experts.%d.w3.weight", l, e);
        }
    }
    add(v, &n, pt, pt->norm, -1, 0, "model.norm.weight");
    add(v, &n, pt, pt->output, -1, 0, "lm_head.weight");
    *out = v;
    return n;
}

// dst = src with rows permuted inside each head: to_hf 1 gives HF's order (row j of a head
// is monolith's row perm(j)), 0 the inverse.
static void permute_heads(float *dst, const float *src, int heads, int head_dim, int cols, int to_hf) {
    for (int h = 0; h < heads; h++)
        for (int j = 0; j < head_dim; j++) {
            size_t hf = (size_t)h * head_dim + j, mono = (size_t)h * head_dim + hf_rope_perm(j, head_dim);
            memcpy(dst + (to_hf ? hf : mono) * cols, src + (to_hf ? mono : hf) * cols, (size_t)cols * sizeof *dst);
        }
}

// ---------------------------------------------------------------- export

static const char *torch_dtype(st_dtype d) {
    return d == ST_F16 ? "float16" : d == ST_BF16 ? "bfloat16" : "float32";
}

static int eot_id(const mo_checkpoint *ck) {
    for (int i = 0; i < ck->tokenizer.n_special; i++)
        if (!strcmp(ck->tokenizer.special_names[i], "<|endoftext|>")) return (int)ck->tokenizer.special_ids[i];
    return -1;
}

static int write_config(const mo_checkpoint *ck, const char *dir, st_dtype dtype) {
    const mo_config *c = &ck->table.cfg;
    int eot = ck->tokenizer.present ? eot_id(ck) : -1;
    cJSON *j = cJSON_CreateObject(), *arch = cJSON_AddArrayToObject(j, "architectures");
    int ok = arch && cJSON_AddItemToArray(arch, cJSON_CreateString("MixtralForCausalLM"));
    ok = ok && cJSON_AddStringToObject(j, "model_type", "mixtral");
#define NUM(k, v) ok = ok && cJSON_AddNumberToObject(j, k, (double)(v))
    NUM("vocab_size", c->vocab_size);
    NUM("hidden_size", c->d_model);
    NUM("intermediate_size", c->d_ff);
    NUM("num_hidden_layers", c->n_layers);
    NUM("num_attention_heads", c->n_heads);
    NUM("num_key_value_heads", c->n_kv_heads);
    NUM("head_dim", c->head_dim);
    NUM("num_local_experts", c->n_experts);
    NUM("num_experts_per_tok", c->top_k);
    NUM("max_position_embeddings", c->max_seq_len);
    NUM("rope_theta", c->rope_theta);
    NUM("rms_norm_eps", c->norm_eps);
    NUM("router_aux_loss_coef", c->aux_coef);
    // not a Mixtral field (transformers keeps unknown keys as attributes): monolith's z-loss
    // weight, so that import gives back the same config
    NUM("router_z_loss_coef", c->z_coef);
    NUM("router_jitter_noise", 0);
    NUM("attention_dropout", 0);
    NUM("initializer_range", 0.02);
    if (eot >= 0) {
        NUM("bos_token_id", eot);
        NUM("eos_token_id", eot);
    }
#undef NUM
    ok = ok && cJSON_AddStringToObject(j, "hidden_act", "silu") && cJSON_AddNullToObject(j, "sliding_window") &&
         cJSON_AddNullToObject(j, "rope_scaling") && cJSON_AddFalseToObject(j, "tie_word_embeddings") &&
         cJSON_AddFalseToObject(j, "output_router_logits") && cJSON_AddTrueToObject(j, "use_cache") &&
         cJSON_AddStringToObject(j, "torch_dtype", torch_dtype(dtype));
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    int rc = ok ? json_write_file(path, j) : mo_errorf("%s: out of memory", path);
    cJSON_Delete(j);
    if (rc || eot < 0) return rc;
    // generation_config.json: what transformers' generate() reads for when to stop
    j = cJSON_CreateObject();
    ok = j && cJSON_AddNumberToObject(j, "bos_token_id", eot) && cJSON_AddNumberToObject(j, "eos_token_id", eot);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    rc = ok ? json_write_file(path, j) : mo_errorf("%s: out of memory", path);
    cJSON_Delete(j);
    return rc;
}

static int write_index(const char *dir, const hf_tensor *v, int n, const int *shard_of, int n_shards,
                       uint64_t total) {
    cJSON *j = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(j, "metadata");
    cJSON *map = cJSON_AddObjectToObject(j, "weight_map");
    int ok = meta && map && cJSON_AddNumberToObject(meta, "total_size", (double)total);
    for (int i = 0; ok && i < n; i++) {
        char file[64];
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", shard_of[i] + 1, n_shards);
        ok = cJSON_AddStringToObject(map, v[i].name, file) != NULL;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    int rc = ok ? json_write_file(path, j) : mo_errorf("%s: out of memory", path);
    cJSON_Delete(j);
    return rc;
}

int hf_export_model(const mo_checkpoint *ck, const char *dir, st_dtype dtype, uint64_t shard_size,
                    hf_export_info *info) {
    const mo_param_table *pt = &ck->table;
    const mo_config *c = &pt->cfg;
    memset(info, 0, sizeof *info);
    if (hf_check_config(c) || export_check_routing(pt, ck->params, "Mixtral")) return -1;
    if (dtype != ST_F32 && dtype != ST_F16 && dtype != ST_BF16)
        return mo_errorf("Hugging Face weights are written as F32, F16 or BF16, not %s", st_dtype_name(dtype));
    if (!shard_size) return mo_errorf("--shard-size must be positive");
    hf_tensor *v;
    int n = tensor_list(pt, &v);
    if (n < 0) return -1;
    int rc = -1, n_perm = 2 * c->n_layers, n_shards = 1;
    st_entry *e = calloc((size_t)n, sizeof *e);
    int *shard_of = calloc((size_t)n, sizeof *shard_of);
    float **perm = calloc((size_t)n_perm, sizeof *perm);
    if (!e || !shard_of || !perm) {
        mo_errorf("out of memory");
        goto out;
    }
    uint64_t total = 0, in_shard = 0;
    for (int i = 0, p = 0; i < n; i++) {
        const float *src = ck->params + v[i].offset;
        if (v[i].perm_heads) {
            float *q = perm[p++] = malloc(v[i].numel * sizeof *q);
            if (!q) {
                mo_errorf("out of memory for %s", v[i].name);
                goto out;
            }
            permute_heads(q, src, v[i].perm_heads, c->head_dim, c->d_model, 1);
            src = q;
        }
        e[i] = (st_entry){.name = v[i].name, .data = src, .rank = v[i].rank};
        memcpy(e[i].shape, v[i].shape, sizeof v[i].shape);
        uint64_t b = st_entry_bytes(&e[i], dtype);
        if (in_shard && in_shard + b > shard_size) n_shards++, in_shard = 0;
        shard_of[i] = n_shards - 1;
        in_shard += b;
        total += b;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    char path[4200], stale[4200];
    if (n_shards == 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (st_write(path, e, n, dtype, meta)) goto out;
        snprintf(stale, sizeof stale, "%s/model.safetensors.index.json", dir);
    } else {
        for (int s = 0, first = 0; s < n_shards; s++) {
            int last = first;
            while (last < n && shard_of[last] == s) last++;
            snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, s + 1, n_shards);
            if (st_write(path, e + first, last - first, dtype, meta)) goto out;
            first = last;
        }
        if (write_index(dir, v, n, shard_of, n_shards, total)) goto out;
        snprintf(stale, sizeof stale, "%s/model.safetensors", dir);
    }
    if (unlink(stale) && errno != ENOENT) {
        mo_errorf("%s: cannot remove what an earlier export left: %s", stale, strerror(errno));
        goto out;
    }
    if (write_config(ck, dir, dtype)) goto out;
    info->n_tensors = n;
    info->n_shards = n_shards;
    info->bytes = total;
    rc = 0;
out:
    for (int p = 0; perm && p < n_perm; p++) free(perm[p]);
    free(perm);
    free(shard_of);
    free(e);
    free(v);
    return rc;
}

// ---------------------------------------------------------------- import

// config.json -> mo_config, with MixtralConfig's defaults for absent keys.
static int read_config(const char *dir, int max_seq_len, mo_config *c, int *tied) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j = json_read_file(path, HF_CONFIG_MAX, 1);
    if (!j) return -1;
    int rc = -1;
    const char *s = NULL;
    if (json_get_str(j, "model_type", path, &s) < 0) goto out;
    if (!s || strcmp(s, "mixtral")) {
        mo_errorf("%s: model_type '%s' is not supported: monolith imports Hugging Face models of type mixtral "
                  "(Mixtral-style MoE)",
                  path, s ? s : "(none)");
        goto out;
    }
    s = "silu";
    if (json_get_str(j, "hidden_act", path, &s) < 0) goto out;
    if (strcmp(s, "silu")) {
        mo_errorf("%s: hidden_act '%s' is not supported: monolith's experts are SwiGLU (silu)", path, s);
        goto out;
    }
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (rs && !cJSON_IsNull(rs)) {
        mo_errorf("%s: rope_scaling is set: monolith's RoPE has no scaling (plain theta^(-2i/head_dim))", path);
        goto out;
    }
    int bias = 0;
    if (json_get_bool(j, "attention_bias", path, &bias) < 0) goto out;
    if (bias) {
        mo_errorf("%s: attention_bias is true: monolith's attention projections have no biases", path);
        goto out;
    }
    // MixtralConfig's defaults (transformers' configuration_mixtral.py)
    int64_t V = 32000, d = 4096, ff = 14336, L = 32, nh = 32, nkv = -1, hd = -1, E = 8, k = 2, pos = 4096 * 32,
            win = -1;
    double theta = 1e6, eps = 1e-5, aux = 0.001, z = 0.001;
    const int64_t big = 1 << 30;
    *tied = 0;
    if (json_get_int(j, "vocab_size", 1, big, path, &V) < 0 || json_get_int(j, "hidden_size", 1, big, path, &d) < 0 ||
        json_get_int(j, "intermediate_size", 1, big, path, &ff) < 0 ||
        json_get_int(j, "num_hidden_layers", 1, MO_MAX_LAYERS, path, &L) < 0 ||
        json_get_int(j, "num_attention_heads", 1, big, path, &nh) < 0 ||
        json_get_int(j, "num_key_value_heads", 1, big, path, &nkv) < 0 ||
        json_get_int(j, "head_dim", 1, big, path, &hd) < 0 || json_get_int(j, "num_local_experts", 1, big, path, &E) < 0 ||
        json_get_int(j, "num_experts_per_tok", 1, big, path, &k) < 0 ||
        json_get_int(j, "max_position_embeddings", 1, big, path, &pos) < 0 ||
        json_get_int(j, "sliding_window", 1, big, path, &win) < 0 || json_get_num(j, "rope_theta", path, &theta) < 0 ||
        json_get_num(j, "rms_norm_eps", path, &eps) < 0 || json_get_num(j, "router_aux_loss_coef", path, &aux) < 0 ||
        json_get_num(j, "router_z_loss_coef", path, &z) < 0 || json_get_bool(j, "tie_word_embeddings", path, tied) < 0)
        goto out;
    config_defaults(c);  // fields HF has no key for keep monolith's defaults (softmax top-k routing)
    c->vocab_size = (int)V;
    c->d_model = (int)d;
    c->d_ff = (int)ff;
    c->n_layers = (int)L;
    c->n_heads = (int)nh;
    c->n_kv_heads = (int)(nkv > 0 ? nkv : nh);
    c->head_dim = (int)(hd > 0 ? hd : d / nh);
    c->n_experts = (int)E;
    c->top_k = (int)k;
    c->max_seq_len = (int)(max_seq_len > 0 ? max_seq_len : win > 0 && win < pos ? win : pos);
    c->rope_theta = theta;
    c->norm_eps = eps;
    c->norm_topk = 1;
    c->aux_coef = aux;
    c->z_coef = z;
    if (config_finalize(c)) {
        mo_errorf("%s: %s", path, mo_error());
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(j);
    return rc;
}

// A shard's file name from the index: a plain name inside the folder.
static int plain_name(const char *s) { return s[0] && s[0] != '.' && !strchr(s, '/') && strlen(s) < 256; }

// Opens the weight files of `dir`: the shards named by model.safetensors.index.json, or
// model.safetensors. Returns the count, or -1.
static int open_weights(const char *dir, st_file **out) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    *out = NULL;
    if (access(path, F_OK)) {
        st_file *f = calloc(1, sizeof *f);
        if (!f) return mo_errorf("out of memory");
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (access(path, F_OK)) {
            free(f);
            return mo_errorf("%s: no model.safetensors or model.safetensors.index.json (a Hugging Face model folder "
                             "holds one of them)",
                             dir);
        }
        *out = f;
        return st_open(f, path) ? -1 : 1;
    }
    cJSON *j = json_read_file(path, HF_INDEX_MAX, 1);
    if (!j) return -1;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(j, "weight_map"), *e;
    int n = 0, rc = -1;
    if (!cJSON_IsObject(map)) {
        mo_errorf("%s: no \"weight_map\" object", path);
        goto out;
    }
    const char **names = calloc((size_t)cJSON_GetArraySize(map) + 1, sizeof *names);
    if (!names) {
        mo_errorf("out of memory");
        goto out;
    }
    cJSON_ArrayForEach(e, map) {
        if (!cJSON_IsString(e) || !plain_name(e->valuestring)) {
            mo_errorf("%s: weight_map[\"%s\"] must name a file inside the folder", path, e->string);
            free(names);
            goto out;
        }
        int seen = 0;
        for (int i = 0; i < n && !seen; i++) seen = !strcmp(names[i], e->valuestring);
        if (!seen) names[n++] = e->valuestring;
    }
    st_file *f = calloc((size_t)(n ? n : 1), sizeof *f);
    if (!f) {
        free(names);
        mo_errorf("out of memory");
        goto out;
    }
    *out = f;
    rc = n;
    for (int i = 0; i < n && rc >= 0; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (st_open(&f[i], path)) rc = -1;
    }
    free(names);
    if (rc < 0) {
        for (int i = 0; i < n; i++) st_close(&f[i]);
        free(f);
        *out = NULL;
    }
out:
    cJSON_Delete(j);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

int hf_import_model(const char *dir, int max_seq_len, mo_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    mo_config c;
    int tied = 0;
    if (read_config(dir, max_seq_len, &c, &tied)) return -1;
    cJSON *prov = cJSON_CreateObject();
    if (prov) cJSON_AddStringToObject(prov, "imported_from", dir), cJSON_AddStringToObject(prov, "format", "hf");
    char *ptxt = prov ? cJSON_PrintUnformatted(prov) : NULL;
    cJSON_Delete(prov);
    int made = ptxt ? ckpt_new(ck, &c, 0, ptxt) : mo_errorf("out of memory");
    free(ptxt);
    if (made) return -1;
    st_file *files = NULL;
    hf_tensor *v = NULL;
    int n_files = open_weights(dir, &files), n = -1, rc = -1;
    uint8_t **used = NULL;
    float *tmp = NULL;
    if (n_files < 0 || (n = tensor_list(&ck->table, &v)) < 0) goto out;
    used = calloc((size_t)n_files, sizeof *used);
    for (int f = 0; used && f < n_files; f++)
        if (!(used[f] = calloc((size_t)files[f].n + 1, 1))) break;
    if (!used || (n_files && !used[n_files - 1])) {
        mo_errorf("out of memory");
        goto out;
    }
    int64_t qrows = (int64_t)c.n_heads * c.head_dim;
    tmp = malloc((size_t)qrows * c.d_model * sizeof *tmp);
    if (!tmp) {
        mo_errorf("out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const hf_tensor *h = &v[i];
        int f = 0, ti = -1;
        for (; f < n_files && ti < 0; f++) ti = st_find(&files[f], h->name);
        f--;
        float *dst = ck->params + h->offset;
        if (ti < 0) {
            if (tied && !strcmp(h->name, "lm_head.weight")) {
                memcpy(dst, ck->params + ck->table.t[ck->table.tok_embeddings].offset, h->numel * sizeof *dst);
                continue;
            }
            mo_errorf("%s: tensor %s is missing from the weights (a Mixtral model with this config.json has it)", dir,
                      h->name);
            goto out;
        }
        const st_tensor *t = &files[f].t[ti];
        if (st_check_readable(&files[f], ti)) goto out;
        int same = t->rank == h->rank;
        for (int k = 0; same && k < h->rank; k++) same = t->shape[k] == h->shape[k];
        if (!same) {
            char want[64], got[160] = "";
            snprintf(want, sizeof want, h->rank == 1 ? "[%lld]" : "[%lld, %lld]", (long long)h->shape[0],
                     (long long)h->shape[1]);
            for (int k = 0; k < t->rank && strlen(got) < 120; k++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", k ? ", " : "", (long long)t->shape[k]);
            mo_errorf("%s: tensor %s has shape [%s], but config.json makes it %s", files[f].path, h->name, got, want);
            goto out;
        }
        used[f][ti] = 1;
        if (st_read_f32(&files[f], ti, h->perm_heads ? tmp : dst)) goto out;
        if (h->perm_heads) permute_heads(dst, tmp, h->perm_heads, c.head_dim, c.d_model, 0);
    }
    for (int f = 0; f < n_files; f++)
        for (int i = 0; i < files[f].n; i++)
            if (!used[f][i] && !ends_with(files[f].t[i].name, "rotary_emb.inv_freq")) {
                mo_errorf("%s: tensor %s is not part of a Mixtral model (monolith would drop it, so it refuses)",
                          files[f].path, files[f].t[i].name);
                goto out;
            }
    rc = 0;
out:
    free(tmp);
    for (int f = 0; used && f < n_files; f++) free(used[f]);
    free(used);
    for (int f = 0; f < n_files; f++) st_close(&files[f]);
    free(files);
    free(v);
    if (rc) ckpt_free(ck);
    return rc;
}
