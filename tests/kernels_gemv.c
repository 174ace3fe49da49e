// kernels_gemv.c: the decode kernels (matrix-vector products with fp32 and 8-bit
// weights, the threaded runner, attention of one token over an fp32 or bf16 cache) against
// kernels/ref at every SIMD level, and the 8-bit quantization's error bound.
#include "kernels/attention_decode.h"
#include "kernels/bf16.h"
#include "kernels/gemv.h"
#include "kernels/ref/ref.h"
#include "kernels/simd.h"
#include "kernels/threads.h"
#include "tests/testutil.h"

#include <omp.h>

#define TOL_F32 2e-6
static const int row_sizes[] = {1, 3, 4, 5, 9, 17, 64};
static const int col_sizes[] = {1, 7, 15, 16, 17, 31, 32, 33, 47, 100, 512, 1000};
#define N_ROWS (int)(sizeof row_sizes / sizeof row_sizes[0])
#define N_COLS (int)(sizeof col_sizes / sizeof col_sizes[0])

typedef struct {
    float *W, *x, *y, *s;
    int8_t *q;
    double *W64, *x64, *y64;
} bufs;

static bufs make(int rows, int cols, uint64_t seed) {
    bufs B;
    size_t n = (size_t)rows * cols;
    B.W = malloc(n * sizeof(float)), B.x = malloc(cols * sizeof(float)), B.y = malloc(rows * sizeof(float));
    B.q = malloc(n), B.s = malloc((size_t)rows * q8_blocks(cols) * sizeof(float));
    B.W64 = malloc(n * sizeof(double)), B.x64 = malloc(cols * sizeof(double));
    B.y64 = malloc(rows * sizeof(double));
    tu_fill(B.W, n, seed, 1.0f);
    tu_fill(B.x, (size_t)cols, seed + 1, 2.0f);
    tu_fill(B.y, (size_t)rows, seed + 2, 1.0f);
    tu_to_f64(B.W64, B.W, n), tu_to_f64(B.x64, B.x, (size_t)cols), tu_to_f64(B.y64, B.y, (size_t)rows);
    q8_quantize(B.q, B.s, B.W, (size_t)rows, cols);
    return B;
}

static void unmake(bufs *B) {
    free(B->W), free(B->x), free(B->y), free(B->q), free(B->s), free(B->W64), free(B->x64), free(B->y64);
}

START_TEST(test_gemv_matches_ref_every_level) {
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        const char *lv = simd_name((simd_level)level);
        for (int i = 0; i < N_ROWS; i++)
            for (int j = 0; j < N_COLS; j++)
                for (int acc = 0; acc <= 1; acc++) {
                    int rows = row_sizes[i], cols = col_sizes[j];
                    bufs B = make(rows, cols, 10 + i * 100 + j);
                    float alpha = acc ? -0.75f : 1.0f;
                    double *y64 = malloc(rows * sizeof(double));
                    memcpy(y64, B.y64, rows * sizeof(double));
                    float *y = malloc(rows * sizeof(float));
                    // fp32 (acc 0 over NaN: the old y must not be read)
                    for (int r = 0; r < rows; r++) y[r] = acc ? B.y[r] : NAN;
                    gemv(y, (gemv_w){.f = B.W}, B.x, rows, cols, alpha, acc);
                    ref_gemv(y64, B.W64, B.x64, rows, cols, alpha, acc);
                    ck_assert_msg(tu_rel_err_f64(y, y64, rows) < TOL_F32, "fp32 %s %dx%d acc %d: %g", lv, rows, cols,
                                  acc, tu_rel_err_f64(y, y64, rows));
                    // 8-bit
                    memcpy(y64, B.y64, rows * sizeof(double));
                    for (int r = 0; r < rows; r++) y[r] = acc ? B.y[r] : NAN;
                    gemv(y, (gemv_w){.q = B.q, .scale = B.s}, B.x, rows, cols, alpha, acc);
                    ref_gemv_q8(y64, B.q, B.s, B.x64, rows, cols, alpha, acc);
                    ck_assert_msg(tu_rel_err_f64(y, y64, rows) < TOL_F32, "q8 %s %dx%d acc %d: %g", lv, rows, cols,
                                  acc, tu_rel_err_f64(y, y64, rows));
                    free(y), free(y64);
                    unmake(&B);
                }
    }
    simd_set(simd_best());
}
END_TEST

