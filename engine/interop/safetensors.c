// safetensors.c: the safetensors reader and writer (see safetensors.h). The header is
// parsed with cJSON; every number in it is checked to be a whole number within the file
// before it sizes anything.
#include "engine/interop/safetensors.h"

#include "engine/base/atomic_file.h"
#include "engine/base/error.h"
#include "engine/base/file.h"
#include "kernels/bf16.h"
#include "kernels/f16.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_DTYPE_COUNT] = {
    [ST_F32] = {"F32", 4},  [ST_F16] = {"F16", 2},   [ST_BF16] = {"BF16", 2},        [ST_F64] = {"F64", 8},
    [ST_I64] = {"I64", 8},  [ST_I32] = {"I32", 4},   [ST_I16] = {"I16", 2},          [ST_I8] = {"I8", 1},
    [ST_U64] = {"U64", 8},  [ST_U32] = {"U32", 4},   [ST_U16] = {"U16", 2},          [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype d) { return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].name : "?"; }
size_t st_dtype_size(st_dtype d) { return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].size : 0; }

// A JSON number that is a whole number in [0, 2^53] (beyond that a double is not exact).
static int whole_number(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return -1;
    *v = (uint64_t)d;
    return 0;
}

static int by_begin(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

// One header entry into t. Returns 0 or -1 naming origin and the tensor.
static int parse_entry(const cJSON *e, uint64_t data_len, const char *origin, st_tensor *t) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return mo_errorf("%s: header entry '%s' is not an object", origin, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return mo_errorf("%s: tensor '%s' has no dtype string", origin, name);
    t->dtype = ST_DTYPE_COUNT;
    for (int d = 0; d < ST_DTYPE_COUNT; d++)
        if (!strcmp(dt->valuestring, dtypes[d].name)) t->dtype = (st_dtype)d;
    if (t->dtype == ST_DTYPE_COUNT)
        return mo_errorf("%s: tensor '%s' has unknown dtype '%.32s'", origin, name, dt->valuestring);
    if (!cJSON_IsArray(sh)) return mo_errorf("%s: tensor '%s' has no shape array", origin, name);
    int rank = cJSON_GetArraySize(sh);
    if (rank > ST_MAX_DIMS) return mo_errorf("%s: tensor '%s' has %d dimensions (at most %d)", origin, name, rank, ST_MAX_DIMS);
    t->rank = rank;
    uint64_t numel = 1;
    int overflow = 0, k = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, sh) {
        uint64_t v;
        if (whole_number(x, &v)) return mo_errorf("%s: tensor '%s': shape entry %d is not a size", origin, name, k);
        t->shape[k++] = (int64_t)v;
        if (v && numel > (UINT64_MAX >> 4) / v) overflow = 1;
        else numel *= v;
    }
    uint64_t b, en;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || whole_number(cJSON_GetArrayItem(of, 0), &b) ||
        whole_number(cJSON_GetArrayItem(of, 1), &en) || b > en)
        return mo_errorf("%s: tensor '%s' needs data_offsets [begin, end] with 0 <= begin <= end", origin, name);
    if (en > data_len)
        return mo_errorf("%s: tensor '%s' ends at byte %llu of the data, past its end (%llu bytes): the file is "
                         "truncated or corrupt",
                         origin, name, (unsigned long long)en, (unsigned long long)data_len);
    if (overflow || numel * dtypes[t->dtype].size != en - b)
        return mo_errorf("%s: tensor '%s': its shape and dtype %s need %s bytes but data_offsets span %llu", origin,
                         name, dtypes[t->dtype].name, overflow ? "more than 2^60" : "a different number of",
                         (unsigned long long)(en - b));
    t->numel = numel;
    t->begin = b;
    t->end = en;
    t->name = strdup(name);
    return t->name ? 0 : mo_errorf("%s: out of memory", origin);
}

