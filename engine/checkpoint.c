// checkpoint.c: writing and reading the monolith checkpoint (docs/design.md section 11.2).
#include "engine/checkpoint.h"

#include "engine/base/error.h"
#include "engine/base/h5io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------- tensors

static void tensor_dims(const mo_tensor *t, hsize_t *dims) {
    for (int k = 0; k < t->rank; k++) dims[k] = (hsize_t)t->shape[k];
}

// Every tensor, or with skip_buffers those that have a gradient.
static int write_tensors(hid_t f, const char *group, const mo_param_table *pt, const float *arena, int skip_buffers) {
    char path[256];
    for (int i = 0; i < pt->n; i++) {
        if (skip_buffers && pt->t[i].no_grad) continue;
        hsize_t dims[3];
        tensor_dims(&pt->t[i], dims);
        snprintf(path, sizeof path, "%s/%s", group, pt->t[i].name);
        if (h5_write_f32(f, path, arena + pt->t[i].offset, pt->t[i].rank, dims)) return -1;
    }
    return 0;
}

int ckpt_write_tensors(hid_t f, const char *group, const mo_param_table *pt, const float *arena) {
    return write_tensors(f, group, pt, arena, 0);
}

int ckpt_write_grads(hid_t f, const char *group, const mo_param_table *pt, const float *grads) {
    return write_tensors(f, group, pt, grads, 1);
}

// 0 if dataset `path` has its data in the file (at least `bytes` of it when stored
// contiguously), else -1 with a message: what a header claims is not trusted until then.
// A chunked dataset with a filter (the Fletcher32 checksum every monolith file has, or
// compression) reports PART_ALLOCATED even when complete, since its stored size differs
// from the logical one; h5_shape has already checked how much of it is stored.
static int data_stored(hid_t f, const char *path, size_t bytes) {
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0) return mo_errorf("%s: /%s is not a dataset", h5_name(f), path);
    H5D_space_status_t status = H5D_SPACE_STATUS_ERROR;
    herr_t rc = H5Dget_space_status(ds, &status);
    hid_t dcpl = H5Dget_create_plist(ds);
    int contiguous = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CONTIGUOUS;
    if (dcpl >= 0) H5Pclose(dcpl);
    hsize_t stored = H5Dget_storage_size(ds);
    H5Dclose(ds);
    if (bytes && (rc < 0 || status == H5D_SPACE_STATUS_NOT_ALLOCATED || (contiguous && stored < bytes)))
        return mo_errorf("%s: tensor /%s has no (or not all) data stored; the file is truncated or corrupt",
                         h5_name(f), path);
    return 0;
}

// Tensor i of `pt` exists under `group` with the table's shape and has its data stored
// (a header alone can claim any shape: nothing is allocated for it before this check).
static int check_tensor(hid_t f, const char *path, const mo_param_table *pt, int i) {
    const mo_tensor *t = &pt->t[i];
    if (!h5_exists(f, path) && t->no_grad) return 0;  // router_bias: a file from before it holds none (zeros)
    if (!h5_exists(f, path)) return mo_errorf("%s: missing tensor /%s (the config asks for it)", h5_name(f), path);
    int rank;
    hsize_t got[H5IO_MAX_RANK], dims[3];
    tensor_dims(t, dims);
    if (h5_shape(f, path, &rank, got) || h5_require_f32(f, path)) return -1;
    int same = rank == t->rank;
    for (int k = 0; same && k < rank; k++) same = got[k] == dims[k];
    if (!same) {
        char want[96];
        params_shape_str(pt, i, want, sizeof want);
        return mo_errorf("%s: tensor /%s has a shape that disagrees with /config (which asks for %s)", h5_name(f),
                         path, want);
    }
    return data_stored(f, path, t->numel * sizeof(float));
}

int ckpt_check_moments(const char *path, const float *m, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(m[i]))
            return mo_errorf("%s: Adam's first moment /optim/m is %s at element %zu; the optimizer state is damaged "
                             "(start from its weights with --init instead)", path, isnan(m[i]) ? "NaN" : "Inf", i);
        if (!(v[i] >= 0) || isinf(v[i]))
            return mo_errorf("%s: Adam's second moment /optim/v is %g at element %zu, not a finite value >= 0; the "
                             "optimizer state is damaged (start from its weights with --init instead)", path, (double)v[i], i);
    }
    return 0;
}

int ckpt_read_tensors(hid_t f, const char *group, const mo_param_table *pt, float *arena) {
    return ckpt_read_tensors_each(f, group, pt, arena, NULL, NULL);
}