START_TEST(test_q8_quantize_error_bound) {
    // Every weight within half a step of its block's scale; each block's largest weight
    // maps to +-127; a zero block has scale 0; dequantize gives scale * q exactly.
    const int rows = 5, cols = 77, nb = q8_blocks(cols);
    bufs B = make(rows, cols, 3);
    for (int c = 32; c < 64; c++) B.W[2 * cols + c] = 0;  // one all-zero block
    B.W[4 * cols + 70] = 1e3f;                             // one outlier in the short last block
    q8_quantize(B.q, B.s, B.W, rows, cols);
    float *D = malloc(sizeof(float) * rows * cols);
    q8_dequantize(D, B.q, B.s, rows, cols);
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            float s = B.s[r * nb + b], amax = 0;
            int qmax = 0;
            for (int c = b * 32; c < cols && c < b * 32 + 32; c++) {
                size_t at = (size_t)r * cols + c;
                amax = fmaxf(amax, fabsf(B.W[at]));
                qmax = abs(B.q[at]) > qmax ? abs(B.q[at]) : qmax;
                ck_assert_float_eq(D[at], s * (float)B.q[at]);
                ck_assert_msg(fabsf(D[at] - B.W[at]) <= 0.5f * s * (1 + 1e-5f) + 1e-30f, "r %d c %d", r, c);
            }
            ck_assert(fabsf(s - amax / 127.0f) <= amax * 1e-6f);
            ck_assert_int_eq(qmax, amax > 0 ? 127 : 0);
        }
    ck_assert_float_eq(B.s[2 * nb + 1], 0.0f);
    // dequantize: the same bits at every level (one multiply per weight)
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        for (int i = 0; i < rows * cols; i++) D[i] = NAN;
        q8_dequantize(D, B.q, B.s, rows, cols);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                ck_assert_msg(D[r * cols + c] == B.s[r * nb + c / 32] * (float)B.q[r * cols + c], "%s r %d c %d",
                              simd_name((simd_level)level), r, c);
    }
    simd_set(simd_best());
    free(D);
    unmake(&B);
}
END_TEST