int st_parse_header(st_file *sf, const char *json, size_t n, uint64_t data_len, const char *origin) {
    cJSON *root = cJSON_ParseWithLength(json, n);
    if (!root) return mo_errorf("%s: the header is not valid JSON (near byte %zu of %zu)", origin,
                                (size_t)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0), n);
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        mo_errorf("%s: the header is not a JSON object", origin);
        goto out;
    }
    int count = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) if (!e->string || strcmp(e->string, "__metadata__")) count++;
    sf->t = calloc(count ? (size_t)count : 1, sizeof *sf->t);  // at most one per header byte
    if (!sf->t) {
        mo_errorf("%s: out of memory for %d tensors", origin, count);
        goto out;
    }
    cJSON_ArrayForEach(e, root) {
        if (!e->string) continue;
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                mo_errorf("%s: __metadata__ is not an object", origin);
                goto out;
            }
            continue;
        }
        if (parse_entry(e, data_len, origin, &sf->t[sf->n])) goto out;
        sf->n++;
    }
    // Duplicate names (JSON allows them; cJSON keeps both), then overlaps in file order.
    const st_tensor **names = malloc((sf->n ? (size_t)sf->n : 1) * sizeof *names);
    if (!names) {
        mo_errorf("%s: out of memory", origin);
        goto out;
    }
    for (int i = 0; i < sf->n; i++) names[i] = &sf->t[i];
    qsort(names, (size_t)sf->n, sizeof *names, by_name);
    for (int i = 0; i + 1 < sf->n; i++)
        if (!strcmp(names[i]->name, names[i + 1]->name)) {
            mo_errorf("%s: tensor '%s' is named twice in the header", origin, names[i]->name);
            free(names);
            goto out;
        }
    free(names);
    qsort(sf->t, (size_t)sf->n, sizeof *sf->t, by_begin);
    uint64_t end = 0;
    const char *prev = NULL;
    for (int i = 0; i < sf->n; i++) {
        const st_tensor *t = &sf->t[i];
        if (t->begin == t->end) continue;  // empty tensors take no bytes
        if (t->begin < end) {
            mo_errorf("%s: tensors '%s' and '%s' overlap (bytes %llu..%llu of the data)", origin, prev, t->name,
                      (unsigned long long)t->begin, (unsigned long long)end);
            goto out;
        }
        end = t->end;
        prev = t->name;
    }
    sf->data_len = data_len;
    rc = 0;
out:
    cJSON_Delete(root);
    return rc;
}

static int open_file(st_file *sf, const char *path) {
    snprintf(sf->path, sizeof sf->path, "%s", path);
    sf->f = file_open_regular(path);  // a FIFO would block, a device never end
    if (!sf->f) return -1;
    struct stat st;
    if (fstat(fileno(sf->f), &st)) return mo_errorf("%s: cannot stat: %s", path, strerror(errno));
    uint64_t size = (uint64_t)st.st_size;
    uint8_t len8[8];
    if (size < 8 || fread(len8, 1, 8, sf->f) != 8)
        return mo_errorf("%s: %llu bytes, shorter than the 8-byte header length of a safetensors file", path,
                         (unsigned long long)size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n > size - 8)
        return mo_errorf("%s: the header claims %llu bytes but the file has %llu after the length: truncated, or not "
                         "a safetensors file",
                         path, (unsigned long long)n, (unsigned long long)(size - 8));
    if (n > ST_MAX_HEADER)
        return mo_errorf("%s: the header claims %llu bytes, over the format's limit of 100 MB", path,
                         (unsigned long long)n);
    char *json = malloc(n ? n : 1);
    if (!json) return mo_errorf("%s: out of memory for a %llu-byte header", path, (unsigned long long)n);
    if (fread(json, 1, n, sf->f) != n) {
        free(json);
        return mo_errorf("%s: cannot read the header: %s", path, strerror(errno));
    }
    sf->data_start = 8 + n;
    int rc = st_parse_header(sf, json, n, size - 8 - n, path);
    free(json);
    return rc;
}

int st_open(st_file *sf, const char *path) {
    memset(sf, 0, sizeof *sf);
    if (open_file(sf, path) == 0) return 0;
    st_close(sf);  // a refused file leaves nothing open or allocated (the message stays)
    return -1;
}

void st_close(st_file *sf) {
    if (sf->f) fclose(sf->f);
    for (int i = 0; i < sf->n; i++) free(sf->t[i].name);
    free(sf->t);
    memset(sf, 0, sizeof *sf);
}

int st_find(const st_file *sf, const char *name) {
    for (int i = 0; i < sf->n; i++)
        if (!strcmp(sf->t[i].name, name)) return i;
    return -1;
}

#define ST_CHUNK 16384  // elements converted per read

int st_check_readable(const st_file *sf, int i) {
    const st_tensor *t = &sf->t[i];
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return mo_errorf("%s: tensor '%s' is %s; monolith reads F32, F16 and BF16 (convert it first)", sf->path,
                         t->name, dtypes[t->dtype].name);
    return 0;
}

