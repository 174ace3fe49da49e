// expert_file.c: the monolith-expert file (engine/expert_file.h).
#include "engine/expert_file.h"

#include "engine/base/error.h"
#include "engine/base/h5io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const piece_names[MO_EXPERT_PIECES] = {"w1", "w3", "w2", "router_row", "router_bias"};

// Piece k's shape in the file: rank and dims.
static int piece_dims(const mo_shape_key *key, int k, hsize_t dims[2]) {
    const hsize_t d = (hsize_t)key->d_model, ff = (hsize_t)key->d_ff;
    const hsize_t all[MO_EXPERT_PIECES][2] = {{ff, d}, {ff, d}, {d, ff}, {d, 0}, {1, 0}};
    dims[0] = all[k][0], dims[1] = all[k][1];
    return k < 3 ? 2 : 1;
}

static int write_layers(hid_t f, const char *group, const mo_expert *x, const float *a) {
    char path[256];
    for (int i = 0; i < x->n_moe; i++)
        for (int k = 0; k < MO_EXPERT_PIECES; k++) {
            hsize_t dims[2];
            int rank = piece_dims(&x->key, k, dims);
            snprintf(path, sizeof path, "%s%slayers/%d/%s", group, *group ? "/" : "", x->layer[i], piece_names[k]);
            if (h5_write_f32(f, path, expert_piece(x, (float *)a, i, k), rank, dims)) return -1;
        }
    return 0;
}

// Every slice the header announces must be stored with the header's shape before
// anything is allocated for it: a module whose attributes claim a huge expert over a small
// file is refused here (h5_shape checks the stored data), not by the allocator. The
// router_bias entry may be absent (a module written before it).
static int check_layers(hid_t f, const char *group, const mo_shape_key *key) {
    char path[256];
    for (int l = 0; l < key->n_layers; l++) {
        if (!key->moe_layers[l]) continue;
        for (int k = 0; k < MO_EXPERT_PIECES; k++) {
            snprintf(path, sizeof path, "%s%slayers/%d/%s", group, *group ? "/" : "", l, piece_names[k]);
            if (!h5_exists(f, path)) {
                if (k == 4) continue;
                return mo_errorf("%s: missing /%s (moe_layers says layer %d has a slice)", h5_name(f), path, l);
            }
            int rank;
            hsize_t got[H5IO_MAX_RANK], want[2];
            int want_rank = piece_dims(key, k, want);
            if (h5_shape(f, path, &rank, got)) return -1;
            if (rank != want_rank || got[0] != want[0] || (rank > 1 && got[1] != want[1]))
                return mo_errorf("%s: /%s does not have the shape the module's d_model %d and d_ff %d give",
                                 h5_name(f), path, key->d_model, key->d_ff);
        }
    }
    return 0;
}

static int read_layers(hid_t f, const char *group, const mo_expert *x, float *a) {
    char path[256];
    for (int i = 0; i < x->n_moe; i++)
        for (int k = 0; k < MO_EXPERT_PIECES; k++) {
            hsize_t dims[2];
            int rank = piece_dims(&x->key, k, dims);
            float *p = expert_piece(x, a, i, k);
            snprintf(path, sizeof path, "%s%slayers/%d/%s", group, *group ? "/" : "", x->layer[i], piece_names[k]);
            if (!h5_exists(f, path)) {
                if (k == 4) {  // a module from before router_bias: the bias it routed with, 0
                    *p = 0.0f;
                    continue;
                }
                return mo_errorf("%s: missing /%s (moe_layers says layer %d has a slice)", h5_name(f), path,
                                 x->layer[i]);
            }
            if (h5_read_f32(f, path, p, rank, dims)) return -1;
            size_t n = expert_piece_numel(&x->key, k);
            for (size_t j = 0; j < n; j++)
                if (!isfinite(p[j]))
                    return mo_errorf("%s: /%s holds %s at flat index %zu; the module is corrupt", h5_name(f), path,
                                     isnan(p[j]) ? "NaN" : "Inf", j);
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