START_TEST(test_q8_x_rounding) {
    // x as the 8-bit products round it: within half a step of its block's scale (plus the
    // rounding of x / xs in float, under 0.004 of a step), the block's largest element at
    // +-32767, the same bits at every level; the product then differs from the one with x
    // unrounded by at most sum |w| * xs / 2; an inf in x gives -1 and NaN rows.
    static const int sizes[] = {1, 31, 32, 33, 100, 512, 4097 + 32};
    for (int i = 0; i < 7; i++) {
        const int cols = sizes[i], nb = q8_blocks(cols), rows = 3;
        bufs B = make(rows, cols, 40 + (uint64_t)i);
        B.x[cols / 2] = 300.0f;  // an outlier: only its block's scale grows
        for (int c = 0; c < cols && c < 32; c++) B.x[c] = 0;  // an all-zero block
        int16_t *x16 = malloc(sizeof(int16_t) * cols), *first = malloc(sizeof(int16_t) * cols);
        float *xs = malloc(sizeof(float) * nb), *xs0 = malloc(sizeof(float) * nb);
        for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
            ck_assert_int_eq(simd_set((simd_level)level), 0);
            ck_assert_int_eq(q8_quantize_x(x16, xs, B.x, cols), 0);
            if (level == SIMD_SCALAR) {
                memcpy(first, x16, sizeof(int16_t) * cols), memcpy(xs0, xs, sizeof(float) * nb);
                for (int b = 0; b < nb; b++) {
                    float amax = 0;
                    int qmax = 0;
                    for (int c = b * 32; c < cols && c < b * 32 + 32; c++) {
                        amax = fmaxf(amax, fabsf(B.x[c])), qmax = abs(x16[c]) > qmax ? abs(x16[c]) : qmax;
                        ck_assert_msg(fabsf(B.x[c] - xs[b] * x16[c]) <= 0.505f * xs[b], "cols %d c %d: x %g xs %g x16 %d", cols, c, B.x[c], xs[b], x16[c]);
                    }
                    ck_assert_int_eq(qmax, amax > 0 ? 32767 : 0);
                }
            }
            ck_assert_msg(!memcmp(first, x16, sizeof(int16_t) * cols) && !memcmp(xs0, xs, sizeof(float) * nb),
                          "%s rounds x differently from scalar code", simd_name((simd_level)level));
            // the bound against the product with x unrounded
            float *y = malloc(sizeof(float) * rows);
            gemv(y, (gemv_w){.q = B.q, .scale = B.s}, B.x, rows, cols, 1.0f, 0);
            for (int r = 0; r < rows; r++) {
                double exact = 0, bound = 0;
                for (int c = 0; c < cols; c++) {
                    double w = (double)B.s[r * nb + c / 32] * B.q[(size_t)r * cols + c];
                    exact += w * B.x[c], bound += fabs(w) * 0.5 * xs[c / 32];
                }
                ck_assert_msg(fabs(y[r] - exact) <= bound * 1.01 + 1e-5 * fabs(exact) + 1e-6, "%s cols %d row %d: %g",
                              simd_name((simd_level)level), cols, r, fabs(y[r] - exact));
            }
            const float keep = B.x[cols - 1];
            B.x[cols - 1] = INFINITY;
            ck_assert_int_eq(q8_quantize_x(x16, xs, B.x, cols), -1);
            gemv(y, (gemv_w){.q = B.q, .scale = B.s}, B.x, rows, cols, 1.0f, 0);
            for (int r = 0; r < rows; r++) ck_assert(isnan(y[r]));
            B.x[cols - 1] = keep;
            free(y);
        }
        free(x16), free(first), free(xs), free(xs0);
        unmake(&B);
    }
    simd_set(simd_best());
}
END_TEST

// A row's result has the same bits whatever rows it is computed with: all rows at once
// (where the 8-bit AVX-512 kernel reads rows r and r + rows/2 side by side), any sub-range, or one at a
// time, at every level, fp32 and 8-bit. Decode splits rows over threads relying on it.
START_TEST(test_gemv_rows_independent_of_range) {
    const int rows = 37, cols = 1000;
    bufs B = make(rows, cols, 31);
    float *all = malloc(sizeof(float) * rows), *part = malloc(sizeof(float) * rows);
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        for (int w = 0; w <= 1; w++) {
            const gemv_w W = w ? (gemv_w){.q = B.q, .scale = B.s} : (gemv_w){.f = B.W};
            gemv(all, W, B.x, rows, cols, 0.5f, 0);
            for (int step = 1; step <= 16; step += 5) {  // ranges of 1, 6, 11 and 16 rows
                for (int r0 = 0; r0 < rows; r0 += step) {
                    const int n = rows - r0 < step ? rows - r0 : step;
                    gemv(part + r0, gemv_w_rows(W, (size_t)r0, cols), B.x, n, cols, 0.5f, 0);
                }
                ck_assert_msg(!memcmp(all, part, sizeof(float) * rows), "%s %s, ranges of %d: a row's bits differ",
                              w ? "q8" : "fp32", simd_name((simd_level)level), step);
            }
        }
    }
    simd_set(simd_best());
    free(all), free(part);
    unmake(&B);
}
END_TEST

