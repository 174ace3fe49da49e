// checkpoint_absent.c: writing tensors whose values are partly not in memory, copying the
// missing ranges from the checkpoint file they were read from (mo_absent,
// engine/checkpoint.h), so a checkpoint is never lossy although the process dropped them.
#include "engine/checkpoint.h"

#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "engine/base/hash.h"

#include <stdlib.h>
#include <string.h>

int ckpt_absent_add(mo_absent *a, size_t off, size_t len, const float *values) {
    if (!len) return 0;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 64;
        size_t *o = realloc(a->off, cap * sizeof *o);
        if (o) a->off = o;
        size_t *l = o ? realloc(a->len, cap * sizeof *l) : NULL;
        if (!l) return mo_errorf("out of memory listing the parameters not held");
        a->len = l, a->cap = cap;
    }
    if (!a->n) a->hash = MO_HASH_INIT;
    a->off[a->n] = off, a->len[a->n++] = len;
    if (values) a->hash = mo_hash(a->hash, values, len * sizeof *values);
    return 0;
}

int ckpt_absent_source(mo_absent *a, const char *path) {
    char *p = strdup(path);
    if (!p) return mo_errorf("out of memory");
    free(a->from);
    a->from = p;
    return 0;
}

void ckpt_absent_free(mo_absent *a) {
    free(a->from), free(a->off), free(a->len);
    memset(a, 0, sizeof *a);
}

int ckpt_write_tensors_from(hid_t f, const char *group, const mo_param_table *pt, const float *arena,
                            const mo_absent *a) {
    if (!a || !a->n) return ckpt_write_tensors(f, group, pt, arena);
    hid_t src = a->from ? ckpt_open(a->from) : H5I_INVALID_HID;  // no file: the ranges are zeros
    if (a->from && src < 0)
        return mo_errorf("cannot copy the values this run does not hold into %s: %s (the file they were read from "
                         "must stay in place while the run goes on)",
                         h5_name(f), mo_error());
    size_t biggest = 0;
    for (int i = 0; i < pt->n; i++) biggest = pt->t[i].numel > biggest ? pt->t[i].numel : biggest;
    float *buf = malloc((biggest ? biggest : 1) * sizeof *buf);
    uint64_t h = MO_HASH_INIT;
    size_t k = 0;
    int rc = buf ? 0 : mo_errorf("out of memory for a tensor of %zu MB", biggest * sizeof *buf >> 20);
    char path[256];
    for (int i = 0; i < pt->n && !rc; i++) {
        const mo_tensor *t = &pt->t[i];
        const size_t end = t->offset + t->numel;
        hsize_t dims[3];
        for (int d = 0; d < t->rank; d++) dims[d] = (hsize_t)t->shape[d];
        snprintf(path, sizeof path, "%s/%s", group, t->name);
        const float *out = arena + t->offset;
        if (k < a->n && a->off[k] < end) {  // ranges of this tensor not held: the source's tensor, with ours over it
            if (src < 0) memset(buf, 0, t->numel * sizeof *buf);
            else if (h5_read_f32(src, path, buf, t->rank, dims)) {
                rc = -1;
                break;
            }
            size_t at = t->offset;
            for (; k < a->n && a->off[k] < end; k++) {
                memcpy(buf + (at - t->offset), arena + at, (a->off[k] - at) * sizeof *buf);
                h = mo_hash(h, buf + (a->off[k] - t->offset), a->len[k] * sizeof *buf);
                at = a->off[k] + a->len[k];
            }
            memcpy(buf + (at - t->offset), arena + at, (end - at) * sizeof *buf);
            out = buf;
        }
        rc = h5_write_f32(f, path, out, t->rank, dims);
    }
    if (src >= 0) h5_close(src);
    free(buf);
    if (!rc && src >= 0 && h != a->hash)
        rc = mo_errorf("%s no longer holds the values of /%s this run read from it (the file was replaced or "
                       "changed); %s is not written. Put the file back as it was, or start again from it with --init",
                       a->from, group, h5_name(f));
    return rc;
}
