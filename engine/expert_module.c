// expert_module.c: the monolith-expert file and the slot operations on checkpoints.
#include "engine/expert_module.h"

#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "engine/base/rng.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------- hashes

static void fnv1a(uint64_t *h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) *h = (*h ^ b[i]) * 0x100000001b3ull;
}

static void hex(uint64_t h, char out[MO_HASH_HEX]) { snprintf(out, MO_HASH_HEX, "%016llx", (unsigned long long)h); }

void expert_params_hash(const mo_checkpoint *ck, char out[MO_HASH_HEX]) {
    uint64_t h = 0xcbf29ce484222325ull;
    fnv1a(&h, ck->params, ck->table.numel * sizeof(float));
    hex(h, out);
}

void expert_vocab_hash(const mo_tokenizer_blob *t, char out[MO_HASH_HEX]) {
    if (!t->present) {
        out[0] = 0;
        return;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    fnv1a(&h, t->tiktoken, t->tiktoken_len);
    for (int i = 0; i < t->n_special; i++) {
        fnv1a(&h, t->special_names[i], strlen(t->special_names[i]) + 1);
        fnv1a(&h, &t->special_ids[i], sizeof t->special_ids[i]);
    }
    hex(h, out);
}

void expert_trunk_hash(const mo_checkpoint *ck, char out[MO_HASH_HEX]) {
    const mo_param_table *pt = &ck->table;
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        int ffn = t->kind == PK_ROUTER || t->kind == PK_W1 || t->kind == PK_W3 || t->kind == PK_W2 ||
                  t->kind == PK_DENSE_W1 || t->kind == PK_DENSE_W3 || t->kind == PK_DENSE_W2;
        if (ffn) continue;
        fnv1a(&h, t->name, strlen(t->name) + 1);
        fnv1a(&h, ck->params + t->offset, t->numel * sizeof(float));
    }
    hex(h, out);
}

int expert_seed_check(const mo_expert *x, const char *x_name, const mo_checkpoint *bases, const char *const *bn,
                      int n) {
    if (!x->seed_hash[0] || n < 1) return 0;
    char h[MO_HASH_HEX] = "";
    for (int i = 0; i < n; i++) {
        expert_trunk_hash(&bases[i], h);
        if (!strcmp(h, x->seed_hash)) return 0;
    }
    expert_trunk_hash(&bases[0], h);
    return mo_errorf("%s and %s disagree on seed_hash: %s in %s, trunk %s in %s; the module was trained in another "
                     "model's trunk (embeddings, attention, norms), plug it only into that seed or a model that kept "
                     "its trunk",
                     x_name, bn[0], x->seed_hash, x_name, h, bn[0]);
}

void expert_files_hash(const char *const *paths, int n, char out[MO_HASH_HEX]) {
    out[0] = 0;
    if (n < 1) return;
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f) {
            fnv1a(&h, paths[i], strlen(paths[i]));
            continue;
        }
        char buf[1 << 16];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) fnv1a(&h, buf, got);
        fclose(f);
    }
    hex(h, out);
}

int64_t expert_provenance_steps(const char *prov) {
    cJSON *j = cJSON_Parse(prov ? prov : "");
    const cJSON *s = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "steps_trained") : NULL;
    int64_t steps = cJSON_IsNumber(s) && s->valuedouble > 0 ? (int64_t)s->valuedouble : 0;
    cJSON_Delete(j);
    return steps;
}

char *expert_provenance_with_steps(const char *prov, int64_t steps) {
    cJSON *j = cJSON_Parse(prov ? prov : "");
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = cJSON_CreateObject();
        if (j && prov && *prov && !cJSON_AddStringToObject(j, "provenance", prov)) goto err;
    }
    if (!j) return NULL;
    cJSON *num = cJSON_CreateNumber((double)steps);
    if (!num) goto err;
    if (cJSON_HasObjectItem(j, "steps_trained")) cJSON_ReplaceItemInObjectCaseSensitive(j, "steps_trained", num);
    else cJSON_AddItemToObject(j, "steps_trained", num);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
