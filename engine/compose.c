// compose.c: a MoE checkpoint from bases and expert modules; sparse upcycling.
#include "engine/compose.h"

#include "engine/base/error.h"
#include "engine/base/rng.h"
#include "engine/expert_remap.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The first tensor whose name or shape differs between two tables, or -1.
static int first_difference(const mo_param_table *a, const mo_param_table *b) {
    int n = a->n < b->n ? a->n : b->n;
    for (int i = 0; i < n; i++)
        if (strcmp(a->t[i].name, b->t[i].name) || memcmp(a->t[i].shape, b->t[i].shape, sizeof a->t[i].shape)) return i;
    return a->n == b->n ? -1 : n;
}

// Checks what compose needs of its inputs; fills the output config.
static int check_inputs(const mo_checkpoint *bases, const char *const *bn, int nb, const mo_expert *mods,
                        const char *const *mn, int nm, const compose_opts *o, mo_config *out) {
    if (nb < 1) return mo_errorf("compose needs a --base checkpoint");
    if (nm < 1) return mo_errorf("compose needs at least one --expert module");
    for (int i = 1; i < nb; i++) {
        int d = first_difference(&bases[0].table, &bases[i].table);
        if (d >= 0) {
            const mo_param_table *t = d < bases[0].table.n ? &bases[0].table : &bases[i].table;
            return mo_errorf("%s and %s differ at tensor %s; --average needs bases of identical shapes", bn[0], bn[i],
                             t->t[d].name);
        }
        char a[MO_HASH_HEX], b[MO_HASH_HEX];
        expert_vocab_hash(&bases[0].tokenizer, a);
        expert_vocab_hash(&bases[i].tokenizer, b);
        if (a[0] && b[0] && strcmp(a, b))
            return mo_errorf("%s and %s disagree on vocab_hash: %s in %s, %s in %s; average bases of one tokenizer",
                             bn[0], bn[i], a, bn[0], b, bn[i]);
    }
    for (int j = 1; j < nm; j++)
        if (expert_key_check(&mods[0].key, mn[0], &mods[j].key, mn[j])) return -1;
    if (!o->any_seed)
        for (int j = 0; j < nm; j++)
            if (expert_seed_check(&mods[j], mn[j], bases, bn, nb)) return -1;
    // The base, seen as a home for these modules: its own d_model, layers and vocabulary,
    // the modules' d_ff and MoE layers.
    mo_shape_key bk;
    expert_key_of(&bases[0], &bk);
    bk.d_ff = mods[0].key.d_ff;
    memcpy(bk.moe_layers, mods[0].key.moe_layers, sizeof bk.moe_layers);
    if (expert_key_check(&bk, bn[0], &mods[0].key, mn[0])) return -1;

    const mo_config *bc = &bases[0].table.cfg;
    mo_config c = *bc;
    int any_dense = 0;
    for (int l = 0; l < c.n_layers; l++) {
        int moe = mods[0].key.moe_layers[l];
        if (!moe && bc->moe_layers[l])
            return mo_errorf("layer %d is MoE in %s but %s has no slice for it; an output layer without experts must "
                             "be a dense layer of the base",
                             l, bn[0], mn[0]);
        if (moe && !bc->moe_layers[l] && bc->n_shared_experts)
            return mo_errorf("%s has shared experts but its layer %d is dense, so the composed MoE layer %d would have "
                             "none; compose from a base whose MoE layers are the modules'",
                             bn[0], l, l);
        c.moe_layers[l] = moe;
        any_dense |= !moe;
    }
    c.n_experts = nm;
    c.d_ff = mods[0].key.d_ff;
    c.d_ff_dense = any_dense ? bc->d_ff_dense : 0;
    int base_moe = config_n_moe_layers(bc) > 0;
    if (o->top_k) c.top_k = o->top_k;
    else c.top_k = base_moe && bc->top_k <= nm ? bc->top_k : (nm < 2 ? nm : 2);
    if (c.top_k < 1 || c.top_k > nm)
        return mo_errorf("--top-k %d must be between 1 and the number of experts, %d", c.top_k, nm);
    if (config_validate(&c)) {
        char why[512];
        snprintf(why, sizeof why, "%s", mo_error());
        return mo_errorf("the composed config is invalid: %s", why);
    }
    *out = c;
    return 0;
}

