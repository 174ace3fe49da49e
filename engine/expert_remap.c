// expert_remap.c: checkpoints with a re-indexed expert axis (engine/expert_remap.h).
#include "engine/expert_remap.h"

#include "engine/base/error.h"
#include "engine/base/rng.h"
#include "engine/expert_key.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (s->kind == PK_ROUTER || s->kind == PK_ROUTER_BIAS || s->n_experts) {
        size_t n = s->kind == PK_ROUTER ? (size_t)s->shape[1] : s->kind == PK_ROUTER_BIAS ? 1 : s->expert_numel;
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
    if (expert_dense_model(&c)) return mo_errorf("the model has no MoE layer: nothing to add an expert to (monolith upcycle makes one)");
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
        params_at(pt, ck->params, L->router_bias)[e] = 0.0f;  // a new expert starts unbiased
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