err:
    cJSON_Delete(j);
    return NULL;
}

// ---------------------------------------------------------------------------- shape keys

// 1 when the checkpoint has no MoE layer: its experts are the dense FFNs.
static int is_dense_model(const mo_config *c) { return config_n_moe_layers(c) == 0; }

void expert_key_of(const mo_checkpoint *ck, mo_shape_key *k) {
    const mo_config *c = &ck->table.cfg;
    memset(k, 0, sizeof *k);
    int dense = is_dense_model(c);
    k->d_model = c->d_model;
    k->d_ff = dense ? c->d_ff_dense : c->d_ff;
    k->n_layers = c->n_layers;
    k->vocab_size = c->vocab_size;
    for (int l = 0; l < c->n_layers; l++) k->moe_layers[l] = dense ? 1 : c->moe_layers[l];
    expert_vocab_hash(&ck->tokenizer, k->vocab_hash);
}

static void layers_str(const mo_shape_key *k, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = 0;
    for (int l = 0; l < k->n_layers && n + 3 < cap; l++) n += (size_t)snprintf(buf + n, cap - n, "%s%d", l ? "," : "", k->moe_layers[l]);
}

int expert_key_check(const mo_shape_key *a, const char *an, const mo_shape_key *b, const char *bn) {
#define SAME(field)                                                                                                 \
    if (a->field != b->field)                                                                                       \
        return mo_errorf("%s and %s disagree on " #field ": %d in %s, %d in %s; an expert fits only a model of its " \
                         "own shape",                                                                               \
                         an, bn, a->field, an, b->field, bn)
    SAME(d_model);
    SAME(d_ff);
    SAME(n_layers);
    SAME(vocab_size);
#undef SAME
    if (a->vocab_hash[0] && b->vocab_hash[0] && strcmp(a->vocab_hash, b->vocab_hash))
        return mo_errorf("%s and %s disagree on vocab_hash: %s in %s, %s in %s; they were trained with different "
                         "tokenizers",
                         an, bn, a->vocab_hash, an, b->vocab_hash, bn);
    if (memcmp(a->moe_layers, b->moe_layers, sizeof(int) * (size_t)a->n_layers)) {
        char x[MO_MAX_LAYERS * 2 + 1], y[MO_MAX_LAYERS * 2 + 1];
        layers_str(a, x, sizeof x);
        layers_str(b, y, sizeof y);
        return mo_errorf("%s and %s disagree on moe_layers: %s in %s, %s in %s; an expert needs a slice for every "
                         "MoE layer",
                         an, bn, x, an, y, bn);
    }
    return 0;
}

// ---------------------------------------------------------------------------- modules

void expert_free(mo_expert *x) {
    free(x->w), free(x->m), free(x->v);
    free(x->name), free(x->domain), free(x->provenance);
    memset(x, 0, sizeof *x);
}

