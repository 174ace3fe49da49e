// engine_moe.c: the sorted MoE path (dispatch, gather, grouped SwiGLU experts, weighted
// combine, and their backward) against a plain per-token loop in double, with dropped
// slots and empty experts; the FFN run as one task per group (ffn_set_chained) against
// one grouped call per product, bit for bit; and the router's forced-expert hook.
#include "engine/moe.h"
#include "kernels/matmul_packed.h"
#include "engine/router.h"
#include "tests/testutil.h"

#include <omp.h>

#define TOL 2e-6  // float32 path against the double loop, normalized per tensor

static double silu(double x) { return x / (1.0 + exp(-x)); }
static double dsilu(double x) {
    double s = 1.0 / (1.0 + exp(-x));
    return s * (1.0 + x * (1.0 - s));
}

// One token through expert e in double: y = (silu(x w1^T) * (x w3^T)) w2^T. With dy, also
// accumulates the weight gradients (scaled by g) and returns dx (scaled by g) in dx.
static void expert_naive(double *y, const float *x, const float *w1, const float *w3, const float *w2, int f,
                         int d, const float *dy, double g, double *dx, double *dw1, double *dw3, double *dw2) {
    double *h1 = calloc((size_t)f, sizeof *h1), *h3 = calloc((size_t)f, sizeof *h3);
    for (int r = 0; r < f; r++)
        for (int c = 0; c < d; c++) h1[r] += (double)x[c] * w1[r * d + c], h3[r] += (double)x[c] * w3[r * d + c];
    for (int o = 0; o < d; o++) {
        y[o] = 0;
        for (int r = 0; r < f; r++) y[o] += silu(h1[r]) * h3[r] * w2[o * f + r];
    }
    if (dy) {
        for (int r = 0; r < f; r++) {
            double da = 0;  // d(act_r), act = silu(h1) h3, scaled by g
            for (int o = 0; o < d; o++) {
                da += g * dy[o] * w2[o * f + r];
                dw2[o * f + r] += g * dy[o] * silu(h1[r]) * h3[r];
            }
            double dh1 = da * h3[r] * dsilu(h1[r]), dh3 = da * silu(h1[r]);
            for (int c = 0; c < d; c++) {
                dw1[r * d + c] += dh1 * x[c];
                dw3[r * d + c] += dh3 * x[c];
                dx[c] += dh1 * w1[r * d + c] + dh3 * w3[r * d + c];
            }
        }
    }
    free(h1);
    free(h3);
}