// gemv_next gives gemv's bits whatever it prefetches (its tail rows go through the
// prefetching dot product): fp32 and 8-bit, every level, rows shorter and longer than
// the prefetched tail, a next pointer or none; and gemv and gemv_next with the fp32 rows
// in pairs (the default) give the bits of one row after the other (odd row counts leave
// a last row alone).
START_TEST(test_gemv_next_same_bits) {
    const int shapes[][2] = {{1, 7}, {3, 512}, {5, 100}, {9, 1000}, {37, 512}, {64, 1024}};
    float *other = malloc(sizeof(float) * 65536);
    tu_fill(other, 65536, 5, 1.0f);
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            const int rows = shapes[i][0], cols = shapes[i][1];
            bufs B = make(rows, cols, 41 + i);
            float *y0 = malloc(sizeof(float) * rows), *y1 = malloc(sizeof(float) * rows);
            for (int w = 0; w <= 1; w++)
                for (int acc = 0; acc <= 1; acc++)
                    for (int pairs = 0; pairs <= 1; pairs++)
                        for (int nx = 0; nx <= 2; nx++) {  // 2: gemv itself
                            const gemv_w W = w ? (gemv_w){.q = B.q, .scale = B.s} : (gemv_w){.f = B.W};
                            memcpy(y0, B.y, sizeof(float) * rows), memcpy(y1, B.y, sizeof(float) * rows);
                            gemv_set_f32_pairs(0);  // one row after the other
                            gemv(y0, W, B.x, rows, cols, -0.5f, acc);
                            gemv_set_f32_pairs(pairs);
                            if (nx == 2) gemv(y1, W, B.x, rows, cols, -0.5f, acc);
                            else gemv_next(y1, W, B.x, rows, cols, -0.5f, acc, nx ? other : NULL);
                            ck_assert_msg(!memcmp(y0, y1, sizeof(float) * rows),
                                          "%s %s %d x %d acc %d pairs %d next %d: bits differ", w ? "q8" : "fp32",
                                          simd_name((simd_level)level), rows, cols, acc, pairs, nx);
                        }
            free(y0), free(y1);
            unmake(&B);
        }
    }
    simd_set(simd_best());
    gemv_set_f32_pairs(1);
    free(other);
}
END_TEST

// gemv_ld over column slices of a wider matrix, against the oracle on the slice copied
// out: fp32 at any column, 8-bit on block boundaries (a slice inside the row, and one
// that ends it with a short last block), every level.
START_TEST(test_gemv_column_slices) {
    const int rows = 13, ld = 100, nbl = q8_blocks(ld);
    bufs B = make(rows, ld, 21);
    const int slices[][2] = {{0, 100}, {7, 50}, {32, 64}, {64, 36}, {96, 4}};
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        for (int i = 0; i < 5; i++) {
            const int c0 = slices[i][0], cols = slices[i][1], nb = q8_blocks(cols);
            float *y = malloc(sizeof(float) * rows), *sc = malloc(sizeof(float) * rows * nb);
            double *W = malloc(sizeof(double) * rows * cols), *y64 = malloc(sizeof(double) * rows);
            signed char *q = malloc((size_t)rows * cols);
            for (int r = 0; r < rows; r++) {
                for (int c = 0; c < cols; c++) W[r * cols + c] = B.W64[r * ld + c0 + c], q[r * cols + c] = B.q[r * ld + c0 + c];
                for (int b = 0; b < nb; b++) sc[r * nb + b] = B.s[r * nbl + c0 / 32 + b];
            }
            gemv_ld(y, gemv_w_cols((gemv_w){.f = B.W}, c0), ld, B.x, rows, cols, 1.0f, 0);
            ref_gemv(y64, W, B.x64, rows, cols, 1.0, 0);
            ck_assert_msg(tu_rel_err_f64(y, y64, rows) < TOL_F32, "fp32 slice %d+%d", c0, cols);
            if (c0 % 32 == 0) {
                gemv_ld(y, gemv_w_cols((gemv_w){.q = B.q, .scale = B.s}, c0), ld, B.x, rows, cols, 1.0f, 0);
                ref_gemv_q8(y64, q, sc, B.x64, rows, cols, 1.0, 0);
                ck_assert_msg(tu_rel_err_f64(y, y64, rows) < TOL_F32, "q8 slice %d+%d %s", c0, cols,
                              simd_name((simd_level)level));
            }
            free(y), free(sc), free(W), free(y64), free(q);
        }
    }
    simd_set(simd_best());
    unmake(&B);
}
END_TEST