// Sizes x from its key and allocates w (and m, v when `optim`).
static int expert_alloc(mo_expert *x, int optim) {
    x->n_moe = 0;
    for (int l = 0; l < x->key.n_layers; l++)
        if (x->key.moe_layers[l]) x->layer[x->n_moe++] = l;
    if (!x->n_moe) return mo_errorf("an expert needs at least one MoE layer");
    x->layer_numel = 3 * (size_t)x->key.d_ff * x->key.d_model + (size_t)x->key.d_model;
    size_t n = (size_t)x->n_moe * x->layer_numel;
    x->w = calloc(n, sizeof(float));
    if (optim) x->m = calloc(n, sizeof(float)), x->v = calloc(n, sizeof(float));
    if (!x->w || (optim && (!x->m || !x->v))) return mo_errorf("out of memory for an expert of %zu floats", n);
    return 0;
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

// The table ids of layer l's expert weights: stacked moe/w1, w3, w2 and the router, or
// for a dense layer ffn/w1, w3, w2 (router -1).
static void layer_ids(const mo_param_table *pt, int l, int *w1, int *w3, int *w2, int *router) {
    const mo_layer_ids *L = &pt->layer[l];
    if (L->is_moe) *w1 = L->w1, *w3 = L->w3, *w2 = L->w2, *router = L->router;
    else *w1 = L->ffn_w1, *w3 = L->ffn_w3, *w2 = L->ffn_w2, *router = -1;
}

// Copies between module layer i and expert e of the arena `a` (to_module: a -> x, else x -> a).
static void copy_slices(const mo_param_table *pt, float *a, int l, int e, const mo_expert *x, float *xa, int i,
                        int to_module, int with_router) {
    int id[4];
    layer_ids(pt, l, &id[0], &id[1], &id[2], &id[3]);
    const size_t fd = (size_t)x->key.d_ff * x->key.d_model, d = (size_t)x->key.d_model;
    float *mod[4] = {expert_w1(x, xa, i), expert_w3(x, xa, i), expert_w2(x, xa, i), expert_router(x, xa, i)};
    for (int k = 0; k < 4; k++) {
        if (id[k] < 0 || (k == 3 && !with_router)) continue;
        size_t n = k < 3 ? fd : d;
        float *at = params_at(pt, a, id[k]) + (size_t)e * n;
        if (to_module) memcpy(mod[k], at, n * sizeof(float));
        else memcpy(at, mod[k], n * sizeof(float));
    }
}

int expert_extract(const mo_checkpoint *ck, const float *m, const float *v, int e, mo_expert *out) {
    memset(out, 0, sizeof *out);
    const mo_config *c = &ck->table.cfg;
    int dense = is_dense_model(c);
    int n_exp = dense ? 1 : c->n_experts;
    if (e < 0 || e >= n_exp) {
        if (dense) return mo_errorf("--expert %d: a model without MoE layers has one expert, its FFN: use 0", e);
        return mo_errorf("--expert %d is out of range: the model has experts 0..%d", e, n_exp - 1);
    }
    expert_key_of(ck, &out->key);
    if (expert_alloc(out, m && v)) goto err;
    out->has_router = !dense;
    for (int i = 0; i < out->n_moe; i++) {
        int l = out->layer[i];
        copy_slices(&ck->table, ck->params, l, e, out, out->w, i, 1, !dense);
        if (out->m) {
            copy_slices(&ck->table, (float *)m, l, e, out, out->m, i, 1, !dense);
            copy_slices(&ck->table, (float *)v, l, e, out, out->v, i, 1, !dense);
        }
    }
    int has_meta = !dense && e < ck->experts.n;
    char fallback[32];
    snprintf(fallback, sizeof fallback, dense ? "ffn" : "expert%d", e);
    out->name = dup_or_empty(has_meta && ck->experts.name[e][0] ? ck->experts.name[e] : fallback);
    out->domain = dup_or_empty(has_meta ? ck->experts.domain[e] : "");
    out->provenance = dup_or_empty(has_meta ? ck->experts.provenance[e] : "{}");
    if (!out->name || !out->domain || !out->provenance) {
        mo_errorf("out of memory");
        goto err;
    }
    expert_params_hash(ck, out->parent_hash);
    expert_trunk_hash(ck, out->seed_hash);
    return 0;
err:
    expert_free(out);
    return -1;
}

int expert_insert(mo_checkpoint *ck, float *m, float *v, int e, const mo_expert *x, const char *ck_name,
                  const char *x_name) {
    const mo_config *c = &ck->table.cfg;
    if (is_dense_model(c))
        return mo_errorf("%s has no MoE layer to insert %s into; make it a MoE first (monolith upcycle)", ck_name,
                         x_name);
    if (e < 0 || e >= c->n_experts)
        return mo_errorf("--slot %d is out of range: %s has experts 0..%d (monolith expert add grows it)", e, ck_name,
                         c->n_experts - 1);
    mo_shape_key k;
    expert_key_of(ck, &k);
    if (expert_key_check(&k, ck_name, &x->key, x_name)) return -1;
    for (int i = 0; i < x->n_moe; i++) {
        int l = x->layer[i];
        copy_slices(&ck->table, ck->params, l, e, x, x->w, i, 0, x->has_router);
        if (m && v) {
            if (x->m) {
                copy_slices(&ck->table, m, l, e, x, x->m, i, 0, x->has_router);
                copy_slices(&ck->table, v, l, e, x, x->v, i, 0, x->has_router);
            } else {
                // A module without optimizer state starts with fresh moments.
                int id[4];
                layer_ids(&ck->table, l, &id[0], &id[1], &id[2], &id[3]);
                for (int kk = 0; kk < 4; kk++) {
                    if (kk == 3 && !x->has_router) continue;
                    size_t n = kk < 3 ? (size_t)c->d_ff * c->d_model : (size_t)c->d_model;
                    memset(params_at(&ck->table, m, id[kk]) + (size_t)e * n, 0, n * sizeof(float));
                    memset(params_at(&ck->table, v, id[kk]) + (size_t)e * n, 0, n * sizeof(float));
                }
            }
        }
    }
    return ckpt_experts_set(&ck->experts, e, x->name, x->domain, x->provenance);
}

// ---------------------------------------------------------------------------- re-indexing

int expert_ckpt_alloc(mo_checkpoint *ck, const mo_config *c) {
    memset(ck, 0, sizeof *ck);
    if (params_table_build(&ck->table, c)) return -1;
    ck->params = params_arena_alloc(&ck->table);
    mo_experts_meta *m = &ck->experts;
    int n = c->n_experts;
    m->n = n;
    m->name = calloc((size_t)n + 1, sizeof(char *));
    m->domain = calloc((size_t)n + 1, sizeof(char *));
    m->provenance = calloc((size_t)n + 1, sizeof(char *));
    if (!ck->params || !m->name || !m->domain || !m->provenance) goto err;
    for (int e = 0; e < n; e++) {
        char name[32];
        snprintf(name, sizeof name, "expert%d", e);
        if (ckpt_experts_set(m, e, name, "", "{}")) goto err;
    }
    return 0;
err:;
    size_t numel = ck->table.numel;
    ckpt_free(ck);
    return mo_errorf("out of memory for a checkpoint of %zu parameters", numel);
}

int expert_tokenizer_copy(const mo_tokenizer_blob *t, mo_tokenizer_blob *o) {
    memset(o, 0, sizeof *o);
    if (!t->present) return 0;
    o->tiktoken = malloc(t->tiktoken_len ? t->tiktoken_len : 1);
    o->special_names = calloc((size_t)t->n_special + 1, sizeof(char *));
    o->special_ids = calloc((size_t)t->n_special + 1, sizeof(int64_t));
    o->n_special = t->n_special;
    if (!o->tiktoken || !o->special_names || !o->special_ids) goto err;
    memcpy(o->tiktoken, t->tiktoken, t->tiktoken_len);
    o->tiktoken_len = t->tiktoken_len;
    o->present = 1;
    for (int i = 0; i < t->n_special; i++) {
        o->special_names[i] = strdup(t->special_names[i]);
        o->special_ids[i] = t->special_ids[i];
        if (!o->special_names[i]) goto err;
    }
    return 0;
err:
    ckpt_tokenizer_free(o);
    return mo_errorf("out of memory copying a tokenizer");
}

static void copy_tensor_remap(const mo_param_table *sp, const float *sa, int si, const mo_param_table *dp, float *da,
                              int di, const int *map, int E_new) {
    const mo_tensor *s = &sp->t[si], *d = &dp->t[di];
    const float *src = sa + s->offset;
    float *dst = da + d->offset;
    if (s->kind == PK_ROUTER || s->n_experts) {
        size_t n = s->kind == PK_ROUTER ? (size_t)s->shape[1] : s->expert_numel;
        for (int j = 0; j < E_new; j++) {
            if (map[j] >= 0) memcpy(dst + (size_t)j * n, src + (size_t)map[j] * n, n * sizeof(float));
            else memset(dst + (size_t)j * n, 0, n * sizeof(float));
        }
    } else {
        memcpy(dst, src, s->numel * sizeof(float));
    }
}

int expert_remap(const mo_checkpoint *src, const float *sm, const float *sv, const int *map, int E_new,
                 mo_checkpoint *dst, float **dm, float **dv) {
    memset(dst, 0, sizeof *dst);
    if (dm) *dm = NULL;
    if (dv) *dv = NULL;
    mo_config c = src->table.cfg;
    if (is_dense_model(&c)) return mo_errorf("the model has no MoE layer: nothing to add an expert to (monolith upcycle makes one)");
    if (E_new < 1) return mo_errorf("a MoE layer needs at least one expert");
    if (c.top_k > E_new)
        return mo_errorf("%d experts would be fewer than top_k %d; lower top_k first", E_new, c.top_k);
    for (int j = 0; j < E_new; j++)
        if (map[j] >= c.n_experts) return mo_errorf("expert %d does not exist (the model has %d)", map[j], c.n_experts);
    c.n_experts = E_new;
    if (expert_ckpt_alloc(dst, &c)) return -1;
    int optim = sm && sv && dm && dv;
    if (optim) {
        *dm = params_arena_alloc(&dst->table);
        *dv = params_arena_alloc(&dst->table);
        if (!*dm || !*dv) goto err;
    }
    for (int i = 0; i < dst->table.n; i++) {
        int si = params_find(&src->table, dst->table.t[i].name);
        if (si < 0) {
            mo_errorf("internal: tensor %s missing from the source table", dst->table.t[i].name);
            goto err;
        }
        copy_tensor_remap(&src->table, src->params, si, &dst->table, dst->params, i, map, E_new);
        if (optim) {
            copy_tensor_remap(&src->table, sm, si, &dst->table, *dm, i, map, E_new);
            copy_tensor_remap(&src->table, sv, si, &dst->table, *dv, i, map, E_new);
        }
    }
    // /experts strings follow their experts; new slots keep their default names.
    for (int j = 0; j < E_new; j++) {
        if (map[j] < 0 || map[j] >= src->experts.n) continue;
        if (ckpt_experts_set(&dst->experts, j, src->experts.name[map[j]], src->experts.domain[map[j]],
                             src->experts.provenance[map[j]]))
            goto err;
    }
    if (expert_tokenizer_copy(&src->tokenizer, &dst->tokenizer)) goto err;
    return 0;
err:
    ckpt_free(dst);
    if (dm) free(*dm), *dm = NULL;
    if (dv) free(*dv), *dv = NULL;
    return -1;
}

void expert_init_random(mo_checkpoint *ck, int e, uint64_t seed) {
    const mo_param_table *pt = &ck->table;
    mo_rng r;
    mo_rng_seed(&r, seed);
    const double std = 0.02, std_out = 0.02 / sqrt(2.0 * pt->cfg.n_layers);
    for (int l = 0; l < pt->cfg.n_layers; l++) {
        const mo_layer_ids *L = &pt->layer[l];
        if (!L->is_moe) continue;
        int ids[4] = {L->router, L->w1, L->w3, L->w2};
        for (int k = 0; k < 4; k++) {
            const mo_tensor *t = &pt->t[ids[k]];
            size_t n = k == 0 ? (size_t)t->shape[1] : t->expert_numel;
            float *x = ck->params + t->offset + (size_t)e * n;
            double s = k == 3 ? std_out : std;
            for (size_t j = 0; j < n; j++) x[j] = (float)(s * mo_rng_normal(&r));
        }
    }
}

// ---------------------------------------------------------------------------- files

static int write_layers(hid_t f, const char *group, const mo_expert *x, const float *a) {
    const int d = x->key.d_model, ff = x->key.d_ff;
    char path[256];
    for (int i = 0; i < x->n_moe; i++) {
        const char *names[4] = {"w1", "w3", "w2", "router_row"};
        float *p[4] = {expert_w1(x, (float *)a, i), expert_w3(x, (float *)a, i), expert_w2(x, (float *)a, i),
                       expert_router(x, (float *)a, i)};
        hsize_t dims[4][2] = {{(hsize_t)ff, (hsize_t)d}, {(hsize_t)ff, (hsize_t)d}, {(hsize_t)d, (hsize_t)ff}, {(hsize_t)d, 0}};
        for (int k = 0; k < 4; k++) {
            snprintf(path, sizeof path, "%s%slayers/%d/%s", group, *group ? "/" : "", x->layer[i], names[k]);
            if (h5_write_f32(f, path, p[k], k == 3 ? 1 : 2, dims[k])) return -1;
        }
    }
    return 0;
}

// Every slice the header announces must be stored with the header's shape before
// anything is allocated for it: a module whose attributes claim a huge expert over a small
// file is refused here (h5_shape checks the stored data), not by the allocator.
static int check_layers(hid_t f, const char *group, const mo_shape_key *key) {
    const hsize_t d = (hsize_t)key->d_model, ff = (hsize_t)key->d_ff;
    const char *names[4] = {"w1", "w3", "w2", "router_row"};
    const hsize_t want[4][2] = {{ff, d}, {ff, d}, {d, ff}, {d, 0}};
    char path[256];
    for (int l = 0; l < key->n_layers; l++) {
        if (!key->moe_layers[l]) continue;
        for (int k = 0; k < 4; k++) {
            snprintf(path, sizeof path, "%s%slayers/%d/%s", group, *group ? "/" : "", l, names[k]);
            if (!h5_exists(f, path))
                return mo_errorf("%s: missing /%s (moe_layers says layer %d has a slice)", h5_name(f), path, l);
            int rank;
            hsize_t got[H5IO_MAX_RANK];
            if (h5_shape(f, path, &rank, got)) return -1;
            if (rank != (k == 3 ? 1 : 2) || got[0] != want[k][0] || (k < 3 && got[1] != want[k][1]))
                return mo_errorf("%s: /%s does not have the shape the module's d_model %d and d_ff %d give",
                                 h5_name(f), path, key->d_model, key->d_ff);
        }
    }
    return 0;
}

static int read_layers(hid_t f, const char *group, const mo_expert *x, float *a) {
    const int d = x->key.d_model, ff = x->key.d_ff;
    char path[256];
    for (int i = 0; i < x->n_moe; i++) {
        const char *names[4] = {"w1", "w3", "w2", "router_row"};
        float *p[4] = {expert_w1(x, a, i), expert_w3(x, a, i), expert_w2(x, a, i), expert_router(x, a, i)};
        hsize_t dims[4][2] = {{(hsize_t)ff, (hsize_t)d}, {(hsize_t)ff, (hsize_t)d}, {(hsize_t)d, (hsize_t)ff}, {(hsize_t)d, 0}};
        for (int k = 0; k < 4; k++) {
            snprintf(path, sizeof path, "%s%slayers/%d/%s", group, *group ? "/" : "", x->layer[i], names[k]);
            if (!h5_exists(f, path))
                return mo_errorf("%s: missing /%s (moe_layers says layer %d has a slice)", h5_name(f), path, x->layer[i]);
            if (h5_read_f32(f, path, p[k], k == 3 ? 1 : 2, dims[k])) return -1;
            size_t n = k == 3 ? (size_t)d : (size_t)ff * d;
            for (size_t j = 0; j < n; j++)
                if (!isfinite(p[k][j]))
                    return mo_errorf("%s: /%s holds %s at flat index %zu; the module is corrupt", h5_name(f), path,
                                     isnan(p[k][j]) ? "NaN" : "Inf", j);
        }
    }
    return 0;
}

int expert_save(const char *path, const mo_expert *x) {
    hid_t f = h5_create(path);
    if (f < 0) return -1;
    int64_t layers[MO_MAX_LAYERS];
    for (int l = 0; l < x->key.n_layers; l++) layers[l] = x->key.moe_layers[l];
    if (h5_set_format(f, MO_EXPERT_FORMAT, MO_EXPERT_VERSION) || h5_attr_set_str(f, ".", "name", x->name) ||
        h5_attr_set_str(f, ".", "domain", x->domain) || h5_attr_set_str(f, ".", "provenance", x->provenance) ||
        h5_attr_set_str(f, ".", "data_hash", x->data_hash) || h5_attr_set_str(f, ".", "parent_hash", x->parent_hash) ||
        h5_attr_set_str(f, ".", "seed_hash", x->seed_hash) ||
        h5_attr_set_i64(f, ".", "steps_trained", x->steps_trained) ||
        h5_attr_set_i64(f, ".", "has_router", x->has_router) || h5_attr_set_i64(f, ".", "d_model", x->key.d_model) ||
        h5_attr_set_i64(f, ".", "d_ff", x->key.d_ff) || h5_attr_set_i64(f, ".", "n_layers", x->key.n_layers) ||
        h5_attr_set_i64(f, ".", "vocab_size", x->key.vocab_size) ||
        h5_attr_set_str(f, ".", "vocab_hash", x->key.vocab_hash) ||
        h5_attr_set_i64s(f, ".", "moe_layers", layers, x->key.n_layers) || write_layers(f, "", x, x->w) ||
        (x->m && (write_layers(f, "optim/m", x, x->m) || write_layers(f, "optim/v", x, x->v)))) {
        h5_abort(f, path);
        return -1;
    }
    return h5_finish(f, path);
}

static int get_int(hid_t f, const char *name, int lo, int hi, int *out) {
    int64_t v;
    if (h5_attr_get_i64(f, ".", name, &v)) return -1;
    if (v < lo || v > hi) return mo_errorf("%s: attribute %s = %lld is out of range [%d, %d]", h5_name(f), name, (long long)v, lo, hi);
    *out = (int)v;
    return 0;
}

static int get_str(hid_t f, const char *name, char **out) {
    char buf[65536];
    if (h5_attr_get_str(f, ".", name, buf, sizeof buf)) return -1;
    *out = strdup(buf);
    return *out ? 0 : mo_errorf("out of memory");
}

// A hash attribute: "" or 16 hex digits.
static int get_hash(hid_t f, const char *name, char out[MO_HASH_HEX]) {
    char buf[256];
    if (h5_attr_get_str(f, ".", name, buf, sizeof buf)) return -1;
    size_t n = strlen(buf);
    if (n && (n != MO_HASH_HEX - 1 || strspn(buf, "0123456789abcdef") != n))
        return mo_errorf("%s: attribute %s = '%s' is not 16 hex digits", h5_name(f), name, buf);
    memcpy(out, buf, n + 1);
    return 0;
}

int expert_load(const char *path, mo_expert *x) {
    memset(x, 0, sizeof *x);
    hid_t f = h5_open(path, MO_EXPERT_FORMAT, MO_EXPERT_VERSION);
    if (f < 0) return -1;
    mo_shape_key *k = &x->key;
    int64_t layers[MO_MAX_LAYERS];
    if (get_int(f, "d_model", 1, 1 << 20, &k->d_model) || get_int(f, "d_ff", 1, 1 << 24, &k->d_ff) ||
        get_int(f, "n_layers", 1, MO_MAX_LAYERS, &k->n_layers) || get_int(f, "vocab_size", 2, 1 << 30, &k->vocab_size) ||
        get_int(f, "has_router", 0, 1, &x->has_router) || h5_attr_get_i64(f, ".", "steps_trained", &x->steps_trained) ||
        h5_attr_get_i64s(f, ".", "moe_layers", layers, k->n_layers))
        goto err;
    if ((double)k->d_ff * k->d_model > 2e9) {
        mo_errorf("%s: d_ff %d x d_model %d is too large", path, k->d_ff, k->d_model);
        goto err;
    }
    for (int l = 0; l < k->n_layers; l++) {
        if (layers[l] != 0 && layers[l] != 1) {
            mo_errorf("%s: moe_layers[%d] is %lld; must be 0 or 1", path, l, (long long)layers[l]);
            goto err;
        }
        k->moe_layers[l] = (int)layers[l];
    }
    if (get_hash(f, "vocab_hash", k->vocab_hash) || get_hash(f, "data_hash", x->data_hash) ||
        get_hash(f, "parent_hash", x->parent_hash) ||
        (h5_attr_exists(f, ".", "seed_hash") && get_hash(f, "seed_hash", x->seed_hash)))  // optional: older modules
        goto err;
    if (get_str(f, "name", &x->name) || get_str(f, "domain", &x->domain) || get_str(f, "provenance", &x->provenance))
        goto err;
    int optim = h5_exists(f, "optim");
    if (check_layers(f, "", k) || (optim && (check_layers(f, "optim/m", k) || check_layers(f, "optim/v", k))))
        goto err;
    if (expert_alloc(x, optim)) goto err;
    if (read_layers(f, "", x, x->w) || (optim && (read_layers(f, "optim/m", x, x->m) || read_layers(f, "optim/v", x, x->v))))
        goto err;
    if (optim && ckpt_check_moments(path, x->m, x->v, (size_t)x->n_moe * x->layer_numel)) goto err;
    h5_close(f);
    return 0;
err:
    h5_close(f);
    expert_free(x);
    return -1;
}

// ---------------------------------------------------------------------------- checkpoints with /optim

int expert_ckpt_load(const char *path, mo_checkpoint *ck, float **m, float **v) {
    *m = *v = NULL;
    memset(ck, 0, sizeof *ck);
    hid_t f = ckpt_open(path);
    if (f < 0) return -1;
    int rc = ckpt_load_optim_from(f, ck, m, v);
    h5_close(f);
    return rc;
}

static herr_t copy_one_attr(hid_t src, const char *name, const H5A_info_t *info, void *dst_group) {
    (void)info;
    hid_t a = H5Aopen(src, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    // Variable-length values live in the file's global heap, which monolith never reads
    // (libhdf5 trusts its bytes: engine/base/h5io.h); monolith writes none.
    int vlen = H5Tis_variable_str(t) > 0 || H5Tdetect_class(t, H5T_VLEN) > 0;
    size_t sz = H5Tget_size(t) * (size_t)(n > 0 ? n : 1);
    void *buf = vlen ? NULL : calloc(1, sz);
    herr_t rc = vlen ? -2 : -1;
    if (buf && H5Aread(a, t, buf) >= 0) {
        hid_t b = H5Acreate2(*(hid_t *)dst_group, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (b >= 0) rc = H5Awrite(b, t, buf), H5Aclose(b);
    }
    free(buf);
    H5Sclose(sp), H5Tclose(t), H5Aclose(a);
    return rc < 0 ? rc : 0;
}

// Copies the attributes of group `name` of `src` into a new group of the same name in
// `dst`. (H5Ocopy would do it, but libhdf5 1.10 crashes copying a group whose many
// attributes live in dense storage.) Returns 0, -2 for a variable-length attribute
// (refused, not read), or -1.
static int copy_attrs(hid_t src, const char *name, hid_t dst) {
    hid_t g = H5Gopen2(src, name, H5P_DEFAULT);
    hid_t d = H5Gcreate2(dst, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = g >= 0 && d >= 0 ? H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_one_attr, &d) : -1;
    if (g >= 0) H5Gclose(g);
    if (d >= 0) H5Gclose(d);
    return rc < 0 ? (int)rc : 0;  // -2: a variable-length attribute (copy_one_attr)
}

int expert_ckpt_save(const char *path, const mo_checkpoint *ck, const float *m, const float *v,
                     const char *train_from) {
    hid_t f = ckpt_create(path, ck);
    if (f < 0) return -1;
    if (m && v && (ckpt_write_tensors(f, "optim/m", &ck->table, m) || ckpt_write_tensors(f, "optim/v", &ck->table, v)))
        goto err;
    if (train_from) {
        hid_t s = h5_open(train_from, NULL, 0);
        if (s < 0) goto err;
        int rc = h5_exists(s, "train") ? copy_attrs(s, "train", f) : 0;
        h5_close(s);
        if (rc) {
            mo_errorf("%s: cannot copy /train into %s%s", train_from, path,
                      rc == -2 ? " (a variable-length attribute: written by an older monolith; re-create it with "
                                 "this version)" : "");
            goto err;
        }
    }
    return h5_finish(f, path);
err:
    h5_abort(f, path);
    return -1;
}