// Appends the JSON string form of `s` to buf (quotes and escapes).
static size_t json_str(char *buf, size_t at, size_t cap, const char *s) {
    if (at < cap) buf[at] = '"';
    at++;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8] = {0};
        if (ch == '"' || ch == '\\') snprintf(esc, sizeof esc, "\\%c", ch);
        else if (ch < 0x20) snprintf(esc, sizeof esc, "\\u%04x", ch);
        else esc[0] = (char)ch;
        for (char *p = esc; *p; p++, at++)
            if (at < cap) buf[at] = *p;
    }
    if (at < cap) buf[at] = '"';
    return at + 1;
}

// The /experts provenance of a composed expert: where the module came from, wrapping
// the module's own provenance (kept as JSON when it is a JSON object, else as a string).
// malloc'd, or NULL (out of memory).
static char *module_provenance(const mo_expert *x, const char *file) {
    size_t cap = strlen(x->provenance) * 6 + strlen(file) * 6 + 256;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t n = (size_t)snprintf(buf, cap, "{\"module\": ");
    n = json_str(buf, n, cap, file);
    n += (size_t)snprintf(buf + n, cap - n,
                          ", \"parent_hash\": \"%s\", \"seed_hash\": \"%s\", \"data_hash\": \"%s\", "
                          "\"steps_trained\": %lld, \"provenance\": ",
                          x->parent_hash, x->seed_hash, x->data_hash, (long long)x->steps_trained);
    size_t len = strlen(x->provenance);
    if (len >= 2 && x->provenance[0] == '{' && x->provenance[len - 1] == '}') {
        memcpy(buf + n, x->provenance, len);
        n += len;
    } else {
        n = json_str(buf, n, cap, x->provenance);
    }
    snprintf(buf + n, cap - n, "}");
    return buf;
}

int compose_checkpoint(const mo_checkpoint *bases, const char *const *bn, int nb, const mo_expert *mods,
                       const char *const *mn, int nm, const compose_opts *o, mo_checkpoint *out) {
    memset(out, 0, sizeof *out);
    mo_config c;
    if (check_inputs(bases, bn, nb, mods, mn, nm, o, &c)) return -1;
    if (expert_ckpt_alloc(out, &c)) return -1;
    const mo_param_table *pt = &out->table;
    mo_rng r;
    mo_rng_seed(&r, o->seed ^ 0x726f75746572ull);  // "router": fresh rows of their own stream
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        float *dst = out->params + t->offset;
        if (t->layer >= 0 && c.moe_layers[t->layer] && (t->kind == PK_ROUTER || t->kind == PK_ROUTER_BIAS || t->n_experts)) {
            // Filled from the modules below.
            continue;
        }
        // From the base(s), by name: a bit-exact copy from one, a mean over several.
        int si = params_find(&bases[0].table, t->name);
        if (si < 0) {
            mo_errorf("internal: %s has no tensor %s", bn[0], t->name);
            goto err;
        }
        const float *s0 = bases[0].params + bases[0].table.t[si].offset;
        if (nb == 1) {
            memcpy(dst, s0, t->numel * sizeof(float));
            continue;
        }
        for (size_t j = 0; j < t->numel; j++) {
            double s = 0;
            for (int b = 0; b < nb; b++) s += bases[b].params[bases[b].table.t[si].offset + j];
            dst[j] = (float)(s / nb);
        }
    }
    for (int l = 0; l < c.n_layers; l++) {
        const mo_layer_ids *L = &pt->layer[l];
        if (!L->is_moe) continue;
        for (int e = 0; e < nm; e++) {
            const mo_expert *x = &mods[e];
            int i = 0;
            while (x->layer[i] != l) i++;  // the key check guarantees the slice exists
            size_t fd = (size_t)c.d_ff * c.d_model;
            memcpy(params_at(pt, out->params, L->w1) + e * fd, expert_w1(x, x->w, i), fd * sizeof(float));
            memcpy(params_at(pt, out->params, L->w3) + e * fd, expert_w3(x, x->w, i), fd * sizeof(float));
            memcpy(params_at(pt, out->params, L->w2) + e * fd, expert_w2(x, x->w, i), fd * sizeof(float));
            float *row = params_at(pt, out->params, L->router) + (size_t)e * c.d_model;
            float *bias = params_at(pt, out->params, L->router_bias) + e;
            if (x->has_router && !o->fresh_router) {
                memcpy(row, expert_router(x, x->w, i), (size_t)c.d_model * sizeof(float));
                *bias = *expert_router_bias(x, x->w, i);  // the module's bias entry comes with its router row
            } else {
                for (int k = 0; k < c.d_model; k++) row[k] = (float)(0.02 * mo_rng_normal(&r));
                *bias = 0.0f;
            }
        }
    }
    for (int e = 0; e < nm; e++) {
        char *prov = module_provenance(&mods[e], mn[e]);
        int rc = prov ? ckpt_experts_set(&out->experts, e, mods[e].name, mods[e].domain, prov) : -1;
        free(prov);
        if (rc) goto err;
    }
    if (expert_tokenizer_copy(&bases[0].tokenizer, &out->tokenizer)) goto err;
    return 0;