int st_read_f32(const st_file *sf, int i, float *dst) {
    const st_tensor *t = &sf->t[i];
    if (st_check_readable(sf, i)) return -1;
    if (fseeko(sf->f, (off_t)(sf->data_start + t->begin), SEEK_SET))
        return mo_errorf("%s: cannot seek to tensor '%s': %s", sf->path, t->name, strerror(errno));
    size_t es = dtypes[t->dtype].size;
    uint16_t buf[ST_CHUNK];
    for (uint64_t k = 0; k < t->numel;) {
        size_t m = t->numel - k < ST_CHUNK ? (size_t)(t->numel - k) : ST_CHUNK;
        void *into = es == 4 ? (void *)(dst + k) : (void *)buf;
        if (fread(into, es, m, sf->f) != m)
            return mo_errorf("%s: cannot read tensor '%s': the file is truncated", sf->path, t->name);
        if (t->dtype == ST_F16) f16_to_f32(dst + k, buf, m);
        if (t->dtype == ST_BF16) bf16_to_f32(dst + k, buf, m);
        k += m;
    }
    for (uint64_t k = 0; k < t->numel; k++)
        if (!isfinite(dst[k]))
            return mo_errorf("%s: tensor '%s' holds %s at element %llu", sf->path, t->name,
                             isnan(dst[k]) ? "NaN" : "an infinity", (unsigned long long)k);
    return 0;
}

static uint64_t entry_numel(const st_entry *e) {
    uint64_t n = 1;
    for (int k = 0; k < e->rank; k++) n *= (uint64_t)e->shape[k];
    return n;
}

uint64_t st_entry_bytes(const st_entry *e, st_dtype d) { return entry_numel(e) * dtypes[d].size; }

// The header JSON, padded with spaces to a multiple of 8 bytes (as the reference writer
// does, so the data starts aligned). NULL with mo_error() on out of memory.
static char *make_header(const st_entry *e, int n, st_dtype dtype, const char *const *metadata, size_t *len) {
    cJSON *root = cJSON_CreateObject(), *meta = NULL;
    int ok = root != NULL;
    if (ok && metadata) {
        ok = (meta = cJSON_AddObjectToObject(root, "__metadata__")) != NULL;
        for (int k = 0; ok && metadata[k]; k += 2) ok = cJSON_AddStringToObject(meta, metadata[k], metadata[k + 1]) != NULL;
    }
    uint64_t off = 0;
    for (int i = 0; ok && i < n; i++) {
        cJSON *t = cJSON_AddObjectToObject(root, e[i].name), *sh, *of;
        ok = t && cJSON_AddStringToObject(t, "dtype", dtypes[dtype].name) && (sh = cJSON_AddArrayToObject(t, "shape")) &&
             (of = cJSON_AddArrayToObject(t, "data_offsets"));
        for (int k = 0; ok && k < e[i].rank; k++) ok = cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)e[i].shape[k]));
        uint64_t end = off + st_entry_bytes(&e[i], dtype);
        ok = ok && cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off)) &&
             cJSON_AddItemToArray(of, cJSON_CreateNumber((double)end));
        off = end;
    }
    char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!s) {
        mo_errorf("out of memory for a safetensors header");
        return NULL;
    }
    size_t l = strlen(s), padded = (l + 7) / 8 * 8;
    char *p = realloc(s, padded + 1);
    if (!p) {
        free(s);
        mo_errorf("out of memory for a safetensors header");
        return NULL;
    }
    memset(p + l, ' ', padded - l);
    p[padded] = 0;
    *len = padded;
    return p;
}

static int write_data(FILE *f, const st_entry *e, st_dtype dtype) {
    uint64_t n = entry_numel(e);
    if (dtype == ST_F32) return fwrite(e->data, 4, n, f) == n ? 0 : -1;
    uint16_t buf[ST_CHUNK];
    for (uint64_t k = 0; k < n;) {
        size_t m = n - k < ST_CHUNK ? (size_t)(n - k) : ST_CHUNK;
        if (dtype == ST_F16) f16_from_f32(buf, e->data + k, m);
        else bf16_from_f32(buf, e->data + k, m);
        if (fwrite(buf, 2, m, f) != m) return -1;
        k += m;
    }
    return 0;
}

int st_write(const char *path, const st_entry *e, int n, st_dtype dtype, const char *const *metadata) {
    if (dtype != ST_F32 && dtype != ST_F16 && dtype != ST_BF16)
        return mo_errorf("%s: safetensors are written as F32, F16 or BF16, not %s", path, st_dtype_name(dtype));
    size_t hlen;
    char *header = make_header(e, n, dtype, metadata, &hlen);
    if (!header) return mo_errorf("%s: %s", path, mo_error());
    atomic_file a;
    FILE *f = atomic_open(&a, path, "wb");
    if (!f) {
        free(header);
        return -1;
    }
    uint8_t len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (uint8_t)((uint64_t)hlen >> (8 * k));
    int bad = fwrite(len8, 1, 8, f) != 8 || fwrite(header, 1, hlen, f) != hlen;
    free(header);
    for (int i = 0; !bad && i < n; i++) bad = write_data(f, &e[i], dtype);
    return atomic_commit(&a, bad);
}
