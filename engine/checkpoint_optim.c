// checkpoint_optim.c: a checkpoint read or written together with its optimizer state
// and the /train group that resumes it (engine/checkpoint.h), for the commands that
// change a training checkpoint's experts.
#include "engine/checkpoint.h"

#include "engine/base/error.h"
#include "engine/base/h5io.h"

#include <stdlib.h>
#include <string.h>

int ckpt_load_optim(const char *path, mo_checkpoint *ck, float **m, float **v) {
    *m = *v = NULL;
    memset(ck, 0, sizeof *ck);
    hid_t f = ckpt_open(path);
    if (f < 0) return -1;
    int rc = ckpt_load_optim_from(f, ck, m, v);
    h5_close(f);
    return rc;
}

static herr_t copy_one_attr(hid_t src, const char *name, const H5A_info_t *info, void *dst_group) {
    (void)info;
    hid_t a = H5Aopen(src, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    // Variable-length values live in the file's global heap, which monolith never reads
    // (libhdf5 trusts its bytes: engine/base/h5io.h); monolith writes none.
    int vlen = H5Tis_variable_str(t) > 0 || H5Tdetect_class(t, H5T_VLEN) > 0;
    size_t sz = H5Tget_size(t) * (size_t)(n > 0 ? n : 1);
    void *buf = vlen ? NULL : calloc(1, sz);
    herr_t rc = vlen ? -2 : -1;
    if (buf && H5Aread(a, t, buf) >= 0) {
        hid_t b = H5Acreate2(*(hid_t *)dst_group, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (b >= 0) rc = H5Awrite(b, t, buf), H5Aclose(b);
    }
    free(buf);
    H5Sclose(sp), H5Tclose(t), H5Aclose(a);
    return rc < 0 ? rc : 0;
}

// Copies the attributes of group `name` of `src` into a new group of the same name in
// `dst`. (H5Ocopy would do it, but libhdf5 1.10 crashes copying a group whose many
// attributes live in dense storage.) Returns 0, -2 for a variable-length attribute
// (refused, not read), or -1.
static int copy_attrs(hid_t src, const char *name, hid_t dst) {
    hid_t g = H5Gopen2(src, name, H5P_DEFAULT);
    hid_t d = H5Gcreate2(dst, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = g >= 0 && d >= 0 ? H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_one_attr, &d) : -1;
    if (g >= 0) H5Gclose(g);
    if (d >= 0) H5Gclose(d);
    return rc < 0 ? (int)rc : 0;  // -2: a variable-length attribute (copy_one_attr)
}

int ckpt_save_optim(const char *path, const mo_checkpoint *ck, const float *m, const float *v, const char *train_from) {
    hid_t f = ckpt_create(path, ck);
    if (f < 0) return -1;
    if (m && v && (ckpt_write_tensors(f, "optim/m", &ck->table, m) || ckpt_write_tensors(f, "optim/v", &ck->table, v)))
        goto err;
    if (train_from) {
        hid_t s = h5_open(train_from, NULL, 0);
        if (s < 0) goto err;
        int rc = h5_exists(s, "train") ? copy_attrs(s, "train", f) : 0;
        h5_close(s);
        if (rc) {
            mo_errorf("%s: cannot copy /train into %s%s", train_from, path,
                      rc == -2 ? " (a variable-length attribute: written by an older monolith; re-create it with "
                                 "this version)" : "");
            goto err;
        }
    }
    return h5_finish(f, path);
err:
    h5_abort(f, path);
    return -1;
}
