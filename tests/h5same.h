// h5same.h: "are these two HDF5 files the same?" for tests: every object of A exists in B
// and vice versa, every dataset has the same type class, shape and bytes (variable-length
// strings compared as strings), and every object has the same attributes with the same
// values. Header-only; returns a message naming the first difference, or NULL.
#ifndef MONOLITH_TESTS_H5SAME_H
#define MONOLITH_TESTS_H5SAME_H

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    hid_t other;
    char msg[1024];
    int n;  // objects visited
} h5same_ctx;

// Reads a dataset or attribute's whole value as bytes (vlen strings: joined with '\n').
static char *h5same_read(hid_t obj, int is_attr, size_t *len) {
    hid_t ft = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    hid_t sp = is_attr ? H5Aget_space(obj) : H5Dget_space(obj);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    char *out = NULL;
    *len = 0;
    if (H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(ft));  // libhdf5 converts no UTF-8 <-> ASCII
        char **s = calloc((size_t)n + 1, sizeof *s);
        herr_t rc = is_attr ? H5Aread(obj, mt, s) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, s);
        if (rc < 0) {  // unreadable: never equal to anything
            free(s);
            H5Tclose(mt), H5Sclose(sp), H5Tclose(ft);
            return NULL;
        }
        size_t cap = 1;
        for (hssize_t i = 0; rc >= 0 && i < n; i++) cap += (s[i] ? strlen(s[i]) : 0) + 1;
        out = calloc(cap, 1);
        for (hssize_t i = 0; rc >= 0 && i < n; i++) {
            size_t l = s[i] ? strlen(s[i]) : 0;
            memcpy(out + *len, s[i] ? s[i] : "", l);
            *len += l;
            out[(*len)++] = '\n';
            H5free_memory(s[i]);
        }
        free(s);
        H5Tclose(mt);
    } else {
        hid_t mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
        size_t sz = H5Tget_size(mt) * (size_t)n;
        out = calloc(sz + 1, 1);
        herr_t rc = is_attr ? H5Aread(obj, mt, out) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
        if (rc < 0) free(out), out = NULL;
        *len = sz;
        H5Tclose(mt);
    }
    H5Sclose(sp);
    H5Tclose(ft);
    return out;
}

static int h5same_attrs(hid_t a, hid_t b, const char *name, h5same_ctx *c) {
    H5O_info_t ia, ib;
    H5Oget_info2(a, &ia, H5O_INFO_NUM_ATTRS);
    H5Oget_info2(b, &ib, H5O_INFO_NUM_ATTRS);
    if (ia.num_attrs != ib.num_attrs) {
        snprintf(c->msg, sizeof c->msg, "%s: %llu attributes vs %llu", name, (unsigned long long)ia.num_attrs,
                 (unsigned long long)ib.num_attrs);
        return 1;
    }
    for (hsize_t i = 0; i < ia.num_attrs; i++) {
        hid_t x = H5Aopen_by_idx(a, ".", H5_INDEX_NAME, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT);
        char an[256];
        H5Aget_name(x, sizeof an, an);
        if (H5Aexists(b, an) <= 0) {
            snprintf(c->msg, sizeof c->msg, "%s: attribute %s only in the first file", name, an);
            H5Aclose(x);
            return 1;
        }
        hid_t y = H5Aopen(b, an, H5P_DEFAULT);
        size_t la, lb;
        char *va = h5same_read(x, 1, &la), *vb = h5same_read(y, 1, &lb);
        int diff = !va || !vb || la != lb || memcmp(va, vb, la);
        free(va), free(vb);
        H5Aclose(x), H5Aclose(y);
        if (diff) {
            snprintf(c->msg, sizeof c->msg, "%s: attribute %s differs", name, an);
            return 1;
        }
    }
    return 0;
}

static herr_t h5same_visit(hid_t loc, const char *name, const H5O_info_t *info, void *op) {
    h5same_ctx *c = op;
    c->n++;
    if (H5Lexists(c->other, name, H5P_DEFAULT) <= 0 && strcmp(name, ".")) {
        snprintf(c->msg, sizeof c->msg, "/%s only in the first file", name);
        return 1;
    }
    hid_t a = H5Oopen(loc, name, H5P_DEFAULT), b = H5Oopen(c->other, name, H5P_DEFAULT);
    int bad = h5same_attrs(a, b, name, c);
    if (!bad && info->type == H5O_TYPE_DATASET) {
        size_t la, lb;
        hid_t sa = H5Dget_space(a), sb = H5Dget_space(b);
        hsize_t da[8] = {0}, db[8] = {0};
        int ra = H5Sget_simple_extent_dims(sa, da, NULL), rb = H5Sget_simple_extent_dims(sb, db, NULL);
        H5Sclose(sa), H5Sclose(sb);
        hid_t ta = H5Dget_type(a), tb = H5Dget_type(b);
        int same_type = H5Tget_class(ta) == H5Tget_class(tb) && H5Tget_size(ta) == H5Tget_size(tb);
        H5Tclose(ta), H5Tclose(tb);
        if (ra != rb || memcmp(da, db, sizeof da) || !same_type) {
            snprintf(c->msg, sizeof c->msg, "/%s: shape or type differs", name);
            bad = 1;
        } else {
            char *va = h5same_read(a, 0, &la), *vb = h5same_read(b, 0, &lb);
            if (!va || !vb || la != lb || memcmp(va, vb, la)) {
                snprintf(c->msg, sizeof c->msg, "/%s: values differ", name);
                bad = 1;
            }
            free(va), free(vb);
        }
    }
    H5Oclose(a), H5Oclose(b);
    return bad;
}

// NULL when files A and B hold the same objects, attributes and values; else a message
// (a static buffer).
static const char *h5same(const char *pa, const char *pb) {
    static char msg[1100];
    hid_t a = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT), b = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (a < 0 || b < 0) {
        snprintf(msg, sizeof msg, "cannot open %s or %s", pa, pb);
        return msg;
    }
    h5same_ctx ab = {.other = b}, ba = {.other = a};
    herr_t r1 = H5Ovisit2(a, H5_INDEX_NAME, H5_ITER_INC, h5same_visit, &ab, H5O_INFO_BASIC);
    herr_t r2 = r1 ? 0 : H5Ovisit2(b, H5_INDEX_NAME, H5_ITER_INC, h5same_visit, &ba, H5O_INFO_BASIC);
    H5Fclose(a), H5Fclose(b);
    if (r1) return snprintf(msg, sizeof msg, "%s", ab.msg), msg;
    if (r2) return snprintf(msg, sizeof msg, "(second vs first) %s", ba.msg), msg;
    return NULL;
}

#endif