// Three tasks (fp32, 8-bit, and a three-term sum mixing both with different widths) run
// together: against the oracle, and the same bits on 1, 2 and 3 threads.
START_TEST(test_gemv_run_tasks_and_threads) {
    const int r0 = 1000, c0 = 300, r1 = 517, c1 = 512, r2 = 64, c2a = 1024, c2b = 96;
    bufs A = make(r0, c0, 1), Bq = make(r1, c1, 2), C = make(r2, c2a, 3), D = make(r2, c2b, 4), E = make(r2, c2a, 5);
    float *ya = malloc(sizeof(float) * (r0 + r1 + r2)), *yb = malloc(sizeof(float) * (r0 + r1 + r2));
    double *ref = malloc(sizeof(double) * (r0 + r1 + r2));
    for (int nt = 1; nt <= 3; nt++) {
        threads_init(nt);
        float *y = nt == 1 ? ya : yb;
        for (int i = 0; i < r0 + r1 + r2; i++) y[i] = NAN;
        for (int i = 0; i < r2; i++) y[r0 + r1 + i] = C.y[i];
        gemv_task t[3] = {
            {.y = y, .rows = r0, .acc = 0, .n_terms = 1, .t = {{{.f = A.W}, A.x, c0, 1.0f}}},
            {.y = y + r0, .rows = r1, .acc = 0, .n_terms = 1, .t = {{{.q = Bq.q, .scale = Bq.s}, Bq.x, c1, 0.5f}}},
            {.y = y + r0 + r1, .rows = r2, .acc = 1, .n_terms = 3,
             .t = {{{.f = C.W}, C.x, c2a, 0.25f}, {{.q = D.q, .scale = D.s}, D.x, c2b, -2.0f},
                   {{.q = E.q, .scale = E.s}, E.x, c2a, 1.5f}}},
        };
        gemv_run(t, 3);
        if (nt > 1)
            ck_assert_msg(memcmp(ya, yb, sizeof(float) * (r0 + r1 + r2)) == 0, "%d threads differ from 1", nt);
    }
    threads_init(0);
    ref_gemv(ref, A.W64, A.x64, r0, c0, 1.0, 0);
    ref_gemv_q8(ref + r0, Bq.q, Bq.s, Bq.x64, r1, c1, 0.5, 0);
    memcpy(ref + r0 + r1, C.y64, sizeof(double) * r2);
    ref_gemv(ref + r0 + r1, C.W64, C.x64, r2, c2a, 0.25, 1);
    ref_gemv_q8(ref + r0 + r1, D.q, D.s, D.x64, r2, c2b, -2.0, 1);
    ref_gemv_q8(ref + r0 + r1, E.q, E.s, E.x64, r2, c2a, 1.5, 1);
    ck_assert_msg(tu_rel_err_f64(ya, ref, r0) < TOL_F32, "task 0");
    ck_assert_msg(tu_rel_err_f64(ya + r0, ref + r0, r1) < TOL_F32, "task 1");
    ck_assert_msg(tu_rel_err_f64(ya + r0 + r1, ref + r0 + r1, r2) < TOL_F32, "task 2");
    free(ya), free(yb), free(ref);
    unmake(&A), unmake(&Bq), unmake(&C), unmake(&D), unmake(&E);
}
END_TEST

