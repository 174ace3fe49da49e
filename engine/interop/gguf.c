// gguf.c: the GGUF container, read with bounds checks and written atomically.
#include "engine/interop/gguf.h"

#include "engine/base/atomic_file.h"
#include "engine/base/error.h"
#include "engine/base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const type_names[] = {
    [0] = "F32",      [1] = "F16",     [2] = "Q4_0",    [3] = "Q4_1",    [6] = "Q5_0",    [7] = "Q5_1",
    [8] = "Q8_0",     [9] = "Q8_1",    [10] = "Q2_K",   [11] = "Q3_K",   [12] = "Q4_K",   [13] = "Q5_K",
    [14] = "Q6_K",    [15] = "Q8_K",   [16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S",
    [20] = "IQ4_NL",  [21] = "IQ3_S",  [22] = "IQ2_S",  [23] = "IQ4_XS", [24] = "I8",     [25] = "I16",
    [26] = "I32",     [27] = "I64",    [28] = "F64",    [29] = "IQ1_M",  [30] = "BF16",   [34] = "TQ1_0",
    [35] = "TQ2_0"};

const char *ggml_type_name(uint32_t type) {
    if (type < sizeof type_names / sizeof *type_names && type_names[type]) return type_names[type];
    return "unknown";
}

size_t ggml_type_nbytes(uint32_t type, uint64_t n) {
    if (n > ((uint64_t)1 << 60)) return 0;
    switch (type) {
    case GGML_T_F32: return (size_t)n * 4;
    case GGML_T_F16:
    case GGML_T_BF16: return (size_t)n * 2;
    case GGML_T_Q8_0: return n % 32 ? 0 : (size_t)(n / 32) * 34;
    default: return 0;
    }
}

