// infer_prefill_bf16.c: inference with --precision bf16 (infer_set_precision).
//
// - The bf16 products compute what they claim (infer/prefill_bf16.h at bench-S's widths:
//   whole tensors, expert row views, grouped, 8-bit weights, acc): y = bf16(x) bf16(W)^T
//   against double products of the bf16-rounded inputs, within fp32 summation (TOL_PRODUCT;
//   fp32 inputs would be ~3e-3 off).
// - The same through the model: prefill logits (every prefix of a prompt, so every
//   position; the per-expert and the grouped expert paths) against a plain
//   double-precision forward from docs/design.md section 3 that rounds both inputs of every
//   product but the router's to bf16 (weights and activations) and multiplies in double.
//   Float32 sums leave normalized errors around 4e-8 (below TOL_TYPICAL at most
//   positions); now and then an activation whose float and double values round to
//   different bf16 neighbours adds up to ~5e-4 at that position and, through attention,
//   the later ones (TOL_MODEL bounds every position). So this runs on tiny widths, where
//   such flips are rare. A product left in fp32, a wrong weight copy or an activation not
//   rounded moves every position by ~1e-4 and more (the full bf16-vs-fp32 difference is
//   3e-3 and more, which the test also requires to be FACTOR times the typical error).
// - Accuracy against fp32 on a bench-S-shaped model: top-1 agreement and the largest
//   logit difference (measured figures in docs/inference.md).
// - 8-bit weights: bf16 of the dequantized weights, in either order of the two calls.
// - The bf16 KV cache: single-token decode against an oracle that rounds K and V to bf16
//   before attention, the same bits on 1 and 2 threads, half the bytes; two sequences
//   decoded together (bf16 products too) against an oracle that rounds both.
// - Switching back to fp32 gives bitwise the fp32 logits; a CPU without AVX512_BF16
//   (oneDNN limited by ONEDNN_MAX_CPU_ISA) is refused with one line and stays fp32.
#include "engine/base/error.h"
#include "engine/base/rng.h"
#include "engine/config.h"
#include "engine/params.h"
#include "infer/infer.h"
#include "infer/prefill_bf16.h"
#include "kernels/bf16.h"
#include "kernels/gemv.h"
#include "kernels/ref/ref.h"
#include "kernels/threads.h"
#include "tests/infer_model.h"
#include "tests/testutil.h"

#define TOL_PRODUCT 1e-5  // normalized, bf16 products vs double products of the rounded inputs
#define TOL_TYPICAL 1e-6  // bf16 inference vs the bf16-rounding double oracle (normalized), at 3/4 of the positions
#define TOL_MODEL 2e-3    // ... at every position
#define FACTOR 100.0      // the fp32 oracle at least this many times farther than the typical error
// bf16 vs fp32 prefill on the bench-S-shaped model (test_accuracy_vs_fp32).
#define TOP1_MIN 0.85
#define MAX_ABS_RMS 0.25  // max |bf16 - fp32| as a multiple of the fp32 logits' RMS
// Decode with the bf16 KV cache against the oracle that rounds K and V (normalized): fp32
// sums, and now and then a K or V element whose float and double values round to
// different bf16 neighbours (measured: 1.5e-7 worst; the fp32 oracle is 7e-4 and more
// away, and must be at least FACTOR x TOL_TYPICAL).
#define TOL_CACHE 1e-4

// ---------------------------------------------------------------------------- helpers

// logits[T, V]: position t from a prefill of the first t+1 tokens (sizes 1 .. T, so
// both the per-expert and the grouped expert products run).
static void prefill_prefixes(infer_ctx *s, const int *tok, int T, int V, float *logits) {
    for (int t = 0; t < T; t++)
        ck_assert_msg(infer_prefill(s, 0, 1, t + 1, tok, logits + (size_t)t * V) == 0, "%s", mo_error());
}

