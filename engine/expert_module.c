// expert_module.c: one expert taken out of a checkpoint's slot or put into one
// (engine/expert_module.h).
#include "engine/expert_module.h"

#include "engine/base/error.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void expert_free(mo_expert *x) {
    free(x->w), free(x->m), free(x->v);
    free(x->name), free(x->domain), free(x->provenance);
    memset(x, 0, sizeof *x);
}

int expert_alloc(mo_expert *x, int optim) {
    x->n_moe = 0;
    for (int l = 0; l < x->key.n_layers; l++)
        if (x->key.moe_layers[l]) x->layer[x->n_moe++] = l;
    if (!x->n_moe) return mo_errorf("an expert needs at least one MoE layer");
    x->layer_numel = 3 * (size_t)x->key.d_ff * x->key.d_model + (size_t)x->key.d_model + 1;
    size_t n = (size_t)x->n_moe * x->layer_numel;
    x->w = calloc(n, sizeof(float));
    if (optim) x->m = calloc(n, sizeof(float)), x->v = calloc(n, sizeof(float));
    if (!x->w || (optim && (!x->m || !x->v))) return mo_errorf("out of memory for an expert of %zu floats", n);
    return 0;
}

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

// The table ids of layer l's expert pieces: stacked moe/w1, w3, w2, the router and its
// bias, or for a dense layer ffn/w1, w3, w2 (router and bias -1).
static void layer_ids(const mo_param_table *pt, int l, int id[MO_EXPERT_PIECES]) {
    const mo_layer_ids *L = &pt->layer[l];
    if (L->is_moe) id[0] = L->w1, id[1] = L->w3, id[2] = L->w2, id[3] = L->router, id[4] = L->router_bias;
    else id[0] = L->ffn_w1, id[1] = L->ffn_w3, id[2] = L->ffn_w2, id[3] = id[4] = -1;
}

// Copies between module layer i and expert e of the arena `a` (to_module: a -> x, else x -> a).
static void copy_slices(const mo_param_table *pt, float *a, int l, int e, const mo_expert *x, float *xa, int i,
                        int to_module, int with_router) {
    int id[MO_EXPERT_PIECES];
    layer_ids(pt, l, id);
    for (int k = 0; k < MO_EXPERT_PIECES; k++) {
        if (id[k] < 0 || (k >= 3 && !with_router)) continue;
        size_t n = expert_piece_numel(&x->key, k);
        float *at = params_at(pt, a, id[k]) + (size_t)e * n, *mod = expert_piece(x, xa, i, k);
        if (to_module) memcpy(mod, at, n * sizeof(float));
        else memcpy(at, mod, n * sizeof(float));
    }
}

int expert_extract(const mo_checkpoint *ck, const float *m, const float *v, int e, mo_expert *out) {
    memset(out, 0, sizeof *out);
    const mo_config *c = &ck->table.cfg;
    int dense = expert_dense_model(c);
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
    if (expert_dense_model(c))
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
                int id[MO_EXPERT_PIECES];
                layer_ids(&ck->table, l, id);
                for (int kk = 0; kk < MO_EXPERT_PIECES; kk++) {
                    if (kk >= 3 && !x->has_router) continue;
                    size_t n = expert_piece_numel(&x->key, kk);
                    memset(params_at(&ck->table, m, id[kk]) + (size_t)e * n, 0, n * sizeof(float));
                    memset(params_at(&ck->table, v, id[kk]) + (size_t)e * n, 0, n * sizeof(float));
                }
            }
        }
    }
    return ckpt_experts_set(&ck->experts, e, x->name, x->domain, x->provenance);
}

// ---------------------------------------------------------------------------- re-indexing

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