// Size of a scalar value type, 0 for string/array/unknown.
static size_t scalar_size(uint32_t t) {
    static const size_t sz[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < GGUF_VT_COUNT ? sz[t] : 0;
}

typedef struct {
    const uint8_t *p;
    size_t n, at;
    const char *origin;
} cursor;

static int need(cursor *c, uint64_t k, const char *what) {
    if (k > c->n - c->at)
        return mo_errorf("%s: truncated GGUF: %s needs %llu bytes at offset %zu, the file has %zu left", c->origin,
                         what, (unsigned long long)k, c->at, c->n - c->at);
    return 0;
}

static int rd(cursor *c, void *dst, size_t k, const char *what) {
    if (need(c, k, what)) return -1;
    memcpy(dst, c->p + c->at, k);  // the file is little-endian, as is every machine monolith builds on
    c->at += k;
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) { return rd(c, v, 4, what); }
static int rd_u64(cursor *c, uint64_t *v, const char *what) { return rd(c, v, 8, what); }

// A string: returns its bytes inside the buffer.
static int rd_str(cursor *c, const char **s, uint64_t *len, const char *what) {
    if (rd_u64(c, len, what) || need(c, *len, what)) return -1;
    *s = (const char *)c->p + c->at;
    c->at += *len;
    return 0;
}

static int scalar_value(gguf_kv *kv, uint32_t t, const uint8_t *p) {
    switch (t) {
    case GGUF_VT_UINT8: kv->u = p[0], kv->i = p[0]; break;
    case GGUF_VT_INT8: kv->i = (int8_t)p[0], kv->u = (uint64_t)kv->i; break;
    case GGUF_VT_BOOL: kv->u = kv->i = p[0] != 0; break;
    case GGUF_VT_UINT16: { uint16_t v; memcpy(&v, p, 2); kv->u = v, kv->i = v; } break;
    case GGUF_VT_INT16: { int16_t v; memcpy(&v, p, 2); kv->i = v, kv->u = (uint64_t)v; } break;
    case GGUF_VT_UINT32: { uint32_t v; memcpy(&v, p, 4); kv->u = v, kv->i = v; } break;
    case GGUF_VT_INT32: { int32_t v; memcpy(&v, p, 4); kv->i = v, kv->u = (uint64_t)v; } break;
    case GGUF_VT_UINT64: { uint64_t v; memcpy(&v, p, 8); kv->u = v, kv->i = (int64_t)v; } break;
    case GGUF_VT_INT64: { int64_t v; memcpy(&v, p, 8); kv->i = v, kv->u = (uint64_t)v; } break;
    case GGUF_VT_FLOAT32: { float v; memcpy(&v, p, 4); kv->f = v; } break;
    case GGUF_VT_FLOAT64: { double v; memcpy(&v, p, 8); kv->f = v; } break;
    default: return -1;
    }
    return 0;
}

// A NUL-terminated copy of a name (its length was checked against the buffer).
static const char *keep_name(cursor *c, const char *s, uint64_t len) {
    char *d = malloc(len + 1);
    if (!d) {
        mo_errorf("%s: out of memory for a %llu-byte name", c->origin, (unsigned long long)len);
        return NULL;
    }
    memcpy(d, s, len);
    d[len] = 0;
    return d;
}

static int parse_kv(cursor *c, gguf_kv *kv) {
    const char *k;
    uint64_t klen;
    if (rd_str(c, &k, &klen, "a key")) return -1;
    if (!(kv->key = keep_name(c, k, klen))) return -1;
    if (rd_u32(c, &kv->type, kv->key)) return -1;
    if (kv->type == GGUF_VT_STRING) {  // kept as a NUL-terminated copy
        const char *v;
        if (rd_str(c, &v, &kv->len, kv->key)) return -1;
        return (kv->s = keep_name(c, v, kv->len)) ? 0 : -1;
    }
    if (kv->type == GGUF_VT_ARRAY) {
        if (rd_u32(c, &kv->arr_type, kv->key) || rd_u64(c, &kv->n, kv->key)) return -1;
        kv->raw = c->p + c->at;
        if (kv->arr_type == GGUF_VT_STRING) {
            // Each element is at least its 8-byte length: bound n before allocating offsets.
            if (kv->n > (c->n - c->at) / 8)
                return mo_errorf("%s: key %s claims %llu strings, more than the file holds", c->origin, kv->key,
                                 (unsigned long long)kv->n);
            kv->str_off = malloc((kv->n ? kv->n : 1) * sizeof *kv->str_off);
            if (!kv->str_off) return mo_errorf("%s: out of memory for key %s", c->origin, kv->key);
            for (uint64_t e = 0; e < kv->n; e++) {
                const char *s;
                uint64_t len;
                kv->str_off[e] = (uint64_t)(c->p + c->at - kv->raw);
                if (rd_str(c, &s, &len, kv->key)) return -1;
            }
            return 0;
        }
        size_t es = scalar_size(kv->arr_type);
        if (!es)
            return mo_errorf("%s: key %s is an array of value type %u, which GGUF does not define here (nested "
                             "arrays are not read)",
                             c->origin, kv->key, kv->arr_type);
        if (kv->n > (c->n - c->at) / es) return need(c, (uint64_t)-1, kv->key);
        c->at += kv->n * es;
        return 0;
    }
    size_t es = scalar_size(kv->type);
    if (!es) return mo_errorf("%s: key %s has unknown value type %u", c->origin, kv->key, kv->type);
    if (need(c, es, kv->key)) return -1;
    scalar_value(kv, kv->type, c->p + c->at);
    c->at += es;
    return 0;
}

static int parse_tensor(cursor *c, gguf_tensor *t) {
    const char *s;
    uint64_t len;
    if (rd_str(c, &s, &len, "a tensor name")) return -1;
    if (!(t->name = keep_name(c, s, len))) return -1;
    if (rd_u32(c, &t->n_dims, t->name)) return -1;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return mo_errorf("%s: tensor %s has %u dimensions (1 to %d allowed)", c->origin, t->name, t->n_dims,
                         GGUF_MAX_DIMS);
    uint64_t numel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if (rd_u64(c, &ne, t->name)) return -1;
        if (ne == 0 || ne > ((uint64_t)1 << 40) || numel > ((uint64_t)1 << 60) / ne)
            return mo_errorf("%s: tensor %s has dimension %u of size %llu", c->origin, t->name, d,
                             (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        numel *= ne;
    }
    if (rd_u32(c, &t->type, t->name) || rd_u64(c, &t->offset, t->name)) return -1;
    t->nbytes = ggml_type_nbytes(t->type, numel);
    if (t->type == GGML_T_Q8_0 && t->ne[0] % 32)
        return mo_errorf("%s: tensor %s is Q8_0 with rows of %lld, not a multiple of 32", c->origin, t->name,
                         (long long)t->ne[0]);
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const gguf_tensor *const *)a)->name, (*(const gguf_tensor *const *)b)->name);
}