// Every prefix of a prompt of T tokens in bf16 against both oracles; returns the worst
// error against the bf16 one.
static double check_model(const test_model *m, const char *what, int T, infer_weights wts, uint64_t seed) {
    const int V = m->c.vocab_size;
    int *tok = malloc(sizeof(int) * T);
    random_tokens(tok, T, V, seed);
    double *want_bf = malloc(sizeof(double) * T * V), *want_f = malloc(sizeof(double) * T * V);
    test_model r = *m;  // the weights inference multiplies by: m's, or their 8-bit round trip
    if (wts == INFER_WEIGHTS_INT8) {
        r.w = malloc(sizeof(float) * m->pt.numel), r.wd = malloc(sizeof(double) * m->pt.numel);
        memcpy(r.w, m->w, sizeof(float) * m->pt.numel);
        tm_q8_round_trip(&r);
    }
    tm_oracle(&r, tok, T, NULL, TM_ROUND_PRODUCTS, want_bf);
    tm_oracle(&r, tok, T, NULL, 0, want_f);
    infer_ctx *s = infer_new(&m->pt, m->w, 1, T);
    ck_assert_msg(s != NULL, "%s", mo_error());
    ck_assert_msg(infer_set_weights(s, wts) == 0, "%s", mo_error());
    ck_assert_msg(infer_set_precision(s, MO_PRECISION_BF16) == 0, "%s", mo_error());
    ck_assert_int_eq(infer_get_precision(s), MO_PRECISION_BF16);
    float *got = malloc(sizeof(float) * T * V);
    prefill_prefixes(s, tok, T, V, got);
    double worst = 0, closest_f = 1e30;
    int typical = 0;
    for (int t = 0; t < T; t++) {
        double e = tu_rel_err_f64(got + (size_t)t * V, want_bf + (size_t)t * V, (size_t)V);
        double ef = tu_rel_err_f64(got + (size_t)t * V, want_f + (size_t)t * V, (size_t)V);
        ck_assert_msg(e < TOL_MODEL, "%s: position %d: bf16 logits differ from the bf16 oracle by %.3g (tol %.1g)",
                      what, t, e, TOL_MODEL);
        worst = e > worst ? e : worst;
        typical += e < TOL_TYPICAL;
        closest_f = ef < closest_f ? ef : closest_f;
    }
    ck_assert_msg(typical * 4 >= T * 3, "%s: only %d of %d positions within %.0e of the bf16 oracle", what, typical, T,
                  TOL_TYPICAL);
    // The bf16 path is not fp32: far from the fp32 oracle everywhere.
    ck_assert_msg(closest_f > FACTOR * TOL_TYPICAL, "%s: bf16 logits within %.3g of fp32's", what, closest_f);
    printf("%s: bf16 vs bf16 oracle worst %.2g, %d of %d positions < %.0e; vs fp32 oracle at least %.2g\n", what,
           worst, typical, T, TOL_TYPICAL, closest_f);
    infer_free(s);
    if (wts == INFER_WEIGHTS_INT8) free(r.w), free(r.wd);
    free(tok), free(want_bf), free(want_f), free(got);
    return worst;
}

// ---------------------------------------------------------------------------- tests

// y[M,N] (+)= bf16(x) bf16(w)^T in double, w[N,K] float (rounded here).
static void ref_bf16_product(double *y, const float *x, const float *w, int M, int N, int K, int acc) {
    double *xd = malloc(sizeof(double) * M * K), *wd = malloc(sizeof(double) * N * K);
    for (size_t i = 0; i < (size_t)M * K; i++) xd[i] = tm_bf(x[i]);
    for (size_t i = 0; i < (size_t)N * K; i++) wd[i] = tm_bf(w[i]);
    ref_matmul_nt(y, xd, wd, M, N, K, acc);
    free(xd), free(wd);
}

static void check_product(const char *what, const float *got, const double *want, size_t n) {
    double e = tu_rel_err_f64(got, want, n);
    ck_assert_msg(e < TOL_PRODUCT, "%s: differs from the bf16 reference by %.3g (tol %.0e)", what, e, TOL_PRODUCT);
}

