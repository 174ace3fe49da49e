// tokens.c: streaming writer and checked reader of monolith-tokens files (see tokens.h).
#include "data/tokens.h"

#include "engine/base/error.h"
#include "engine/base/h5io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK ((hsize_t)1 << 18)  // tokens per HDF5 chunk and per write
#define SOURCES_MAX 16384

static const char *const split_path[2] = {"train/tokens", "val/tokens"};

struct tokset_writer {
    char *path;
    hid_t f;
    hid_t ds[2];
    hid_t memtype;
    int width;
    int64_t vocab_size, eot_id;
    char *domain, *hash, *sources;
    void *buf[2];  // one chunk per split
    size_t buf_n[2];
    uint64_t written[2], docs[2];
    int split;  // of the current document; -1 before the first
};

static hid_t create_extendible(hid_t f, const char *path, hid_t filetype) {
    hsize_t dims[1] = {0}, maxdims[1] = {H5S_UNLIMITED}, chunk[1] = {CHUNK};
    hid_t space = H5Screate_simple(1, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, chunk);
    H5Pset_fletcher32(dcpl);  // a flipped bit in stored tokens is refused on read (h5io.h)
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(f, path, filetype, space, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(space);
    return ds;
}

tokset_writer *tokset_create(const char *path, const char *domain, const char *tokenizer_hash, int64_t vocab_size,
                             int64_t eot_id, const char *sources) {
    if (vocab_size <= 0 || vocab_size > ((int64_t)1 << 32)) {
        mo_errorf("%s: vocab_size %lld is out of range", path, (long long)vocab_size);
        return NULL;
    }
    if (eot_id < 0 || eot_id >= vocab_size) {
        mo_errorf("%s: the tokenizer has no end-of-text token (<|endoftext|>) to separate documents", path);
        return NULL;
    }
    tokset_writer *w = calloc(1, sizeof *w);
    if (!w) {
        mo_errorf("out of memory");
        return NULL;
    }
    w->f = -1, w->ds[0] = w->ds[1] = -1, w->split = -1;
    w->vocab_size = vocab_size, w->eot_id = eot_id;
    w->width = vocab_size <= 65536 ? 2 : 4;
    w->memtype = w->width == 2 ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT32;
    w->path = strdup(path);
    w->domain = strdup(domain);
    w->hash = strdup(tokenizer_hash);
    size_t sl = strlen(sources ? sources : "");
    w->sources = malloc(sl < SOURCES_MAX ? sl + 1 : SOURCES_MAX + 64);
    w->buf[0] = malloc(CHUNK * (size_t)w->width);
    w->buf[1] = malloc(CHUNK * (size_t)w->width);
    if (!w->path || !w->domain || !w->hash || !w->sources || !w->buf[0] || !w->buf[1]) {
        mo_errorf("out of memory");
        tokset_abort(w);
        return NULL;
    }
    if (sl < SOURCES_MAX) {
        memcpy(w->sources, sources ? sources : "", sl + 1);
    } else {  // cut at a line end
        size_t cut = SOURCES_MAX;
        while (cut > 0 && sources[cut] != '\n') cut--;
        size_t more = 0;
        for (size_t i = cut + 1; i < sl; i++) more += sources[i] == '\n';
        memcpy(w->sources, sources, cut);
        snprintf(w->sources + cut, 64, "\n... and %zu more", more + 1);
    }
    w->f = h5_create(path);
    if (w->f < 0) {
        tokset_abort(w);
        return NULL;
    }
    hid_t ft = w->width == 2 ? H5T_STD_U16LE : H5T_STD_U32LE;
    for (int s = 0; s < 2; s++) {
        w->ds[s] = create_extendible(w->f, split_path[s], ft);
        if (w->ds[s] < 0) {
            mo_errorf("%s: cannot create /%s", path, split_path[s]);
            tokset_abort(w);
            return NULL;
        }
    }
    return w;
}

// Appends the buffered tokens of split s to its dataset.
static int flush_split(tokset_writer *w, int s) {
    if (!w->buf_n[s]) return 0;
    hsize_t old = w->written[s] - w->buf_n[s], add = w->buf_n[s], size = old + add;
    if (H5Dset_extent(w->ds[s], &size) < 0) return mo_errorf("%s: cannot extend /%s", w->path, split_path[s]);
    hid_t fs = H5Dget_space(w->ds[s]);
    hid_t ms = H5Screate_simple(1, &add, NULL);
    herr_t rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, &old, NULL, &add, NULL);
    if (rc >= 0) rc = H5Dwrite(w->ds[s], w->memtype, ms, fs, H5P_DEFAULT, w->buf[s]);
    H5Sclose(ms);
    H5Sclose(fs);
    if (rc < 0) return mo_errorf("%s: cannot write /%s (disk full?)", w->path, split_path[s]);
    w->buf_n[s] = 0;
    return 0;
}