START_TEST(test_sorted_path_matches_per_token_loop) {
    const int N = 37, k = 3, E = 5, d = 24, f = 16;
    size_t S = (size_t)N * k;
    float *x = malloc(N * d * sizeof(float)), *gates = malloc(S * sizeof(float));
    float *w1 = malloc((size_t)E * f * d * sizeof(float)), *w3 = malloc((size_t)E * f * d * sizeof(float));
    float *w2 = malloc((size_t)E * d * f * sizeof(float)), *dy = malloc(N * d * sizeof(float));
    tu_fill(x, (size_t)N * d, 1, 1.0f);
    tu_fill(gates, S, 2, 1.0f);
    tu_fill(w1, (size_t)E * f * d, 3, 0.3f);
    tu_fill(w3, (size_t)E * f * d, 4, 0.3f);
    tu_fill(w2, (size_t)E * d * f, 5, 0.3f);
    tu_fill(dy, (size_t)N * d, 6, 1.0f);
    // Distinct experts per token, expert 3 never chosen (an empty block), some slots dropped.
    int *experts = malloc(S * sizeof(int));
    mo_rng r;
    mo_rng_seed(&r, 7);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < k; j++) {
            int e;
            int again;
            do {
                e = (int)mo_rng_below(&r, E);
                again = e == 3;
                for (int q = 0; q < j; q++) again |= experts[i * k + q] == e;
            } while (again);
            experts[i * k + j] = (i % 7 == 0 && j == 2) || i == 11 ? -1 : e;
        }
    for (size_t s = 0; s < S; s++)
        if (experts[s] < 0) gates[s] = 0;

    // Sorted path.
    int offs[E + 1], *perm = malloc(S * sizeof(int)), *pos = malloc(S * sizeof(int));
    mo_dispatch disp = {offs, perm, pos};
    moe_dispatch_build(&disp, experts, N, k, E);
    const int R = offs[E];
    float *xs = malloc(S * d * sizeof(float)), *ys = malloc(S * d * sizeof(float));
    float *h1 = malloc(S * f * sizeof(float)), *h3 = malloc(S * f * sizeof(float));
    float *act = malloc(S * f * sizeof(float)), *dact = malloc(S * f * sizeof(float));
    float *y = calloc((size_t)N * d, sizeof(float)), *dgates = malloc(S * sizeof(float));
    float *dxs = malloc(S * d * sizeof(float)), *dx = malloc(N * d * sizeof(float));
    float *dw1 = calloc((size_t)E * f * d, sizeof(float)), *dw3 = calloc((size_t)E * f * d, sizeof(float));
    float *dw2 = calloc((size_t)E * d * f, sizeof(float));
    mo_ffn_weights fw = {.w1 = w1, .w3 = w3, .w2 = w2};  // fp32
    mo_ffn_rows fr = {offs, E, f, d, h1, h3, act, dact, NULL, 1};
    mo_ffn_grads fg = {dw1, dw3, dw2, NULL, 0};
    moe_gather(xs, x, &disp, E, k, d);
    ffn_forward(ys, xs, &fw, &fr, 0);
    moe_combine(y, ys, gates, &disp, N, k, d);
    moe_combine_backward(dxs, dgates, dy, ys, gates, &disp, N, k, d);
    {  // the bf16 form: dys rounded as it is written, the same gate gradients
        mo_bf16 *db = malloc(S * d * sizeof(mo_bf16)), *want = malloc(S * d * sizeof(mo_bf16));
        float *dg = malloc(S * sizeof(float));
        moe_combine_backward_bf16(db, dg, dy, ys, gates, &disp, N, k, d);
        bf16_from_f32(want, dxs, (size_t)R * d);
        ck_assert(!memcmp(db, want, (size_t)R * d * sizeof(mo_bf16)));
        ck_assert(!memcmp(dg, dgates, S * sizeof(float)));
        free(db), free(want), free(dg);
    }
    ffn_backward(dxs, dxs, xs, &fw, &fr, &fg, 0);
    moe_scatter(dx, dxs, &disp, N, k, d);

    // Dispatch invariants: blocks in expert order, token order inside, every live slot once.
    int live = 0;
    for (size_t s = 0; s < S; s++) live += experts[s] >= 0;
    ck_assert_int_eq(R, live);
    ck_assert_int_eq(offs[3], offs[4]);  // expert 3 is empty
    for (int e = 0; e < E; e++)
        for (int p = offs[e]; p < offs[e + 1]; p++) {
            ck_assert_int_eq(experts[perm[p]], e);
            ck_assert_int_eq(pos[perm[p]], p);
            if (p > offs[e]) ck_assert_int_lt(perm[p - 1], perm[p]);
        }
    for (size_t s = 0; s < S; s++) ck_assert_int_eq(pos[s] < 0, experts[s] < 0);

    // Per-token loop in double.
    double *yn = calloc((size_t)N * d, sizeof(double)), *dxn = calloc((size_t)N * d, sizeof(double));
    double *dgn = calloc(S, sizeof(double)), *ye = malloc(d * sizeof(double));
    double *dw1n = calloc((size_t)E * f * d, sizeof(double)), *dw3n = calloc((size_t)E * f * d, sizeof(double));
    double *dw2n = calloc((size_t)E * d * f, sizeof(double));
    for (int i = 0; i < N; i++)
        for (int j = 0; j < k; j++) {
            int e = experts[i * k + j];
            if (e < 0) continue;
            size_t we = (size_t)e * f * d;
            expert_naive(ye, x + i * d, w1 + we, w3 + we, w2 + we, f, d, dy + i * d, gates[i * k + j], dxn + i * d,
                         dw1n + we, dw3n + we, dw2n + we);
            for (int c = 0; c < d; c++) {
                yn[i * d + c] += gates[i * k + j] * ye[c];
                dgn[i * k + j] += (double)dy[i * d + c] * ye[c];
            }
        }
    ck_assert_msg(tu_rel_err_f64(y, yn, (size_t)N * d) < TOL, "y");
    ck_assert_msg(tu_rel_err_f64(dgates, dgn, S) < TOL, "dgates");
    ck_assert_msg(tu_rel_err_f64(dx, dxn, (size_t)N * d) < TOL, "dx");
    ck_assert_msg(tu_rel_err_f64(dw1, dw1n, (size_t)E * f * d) < TOL, "dw1");
    ck_assert_msg(tu_rel_err_f64(dw3, dw3n, (size_t)E * f * d) < TOL, "dw3");
    ck_assert_msg(tu_rel_err_f64(dw2, dw2n, (size_t)E * d * f) < TOL, "dw2");
    for (int c = 0; c < d; c++) ck_assert_float_eq(dx[11 * d + c], 0.0f);  // token 11 has no live slot
    void *bufs[] = {x, gates, w1, w3, w2, dy, experts, perm, pos, xs, ys, h1, h3, act, dact, y, dgates, dxs, dx,
                    dw1, dw3, dw2, yn, dxn, dgn, ye, dw1n, dw3n, dw2n};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}
