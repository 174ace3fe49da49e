// decode_probe.c: decode's matrix-vector products alone (infer.h's infer_probe), so that
// `bench infer` can tell, in the same run, how much of a decode step's gap to the read
// rate is the kernels' and how much the rest: its meetings, attention, norms, routing.
//
// A token's products are laid out as decode_one_thread (infer/decode_one.c) runs them,
// as steps: q/k/v (cut at heads), wo, the gate and up of the token's FFNs, their down,
// and the output; each step's rows go to the threads as decode hands them out (one
// contiguous share each, decode_share) or, for comparison, in the guided chunks decode
// took until 2026-12-07 (the threads taking chunks of a shrinking size as they go,
// decode_take below). Between steps the threads meet where decode meets (after q/k/v
// and attention, once more between them when the kv heads do not split evenly over the
// threads; attention's step has no product here), or not at all; in one parallel region
// for all the tokens, or one a token as decode_one forks. Experts are chosen in turn
// (token t, layer l: experts (k t + 3 l + j) mod E), so that successive tokens read
// different experts and the weights come from memory, not from the cache, as in decode.
#include "infer/infer_ctx.h"

#include "engine/base/clock.h"
#include "engine/base/error.h"
#include "kernels/roofline.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

// The next chunk of a step's rows to hand out, on a cache line of its own.
typedef struct {
    _Alignas(64) atomic_int next;
} work_counter;

// Guided chunks: each take gets 1/(2 nt) of the rows still left, rounded down to a
// multiple of `align`, and at least `min` rows; the threads take chunks as they finish
// the last one. Returns 0 when none is left, else the chunk [*lo, *hi).
static int decode_take(work_counter *work, int n, int align, int min, int nt, int *lo, int *hi) {
    int cur = atomic_load_explicit(&work->next, memory_order_relaxed), size;
    do {
        if (cur >= n) return 0;
        size = (n - cur) / (2 * nt) / align * align;
        if (size < min) size = min;
    } while (!atomic_compare_exchange_weak_explicit(&work->next, &cur, cur + size, memory_order_relaxed,
                                                    memory_order_relaxed));
    *lo = cur;
    *hi = n - cur < size ? n : cur + size;
    return 1;
}

// The shortest guided chunk of rows of `cols` columns: about 64 KB of weights, a
// multiple of 16 rows.
static int decode_min_rows(const infer_ctx *s, int cols) {
    const double row = cols * (s->weights == INFER_WEIGHTS_INT8 ? 1.0 + 4.0 / Q8_BLOCK : 4.0);
    const int r = (int)(65536.0 / row) / 16 * 16;
    return r > 16 ? r : 16;
}

// A part of a step: for each of its `rows` rows, row r of each of its n matrices (cols[i]
// columns each): q, k or v; wo; the gate and up of one FFN; the down of every FFN.
#define PROBE_MAX_TERMS 16
typedef struct {
    gemv_w w[PROBE_MAX_TERMS];
    int cols[PROBE_MAX_TERMS];
    int n, rows;
} probe_part;

// A step: its parts' rows one after the other, cut into shares or chunks at multiples of
// `align` (guided chunks of at least `min` rows), and how many meetings follow it in
// decode (q/k/v's step: 2, of which the one between q/k/v and attention only when the kv
// heads do not split evenly over the threads).
#define PROBE_MAX_PARTS 16
typedef struct {
    probe_part p[PROBE_MAX_PARTS];
    int n_parts, rows, align, min, meetings;
} probe_step;

typedef struct {
    probe_step *step;  // [INFER_PROBE_TOKENS * steps]
    int steps;         // per token
    int n_kv_heads;
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
            if (mode == INFER_PROBE_PRODUCTS) {
                while (decode_take(&pr->work[(size_t)tok * pr->steps + i], st->rows, st->align, st->min, nt, &lo, &hi))
                    sum += step_rows(st, lo, hi, pr->x, y, 0);
            } else {
                decode_share(st->rows, st->align, t, nt, &lo, &hi);
                sum += step_rows(st, lo, hi, pr->x, y, read);
            }
            const int meet = mode == INFER_PROBE_MEETINGS || mode == INFER_PROBE_REGIONS;
            const int meetings = st->meetings - (st->meetings == 2 && pr->n_kv_heads % nt == 0);
            for (int m = 0; meet && m < meetings; m++) spin_barrier_wait(&pr->bar, nt, &phase);
        }
    if (read) atomic_fetch_add_explicit(&pr->sink, sum, memory_order_relaxed);
}

const char *infer_probe_name(infer_probe_mode mode) {
    static const char *const names[] = {"read", "products", "halves", "meetings", "regions", "stream"};
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
    probe pr = {.steps = 4 * c->n_layers + 1, .n_kv_heads = c->n_kv_heads};
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
    const int pairs = gemv_f32_pairs();  // `stream`: the fp32 rows one after the other, for this call
    if (mode == INFER_PROBE_STREAM) gemv_set_f32_pairs(0);
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
    gemv_set_f32_pairs(pairs);
    if (bytes) *bytes = pr.bytes / INFER_PROBE_TOKENS;
    rc = 0;
    goto out;
oom:
    mo_errorf("out of memory for the decode probe");
out:
    free(pr.step), free(pr.work), free(x), free(pr.y);
    return rc;
}