START_TEST(test_products) {
    if (!bf16_supported()) return;
    test_model m;
    tm_make(&m, "bench-S", (const char *const[]){"n_layers=1", NULL}, 20);
    const mo_layer_ids *L = &m.pt.layer[0];
    const int d = m.c.d_model, dff = m.c.d_ff, E = m.c.n_experts, V = m.c.vocab_size, R = 64;
    // The weights as infer_ctx holds them: fp32 views, and w1 as 8-bit (its dequantized
    // values kept for the reference).
    gemv_w *w = calloc((size_t)m.pt.n, sizeof *w);
    for (int i = 0; i < m.pt.n; i++) w[i].f = m.w + m.pt.t[i].offset;
    const size_t n1 = m.pt.t[L->w1].numel;
    int8_t *q = malloc(n1);
    float *sc = malloc(sizeof(float) * (n1 / d) * q8_blocks(d)), *w1d = malloc(sizeof(float) * n1);
    q8_quantize(q, sc, w[L->w1].f, n1 / d, d);
    q8_dequantize(w1d, q, sc, n1 / d, d);
    w[L->w1] = (gemv_w){.q = q, .scale = sc};
    pf_bf16 *b = pf_bf16_new(&m.pt, w, R);
    ck_assert_msg(b != NULL, "%s", mo_error());
    ck_assert_uint_gt(pf_bf16_weight_bytes(b), 2 * n1);

    float *x = malloc(sizeof(float) * 2 * R * dff), *y = malloc(sizeof(float) * R * V);
    double *want = malloc(sizeof(double) * R * V);
    tu_fill(x, 2 * (size_t)R * dff, 21, 1.0f);
    // Whole tensors, a few row counts (1: a single row), acc = 0 and 1.
    const int rows[] = {1, 5, R};
    for (int i = 0; i < 3; i++) {
        const int M = rows[i];
        tu_fill(y, (size_t)M * d, 22, 1.0f);
        tu_to_f64(want, y, (size_t)M * d);
        ck_assert_int_eq(pf_bf16_linear(b, y, x, w[L->wo], M, d, d, 1), 1);
        ref_bf16_product(want, x, w[L->wo].f, M, d, d, 1);
        check_product("wo, acc", y, want, (size_t)M * d);
        ck_assert_int_eq(pf_bf16_linear(b, y, x, w[m.pt.output], M, V, d, 0), 1);
        ref_bf16_product(want, x, w[m.pt.output].f, M, V, d, 0);
        check_product("output", y, want, (size_t)M * V);
    }
    // Expert 5's rows of w2 (fp32) and of w1 (8-bit), as the per-expert path views them.
    ck_assert_int_eq(pf_bf16_linear(b, y, x, gemv_w_rows(w[L->w2], (size_t)5 * d, dff), 7, d, dff, 0), 1);
    ref_bf16_product(want, x, w[L->w2].f + (size_t)5 * d * dff, 7, d, dff, 0);
    check_product("w2 of expert 5", y, want, (size_t)7 * d);
    ck_assert_int_eq(pf_bf16_linear(b, y, x, gemv_w_rows(w[L->w1], (size_t)5 * dff, d), 7, dff, d, 0), 1);
    ref_bf16_product(want, x, w1d + (size_t)5 * dff * d, 7, dff, d, 0);
    check_product("w1 of expert 5, 8-bit", y, want, (size_t)7 * dff);
    // Grouped over uneven groups, some empty: every expert's rows by its own weights.
    int offs[9] = {0, 10, 10, 40, 41, 80, 80, 100, 128};
    ck_assert_int_eq(E, 8);
    ck_assert_int_eq(pf_bf16_grouped(b, y, x, w[L->w2], offs, E, d, dff), 1);
    for (int e = 0; e < E; e++)
        ref_bf16_product(want + (size_t)offs[e] * d, x + (size_t)offs[e] * dff, w[L->w2].f + (size_t)e * d * dff,
                         offs[e + 1] - offs[e], d, dff, 0);
    check_product("grouped w2", y, want, (size_t)offs[E] * d);
    ck_assert_int_eq(pf_bf16_grouped(b, y, x, w[L->w1], offs, E, dff, d), 1);
    for (int e = 0; e < E; e++)
        ref_bf16_product(want + (size_t)offs[e] * dff, x + (size_t)offs[e] * d, w1d + (size_t)e * dff * d,
                         offs[e + 1] - offs[e], dff, d, 0);
    check_product("grouped w1, 8-bit", y, want, (size_t)offs[E] * dff);
    // The router has no copy: left to the caller, y untouched.
    y[0] = 123.0f;
    ck_assert_int_eq(pf_bf16_linear(b, y, x, w[L->router], R, E, d, 0), 0);
    ck_assert_float_eq(y[0], 123.0f);
    pf_bf16_free(b);
    free(w), free(q), free(sc), free(w1d), free(x), free(y), free(want);
    tm_free(&m);
}
END_TEST