int gguf_parse(gguf_file *g, const uint8_t *buf, size_t n, const char *origin) {
    memset(g, 0, sizeof *g);
    snprintf(g->origin, sizeof g->origin, "%s", origin);
    g->buf = buf, g->size = n;
    cursor c = {buf, n, 0, g->origin};
    char magic[4];
    if (rd(&c, magic, 4, "the magic") || memcmp(magic, "GGUF", 4)) {
        mo_errorf("%s: not a GGUF file (it does not start with \"GGUF\")", g->origin);
        goto fail;
    }
    if (rd_u32(&c, &g->version, "the version")) goto fail;
    if (g->version != 2 && g->version != 3) {
        mo_errorf("%s: GGUF version %u; monolith reads versions 2 and 3", g->origin, g->version);
        goto fail;
    }
    if (rd_u64(&c, &g->n_tensors, "the tensor count") || rd_u64(&c, &g->n_kv, "the key count")) goto fail;
    // A key takes at least 12 bytes (length + type) and a tensor at least 28: counts that
    // cannot fit in the file are refused before anything is allocated for them.
    size_t left = n - c.at;
    if (g->n_kv > left / 12 || g->n_tensors > left / 28 || g->n_kv * 12 + g->n_tensors * 28 > left) {
        mo_errorf("%s: the header claims %llu keys and %llu tensors, more than a %zu-byte file can hold "
                  "(truncated or corrupt)",
                  g->origin, (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors, n);
        goto fail;
    }
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->t = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->t);
    if (!g->kv || !g->t) {
        mo_errorf("%s: out of memory for the header", g->origin);
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (parse_kv(&c, &g->kv[i])) goto fail;
    g->alignment = GGUF_DEFAULT_ALIGN;
    const gguf_kv *al = gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != GGUF_VT_UINT32 || al->u == 0 || (al->u & (al->u - 1))) {
            mo_errorf("%s: general.alignment must be a uint32 power of two", g->origin);
            goto fail;
        }
        g->alignment = (size_t)al->u;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (parse_tensor(&c, &g->t[i])) goto fail;
    size_t data_off = (c.at + g->alignment - 1) / g->alignment * g->alignment;
    if (g->n_tensors && data_off > n) {
        mo_errorf("%s: truncated GGUF: the tensor data would start at %zu, past the end (%zu bytes)", g->origin,
                  data_off, n);
        goto fail;
    }
    const gguf_tensor **byoff = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof *byoff);
    if (!byoff) {
        mo_errorf("%s: out of memory for the header", g->origin);
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->t[i];
        if (t->offset % g->alignment) {
            mo_errorf("%s: tensor %s has offset %llu, not a multiple of the alignment %zu", g->origin, t->name,
                      (unsigned long long)t->offset, g->alignment);
            goto fail_byoff;
        }
        if (t->nbytes && (t->offset > n - data_off || t->nbytes > n - data_off - t->offset)) {
            mo_errorf("%s: tensor %s (%zu bytes at offset %llu) ends past the end of the file (truncated or corrupt)",
                      g->origin, t->name, t->nbytes, (unsigned long long)t->offset);
            goto fail_byoff;
        }
        if (t->nbytes) t->data = buf + data_off + t->offset;
        byoff[i] = t;
    }
    qsort(byoff, g->n_tensors, sizeof *byoff, cmp_name);
    for (uint64_t i = 0; i + 1 < g->n_tensors; i++)
        if (!strcmp(byoff[i]->name, byoff[i + 1]->name)) {
            mo_errorf("%s: tensor %s appears twice", g->origin, byoff[i]->name);
            goto fail_byoff;
        }
    qsort(byoff, g->n_tensors, sizeof *byoff, cmp_offset);
    for (uint64_t i = 0; i + 1 < g->n_tensors; i++)
        if (byoff[i]->nbytes && byoff[i]->offset + byoff[i]->nbytes > byoff[i + 1]->offset) {
            mo_errorf("%s: tensors %s and %s overlap", g->origin, byoff[i]->name, byoff[i + 1]->name);
            goto fail_byoff;
        }
    free(byoff);
    return 0;
fail_byoff:
    free(byoff);
fail:;
    char keep[sizeof g->origin];
    memcpy(keep, g->origin, sizeof keep);
    gguf_close(g);
    memcpy(g->origin, keep, sizeof keep);
    return -1;
}