END_TEST

// Forced rows go to their expert alone with gate 1 and pass no gate gradient back;
// the other rows route as usual.
// ffn_forward and ffn_backward with one task per group give the bits of one grouped call
// per product: widths past matmul_small's (BLAS and oneDNN products), groups of uneven
// sizes with an empty one and one big enough to run alone on all threads (its share of
// the rows is over 1/threads), fp32 and bf16, 1 and 2 threads, accumulating or not,
// weight gradients written (dw_set) or added, dxs in place over dys or not wanted; in bf16
// also with forward's rounded rows and SwiGLU output kept for backward (xk, ak), the rows
// rounded by forward or before it.
typedef struct {
    float *ys, *h1, *h3, *dxs, *dw1, *dw3, *dw2;
} ffn_out;

// rounded: the rows go to forward rounded in w->xk (xs NULL), as the model's experts do.
static void ffn_run(ffn_out *o, const float *xs, const float *dys, const mo_ffn_weights *w, const int *offs, int G,
                    int f, int dm, int acc, int dw_set, int want_dx, int rounded) {
    const int R = offs[G];
    float *act = malloc((size_t)R * f * sizeof(float)), *dact = malloc((size_t)R * f * sizeof(float));
    mo_ffn_rows r = {offs, G, f, dm, o->h1, o->h3, act, dact, NULL, 1};
    mo_ffn_grads g = {o->dw1, o->dw3, o->dw2, NULL, dw_set};
    if (rounded) bf16_from_f32(w->xk, xs, (size_t)R * dm);
    ffn_forward(o->ys, rounded ? NULL : xs, w, &r, acc);
    memcpy(o->dxs, dys, (size_t)R * dm * sizeof(float));  // dxs overwrites dys in place, as the experts run it
    if (w->yk) {  // dys handed over rounded in s0 (moe_combine_backward_bf16); the float32 ones
        bf16_from_f32(w->s0, dys, (size_t)R * dm);  // unread (with acc, dxs adds to what it holds)
        for (size_t i = 0; !acc && i < (size_t)R * dm; i++) o->dxs[i] = NAN;
    }
    ffn_backward(want_dx ? o->dxs : NULL, o->dxs, w->xk ? NULL : xs, w, &r, &g, acc);  // kept rows: xs unread
    free(act), free(dact);
}