START_TEST(test_is_its_model) {
    if (!bf16_supported()) return;  // refused: see test_refusal
    test_model m;
    // tiny: 4 experts, top-2: prefixes past 8 tokens take the grouped expert path.
    tm_make(&m, "tiny", NULL, 1);
    check_model(&m, "tiny", 24, INFER_WEIGHTS_F32, 2);
    tm_free(&m);
    // Dense layer, shared expert, multi-query.
    tm_make(&m, "tiny",
            (const char *const[]){"n_layers=3", "moe_layers=1,0,1", "n_shared_experts=1", "d_ff_shared=96",
                                  "d_ff_dense=160", "n_kv_heads=1", NULL},
            3);
    check_model(&m, "dense + shared + MQA", 20, INFER_WEIGHTS_F32, 4);
    tm_free(&m);
}
END_TEST

START_TEST(test_int8_weights) {
    if (!bf16_supported()) return;
    test_model m;
    tm_make(&m, "tiny", NULL, 7);
    check_model(&m, "tiny, int8 weights", 20, INFER_WEIGHTS_INT8, 8);
    // Either order of the two calls gives the same products.
    const int V = m.c.vocab_size, T = 20;
    int tok[20];
    random_tokens(tok, T, V, 9);
    float *a = malloc(sizeof(float) * V), *b = malloc(sizeof(float) * V);
    infer_ctx *s = infer_new(&m.pt, m.w, 1, T);
    ck_assert_int_eq(infer_set_weights(s, INFER_WEIGHTS_INT8), 0);
    ck_assert_int_eq(infer_set_precision(s, MO_PRECISION_BF16), 0);
    ck_assert_int_eq(infer_prefill(s, 0, 1, T, tok, a), 0);
    infer_free(s);
    s = infer_new(&m.pt, m.w, 1, T);
    ck_assert_int_eq(infer_set_precision(s, MO_PRECISION_BF16), 0);
    ck_assert_int_eq(infer_set_weights(s, INFER_WEIGHTS_INT8), 0);
    ck_assert_int_eq(infer_get_precision(s), MO_PRECISION_BF16);
    ck_assert_int_eq(infer_prefill(s, 0, 1, T, tok, b), 0);
    ck_assert_int_eq(memcmp(a, b, sizeof(float) * V), 0);
    infer_free(s);
    free(a), free(b);
    tm_free(&m);
}
END_TEST

