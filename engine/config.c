// config.c: presets, overrides by field name, validation and /config attributes.
//
// One table lists every field with its type and offset; setting by name, reading,
// writing and printing all walk it, so a new field (a router option) is one line here.
#include "engine/config.h"

#include "engine/base/error.h"
#include "engine/base/h5io.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// F_ENUM: an int holding the index of one of `names`, stored as that name (a string
// attribute) so that h5py shows "sigmoid", not 1.
typedef enum { F_INT, F_REAL, F_LAYERS, F_ENUM } field_type;

typedef struct {
    const char *name;
    field_type type;
    size_t offset;
    int optional;               // may be absent from /config (added after format_version 1 files existed)
    const char *const *names;   // F_ENUM: the values, NULL-terminated
} field;

static const char *const score_names[] = {"softmax", "sigmoid", NULL};
static const char *const balance_names[] = {"aux", "bias", NULL};

#define FI(n) {#n, F_INT, offsetof(mo_config, n), 0, NULL}
#define FR(n) {#n, F_REAL, offsetof(mo_config, n), 0, NULL}
#define FRO(n) {#n, F_REAL, offsetof(mo_config, n), 1, NULL}
#define FEO(n, v) {#n, F_ENUM, offsetof(mo_config, n), 1, v}
static const field fields[] = {
    FI(vocab_size), FI(d_model),   FI(n_layers),   FI(n_heads),
    FI(n_kv_heads), FI(head_dim),  FI(n_experts),  FI(top_k),
    FI(d_ff),       FI(n_shared_experts),          FI(d_ff_shared),
    {"moe_layers", F_LAYERS, offsetof(mo_config, moe_layers), 0, NULL},
    FI(d_ff_dense), FI(max_seq_len), FR(rope_theta), FR(norm_eps),
    FI(norm_topk),  FR(aux_coef),  FR(z_coef),
    FEO(router_score, score_names), FRO(routed_scale), FEO(balance, balance_names), FRO(bias_rate),
    FRO(capacity_factor), FRO(router_noise), FRO(router_top_p),
};
#undef FI
#undef FR
#undef FRO
#undef FEO
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

const char *const config_field_flags[] = {
    "vocab-size", "d-model",   "n-layers", "n-heads",    "n-kv-heads", "head-dim",   "n-experts",
    "top-k",      "d-ff",      "n-shared-experts",       "d-ff-shared", "moe-layers", "d-ff-dense",
    "max-seq-len", "rope-theta", "norm-eps", "norm-topk", "aux-coef",   "z-coef",
    "router-score", "routed-scale", "balance", "bias-rate", "capacity-factor", "router-noise", "router-top-p", NULL,
};

const char *const config_preset_names[] = {"tiny", "small", "bench-S", "fine-S", NULL};

static int *int_at(mo_config *c, const field *f) { return (int *)((char *)c + f->offset); }
static double *real_at(mo_config *c, const field *f) { return (double *)((char *)c + f->offset); }
static int int_of(const mo_config *c, const field *f) { return *(const int *)((const char *)c + f->offset); }
static double real_of(const mo_config *c, const field *f) {
    return *(const double *)((const char *)c + f->offset);
}

// ---------------------------------------------------------------------------- presets

void config_defaults(mo_config *c) {
    memset(c, 0, sizeof *c);
    c->rope_theta = 10000.0;
    c->norm_eps = 1e-5;
    c->norm_topk = 1;
    c->aux_coef = 0.01;
    c->z_coef = 0.001;
    c->router_score = MO_SCORE_SOFTMAX;
    c->routed_scale = 1.0;
    c->balance = MO_BALANCE_AUX;
    c->bias_rate = 1e-3;
}

// The index of `v` in names, or -1.
static int enum_index(const char *const *names, const char *v) {
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], v)) return i;
    return -1;
}