START_TEST(test_chained_same_bits) {
    enum { G = 4, DM = 288, F = 320 };
    const int offs[G + 1] = {0, 9, 9, 130, 150};  // group 1 empty, group 2 over half the rows
    const int R = offs[G];
    const size_t n_w = (size_t)G * F * DM, n_x = (size_t)R * DM, n_h = (size_t)R * F;
    float *w1 = malloc(n_w * 4), *w3 = malloc(n_w * 4), *w2 = malloc(n_w * 4), *xs = malloc(n_x * 4), *dys = malloc(n_x * 4);
    tu_fill(w1, n_w, 11, 0.1f), tu_fill(w3, n_w, 12, 0.1f), tu_fill(w2, n_w, 13, 0.1f);
    tu_fill(xs, n_x, 14, 1.0f), tu_fill(dys, n_x, 15, 1.0f);
    mo_bf16 *b1 = malloc(n_w * 2), *b3 = malloc(n_w * 2), *b2 = malloc(n_w * 2);
    mo_bf16 *s0 = malloc(n_x * 2), *s1 = malloc(n_h * 2), *s2 = malloc(n_h * 2);
    bf16_from_f32(b1, w1, n_w), bf16_from_f32(b3, w3, n_w), bf16_from_f32(b2, w2, n_w);
    mo_bf16 *xk = malloc(n_x * 2), *ak = malloc(n_h * 2);  // bf16: forward's rows and act kept for backward
    const size_t sizes[7] = {n_x, n_h, n_h, n_x, n_w, n_w, n_w};
    ffn_out o[6];  // [chained + 2 kept]: each against o[0], per product and nothing kept
    for (int c = 0; c < 6; c++) {
        float **p[7] = {&o[c].ys, &o[c].h1, &o[c].h3, &o[c].dxs, &o[c].dw1, &o[c].dw3, &o[c].dw2};
        for (int i = 0; i < 7; i++) *p[i] = malloc(sizes[i] * sizeof(float));
    }
    const int threads[2] = {1, 2}, before = omp_get_max_threads();
    matmul_packed_stale();  // w1, w3, w2 are new weights
    // fp32 on BLAS, fp32 on oneDNN (kernels/matmul_packed.h) reading the weights in place
    // and from packed copies, whichever the CPU's default, bf16.
    const char *kinds[4] = {"fp32", "fp32 oneDNN in place", "fp32 oneDNN packed copies", "bf16"};
    for (int kind = 0; kind < 4; kind++) {
        const int packed = kind == 1 || kind == 2;
        if (packed) matmul_packed_set_mode(kind == 1 ? MATMUL_PACKED_IN_PLACE : MATMUL_PACKED_COPY);
        for (int t = 0; t < 2; t++)
            for (int v = 0; v < 4; v++) {  // (acc, dw_set, want_dx): 4 of the 8
                const int acc = v & 1, dw_set = v >> 1 & 1, want_dx = v != 3, bf = kind == 3;
                if ((packed && !matmul_packed_available()) || (bf && !bf16_supported())) continue;
                omp_set_num_threads(threads[t]);
                for (int c = 0; c < 2 + 4 * bf; c++) {
                    // kept 0: backward rounds xs and recomputes act; 1: xk, ak; 2: the same,
                    // with the rows rounded into xk before forward (xs NULL) and dys into
                    // s0 before backward (yk)
                    const int kept = c >> 1;
                    mo_ffn_weights w = {w1, w3, w2, bf ? b1 : NULL, bf ? b3 : NULL, bf ? b2 : NULL, s0, s1, s2,
                                        kept ? xk : NULL, kept ? ak : NULL, kept == 2, packed};
                    float *p[7] = {o[c].ys, o[c].h1, o[c].h3, o[c].dxs, o[c].dw1, o[c].dw3, o[c].dw2};
                    for (int i = 0; i < 7; i++) tu_fill(p[i], sizes[i], 20 + i, 1.0f);  // what acc adds to
                    ffn_set_chained(c & 1);
                    ffn_run(&o[c], xs, dys, &w, offs, G, F, DM, acc, dw_set, want_dx, kept == 2);
                    ffn_set_chained(1);
                    if (!c) continue;
                    const char *names[7] = {"ys", "dh1", "dh3", "dxs", "dw1", "dw3", "dw2"};
                    const float *a[7] = {o[0].ys, o[0].h1, o[0].h3, o[0].dxs, o[0].dw1, o[0].dw3, o[0].dw2};
                    for (int i = 0; i < 7; i++)
                        ck_assert_msg(!memcmp(a[i], p[i], sizes[i] * sizeof(float)),
                                      "%s, %d threads, acc %d, dw_set %d, dx %d, chained %d, kept %d: %s differs",
                                      kinds[kind], threads[t], acc, dw_set, want_dx, c & 1, kept, names[i]);
                }
            }
    }
    omp_set_num_threads(before);
    for (int c = 0; c < 6; c++) {
        float *p[7] = {o[c].ys, o[c].h1, o[c].h3, o[c].dxs, o[c].dw1, o[c].dw3, o[c].dw2};
        for (int i = 0; i < 7; i++) free(p[i]);
    }
    free(w1), free(w3), free(w2), free(xs), free(dys), free(b1), free(b3), free(b2), free(s0), free(s1), free(s2);
    free(xk), free(ak);
}
END_TEST

