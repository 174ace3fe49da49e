// split.c: the train/val split of a domain's documents (see split.h).
#include "data/split.h"

#include "engine/base/error.h"
#include "engine/base/rng.h"

#include <math.h>
#include <stdlib.h>

size_t split_safe_cut(const uint8_t *t, size_t from, size_t limit) {
    for (size_t i = from ? from : 1; i < limit; i++)
        if (t[i] == '\n' && t[i - 1] > 0x20 && t[i - 1] < 0x7f) return i;
    return limit;
}

size_t split_text_cut(const uint8_t *t, size_t n, size_t pos) {
    size_t limit = pos + (n - pos) / 2;
    size_t c = split_safe_cut(t, pos, limit);
    if (c < limit) return c;
    while (pos > 1 && (t[pos] & 0xC0) == 0x80) pos--;  // not inside a UTF-8 character
    return pos;
}

static int add(split_plan *s, size_t doc, uint64_t off, uint64_t len, int val) {
    split_piece *p = realloc(s->p, (s->n + 1) * sizeof *p);
    if (!p) return mo_errorf("out of memory");
    s->p = p;
    s->p[s->n++] = (split_piece){doc, off, len, val};
    return 0;
}

int split_make(const uint64_t *sizes, size_t n, double frac, uint64_t seed, split_cut_fn cut, void *ctx,
               split_plan *out) {
    *out = (split_plan){.cut_doc = SIZE_MAX};
    uint8_t *is_val = calloc(n ? n : 1, 1);
    size_t *perm = malloc((n ? n : 1) * sizeof *perm);
    if (!is_val || !perm) {
        free(is_val), free(perm);
        return mo_errorf("out of memory");
    }
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) perm[i] = i, out->total_bytes += sizes[i];
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)mo_rng_below(&r, i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j], perm[j] = t;
    }
    size_t n_val = (size_t)llround(frac * (double)n);
    if (frac > 0 && n >= 2 && n_val == 0) n_val = 1;
    if (n && n_val >= n) n_val = n - 1;
    uint64_t cut_at = 0;
    if (frac <= 0 || n_val >= SPLIT_MIN_VAL_DOCS) {
        out->by_document = 1;
        for (size_t i = 0; i < n_val; i++) is_val[perm[i]] = 1, out->val_bytes += sizes[perm[i]];
        out->n_val_docs = n_val;
    } else {
        uint64_t left = (uint64_t)llround(frac * (double)out->total_bytes);
        for (size_t i = 0; i < n && left; i++) {
            size_t d = perm[i];
            if (sizes[d] <= left) {
                is_val[d] = 1, left -= sizes[d], out->val_bytes += sizes[d], out->n_val_docs++;
                continue;
            }
            cut_at = cut(ctx, d, sizes[d] - left, sizes[d]);
            if (cut_at > 0 && cut_at < sizes[d]) {
                out->cut_doc = d, out->cut_tail = sizes[d] - cut_at;
                out->val_bytes += out->cut_tail;
            }
            break;
        }
    }
    int rc = 0;
    for (size_t d = 0; d < n && !rc; d++) {
        if (d == out->cut_doc) {
            rc = add(out, d, 0, cut_at, 0);
            if (!rc) rc = add(out, d, cut_at, sizes[d] - cut_at, 1);
        } else {
            rc = add(out, d, 0, sizes[d], is_val[d]);
        }
    }
    free(is_val), free(perm);
    if (rc) split_plan_free(out);
    return rc;
}

void split_plan_free(split_plan *s) {
    free(s->p);
    s->p = NULL, s->n = 0;
}