err:
    ckpt_free(out);
    return -1;
}

int upcycle_checkpoint(const mo_checkpoint *dense, const char *name, int n_experts, int top_k, double noise,
                       uint64_t seed, mo_checkpoint *out) {
    memset(out, 0, sizeof *out);
    const mo_config *dc = &dense->table.cfg;
    if (config_n_moe_layers(dc))
        return mo_errorf("%s already has MoE layers (moe_layers has a 1); upcycle takes a dense model (moe_layers all 0)",
                         name);
    if (n_experts < 1) return mo_errorf("--n-experts must be at least 1, not %d", n_experts);
    if (top_k < 1 || top_k > n_experts)
        return mo_errorf("--top-k %d must be between 1 and --n-experts %d", top_k, n_experts);
    if (!(noise >= 0) || !isfinite(noise)) return mo_errorf("--noise must be a finite number >= 0, not %g", noise);
    mo_expert ffn;
    if (expert_extract(dense, NULL, NULL, 0, &ffn)) return -1;
    mo_expert *mods = calloc((size_t)n_experts, sizeof *mods);
    const char **names = calloc((size_t)n_experts, sizeof *names);
    int rc = -1;
    if (!mods || !names) {
        mo_errorf("out of memory");
        goto done;
    }
    // The experts share the FFN's weights (no copy): compose copies them into the output.
    char prov[256];
    snprintf(prov, sizeof prov, "{\"upcycled_from\": \"%s\", \"noise\": %g, \"seed\": %llu}", ffn.parent_hash, noise,
             (unsigned long long)seed);
    for (int e = 0; e < n_experts; e++) {
        mods[e] = ffn;
        names[e] = name;
    }
    compose_opts o = {.fresh_router = 1, .top_k = top_k, .seed = seed};
    if (compose_checkpoint(dense, &name, 1, mods, names, n_experts, &o, out)) goto done;
    for (int e = 0; e < n_experts; e++) {
        char nm[32];
        snprintf(nm, sizeof nm, "expert%d", e);
        if (ckpt_experts_set(&out->experts, e, nm, "", prov)) goto done;
    }
    if (noise > 0) {
        mo_rng r;
        mo_rng_seed(&r, seed ^ 0x6e6f697365ull);  // "noise"
        const mo_param_table *pt = &out->table;
        for (int i = 0; i < pt->n; i++) {
            const mo_tensor *t = &pt->t[i];
            if (!t->n_experts) continue;
            float *w = out->params + t->offset;
            double ss = 0;
            for (size_t j = 0; j < t->expert_numel; j++) ss += (double)w[j] * w[j];
            double s = noise * sqrt(ss / (double)t->expert_numel);
            for (size_t j = 0; j < t->numel; j++) w[j] += (float)(s * mo_rng_normal(&r));
        }
    }
    rc = 0;
done:
    if (rc) ckpt_free(out);
    expert_free(&ffn);
    free(mods);
    free(names);
    return rc;
}