int config_preset(mo_config *c, const char *name) {
    config_defaults(c);
    if (!strcmp(name, "tiny")) {  // for tests: every code path at a size that runs in milliseconds
        c->vocab_size = 512, c->d_model = 64, c->n_layers = 2, c->n_heads = 4, c->n_kv_heads = 2;
        c->n_experts = 4, c->top_k = 2, c->d_ff = 128, c->max_seq_len = 256;
    } else if (!strcmp(name, "small")) {  // the quickstart: about 15.5M parameters, 6.0M active per token
        c->vocab_size = 4096, c->d_model = 256, c->n_layers = 4, c->n_heads = 8, c->n_kv_heads = 4;
        c->n_experts = 8, c->top_k = 2, c->d_ff = 512, c->max_seq_len = 256;
    } else if (!strcmp(name, "bench-S")) {  // the benchmark model of issue 3
        c->vocab_size = 8192, c->d_model = 512, c->n_layers = 8, c->n_heads = 8, c->n_kv_heads = 8;
        c->n_experts = 8, c->top_k = 2, c->d_ff = 1024, c->max_seq_len = 1024;
    } else if (!strcmp(name, "fine-S")) {
        // bench-S with fine-grained experts (DeepSeekMoE): 64 routed experts of width 128,
        // top-8, plus one always-on shared expert. Per layer and token 8 x 128 routed + 1005
        // shared hidden units: the shared width makes up for the router's 56 x 512 extra
        // rows, so the active parameters are bench-S's to 512 per layer (docs/design.md 2).
        c->vocab_size = 8192, c->d_model = 512, c->n_layers = 8, c->n_heads = 8, c->n_kv_heads = 8;
        c->n_experts = 64, c->top_k = 8, c->d_ff = 128, c->max_seq_len = 1024;
        c->n_shared_experts = 1, c->d_ff_shared = 1005;
    } else {
        return mo_errorf("unknown preset '%s'; the presets are tiny, small, bench-S and fine-S", name);
    }
    return 0;
}

// ---------------------------------------------------------------------------- set by name

// `name` with dashes turned to underscores, or NULL if no field has that name.
static const field *find_field(const char *name) {
    char buf[64];
    size_t n = strlen(name);
    if (n >= sizeof buf) return NULL;
    for (size_t i = 0; i <= n; i++) buf[i] = name[i] == '-' ? '_' : name[i];
    for (int i = 0; i < N_FIELDS; i++)
        if (!strcmp(fields[i].name, buf)) return &fields[i];
    return NULL;
}

int config_is_field(const char *name) { return find_field(name) != NULL; }

static int parse_int(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < -2147483647L || v > 2147483647L) return -1;
    *out = (int)v;
    return 0;
}

int config_set(mo_config *c, const char *name, const char *value) {
    const field *f = find_field(name);
    if (!f) return mo_errorf("unknown config field '%s'; run 'monolith init --help' for the list", name);
    switch (f->type) {
    case F_INT:
        if (parse_int(value, int_at(c, f)))
            return mo_errorf("%s: '%s' is not a whole number", f->name, value);
        return 0;
    case F_REAL: {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(v))
            return mo_errorf("%s: '%s' is not a finite number", f->name, value);
        *real_at(c, f) = v;
        return 0;
    }
    case F_LAYERS: {
        int n = 0;
        const char *p = value;
        while (*p) {
            if ((*p != '0' && *p != '1') || (p[1] && (p[1] != ',' || !p[2])))
                return mo_errorf("moe_layers: '%s' is not a comma list of 0 (dense) and 1 (MoE), one per layer",
                                 value);
            if (n == MO_MAX_LAYERS) return mo_errorf("moe_layers: more than %d layers", MO_MAX_LAYERS);
            c->moe_layers[n++] = *p - '0';
            p += p[1] ? 2 : 1;
        }
        if (n == 0) return mo_errorf("moe_layers: empty; give one 0 or 1 per layer, e.g. 1,0");
        c->n_moe_layers_given = n;
        return 0;
    }
    case F_ENUM: {
        int i = enum_index(f->names, value);
        if (i < 0) return mo_errorf("%s: '%s' is not one of %s or %s", f->name, value, f->names[0], f->names[1]);
        *int_at(c, f) = i;
        return 0;
    }
    }
    return -1;
}

// ---------------------------------------------------------------------------- validation

int config_n_moe_layers(const mo_config *c) {
    int n = 0;
    for (int l = 0; l < c->n_layers && l < MO_MAX_LAYERS; l++) n += c->moe_layers[l] == 1;
    return n;
}