int ckpt_read_tensors_each(hid_t f, const char *group, const mo_param_table *pt, float *arena,
                           int (*each)(void *ctx, int i), void *ctx) {
    char path[256];
    for (int i = 0; i < pt->n; i++) {
        snprintf(path, sizeof path, "%s/%s", group, pt->t[i].name);
        if (check_tensor(f, path, pt, i)) return -1;
    }
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        hsize_t dims[3];
        tensor_dims(t, dims);
        snprintf(path, sizeof path, "%s/%s", group, t->name);
        float *x = arena + t->offset;
        if (t->no_grad && !h5_exists(f, path)) {
            memset(x, 0, t->numel * sizeof *x);  // a file from before router_bias: the bias it routed with, 0
        } else {
            if (h5_read_f32(f, path, x, t->rank, dims)) return -1;
            for (size_t j = 0; j < t->numel; j++)
                if (!isfinite(x[j]))
                    return mo_errorf("%s: tensor /%s holds %s at flat index %zu; the checkpoint is corrupt or "
                                     "training diverged",
                                     h5_name(f), path, isnan(x[j]) ? "NaN" : "Inf", j);
        }
        if (each && each(ctx, i)) return -1;
    }
    return 0;
}

int ckpt_check_tensors(hid_t f, const char *group, const mo_param_table *pt) {
    char path[256];
    for (int i = 0; i < pt->n; i++) {
        snprintf(path, sizeof path, "%s/%s", group, pt->t[i].name);
        if (check_tensor(f, path, pt, i)) return -1;
    }
    return 0;
}