static int push(tokset_writer *w, int s, const uint32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= (uint64_t)w->vocab_size)
            return mo_errorf("%s: token id %u >= vocab_size %lld", w->path, ids[i], (long long)w->vocab_size);
        if (w->width == 2)
            ((uint16_t *)w->buf[s])[w->buf_n[s]] = (uint16_t)ids[i];
        else
            ((uint32_t *)w->buf[s])[w->buf_n[s]] = ids[i];
        w->buf_n[s]++;
        w->written[s]++;
        if (w->buf_n[s] == CHUNK && flush_split(w, s)) return -1;
    }
    return 0;
}

int tokset_begin_document(tokset_writer *w, int split) {
    if (split != TOKSET_TRAIN && split != TOKSET_VAL) return mo_errorf("%s: bad split %d", w->path, split);
    w->split = split;
    w->docs[split]++;
    uint32_t eot = (uint32_t)w->eot_id;
    return push(w, split, &eot, 1);
}

int tokset_append(tokset_writer *w, const uint32_t *ids, size_t n) {
    if (w->split < 0) return mo_errorf("%s: tokset_append before tokset_begin_document", w->path);
    return push(w, w->split, ids, n);
}

uint64_t tokset_written(const tokset_writer *w, int split) { return w->written[split]; }
uint64_t tokset_documents(const tokset_writer *w, int split) { return w->docs[split]; }

static void writer_free(tokset_writer *w) {
    free(w->path), free(w->domain), free(w->hash), free(w->sources), free(w->buf[0]), free(w->buf[1]);
    free(w);
}

void tokset_abort(tokset_writer *w) {
    if (!w) return;
    for (int s = 0; s < 2; s++)
        if (w->ds[s] >= 0) H5Dclose(w->ds[s]);
    if (w->f >= 0) h5_abort(w->f, w->path);
    writer_free(w);
}

int tokset_finish(tokset_writer *w) {
    if (w->written[TOKSET_TRAIN] == 0) {
        mo_errorf("%s: no training documents (the input is empty, or --val-fraction took every document)", w->path);
        tokset_abort(w);
        return -1;
    }
    int rc = flush_split(w, 0) || flush_split(w, 1);
    for (int s = 0; s < 2; s++) {
        if (w->ds[s] >= 0) H5Dclose(w->ds[s]);
        w->ds[s] = -1;
    }
    if (!rc)
        rc = h5_set_format(w->f, TOKSET_FORMAT, TOKSET_VERSION) || h5_attr_set_str(w->f, ".", "domain", w->domain) ||
             h5_attr_set_str(w->f, ".", "tokenizer_hash", w->hash) ||
             h5_attr_set_i64(w->f, ".", "vocab_size", w->vocab_size) ||
             h5_attr_set_str(w->f, ".", "sources", w->sources) ||
             h5_attr_set_i64(w->f, ".", "eot_id", w->eot_id) ||
             h5_attr_set_i64(w->f, ".", "n_documents_train", (int64_t)w->docs[0]) ||
             h5_attr_set_i64(w->f, ".", "n_documents_val", (int64_t)w->docs[1]);
    if (rc) {
        h5_abort(w->f, w->path);
        writer_free(w);
        return -1;
    }
    rc = h5_finish(w->f, w->path);
    writer_free(w);
    return rc ? -1 : 0;
}

// ---------------------------------------------------------------- reading