START_TEST(test_router_forced_rows) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    const int N = 12, E = c.n_experts, k = c.top_k, d = c.d_model;
    float *x = malloc(N * d * sizeof(float)), *w = malloc(E * d * sizeof(float));
    tu_fill(x, (size_t)N * d, 1, 1.0f);
    tu_fill(w, (size_t)E * d, 2, 0.5f);
    float logits[N * E], probs[N * E], lse[N], key[N * E], topv[N * k], gates[N * k], dl[N * E];
    int sel[N * k], experts[N * k], forced[N];
    int64_t counts[E], chosen[E];
    mo_router_acts a = {.logits = logits, .probs = probs, .lse = lse, .key = key, .sel = sel, .experts = experts,
                        .topv = topv, .gates = gates};
    mo_router_stats st = {.counts = counts, .chosen = chosen};
    for (int i = 0; i < N; i++) forced[i] = i % 3 == 0 ? i % E : -1;
    router_forward(&c, &a, &st, x, w, NULL, N, forced, 0, NULL);
    int64_t slots = 0;
    for (int i = 0; i < N; i++) {
        if (forced[i] >= 0) {
            ck_assert_int_eq(experts[i * k], forced[i]);
            ck_assert_float_eq(gates[i * k], 1.0f);
            for (int j = 1; j < k; j++) ck_assert_int_eq(experts[i * k + j], -1);
            slots += 1;
        } else {
            float s = 0;
            for (int j = 0; j < k; j++) s += gates[i * k + j];
            ck_assert_float_eq_tol(s, 1.0f, 1e-6f);  // norm_topk 1
            ck_assert_int_ge(experts[i * k + k - 1], 0);
            slots += k;
        }
    }
    int64_t total = 0;
    for (int e = 0; e < E; e++) total += counts[e];
    ck_assert_int_eq(total, slots);

    // Gate gradients of forced rows are ignored: two different dgates there, same result.
    float dg1[N * k], dg2[N * k];
    tu_fill(dg1, (size_t)N * k, 3, 1.0f);
    memcpy(dg2, dg1, sizeof dg1);
    for (int i = 0; i < N; i++)
        if (forced[i] >= 0)
            for (int j = 0; j < k; j++) dg2[i * k + j] = 5.0f;
    float *dw1 = calloc((size_t)E * d, sizeof(float)), *dw2 = calloc((size_t)E * d, sizeof(float));
    float *dx1 = calloc((size_t)N * d, sizeof(float)), *dx2 = calloc((size_t)N * d, sizeof(float));
    router_backward(&c, &a, &st, dg1, 0.01, 0.001, 0, dl, x, w, dw1, dx1, N);
    router_backward(&c, &a, &st, dg2, 0.01, 0.001, 0, dl, x, w, dw2, dx2, N);
    ck_assert_int_eq(memcmp(dw1, dw2, (size_t)E * d * sizeof(float)), 0);
    ck_assert_int_eq(memcmp(dx1, dx2, (size_t)N * d * sizeof(float)), 0);
    // ... but a non-forced row's gate gradient does flow.
    dg2[1 * k] += 1.0f;
    memset(dw2, 0, (size_t)E * d * sizeof(float));
    router_backward(&c, &a, &st, dg2, 0.01, 0.001, 0, dl, x, w, dw2, dx2, N);
    ck_assert(memcmp(dw1, dw2, (size_t)E * d * sizeof(float)) != 0);
    free(x), free(w), free(dw1), free(dw2), free(dx1), free(dx2);
}
END_TEST

int main(void) {
    Suite *s = suite_create("engine_moe");
    TCase *tc = tcase_create("moe");
    tcase_add_test(tc, test_sorted_path_matches_per_token_loop);
    tcase_add_test(tc, test_chained_same_bits);
    tcase_add_test(tc, test_router_forced_rows);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