// bf16 against fp32 prefill at every position of a 48-token prompt on bench-S's widths:
// the accuracy cost the documentation states.
START_TEST(test_accuracy_vs_fp32) {
    if (!bf16_supported()) return;
    test_model m;
    tm_make(&m, "bench-S", (const char *const[]){"n_layers=2", NULL}, 10);
    const int V = m.c.vocab_size, T = 48;
    int tok[48];
    random_tokens(tok, T, V, 11);
    float *f = malloc(sizeof(float) * T * V), *b = malloc(sizeof(float) * T * V);
    infer_ctx *s = infer_new(&m.pt, m.w, 1, T);
    prefill_prefixes(s, tok, T, V, f);
    ck_assert_int_eq(infer_set_precision(s, MO_PRECISION_BF16), 0);
    prefill_prefixes(s, tok, T, V, b);
    double mx = 0, sq = 0, rel = 0;
    int agree = 0;
    for (int t = 0; t < T; t++) {
        const float *ft = f + (size_t)t * V, *bt = b + (size_t)t * V;
        int fi = 0, bi = 0;
        for (int j = 0; j < V; j++) {
            double dd = fabs((double)bt[j] - ft[j]);
            mx = dd > mx ? dd : mx, sq += (double)ft[j] * ft[j];
            fi = ft[j] > ft[fi] ? j : fi, bi = bt[j] > bt[bi] ? j : bi;
        }
        agree += fi == bi;
        double e = tu_rel_err(bt, ft, (size_t)V);
        rel = e > rel ? e : rel;
    }
    const double rms = sqrt(sq / ((double)T * V));
    printf("bench-S (2 layers), 48 positions: bf16 vs fp32 top-1 %d/%d, max |diff| %.4f = %.3f x RMS %.4f, worst "
           "normalized %.2g\n",
           agree, T, mx, mx / rms, rms, rel);
    ck_assert_msg(agree >= TOP1_MIN * T, "top-1 agreement %d of %d", agree, T);
    ck_assert_msg(mx <= MAX_ABS_RMS * rms, "max |diff| %.4f > %.2f x RMS %.4f", mx, MAX_ABS_RMS, rms);
    ck_assert_msg(mx > 0, "bf16 logits equal fp32's: the bf16 path did not run");
    infer_free(s);
    free(f), free(b);
    tm_free(&m);
}
END_TEST

// Single-token decode with the bf16 KV cache: every position of a text fed one token
// at a time from an empty cache (so every product is decode's fp32 one, and only K and
// V are rounded) against the oracle that rounds K and V to bf16 before attention, and
// clearly apart from the fp32 oracle; 1 and 2 threads give the same bits; the cache is
// half the bytes of the fp32 one.
static void check_bf16_cache(const test_model *m, const char *what, int T, uint64_t seed) {
    const int V = m->c.vocab_size;
    int *tok = malloc(sizeof(int) * T);
    random_tokens(tok, T, V, seed);
    double *want_kv = malloc(sizeof(double) * T * V), *want_f = malloc(sizeof(double) * T * V);
    tm_oracle(m, tok, T, NULL, TM_ROUND_KV, want_kv);
    tm_oracle(m, tok, T, NULL, 0, want_f);
    float *got[2] = {malloc(sizeof(float) * T * V), malloc(sizeof(float) * T * V)};
    for (int nt = 1; nt <= 2; nt++) {
        threads_init(nt);
        infer_ctx *s = infer_new(&m->pt, m->w, 1, T);
        ck_assert_msg(s != NULL, "%s", mo_error());
        ck_assert_msg(infer_set_precision(s, MO_PRECISION_BF16) == 0, "%s", mo_error());
        for (int t = 0; t < T; t++)
            ck_assert_msg(infer_decode(s, 1, NULL, tok + t, got[nt - 1] + (size_t)t * V) == 0, "%s", mo_error());
        infer_free(s);
    }
    threads_init(0);
    ck_assert_msg(!memcmp(got[0], got[1], sizeof(float) * T * V), "%s: bf16-cache decode differs on 2 threads", what);
    double worst = 0, closest_f = 1e30;
    for (int t = 0; t < T; t++) {
        double e = tu_rel_err_f64(got[0] + (size_t)t * V, want_kv + (size_t)t * V, (size_t)V);
        double ef = tu_rel_err_f64(got[0] + (size_t)t * V, want_f + (size_t)t * V, (size_t)V);
        worst = e > worst ? e : worst;
        closest_f = t > 0 && ef < closest_f ? ef : closest_f;  // position 0 attends to itself only
    }
    printf("%s: bf16-cache decode vs the K/V-rounding oracle worst %.2g; vs fp32 oracle at least %.2g\n", what, worst,
           closest_f);
    ck_assert_msg(worst < TOL_CACHE, "%s: bf16-cache decode %.3g from its oracle (tol %.0e)", what, worst, TOL_CACHE);
    ck_assert_msg(closest_f > FACTOR * TOL_TYPICAL, "%s: bf16-cache decode within %.3g of fp32's", what, closest_f);
    // Two sequences decoded together: the batched path (bf16 products, the cache through
    // kvcache_put / kvcache_attend) against the oracle rounding both, sequence by sequence.
    int *tok2 = malloc(sizeof(int) * 2 * T);
    random_tokens(tok2, 2 * T, V, seed + 1);
    double *want2 = malloc(sizeof(double) * 2 * T * V);
    float *got2 = malloc(sizeof(float) * 2 * T * V), *pair = malloc(sizeof(float) * 2 * V);
    for (int b = 0; b < 2; b++) tm_oracle(m, tok2 + (size_t)b * T, T, NULL, TM_ROUND_PRODUCTS | TM_ROUND_KV, want2 + (size_t)b * T * V);
    infer_ctx *s = infer_new(&m->pt, m->w, 2, T);
    ck_assert_msg(s && infer_set_precision(s, MO_PRECISION_BF16) == 0, "%s", mo_error());
    for (int t = 0; t < T; t++) {
        const int step[2] = {tok2[t], tok2[T + t]};
        ck_assert_msg(infer_decode(s, 2, NULL, step, pair) == 0, "%s", mo_error());
        for (int b = 0; b < 2; b++) memcpy(got2 + ((size_t)b * T + t) * V, pair + (size_t)b * V, sizeof(float) * V);
    }
    infer_free(s);
    double worst2 = 0;
    int typical = 0;
    for (size_t r = 0; r < 2 * (size_t)T; r++) {
        const double e = tu_rel_err_f64(got2 + r * V, want2 + r * V, (size_t)V);
        worst2 = e > worst2 ? e : worst2;
        typical += e < TOL_TYPICAL;
    }
    printf("%s: batched bf16 decode vs the oracle rounding products and K/V worst %.2g, %d of %d positions < %.0e\n",
           what, worst2, typical, 2 * T, TOL_TYPICAL);
    ck_assert_msg(worst2 < TOL_MODEL, "%s: batched bf16 decode %.3g from its oracle (tol %.0e)", what, worst2, TOL_MODEL);
    // Without the K/V rounding every position past the first would be ~1e-3 off.
    ck_assert_msg(typical * 4 >= 2 * T * 3, "%s: batched bf16 decode: only %d of %d positions within %.0e", what,
                  typical, 2 * T, TOL_TYPICAL);
    free(tok2), free(want2), free(got2), free(pair);
    free(tok), free(want_kv), free(want_f), free(got[0]), free(got[1]);
}

