// decode_probe.c: decode's matrix-vector products alone (infer.h's infer_probe), so that
// `bench infer` can tell, in the same run, how much of a decode step's gap to the read
// rate is the kernels' and how much the rest: its meetings, attention, norms, routing.
//
// A token's products are laid out as decode_one_thread (infer/decode_one.c) runs them,
// as steps: q/k/v (cut at heads), wo, the gate and up of the token's FFNs, their down,
// and the output; each step's rows go to the threads in decode's guided chunks
// (decode_take) or in one contiguous share each. Between steps the threads meet where
// decode meets (twice after q/k/v: attention's step has no product here), or not at
// all; in one parallel region for all the tokens, or one a token as decode_one forks. Experts are chosen in turn (token t, layer l: experts (k t + 3 l + j) mod E), so
// that successive tokens read different experts and the weights come from memory, not
// from the cache, as in decode.
#include "infer/infer_ctx.h"

#include "engine/base/clock.h"
#include "engine/base/error.h"
#include "kernels/roofline.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

// A part of a step: for each of its `rows` rows, row r of each of its n matrices (cols[i]
// columns each): q, k or v; wo; the gate and up of one FFN; the down of every FFN.
#define PROBE_MAX_TERMS 16
typedef struct {
    gemv_w w[PROBE_MAX_TERMS];
    int cols[PROBE_MAX_TERMS];
    int n, rows;
} probe_part;

// A step: its parts' rows one after the other, cut into chunks at multiples of `align`
// (at least `min` rows), and how many meetings follow it in decode.
#define PROBE_MAX_PARTS 16
typedef struct {
    probe_part p[PROBE_MAX_PARTS];
    int n_parts, rows, align, min, meetings;
} probe_step;

typedef struct {
    probe_step *step;  // [INFER_PROBE_TOKENS * steps]
    int steps;         // per token
    work_counter *work;  // one per step of every token
    const float *x;      // the input of every product
    float *y;            // [threads, ystride] each thread's outputs
    size_t ystride;
    double bytes;        // weights read for all the tokens
    spin_barrier bar;
    _Atomic uint64_t sink;   // the reads' sums, kept
} probe;

static void part_add(probe_step *st, const gemv_w *w, const int *cols, int n, int rows) {
    probe_part *p = &st->p[st->n_parts++];
    memcpy(p->w, w, sizeof *w * n), memcpy(p->cols, cols, sizeof *cols * n);
    p->n = n, p->rows = rows, st->rows += rows;
}

// Bytes of weights one row of `cols` columns reads.
static double row_bytes(gemv_w w, int cols) {
    return w.f ? 4.0 * cols : cols * (1.0 + 4.0 / Q8_BLOCK);
}

// The steps of token `tok` into st[0 .. steps); returns the bytes they read.
static double token_steps(const infer_ctx *s, int tok, probe_step *st) {
    const mo_config *c = &s->c;
    const int d = c->d_model, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    const int E = c->n_experts, k = s->route_k;
    int n = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const mo_layer_ids *L = &s->pt->layer[l];
        probe_step *a = &st[n++], *o = &st[n++], *gu = &st[n++], *dn = &st[n++];
        *a = (probe_step){.align = hd, .min = hd, .meetings = 2};
        part_add(a, &s->w[L->wq], &d, 1, qd), part_add(a, &s->w[L->wk], &d, 1, kvd);
        part_add(a, &s->w[L->wv], &d, 1, kvd);
        *o = (probe_step){.align = 16, .min = decode_min_rows(s, qd), .meetings = 1};
        part_add(o, &s->w[L->wo], &qd, 1, d);
        int idx[PROBE_MAX_PARTS];
        float gates[PROBE_MAX_PARTS];
        const int kk = L->is_moe ? k : 0, nf = token_ffn_count(s, l, kk);
        for (int j = 0; j < kk; j++) idx[j] = (k * tok + 3 * l + j) % E, gates[j] = 1.0f;
        *gu = (probe_step){.align = 16, .min = decode_min_rows(s, 2 * d), .meetings = 1};
        *dn = (probe_step){.align = 16, .meetings = 1};
        gemv_w w2[PROBE_MAX_TERMS];
        int width[PROBE_MAX_TERMS], units = 0;
        for (int f = 0; f < nf; f++) {
            const token_ffn F = token_ffn_at(s, l, idx, gates, kk, f);
            const gemv_w w13[2] = {F.w1, F.w3};
            const int cols[2] = {d, d};
            part_add(gu, w13, cols, 2, F.width);
            w2[f] = F.w2, width[f] = F.width, units += F.width;
        }
        dn->min = decode_min_rows(s, units);
        part_add(dn, w2, width, nf, d);
    }
    probe_step *out = &st[n++];
    *out = (probe_step){.align = 16, .min = decode_min_rows(s, d)};
    part_add(out, &s->w[s->pt->output], &d, 1, c->vocab_size);
    double bytes = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < st[i].n_parts; j++)
            for (int t = 0; t < st[i].p[j].n; t++) bytes += st[i].p[j].rows * row_bytes(st[i].p[j].w[t], st[i].p[j].cols[t]);
    return bytes;
}