int gguf_open(gguf_file *g, const char *path) {
    memset(g, 0, sizeof *g);
    size_t n;
    int fd = file_open_regular_fd(path, &n);
    if (fd < 0) return -1;
    void *map = n ? mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (n && map == MAP_FAILED) return mo_errorf("%s: cannot map: %s", path, strerror(errno));
    if (gguf_parse(g, map ? map : (const uint8_t *)"", n, path) != 0) {
        if (map) munmap(map, n);
        return -1;
    }
    g->map = map;
    return 0;
}

void gguf_close(gguf_file *g) {
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) free(g->kv[i].str_off), free((char *)g->kv[i].key), free((char *)g->kv[i].s);
    if (g->t)
        for (uint64_t i = 0; i < g->n_tensors; i++) free((char *)g->t[i].name);
    free(g->kv), free(g->t);
    if (g->map) munmap(g->map, g->size);
    memset(g, 0, sizeof *g);
}

const gguf_kv *gguf_find(const gguf_file *g, const char *key) {
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && !strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->t[i].name && !strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}

int gguf_get_int(const gguf_file *g, const char *key, int64_t *v, int required) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return required ? mo_errorf("%s: key %s is missing", g->origin, key) : 0;
    if (kv->type == GGUF_VT_STRING || kv->type == GGUF_VT_ARRAY || kv->type == GGUF_VT_FLOAT32 ||
        kv->type == GGUF_VT_FLOAT64)
        return mo_errorf("%s: key %s is not an integer", g->origin, key);
    if (kv->type == GGUF_VT_UINT64 && kv->u > (uint64_t)INT64_MAX)
        return mo_errorf("%s: key %s is out of range", g->origin, key);
    *v = kv->i;
    return 0;
}

int gguf_get_float(const gguf_file *g, const char *key, double *v, int required) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return required ? mo_errorf("%s: key %s is missing", g->origin, key) : 0;
    if (kv->type != GGUF_VT_FLOAT32 && kv->type != GGUF_VT_FLOAT64)
        return mo_errorf("%s: key %s is not a float", g->origin, key);
    *v = kv->f;
    return 0;
}

const char *gguf_get_str(const gguf_file *g, const char *key, uint64_t *len) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv || kv->type != GGUF_VT_STRING) {
        mo_errorf("%s: key %s is %s", g->origin, key, kv ? "not a string" : "missing");
        return NULL;
    }
    if (len) *len = kv->len;
    return kv->s;
}

const char *gguf_arr_str(const gguf_kv *kv, uint64_t k, uint64_t *len) {
    const uint8_t *p = kv->raw + kv->str_off[k];
    memcpy(len, p, 8);
    return (const char *)p + 8;
}

int64_t gguf_arr_int(const gguf_kv *kv, uint64_t k) {
    gguf_kv v = {0};
    scalar_value(&v, kv->arr_type, kv->raw + k * scalar_size(kv->arr_type));
    return v.i;
}

// ---------------------------------------------------------------- writing

typedef struct {
    char *name;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint32_t type;
    void *data;
    size_t nbytes;
} w_tensor;

struct gguf_writer {
    uint8_t *kv;  // the serialized key-value section
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    w_tensor *t;
    int n_t, cap_t;
};

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w) mo_errorf("out of memory for a GGUF writer");
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n_t; i++) free(w->t[i].name), free(w->t[i].data);
    free(w->t), free(w->kv), free(w);
}

static int put(gguf_writer *w, const void *p, size_t n) {
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        uint8_t *q = realloc(w->kv, cap);
        if (!q) return mo_errorf("out of memory writing GGUF metadata");
        w->kv = q, w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return 0;
}

static int put_u32(gguf_writer *w, uint32_t v) { return put(w, &v, 4); }
static int put_u64(gguf_writer *w, uint64_t v) { return put(w, &v, 8); }
static int put_str(gguf_writer *w, const char *s) {
    size_t n = strlen(s);
    return put_u64(w, n) || put(w, s, n);
}
static int put_key(gguf_writer *w, const char *key, uint32_t type) {
    w->n_kv++;
    return put_str(w, key) || put_u32(w, type);
}

