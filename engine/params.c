// params.c: the named tensor table over one float arena, initialization and counts.
#include "engine/params.h"

#include "engine/base/error.h"
#include "engine/base/huge.h"
#include "engine/base/rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

// Appends a tensor; returns its index.
static int add(mo_param_table *pt, mo_param_kind kind, int layer, const char *name, int rank, int64_t s0,
               int64_t s1, int64_t s2) {
    mo_tensor *t = &pt->t[pt->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->layer = layer;
    t->rank = rank;
    t->shape[0] = s0, t->shape[1] = s1, t->shape[2] = s2;
    t->numel = (size_t)s0 * (size_t)(rank > 1 ? s1 : 1) * (size_t)(rank > 2 ? s2 : 1);
    t->offset = pt->numel;
    t->is_norm = kind == PK_NORM || kind == PK_ATTN_NORM || kind == PK_FFN_NORM;
    if (kind == PK_W1 || kind == PK_W3 || kind == PK_W2) {
        t->n_experts = (int)s0;
        t->expert_numel = t->numel / (size_t)s0;
    }
    t->no_grad = kind == PK_ROUTER_BIAS;
    pt->numel += t->numel;
    return pt->n++;
}

int params_table_build(mo_param_table *pt, const mo_config *c) {
    memset(pt, 0, sizeof *pt);
    pt->cfg = *c;
    const int64_t d = c->d_model, V = c->vocab_size, E = c->n_experts;
    const int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t sh = (int64_t)c->n_shared_experts * c->d_ff_shared;
    pt->t = calloc((size_t)(3 + 14 * c->n_layers), sizeof *pt->t);
    if (!pt->t) return mo_errorf("out of memory for the parameter table");
    char nm[MO_NAME_MAX];
    pt->tok_embeddings = add(pt, PK_TOK_EMBEDDINGS, -1, "tok_embeddings", 2, V, d, 0);
    for (int l = 0; l < c->n_layers; l++) {
        mo_layer_ids *L = &pt->layer[l];
        memset(L, -1, sizeof *L);
        L->is_moe = c->moe_layers[l];
#define ADD(field, kind, suffix, rank, a, b, e)                          \
    snprintf(nm, sizeof nm, "layers/%d/%s", l, suffix);                  \
    L->field = add(pt, kind, l, nm, rank, a, b, e)
        ADD(attn_norm, PK_ATTN_NORM, "attn_norm", 1, d, 0, 0);
        ADD(wq, PK_WQ, "attn/wq", 2, qd, d, 0);
        ADD(wk, PK_WK, "attn/wk", 2, kvd, d, 0);
        ADD(wv, PK_WV, "attn/wv", 2, kvd, d, 0);
        ADD(wo, PK_WO, "attn/wo", 2, d, qd, 0);
        ADD(ffn_norm, PK_FFN_NORM, "ffn_norm", 1, d, 0, 0);
        if (L->is_moe) {
            ADD(router, PK_ROUTER, "moe/router", 2, E, d, 0);
            ADD(router_bias, PK_ROUTER_BIAS, "moe/router_bias", 1, E, 0, 0);
            ADD(w1, PK_W1, "moe/w1", 3, E, c->d_ff, d);
            ADD(w3, PK_W3, "moe/w3", 3, E, c->d_ff, d);
            ADD(w2, PK_W2, "moe/w2", 3, E, d, c->d_ff);
            if (sh > 0) {
                ADD(shared_w1, PK_SHARED_W1, "moe/shared_w1", 2, sh, d, 0);
                ADD(shared_w3, PK_SHARED_W3, "moe/shared_w3", 2, sh, d, 0);
                ADD(shared_w2, PK_SHARED_W2, "moe/shared_w2", 2, d, sh, 0);
            }
        } else {
            ADD(ffn_w1, PK_DENSE_W1, "ffn/w1", 2, c->d_ff_dense, d, 0);
            ADD(ffn_w3, PK_DENSE_W3, "ffn/w3", 2, c->d_ff_dense, d, 0);
            ADD(ffn_w2, PK_DENSE_W2, "ffn/w2", 2, d, c->d_ff_dense, 0);
        }
#undef ADD
    }
    pt->norm = add(pt, PK_NORM, -1, "norm", 1, d, 0, 0);
    pt->output = add(pt, PK_OUTPUT, -1, "output", 2, V, d, 0);
    return 0;
}

void params_table_free(mo_param_table *pt) {
    free(pt->t);
    pt->t = NULL;
    pt->n = 0;
}

int params_find(const mo_param_table *pt, const char *name) {
    for (int i = 0; i < pt->n; i++)
        if (!strcmp(pt->t[i].name, name)) return i;
    return -1;
}

float *params_arena_alloc(const mo_param_table *pt) {
    size_t bytes = (pt->numel * sizeof(float) + 63) / 64 * 64;
    float *a = mo_alloc_huge(bytes);  // streamed every step (AdamW): huge pages, engine/base/huge.h
    if (!a) {
        mo_errorf("out of memory: %zu MB for a parameter arena", bytes >> 20);
        return NULL;
    }
    memset(a, 0, bytes);
    return a;
}

float *params_arena_alloc_sparse(const mo_param_table *pt) {
    size_t bytes = pt->numel * sizeof(float);
    void *a = mmap(NULL, bytes ? bytes : 64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (a == MAP_FAILED) {
        mo_errorf("out of address space: %zu MB for a parameter arena (%s)", bytes >> 20, strerror(errno));
        return NULL;
    }
    return a;
}

void params_arena_free_sparse(const mo_param_table *pt, float *a) {
    if (a) munmap(a, pt->numel ? pt->numel * sizeof(float) : 64);
}

void params_arena_release(float *a, size_t offset, size_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = ((uintptr_t)(a + offset) + page - 1) / page * page, hi = (uintptr_t)(a + offset + n) / page * page;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);  // private anonymous pages: zeros when read again
}

void params_init(const mo_param_table *pt, float *arena, uint64_t seed) { params_init_each(pt, arena, seed, NULL, NULL); }

void params_init_each(const mo_param_table *pt, float *arena, uint64_t seed, void (*each)(void *ctx, int i),
                      void *ctx) {
    mo_rng r;
    mo_rng_seed(&r, seed);
    const double std = 0.02, std_out = 0.02 / sqrt(2.0 * pt->cfg.n_layers);
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        float *x = arena + t->offset;
        if (t->is_norm) {
            for (size_t j = 0; j < t->numel; j++) x[j] = 1.0f;
        } else if (t->no_grad) {
            memset(x, 0, t->numel * sizeof *x);
        } else {
            int is_out = t->kind == PK_WO || t->kind == PK_W2 || t->kind == PK_SHARED_W2 || t->kind == PK_DENSE_W2;
            double s = is_out ? std_out : std;
            for (size_t j = 0; j < t->numel; j++) x[j] = (float)(s * mo_rng_normal(&r));
        }
        if (each) each(ctx, i);
    }
}

size_t params_count_total(const mo_param_table *pt) {
    size_t n = pt->numel;
    for (int i = 0; i < pt->n; i++)
        if (pt->t[i].no_grad) n -= pt->t[i].numel;
    return n;
}

size_t params_count_active(const mo_param_table *pt) {
    size_t n = params_count_total(pt);
    const mo_config *c = &pt->cfg;
    for (int i = 0; i < pt->n; i++)
        if (pt->t[i].n_experts) n -= (size_t)(c->n_experts - c->top_k) * pt->t[i].expert_numel;
    return n;
}

void params_shape_str(const mo_param_table *pt, int i, char *buf, size_t cap) {
    const mo_tensor *t = &pt->t[i];
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int k = 0; k < t->rank && n < cap; k++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", k ? ", " : "", (long long)t->shape[k]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}