START_TEST(test_decode_bf16_cache) {
    if (!bf16_supported()) return;
    test_model m;
    tm_make(&m, "tiny", NULL, 16);
    check_bf16_cache(&m, "tiny", 16, 17);
    tm_free(&m);
    tm_make(&m, "tiny",
            (const char *const[]){"n_layers=3", "moe_layers=1,0,1", "n_shared_experts=1", "d_ff_shared=96",
                                  "d_ff_dense=160", "n_kv_heads=1", NULL},
            18);
    check_bf16_cache(&m, "dense + shared + MQA", 12, 19);
    // Half the bytes: the decode roofline counts them (bench infer).
    infer_ctx *s = infer_new(&m.pt, m.w, 2, 12);
    ck_assert_ptr_nonnull(s);
    const double f32 = infer_decode_kv_bytes(s, 10);
    ck_assert_double_eq(f32, 2.0 * 4 * 3 * 1 * m.c.head_dim * 10);
    ck_assert_int_eq(infer_set_precision(s, MO_PRECISION_BF16), 0);
    ck_assert_double_eq(infer_decode_kv_bytes(s, 10) * 2, f32);
    ck_assert_int_eq(infer_set_precision(s, MO_PRECISION_FP32), 0);
    ck_assert_double_eq(infer_decode_kv_bytes(s, 10), f32);
    infer_free(s);
    tm_free(&m);
}
END_TEST