START_TEST(test_attention_decode_every_level) {
    static const int hds[] = {1, 3, 16, 17, 64, 80, 128}, ns[] = {1, 2, 17, 300};
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        for (int a = 0; a < 7; a++)
            for (int b = 0; b < 4; b++) {
                int hd = hds[a], n = ns[b];
                size_t kv = (size_t)n * hd;
                float *q = malloc(sizeof(float) * hd), *K = malloc(sizeof(float) * kv), *V = malloc(sizeof(float) * kv);
                float *p = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * (hd + 1));
                double *q64 = malloc(sizeof(double) * hd), *K64 = malloc(sizeof(double) * kv);
                double *V64 = malloc(sizeof(double) * kv), *o64 = malloc(sizeof(double) * hd);
                tu_fill(q, hd, 7 + a, 3.0f), tu_fill(K, kv, 8 + b, 2.0f), tu_fill(V, kv, 9 + a + b, 1.0f);
                tu_to_f64(q64, q, hd), tu_to_f64(K64, K, kv), tu_to_f64(V64, V, kv);
                for (int i = 0; i <= hd; i++) out[i] = NAN;
                out[hd] = 12345.0f;  // guard: nothing written past hd
                attention_decode_head(out, p, q, K, V, n, hd);
                ref_attention_decode_head(o64, q64, K64, V64, n, hd);
                ck_assert_msg(tu_rel_err_f64(out, o64, hd) < TOL_F32, "%s hd %d n %d: %g",
                              simd_name((simd_level)level), hd, n, tu_rel_err_f64(out, o64, hd));
                ck_assert_float_eq(out[hd], 12345.0f);
                // K and V stored as bf16: the oracle on the values they stand for, and
                // clearly off the fp32 result (the rounding is there).
                mo_bf16 *K16 = malloc(sizeof(mo_bf16) * kv), *V16 = malloc(sizeof(mo_bf16) * kv);
                float *Kr = malloc(sizeof(float) * kv), *Vr = malloc(sizeof(float) * kv);
                bf16_from_f32(K16, K, kv), bf16_from_f32(V16, V, kv);
                bf16_to_f32(Kr, K16, kv), bf16_to_f32(Vr, V16, kv);
                tu_to_f64(K64, Kr, kv), tu_to_f64(V64, Vr, kv);
                attention_decode_head_bf16(out, p, q, K16, V16, n, hd);
                ck_assert_float_eq(out[hd], 12345.0f);
                const double e_f32 = tu_rel_err_f64(out, o64, hd);
                ref_attention_decode_head(o64, q64, K64, V64, n, hd);
                ck_assert_msg(tu_rel_err_f64(out, o64, hd) < TOL_F32, "bf16 %s hd %d n %d: %g",
                              simd_name((simd_level)level), hd, n, tu_rel_err_f64(out, o64, hd));
                ck_assert_msg(e_f32 > 10 * TOL_F32, "bf16 %s hd %d n %d: within %g of the fp32 result",
                              simd_name((simd_level)level), hd, n, e_f32);
                free(K16), free(V16), free(Kr), free(Vr);
                free(q), free(K), free(V), free(p), free(out), free(q64), free(K64), free(V64), free(o64);
            }
    }
    simd_set(simd_best());
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_gemv");
    TCase *tc = tcase_create("gemv");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_gemv_matches_ref_every_level);
    tcase_add_test(tc, test_q8_quantize_error_bound);
    tcase_add_test(tc, test_q8_x_rounding);
    tcase_add_test(tc, test_gemv_rows_independent_of_range);
    tcase_add_test(tc, test_gemv_column_slices);
    tcase_add_test(tc, test_gemv_next_same_bits);
    tcase_add_test(tc, test_gemv_run_tasks_and_threads);
    tcase_add_test(tc, test_attention_decode_every_level);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