// A MoE layer has moe/ and no ffn/, a dense layer the reverse, and shared_* exist only
// with shared experts: a tensor the config does not explain means the two disagree.
static int check_no_extra(hid_t f, const char *group, const mo_param_table *pt) {
    const mo_config *c = &pt->cfg;
    char path[256];
    for (int l = 0; l < c->n_layers; l++) {
        const char *extra[2] = {NULL, NULL};
        if (c->moe_layers[l]) {
            extra[0] = "ffn";
            if (!c->n_shared_experts) extra[1] = "moe/shared_w1";
        } else {
            extra[0] = "moe";
        }
        for (int k = 0; k < 2; k++) {
            if (!extra[k]) continue;
            snprintf(path, sizeof path, "%s/layers/%d/%s", group, l, extra[k]);
            if (h5_exists(f, path))
                return mo_errorf("%s: /%s exists but /config says layer %d is %s; the tensors and the config "
                                 "disagree",
                                 h5_name(f), path, l,
                                 c->moe_layers[l] ? (k ? "MoE without shared experts" : "MoE") : "dense");
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------- experts

void ckpt_experts_free(mo_experts_meta *m) {
    char **lists[3] = {m->name, m->domain, m->provenance};
    for (int k = 0; k < 3; k++) {
        if (!lists[k]) continue;
        for (int e = 0; e < m->n; e++) free(lists[k][e]);
        free(lists[k]);
    }
    memset(m, 0, sizeof *m);
}

static int experts_alloc(mo_experts_meta *m, int n) {
    memset(m, 0, sizeof *m);
    m->n = n;
    size_t cap = n > 0 ? (size_t)n : 1;
    m->name = calloc(cap, sizeof(char *));
    m->domain = calloc(cap, sizeof(char *));
    m->provenance = calloc(cap, sizeof(char *));
    if (!m->name || !m->domain || !m->provenance) {
        ckpt_experts_free(m);
        return mo_errorf("out of memory for expert metadata");
    }
    return 0;
}

static int replace_str(char **slot, const char *s) {
    if (!s) return 0;
    char *c = strdup(s);
    if (!c) return mo_errorf("out of memory for expert metadata");
    free(*slot);
    *slot = c;
    return 0;
}

int ckpt_experts_set(mo_experts_meta *m, int e, const char *name, const char *domain, const char *provenance) {
    if (e < 0 || e >= m->n) return mo_errorf("expert %d does not exist (the model has %d)", e, m->n);
    if (replace_str(&m->name[e], name) || replace_str(&m->domain[e], domain) ||
        replace_str(&m->provenance[e], provenance))
        return -1;
    return 0;
}

int ckpt_write_experts(hid_t f, const mo_experts_meta *m) {
    const char *paths[3] = {"experts/name", "experts/domain", "experts/provenance"};
    char **lists[3] = {m->name, m->domain, m->provenance};
    for (int k = 0; k < 3; k++) {
        // NULL entries are written as "".
        const char **s = calloc(m->n > 0 ? (size_t)m->n : 1, sizeof *s);
        if (!s) return mo_errorf("out of memory writing %s", paths[k]);
        for (int e = 0; e < m->n; e++) s[e] = lists[k][e] ? lists[k][e] : "";
        int rc = h5_write_strings(f, paths[k], s, m->n);
        free(s);
        if (rc) return -1;
    }
    return 0;
}

int ckpt_read_experts(hid_t f, mo_experts_meta *m, int n_experts) {
    if (experts_alloc(m, n_experts)) return -1;
    if (h5_read_strings(f, "experts/name", m->name, n_experts) ||
        h5_read_strings(f, "experts/domain", m->domain, n_experts) ||
        h5_read_strings(f, "experts/provenance", m->provenance, n_experts)) {
        char why[512];
        snprintf(why, sizeof why, "%s", mo_error());
        ckpt_experts_free(m);
        return mo_errorf("%s (n_experts is %d)", why, n_experts);
    }
    return 0;
}

// ---------------------------------------------------------------------------- tokenizer

void ckpt_tokenizer_free(mo_tokenizer_blob *t) {
    free(t->tiktoken);
    for (int i = 0; i < t->n_special; i++) free(t->special_names ? t->special_names[i] : NULL);
    free(t->special_names);
    free(t->special_ids);
    memset(t, 0, sizeof *t);
}

int ckpt_write_tokenizer(hid_t f, const mo_tokenizer_blob *t) {
    if (!t->present) return 0;
    hsize_t n = (hsize_t)t->tiktoken_len, ns = (hsize_t)t->n_special;
    const uint8_t empty = 0;
    if (h5_write(f, "tokenizer/tiktoken", H5T_NATIVE_UINT8, n ? t->tiktoken : &empty, 1, &n) ||
        h5_write_strings(f, "tokenizer/special_names", (const char *const *)t->special_names, t->n_special) ||
        h5_write_i64(f, "tokenizer/special_ids", t->special_ids, 1, &ns))
        return -1;
    return 0;
}

int ckpt_read_tokenizer(hid_t f, mo_tokenizer_blob *t) {
    memset(t, 0, sizeof *t);
    if (!h5_exists(f, "tokenizer")) return 0;
    int rank;
    hsize_t dims[H5IO_MAX_RANK], sdims[H5IO_MAX_RANK];
    if (h5_shape(f, "tokenizer/tiktoken", &rank, dims)) return -1;
    if (rank != 1) return mo_errorf("%s: /tokenizer/tiktoken must be 1-D bytes", h5_name(f));
    if (h5_shape(f, "tokenizer/special_ids", &rank, sdims)) return -1;
    if (rank != 1 || sdims[0] > 1000000)
        return mo_errorf("%s: /tokenizer/special_ids must be a 1-D int64 list", h5_name(f));
    if (data_stored(f, "tokenizer/tiktoken", (size_t)dims[0]) ||
        data_stored(f, "tokenizer/special_ids", (size_t)sdims[0] * sizeof(int64_t)))
        return -1;
    t->present = 1;
    t->tiktoken_len = (size_t)dims[0];
    t->n_special = (int)sdims[0];
    t->tiktoken = malloc(t->tiktoken_len ? t->tiktoken_len : 1);
    t->special_names = calloc(t->n_special ? (size_t)t->n_special : 1, sizeof(char *));
    t->special_ids = calloc(t->n_special ? (size_t)t->n_special : 1, sizeof(int64_t));
    if (!t->tiktoken || !t->special_names || !t->special_ids) {
        ckpt_tokenizer_free(t);
        return mo_errorf("%s: out of memory reading /tokenizer", h5_name(f));
    }
    if (h5_read(f, "tokenizer/tiktoken", H5T_NATIVE_UINT8, t->tiktoken, 1, dims) ||
        h5_read(f, "tokenizer/special_ids", H5T_NATIVE_INT64, t->special_ids, 1, sdims) ||
        h5_read_strings(f, "tokenizer/special_names", t->special_names, t->n_special)) {
        ckpt_tokenizer_free(t);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------- whole file

int ckpt_new(mo_checkpoint *ck, const mo_config *c, uint64_t seed, const char *provenance) {
    memset(ck, 0, sizeof *ck);
    if (params_table_build(&ck->table, c)) return -1;
    ck->params = params_arena_alloc(&ck->table);
    if (!ck->params) goto err;
    params_init(&ck->table, ck->params, seed);
    if (experts_alloc(&ck->experts, c->n_experts)) goto err;
    for (int e = 0; e < c->n_experts; e++) {
        char name[32];
        snprintf(name, sizeof name, "expert%d", e);
        if (ckpt_experts_set(&ck->experts, e, name, "", provenance ? provenance : "{}")) goto err;
    }
    return 0;
err:
    ckpt_free(ck);
    return -1;
}

void ckpt_free(mo_checkpoint *ck) {
    if (ck->sparse) params_arena_free_sparse(&ck->table, ck->params);
    else free(ck->params);
    params_table_free(&ck->table);
    ckpt_absent_free(&ck->absent);
    ckpt_experts_free(&ck->experts);
    ckpt_tokenizer_free(&ck->tokenizer);
    memset(ck, 0, sizeof *ck);
}

hid_t ckpt_create(const char *path, const mo_checkpoint *ck) {
    hid_t f = h5_create(path);
    if (f < 0) return -1;
    if (h5_set_format(f, MO_CKPT_FORMAT, MO_CKPT_VERSION) || config_write(f, "config", &ck->table.cfg) ||
        ckpt_write_tensors_from(f, "model", &ck->table, ck->params, &ck->absent) || ckpt_write_experts(f, &ck->experts) ||
        ckpt_write_tokenizer(f, &ck->tokenizer)) {
        h5_abort(f, path);
        return -1;
    }
    return f;
}

int ckpt_save(const char *path, const mo_checkpoint *ck) {
    hid_t f = ckpt_create(path, ck);
    if (f < 0) return -1;
    return h5_finish(f, path);
}

hid_t ckpt_open(const char *path) { return h5_open(path, MO_CKPT_FORMAT, MO_CKPT_VERSION); }

static int load_from(hid_t f, mo_checkpoint *ck, int with_data);

int ckpt_load_from(hid_t f, mo_checkpoint *ck) { return load_from(f, ck, 1); }
int ckpt_load_meta_from(hid_t f, mo_checkpoint *ck) { return load_from(f, ck, 0); }

// with_data 0: everything but /model's values (checked, not read) into a sparse arena.
static int load_from(hid_t f, mo_checkpoint *ck, int with_data) {
    memset(ck, 0, sizeof *ck);
    mo_config c;
    if (!h5_exists(f, "config")) return mo_errorf("%s: no /config group; not a complete checkpoint", h5_name(f));
    if (config_read(f, "config", &c)) return -1;
    if (params_table_build(&ck->table, &c)) return -1;
    // Shapes and stored data first: the arena is allocated only for a file that holds it.
    if (ckpt_check_tensors(f, "model", &ck->table)) {
        ckpt_free(ck);
        return -1;
    }
    ck->sparse = !with_data;
    ck->params = with_data ? params_arena_alloc(&ck->table) : params_arena_alloc_sparse(&ck->table);
    if (!ck->params || (with_data && ckpt_read_tensors(f, "model", &ck->table, ck->params)) ||
        check_no_extra(f, "model", &ck->table) ||
        ckpt_read_experts(f, &ck->experts, c.n_experts) || ckpt_read_tokenizer(f, &ck->tokenizer)) {
        ckpt_free(ck);
        return -1;
    }
    return 0;
}

int ckpt_load(const char *path, mo_checkpoint *ck) {
    memset(ck, 0, sizeof *ck);
    hid_t f = ckpt_open(path);
    if (f < 0) return -1;
    int rc = ckpt_load_from(f, ck);
    h5_close(f);
    return rc;
}

int ckpt_load_optim_from(hid_t f, mo_checkpoint *ck, float **m, float **v) {
    *m = *v = NULL;
    if (ckpt_load_from(f, ck)) {
        ckpt_free(ck);
        return -1;
    }
    if (!h5_exists(f, "optim")) return 0;
    *m = params_arena_alloc(&ck->table);
    *v = params_arena_alloc(&ck->table);
    if (*m && *v && !ckpt_read_tensors(f, "optim/m", &ck->table, *m) && !ckpt_read_tensors(f, "optim/v", &ck->table, *v) &&
        !ckpt_check_moments(h5_name(f), *m, *v, ck->table.numel))
        return 0;
    free(*m), free(*v);
    *m = *v = NULL;
    ckpt_free(ck);
    return -1;
}