int config_validate(const mo_config *c) {
#define NEED(cond, ...)                          \
    do {                                         \
        if (!(cond)) return mo_errorf(__VA_ARGS__); \
    } while (0)
    NEED(c->vocab_size >= 2, "vocab_size %d: must be at least 2", c->vocab_size);
    NEED(c->d_model >= 1, "d_model %d: must be positive", c->d_model);
    NEED(c->n_layers >= 1 && c->n_layers <= MO_MAX_LAYERS, "n_layers %d: must be between 1 and %d", c->n_layers,
         MO_MAX_LAYERS);
    NEED(c->n_heads >= 1, "n_heads %d: must be positive", c->n_heads);
    NEED(c->n_kv_heads >= 1 && c->n_heads % c->n_kv_heads == 0,
         "n_kv_heads %d does not divide n_heads %d (each kv head serves n_heads/n_kv_heads query heads)",
         c->n_kv_heads, c->n_heads);
    NEED(c->head_dim >= 2 && c->head_dim % 2 == 0,
         "head_dim %d: must be even and positive (RoPE rotates pairs)", c->head_dim);
    NEED(c->n_moe_layers_given == c->n_layers, "moe_layers has %d entries but n_layers is %d; give one 0/1 per layer",
         c->n_moe_layers_given, c->n_layers);
    int n_moe = 0, n_dense = 0;
    for (int l = 0; l < c->n_layers; l++) {
        NEED(c->moe_layers[l] == 0 || c->moe_layers[l] == 1, "moe_layers[%d] is %d: must be 0 (dense) or 1 (MoE)", l,
             c->moe_layers[l]);
        n_moe += c->moe_layers[l], n_dense += !c->moe_layers[l];
    }
    NEED(c->n_experts >= 0 && c->top_k >= 0, "n_experts %d, top_k %d: must not be negative", c->n_experts, c->top_k);
    NEED(c->n_experts <= 65536, "n_experts %d: at most 65536", c->n_experts);
    if (n_moe) {
        NEED(c->n_experts >= 1, "n_experts %d: a MoE layer needs at least one expert", c->n_experts);
        NEED(c->top_k >= 1, "top_k %d: must be at least 1", c->top_k);
        NEED(c->top_k <= c->n_experts, "top_k %d is larger than n_experts %d", c->top_k, c->n_experts);
        NEED(c->d_ff >= 1, "d_ff %d: must be positive", c->d_ff);
    }
    NEED(c->d_ff >= 0, "d_ff %d: must not be negative", c->d_ff);
    NEED(c->n_shared_experts >= 0, "n_shared_experts %d: must not be negative", c->n_shared_experts);
    if (c->n_shared_experts > 0)
        NEED(c->d_ff_shared >= 1, "d_ff_shared %d: must be positive when n_shared_experts is %d", c->d_ff_shared,
             c->n_shared_experts);
    else
        NEED(c->d_ff_shared == 0, "d_ff_shared %d: must be 0 when n_shared_experts is 0", c->d_ff_shared);
    if (c->n_shared_experts > 0)
        NEED(n_moe > 0, "n_shared_experts %d: shared experts live in MoE layers and moe_layers has none",
             c->n_shared_experts);
    if (n_dense)
        NEED(c->d_ff_dense >= 1, "d_ff_dense %d: must be positive since moe_layers has a dense layer", c->d_ff_dense);
    else
        NEED(c->d_ff_dense == 0, "d_ff_dense %d: must be 0 when no layer is dense (moe_layers is all 1)",
             c->d_ff_dense);
    NEED(c->max_seq_len >= 1, "max_seq_len %d: must be positive", c->max_seq_len);
    NEED(isfinite(c->rope_theta) && c->rope_theta > 1.0, "rope_theta %g: must be a finite number above 1",
         c->rope_theta);
    NEED(isfinite(c->norm_eps) && c->norm_eps > 0 && c->norm_eps < 1, "norm_eps %g: must be in (0, 1)", c->norm_eps);
    NEED(c->norm_topk == 0 || c->norm_topk == 1, "norm_topk %d: must be 0 or 1", c->norm_topk);
    NEED(isfinite(c->aux_coef) && c->aux_coef >= 0, "aux_coef %g: must be finite and not negative", c->aux_coef);
    NEED(isfinite(c->z_coef) && c->z_coef >= 0, "z_coef %g: must be finite and not negative", c->z_coef);
    NEED(c->router_score == MO_SCORE_SOFTMAX || c->router_score == MO_SCORE_SIGMOID,
         "router_score %d: must be softmax or sigmoid", c->router_score);
    NEED(c->balance == MO_BALANCE_AUX || c->balance == MO_BALANCE_BIAS, "balance %d: must be aux or bias", c->balance);
    NEED(isfinite(c->routed_scale) && c->routed_scale > 0, "routed_scale %g: must be finite and positive",
         c->routed_scale);
    NEED(isfinite(c->bias_rate) && c->bias_rate >= 0, "bias_rate %g: must be finite and not negative", c->bias_rate);
    NEED(isfinite(c->capacity_factor) && c->capacity_factor >= 0,
         "capacity_factor %g: must be finite and not negative (0: dropless)", c->capacity_factor);
    NEED(isfinite(c->router_noise) && c->router_noise >= 0, "router_noise %g: must be finite and not negative",
         c->router_noise);
    NEED(isfinite(c->router_top_p) && c->router_top_p >= 0 && c->router_top_p <= 1,
         "router_top_p %g: must be in [0, 1] (0: off)", c->router_top_p);
    NEED(c->router_top_p == 0 || c->router_score == MO_SCORE_SOFTMAX,
         "router_top_p %g needs router_score softmax (top-p sums probabilities; sigmoid scores are not)",
         c->router_top_p);
    // Sizes whose products index the arenas must stay within what size_t and int hold.
    NEED((double)c->vocab_size * c->d_model < 2e9, "vocab_size %d x d_model %d: embedding table too large",
         c->vocab_size, c->d_model);
    NEED((double)c->n_heads * c->head_dim < 1e6 && (double)c->d_ff * c->d_model < 2e9,
         "n_heads x head_dim or d_ff x d_model: too large");
#undef NEED
    return 0;
}