// Rows [lo, hi) of a step: the products (into y, rows at their index in the step), or a
// plain read of the same bytes.
static uint64_t step_rows(const probe_step *st, int lo, int hi, const float *x, float *y, int read) {
    uint64_t sum = 0;
    for (int j = 0, base = 0; j < st->n_parts && base < hi; base += st->p[j++].rows) {
        const probe_part *p = &st->p[j];
        const int r0 = lo > base ? lo - base : 0, r1 = hi - base < p->rows ? hi - base : p->rows;
        for (int t = 0; r1 > r0 && t < p->n; t++) {
            const gemv_w w = gemv_w_rows(p->w[t], (size_t)r0, p->cols[t]);
            const size_t n = (size_t)(r1 - r0) * p->cols[t];
            if (!read) gemv(y + base + r0, w, x, r1 - r0, p->cols[t], 1.0f, t > 0);
            else if (w.f) sum += roofline_sum_bytes(w.f, n * sizeof(float));
            else
                sum += roofline_sum_bytes(w.q, n) +
                       roofline_sum_bytes(w.scale, (size_t)(r1 - r0) * q8_blocks(p->cols[t]) * sizeof(float));
        }
    }
    return sum;
}

// Thread t of nt: tokens [t0, t1) in `mode`.
static void probe_thread(probe *pr, infer_probe_mode mode, int t0, int t1, int t, int nt) {
    float *y = pr->y + (size_t)t * pr->ystride;
    const int read = mode == INFER_PROBE_READ;
    uint64_t sum = 0;
    int phase = 0, lo, hi;
    for (int tok = t0; tok < t1; tok++)
        for (int i = 0; i < pr->steps; i++) {
            const probe_step *st = &pr->step[(size_t)tok * pr->steps + i];
            if (mode == INFER_PROBE_HALVES) {
                const int a = st->align;
                lo = (int)((long)st->rows * t / nt / a * a), hi = t == nt - 1 ? st->rows : (int)((long)st->rows * (t + 1) / nt / a * a);
                sum += step_rows(st, lo, hi, pr->x, y, 0);
            } else {
                while (decode_take(&pr->work[(size_t)tok * pr->steps + i], st->rows, st->align, st->min, nt, &lo, &hi))
                    sum += step_rows(st, lo, hi, pr->x, y, read);
            }
            const int meet = mode == INFER_PROBE_MEETINGS || mode == INFER_PROBE_REGIONS;
            for (int m = 0; meet && m < st->meetings; m++) spin_barrier_wait(&pr->bar, nt, &phase);
        }
    if (read) atomic_fetch_add_explicit(&pr->sink, sum, memory_order_relaxed);
}

const char *infer_probe_name(infer_probe_mode mode) {
    static const char *const names[] = {"read", "products", "halves", "meetings", "regions"};
    return mode >= 0 && mode < INFER_PROBE_MODES ? names[mode] : "?";
}

int infer_probe(infer_ctx *s, infer_probe_mode mode, double *gbs, double *bytes) {
    const mo_config *c = &s->c;
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > s->max_threads) nt = s->max_threads;
    for (int l = 0; l < c->n_layers; l++)
        if (token_ffn_count(s, l, s->route_k) + 3 > PROBE_MAX_PARTS)
            return mo_errorf("the decode probe takes up to %d FFNs a token, layer %d has %d", PROBE_MAX_PARTS - 3, l,
                             token_ffn_count(s, l, s->route_k));
    probe pr = {.steps = 4 * c->n_layers + 1};
    const size_t nsteps = (size_t)INFER_PROBE_TOKENS * pr.steps;
    pr.step = malloc(sizeof *pr.step * nsteps);
    pr.work = aligned_alloc(64, sizeof *pr.work * nsteps);
    float *x = NULL;
    int rc = -1, rows = 0, cols = 0;
    if (!pr.step || !pr.work) goto oom;
    for (int t = 0; t < INFER_PROBE_TOKENS; t++) pr.bytes += token_steps(s, t, pr.step + (size_t)t * pr.steps);
    for (size_t i = 0; i < nsteps; i++) {
        atomic_store_explicit(&pr.work[i].next, 0, memory_order_relaxed);
        rows = pr.step[i].rows > rows ? pr.step[i].rows : rows;
        for (int j = 0; j < pr.step[i].n_parts; j++)
            for (int t = 0; t < pr.step[i].p[j].n; t++) cols = pr.step[i].p[j].cols[t] > cols ? pr.step[i].p[j].cols[t] : cols;
    }
    pr.ystride = pad16((size_t)rows);
    x = aligned_alloc(64, sizeof(float) * pad16((size_t)cols));
    pr.y = aligned_alloc(64, sizeof(float) * pr.ystride * nt);
    if (!x || !pr.y) goto oom;
    for (int i = 0; i < cols; i++) x[i] = (float)((i * 37) % 101 - 50) / 50.0f;
    pr.x = x;
    const double t0 = now_seconds();
    spin_barrier_reset(&pr.bar);
    if (mode == INFER_PROBE_REGIONS) {  // as decode: a parallel region a token
        for (int tok = 0; tok < INFER_PROBE_TOKENS; tok++) {
            spin_barrier_reset(&pr.bar);
#pragma omp parallel num_threads(nt)
            probe_thread(&pr, mode, tok, tok + 1, omp_get_thread_num(), omp_get_num_threads());
        }
    } else {
#pragma omp parallel num_threads(nt)
        probe_thread(&pr, mode, 0, INFER_PROBE_TOKENS, omp_get_thread_num(), omp_get_num_threads());
    }
    *gbs = pr.bytes / (now_seconds() - t0) / 1e9;
    if (bytes) *bytes = pr.bytes / INFER_PROBE_TOKENS;
    rc = 0;
    goto out;
oom:
    mo_errorf("out of memory for the decode probe");
out:
    free(pr.step), free(pr.work), free(x), free(pr.y);
    return rc;
}
