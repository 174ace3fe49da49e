// expert_key.c: shape keys, what an expert module fits (engine/expert_key.h).
#include "engine/expert_key.h"

#include "engine/base/error.h"

#include <stdio.h>
#include <string.h>

int expert_dense_model(const mo_config *c) { return config_n_moe_layers(c) == 0; }

void expert_key_of(const mo_checkpoint *ck, mo_shape_key *k) {
    const mo_config *c = &ck->table.cfg;
    memset(k, 0, sizeof *k);
    int dense = expert_dense_model(c);
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