int config_finalize(mo_config *c) {
    if (c->n_layers < 1 || c->n_layers > MO_MAX_LAYERS)
        return mo_errorf("n_layers %d: must be between 1 and %d", c->n_layers, MO_MAX_LAYERS);
    if (c->head_dim == 0) {
        if (c->n_heads < 1 || c->d_model % c->n_heads)
            return mo_errorf("n_heads %d does not divide d_model %d; change one or set head_dim", c->n_heads,
                             c->d_model);
        c->head_dim = c->d_model / c->n_heads;
    }
    if (c->n_moe_layers_given == 0) {
        for (int l = 0; l < c->n_layers; l++) c->moe_layers[l] = 1;
        c->n_moe_layers_given = c->n_layers;
    }
    int has_dense = 0;
    for (int l = 0; l < c->n_layers && l < c->n_moe_layers_given; l++) has_dense |= c->moe_layers[l] == 0;
    if (has_dense && c->d_ff_dense == 0) c->d_ff_dense = c->d_ff;
    if (c->n_shared_experts > 0 && c->d_ff_shared == 0) c->d_ff_shared = c->d_ff;
    return config_validate(c);
}

int config_build(mo_config *c, const char *preset, const config_override *ov, int n) {
    if (preset && config_preset(c, preset)) return -1;
    for (int i = 0; i < n; i++)
        if (config_set(c, ov[i].name, ov[i].value)) {
            char why[512], flag[64];
            snprintf(why, sizeof why, "%s", mo_error());
            snprintf(flag, sizeof flag, "%s", ov[i].name);
            for (char *p = flag; *p; p++)
                if (*p == '_') *p = '-';
            return mo_errorf("--%s: %s", flag, why);
        }
    return config_finalize(c);
}

// ---------------------------------------------------------------------------- HDF5

int config_write(hid_t loc, const char *group, const mo_config *c) {
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        int rc = 0;
        if (f->type == F_INT) {
            rc = h5_attr_set_i64(loc, group, f->name, int_of(c, f));
        } else if (f->type == F_REAL) {
            rc = h5_attr_set_f64(loc, group, f->name, real_of(c, f));
        } else if (f->type == F_ENUM) {
            rc = h5_attr_set_str(loc, group, f->name, f->names[int_of(c, f)]);
        } else {
            int64_t v[MO_MAX_LAYERS];
            for (int l = 0; l < c->n_layers; l++) v[l] = c->moe_layers[l];
            rc = h5_attr_set_i64s(loc, group, f->name, v, c->n_layers);
        }
        if (rc) return -1;
    }
    return 0;
}

// The HDF5 type class of attribute `name` of `group`, or H5T_NO_CLASS.
static H5T_class_t attr_class(hid_t loc, const char *group, const char *name) {
    hid_t a = H5Aopen_by_name(loc, group, name, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) return H5T_NO_CLASS;
    hid_t t = H5Aget_type(a);
    H5T_class_t cl = H5Tget_class(t);
    H5Tclose(t);
    H5Aclose(a);
    return cl;
}