int gguf_w_str(gguf_writer *w, const char *key, const char *s) {
    return put_key(w, key, GGUF_VT_STRING) || put_str(w, s) ? -1 : 0;
}
int gguf_w_u32(gguf_writer *w, const char *key, uint32_t v) {
    return put_key(w, key, GGUF_VT_UINT32) || put_u32(w, v) ? -1 : 0;
}
int gguf_w_f32(gguf_writer *w, const char *key, float v) {
    return put_key(w, key, GGUF_VT_FLOAT32) || put(w, &v, 4) ? -1 : 0;
}
int gguf_w_f64(gguf_writer *w, const char *key, double v) {
    return put_key(w, key, GGUF_VT_FLOAT64) || put(w, &v, 8) ? -1 : 0;
}
int gguf_w_bool(gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    return put_key(w, key, GGUF_VT_BOOL) || put(w, &b, 1) ? -1 : 0;
}
int gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *s, uint64_t n) {
    if (put_key(w, key, GGUF_VT_ARRAY) || put_u32(w, GGUF_VT_STRING) || put_u64(w, n)) return -1;
    for (uint64_t i = 0; i < n; i++)
        if (put_str(w, s[i])) return -1;
    return 0;
}
int gguf_w_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    return put_key(w, key, GGUF_VT_ARRAY) || put_u32(w, GGUF_VT_INT32) || put_u64(w, n) || put(w, v, n * 4) ? -1
                                                                                                              : 0;
}

int gguf_w_tensor(gguf_writer *w, const char *name, int n_dims, const int64_t *ne, uint32_t type, void *data,
                  size_t nbytes) {
    if (w->n_t == w->cap_t) {
        int cap = w->cap_t ? 2 * w->cap_t : 64;
        w_tensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) {
            free(data);
            return mo_errorf("out of memory for GGUF tensor %s", name);
        }
        w->t = t, w->cap_t = cap;
    }
    w_tensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) {
        free(data);
        return mo_errorf("out of memory for GGUF tensor %s", name);
    }
    t->n_dims = n_dims, t->type = type, t->data = data, t->nbytes = nbytes;
    for (int d = 0; d < n_dims; d++) t->ne[d] = ne[d];
    w->n_t++;
    return 0;
}

static size_t align_up(size_t x) { return (x + GGUF_DEFAULT_ALIGN - 1) / GGUF_DEFAULT_ALIGN * GGUF_DEFAULT_ALIGN; }

int gguf_write(gguf_writer *w, const char *path) {
    atomic_file a;
    FILE *f = atomic_open(&a, path, "wb");
    if (!f) return -1;
    static const uint8_t zeros[GGUF_DEFAULT_ALIGN] = {0};
    uint32_t version = 3;
    uint64_t nt = (uint64_t)w->n_t;
    int bad = fwrite("GGUF", 1, 4, f) != 4 || fwrite(&version, 4, 1, f) != 1 || fwrite(&nt, 8, 1, f) != 1 ||
              fwrite(&w->n_kv, 8, 1, f) != 1 || fwrite(w->kv, 1, w->kv_len, f) != w->kv_len;
    size_t off = 0, pos = 24 + w->kv_len;
    for (int i = 0; i < w->n_t && !bad; i++) {
        const w_tensor *t = &w->t[i];
        uint64_t len = strlen(t->name), ne[GGUF_MAX_DIMS];
        uint32_t nd = (uint32_t)t->n_dims;
        for (int d = 0; d < t->n_dims; d++) ne[d] = (uint64_t)t->ne[d];
        uint64_t o = off;
        bad = fwrite(&len, 8, 1, f) != 1 || fwrite(t->name, 1, len, f) != len || fwrite(&nd, 4, 1, f) != 1 ||
              fwrite(ne, 8, nd, f) != nd || fwrite(&t->type, 4, 1, f) != 1 || fwrite(&o, 8, 1, f) != 1;
        pos += 8 + len + 4 + 8 * nd + 4 + 8;
        off = align_up(off + t->nbytes);
    }
    if (!bad) bad = fwrite(zeros, 1, align_up(pos) - pos, f) != align_up(pos) - pos;
    for (int i = 0; i < w->n_t && !bad; i++) {
        const w_tensor *t = &w->t[i];
        size_t pad = align_up(t->nbytes) - t->nbytes;
        bad = fwrite(t->data, 1, t->nbytes, f) != t->nbytes || fwrite(zeros, 1, pad, f) != pad;
    }
    return atomic_commit(&a, bad);
}