int tokset_info_read(const char *path, tokset_info *info) {
    memset(info, 0, sizeof *info);
    hid_t f = h5_open(path, TOKSET_FORMAT, TOKSET_VERSION);
    if (f < 0) return -1;
    int rc = -1;
    int64_t docs[2] = {0, 0};
    if (h5_attr_get_str(f, ".", "domain", info->domain, sizeof info->domain) ||
        h5_attr_get_str(f, ".", "tokenizer_hash", info->tokenizer_hash, sizeof info->tokenizer_hash) ||
        h5_attr_get_i64(f, ".", "vocab_size", &info->vocab_size) ||
        h5_attr_get_i64(f, ".", "eot_id", &info->eot_id))
        goto done;
    if (!h5_attr_exists(f, ".", "sources")) {
        mo_errorf("%s: missing attribute /sources", path);
        goto done;
    }
    if (h5_attr_exists(f, ".", "n_documents_train") && h5_attr_get_i64(f, ".", "n_documents_train", &docs[0]))
        goto done;
    if (h5_attr_exists(f, ".", "n_documents_val") && h5_attr_get_i64(f, ".", "n_documents_val", &docs[1]))
        goto done;
    info->n_documents[0] = docs[0] > 0 ? (uint64_t)docs[0] : 0;
    info->n_documents[1] = docs[1] > 0 ? (uint64_t)docs[1] : 0;
    if (info->vocab_size <= 0 || info->vocab_size > ((int64_t)1 << 32)) {
        mo_errorf("%s: vocab_size %lld is out of range", path, (long long)info->vocab_size);
        goto done;
    }
    if (info->eot_id < 0 || info->eot_id >= info->vocab_size) {
        mo_errorf("%s: eot_id %lld is not below vocab_size %lld", path, (long long)info->eot_id,
                  (long long)info->vocab_size);
        goto done;
    }
    for (int s = 0; s < 2; s++) {
        int rank;
        hsize_t dims[H5IO_MAX_RANK];
        if (h5_shape(f, split_path[s], &rank, dims)) goto done;
        if (rank != 1) {
            mo_errorf("%s: /%s must be 1-D, it has rank %d", path, split_path[s], rank);
            goto done;
        }
        hid_t ds = H5Dopen2(f, split_path[s], H5P_DEFAULT);
        hid_t t = H5Dget_type(ds);
        int ok = H5Tget_class(t) == H5T_INTEGER && H5Tget_sign(t) == H5T_SGN_NONE;
        size_t size = H5Tget_size(t);
        H5Tclose(t);
        H5Dclose(ds);
        if (!ok || (size != 2 && size != 4) || (size == 2 && info->vocab_size > 65536)) {
            mo_errorf("%s: /%s must be uint16 (vocab <= 65536) or uint32", path, split_path[s]);
            goto done;
        }
        if (s == 1 && (int)size != info->width) {
            mo_errorf("%s: /train/tokens and /val/tokens have different integer types", path);
            goto done;
        }
        info->width = (int)size;
        info->n_tokens[s] = dims[0];
    }
    rc = 0;
done:
    h5_close(f);
    return rc;
}

int tokset_load_split(const char *path, const tokset_info *info, int split, uint64_t max_bytes, tokset_split *out) {
    memset(out, 0, sizeof *out);
    out->width = info->width;
    uint64_t n = info->n_tokens[split];
    if (n * (uint64_t)out->width > max_bytes)
        return mo_errorf("%s: /%s holds %llu tokens (%.1f GB), more than the loader's in-memory cap of %.1f GB; "
                         "split the corpus into several token sets", path, split_path[split],
                         (unsigned long long)n, (double)n * out->width / 1e9, (double)max_bytes / 1e9);
    hid_t f = h5_open(path, TOKSET_FORMAT, TOKSET_VERSION);
    if (f < 0) return -1;
    out->data = malloc(n ? (size_t)n * (size_t)out->width : 1);
    if (!out->data) {
        h5_close(f);
        return mo_errorf("%s: out of memory loading %llu tokens", path, (unsigned long long)n);
    }
    out->n = n;
    hsize_t dims[1] = {n};
    int rc = n ? h5_read(f, split_path[split], out->width == 2 ? H5T_NATIVE_UINT16 : H5T_NATIVE_UINT32, out->data, 1,
                         dims)
               : 0;
    h5_close(f);
    if (rc) {
        tokset_split_free(out);
        return -1;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint32_t v = tokset_at(out, i);
        if (v >= (uint64_t)info->vocab_size) {
            mo_errorf("%s: /%s[%llu] = %u is not below vocab_size %lld (corrupt file?)", path, split_path[split],
                      (unsigned long long)i, v, (long long)info->vocab_size);
            tokset_split_free(out);
            return -1;
        }
    }
    return 0;
}

void tokset_split_free(tokset_split *s) {
    free(s->data);
    memset(s, 0, sizeof *s);
}