int config_read(hid_t loc, const char *group, mo_config *c) {
    config_defaults(c);
    const char *file = h5_name(loc);
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        if (!h5_attr_exists(loc, group, f->name)) {
            if (f->optional) continue;  // a file from before the field: its default is what that file meant
            return mo_errorf("%s: /%s has no attribute %s (every config attribute must be present)", file, group,
                             f->name);
        }
        H5T_class_t cl = attr_class(loc, group, f->name);
        if (f->type == F_ENUM) {
            char v[32];
            if (cl != H5T_STRING || h5_attr_get_str(loc, group, f->name, v, sizeof v))
                return mo_errorf("%s: /%s/%s must be a string attribute (%s or %s)", file, group, f->name,
                                 f->names[0], f->names[1]);
            int i = enum_index(f->names, v);
            if (i < 0)
                return mo_errorf("%s: /%s/%s is '%s', not %s or %s", file, group, f->name, v, f->names[0],
                                 f->names[1]);
            *int_at(c, f) = i;
            continue;
        }
        if (f->type != F_REAL && cl != H5T_INTEGER)
            return mo_errorf("%s: /%s/%s must be an integer attribute (int64), not a %s", file, group, f->name,
                             cl == H5T_FLOAT ? "real" : "non-number");
        if (f->type == F_REAL && cl != H5T_FLOAT && cl != H5T_INTEGER)
            return mo_errorf("%s: /%s/%s must be a real attribute (float64)", file, group, f->name);
        if (f->type == F_INT) {
            int64_t v;
            if (h5_attr_get_i64(loc, group, f->name, &v)) return -1;
            if (v < -2147483647LL || v > 2147483647LL)
                return mo_errorf("%s: /%s/%s = %lld is out of range", file, group, f->name, (long long)v);
            *int_at(c, f) = (int)v;
        } else if (f->type == F_REAL) {
            if (h5_attr_get_f64(loc, group, f->name, real_at(c, f))) return -1;
        }
    }
    // moe_layers last: its length is n_layers, read above.
    if (c->n_layers < 1 || c->n_layers > MO_MAX_LAYERS)
        return mo_errorf("%s: /%s: n_layers %d must be between 1 and %d", file, group, c->n_layers, MO_MAX_LAYERS);
    int64_t v[MO_MAX_LAYERS];
    if (h5_attr_get_i64s(loc, group, "moe_layers", v, c->n_layers)) return -1;
    for (int l = 0; l < c->n_layers; l++) c->moe_layers[l] = (int)v[l];
    c->n_moe_layers_given = c->n_layers;
    if (config_validate(c)) {
        char why[512];
        snprintf(why, sizeof why, "%s", mo_error());
        return mo_errorf("%s: /%s: %s", file, group, why);
    }
    return 0;
}

void config_print(FILE *out, const mo_config *c) {
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &fields[i];
        fprintf(out, "  %-18s ", f->name);
        if (f->type == F_INT) {
            fprintf(out, "%d\n", int_of(c, f));
        } else if (f->type == F_REAL) {
            fprintf(out, "%g\n", real_of(c, f));
        } else if (f->type == F_ENUM) {
            fprintf(out, "%s\n", f->names[int_of(c, f)]);
        } else {
            for (int l = 0; l < c->n_layers; l++) fprintf(out, "%s%d", l ? "," : "", c->moe_layers[l]);
            fprintf(out, "\n");
        }
    }
}

void config_routing_str(const mo_config *c, char *buf, size_t cap) {
    if (!config_n_moe_layers(c)) {
        snprintf(buf, cap, "none (no MoE layer)");
        return;
    }
    size_t n = 0;
#define PUT(...) (n += (size_t)snprintf(buf + (n < cap ? n : cap), n < cap ? cap - n : 0, __VA_ARGS__))
    if (c->router_top_p > 0) PUT("%s top-p %g (at most %d of %d)", score_names[c->router_score], c->router_top_p,
                                 c->top_k, c->n_experts);
    else PUT("%s top-%d of %d", score_names[c->router_score], c->top_k, c->n_experts);
    if (c->balance == MO_BALANCE_BIAS) PUT(", bias balancing (rate %g)", c->bias_rate);
    else PUT(", aux loss %g", c->aux_coef);
    if (c->routed_scale != 1.0) PUT(", gates x %g", c->routed_scale);
    if (c->capacity_factor > 0) PUT(", capacity %g (drops)", c->capacity_factor);
    else PUT(", dropless");
    if (c->router_noise > 0) PUT(", training noise %g", c->router_noise);
    if (c->n_shared_experts) PUT(", %d shared", c->n_shared_experts);
#undef PUT
}