// fp32 after bf16 is bitwise fp32 again (the cache back in fp32); batched prefill and
// decode of several sequences use bf16 too.
START_TEST(test_switch_back) {
    if (!bf16_supported()) return;
    test_model m;
    tm_make(&m, "tiny", NULL, 12);
    const int V = m.c.vocab_size, T = 16;
    int tok[2 * 16];
    random_tokens(tok, 2 * T, V, 13);
    float *f = malloc(sizeof(float) * 2 * V), *b = malloc(sizeof(float) * 2 * V), *again = malloc(sizeof(float) * 2 * V);
    float *d1 = malloc(sizeof(float) * V), *d2 = malloc(sizeof(float) * V);
    infer_ctx *s = infer_new(&m.pt, m.w, 2, T + 1);
    ck_assert_int_eq(infer_get_precision(s), MO_PRECISION_FP32);
    ck_assert_int_eq(infer_prefill(s, 0, 2, T, tok, f), 0);
    ck_assert_int_eq(infer_decode(s, 1, NULL, tok, d1), 0);  // sequence 0, one row: the GEMV step
    ck_assert_int_eq(infer_set_precision(s, MO_PRECISION_BF16), 0);
    ck_assert_int_eq(infer_prefill(s, 0, 2, T, tok, b), 0);
    ck_assert_msg(memcmp(f, b, sizeof(float) * 2 * V) != 0, "bf16 prefill gave the fp32 logits");
    ck_assert_double_lt(tu_rel_err(b, f, 2 * (size_t)V), 2e-2);
    // Back to fp32: the prefill (which refills the cache) and the single-row step after it
    // are bitwise the first ones.
    ck_assert_int_eq(infer_set_precision(s, MO_PRECISION_FP32), 0);
    ck_assert_int_eq(infer_get_precision(s), MO_PRECISION_FP32);
    ck_assert_int_eq(infer_prefill(s, 0, 2, T, tok, again), 0);
    ck_assert_int_eq(memcmp(f, again, sizeof(float) * 2 * V), 0);
    ck_assert_int_eq(infer_decode(s, 1, NULL, tok, d2), 0);
    ck_assert_int_eq(memcmp(d1, d2, sizeof(float) * V), 0);
    infer_free(s);
    free(f), free(b), free(again), free(d1), free(d2);
    tm_free(&m);
}
END_TEST

// A CPU without AVX512_BF16 (oneDNN limited to AVX-512 without it; Check runs each test
// in its own process, so the limit is set before oneDNN's first look at the CPU): one
// line naming the flag and the fix, and the context stays fp32.
START_TEST(test_refusal) {
    if (getenv("CK_FORK") && !strcmp(getenv("CK_FORK"), "no")) return;  // oneDNN may have looked already
    setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE", 1);
    setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE", 1);
    ck_assert_int_eq(bf16_supported(), 0);
    test_model m;
    tm_make(&m, "tiny", NULL, 14);
    const int V = m.c.vocab_size;
    int tok[8];
    random_tokens(tok, 8, V, 15);
    float *f = malloc(sizeof(float) * V), *g = malloc(sizeof(float) * V);
    infer_ctx *s = infer_new(&m.pt, m.w, 1, 8);
    ck_assert_int_eq(infer_prefill(s, 0, 1, 8, tok, f), 0);
    ck_assert_int_eq(infer_set_precision(s, MO_PRECISION_BF16), -1);
    ck_assert_msg(strstr(mo_error(), "--precision bf16") && strstr(mo_error(), "AVX512_BF16") &&
                      strstr(mo_error(), "--precision fp32") && !strchr(mo_error(), '\n'),
                  "%s", mo_error());
    ck_assert_int_eq(infer_get_precision(s), MO_PRECISION_FP32);
    ck_assert_int_eq(infer_prefill(s, 0, 1, 8, tok, g), 0);
    ck_assert_int_eq(memcmp(f, g, sizeof(float) * V), 0);
    infer_free(s);
    free(f), free(g);
    tm_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("infer_prefill_bf16");
    TCase *tc = tcase_create("bf16");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_products);
    tcase_add_test(tc, test_decode_bf16_cache);
    tcase_add_test(tc, test_is_its_model);
    tcase_add_test(tc, test_int8_weights);
    tcase_add_test(tc, test_accuracy_vs_fp32);
    tcase_add_test(tc, test_switch_back);
    tcase_add_test(tc, test_refusal);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
