// kernels_attention.c: the fused causal GQA attention against kernels/ref (forward output
// and per-row log-sum-exp, backward dq, dk, dv) over GQA ratios 1, 2 and all-to-one,
// T = 1, odd T, T past one query block and past several key tiles, at every SIMD level;
// the reference backward against central finite differences in double; causality; assign
// semantics and guards after every output.
#include "kernels/attention.h"
#include "kernels/ref/ref.h"
#include "kernels/simd.h"
#include "tests/testutil.h"

#define TOL_F32 2e-6  // normalized error of the float kernel against the double oracle (worst seen 3.6e-7)

typedef struct {
    int B, T, nh, nkv, hd;
} shape;

// nh = nkv, nh = 2 nkv, nh = 4 nkv and nkv = 1; T = 1, odd, past the 64-row query block
// and past one and two 128-key tiles (129, 200, 300: tiles that straddle the diagonal,
// rows that see none of a tile).
static const shape shapes[] = {{1, 1, 1, 1, 4},  {2, 7, 4, 4, 8},   {2, 13, 4, 2, 6},  {1, 33, 4, 1, 16},
                               {2, 70, 2, 1, 8}, {1, 130, 3, 3, 5}, {1, 1, 4, 1, 3},   {3, 65, 8, 2, 32},
                               {1, 200, 2, 2, 64}, {1, 129, 2, 1, 16}, {1, 300, 4, 2, 17}, {1, 300, 4, 2, 64},
                               {2, 100, 2, 2, 48}, {1, 77, 2, 1, 128}, {1, 150, 1, 1, 80}, {2, 5, 2, 1, 16}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

typedef struct {
    size_t nq, nkv, natt, nlse;
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
    double *q64, *k64, *v64, *out64, *att64, *lse64, *dout64, *dq64, *dk64, *dv64, *w64;
} bufs;

static bufs alloc_bufs(shape s, uint64_t seed) {
    bufs X;
    X.nq = (size_t)s.B * s.T * s.nh * s.hd;
    X.nkv = (size_t)s.B * s.T * s.nkv * s.hd;
    X.natt = (size_t)s.B * s.nh * s.T * s.T;
    X.nlse = (size_t)s.B * s.nh * s.T;
    size_t n[] = {X.nq, X.nkv, X.nkv, X.nq, X.natt, X.nlse, X.nq, X.nq, X.nkv, X.nkv, X.nq};
    float **f[] = {&X.q, &X.k, &X.v, &X.out, NULL, &X.lse, &X.dout, &X.dq, &X.dk, &X.dv};
    double **d[] = {&X.q64,  &X.k64,    &X.v64,  &X.out64, &X.att64, &X.lse64,
                    &X.dout64, &X.dq64, &X.dk64, &X.dv64,  &X.w64};
    for (int i = 0; i < 10; i++)
        if (f[i]) *f[i] = malloc((n[i] + 16) * sizeof(float));  // + a guard the kernels must not touch
    for (int i = 0; i < 11; i++) *d[i] = malloc(n[i] * sizeof(double));
    tu_fill(X.q, X.nq, seed, 2.0f);  // wide enough that the softmax is far from uniform
    tu_fill(X.k, X.nkv, seed + 1, 2.0f);
    tu_fill(X.v, X.nkv, seed + 2, 1.0f);
    tu_fill(X.dout, X.nq, seed + 3, 1.0f);
    tu_to_f64(X.q64, X.q, X.nq), tu_to_f64(X.k64, X.k, X.nkv), tu_to_f64(X.v64, X.v, X.nkv);
    tu_to_f64(X.dout64, X.dout, X.nq);
    return X;
}

static void free_bufs(bufs *X) {
    float *f[] = {X->q, X->k, X->v, X->out, X->lse, X->dout, X->dq, X->dk, X->dv};
    double *d[] = {X->q64, X->k64, X->v64, X->out64, X->att64, X->lse64, X->dout64, X->dq64, X->dk64, X->dv64, X->w64};
    for (int i = 0; i < 9; i++) free(f[i]);
    for (int i = 0; i < 11; i++) free(d[i]);
}

// NaN in x[0..n) (the kernels assign every element), a guard value in x[n..n+16).
static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
    for (size_t i = n; i < n + 16; i++) x[i] = 12345.0f;
}

static int guard_intact(const float *x, size_t n) {
    for (size_t i = n; i < n + 16; i++)
        if (x[i] != 12345.0f) return 0;
    return 1;
}

static double sum_sq(const double *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

// ||a - b|| / max(||b||, floor): tu_rel_err_f64 with a floor under the norm of b.
static double grad_err(const float *a, const double *b, size_t n, double floor) {
    double num = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(num) / fmax(fmax(sqrt(sum_sq(b, n)), floor), 1e-30);
}

// Fills the stack below the caller with NaN, so that a kernel reading one of its stack
// tiles before writing it gives NaN (a stale first-tile row sum once did, unseen on a
// stack that happened to be clean).
static __attribute__((noinline)) void poison_stack(void) {
    float pad[1 << 17];
    for (int i = 0; i < 1 << 17; i++) pad[i] = NAN;
    __asm__ volatile("" : : "r"(pad) : "memory");  // keep the stores
}

START_TEST(test_matches_ref_every_level) {
    for (int level = SIMD_SCALAR; level <= (int)simd_best(); level++) {
        ck_assert_int_eq(simd_set((simd_level)level), 0);
        const char *lv = simd_name((simd_level)level);
        for (size_t i = 0; i < N_SHAPES; i++) {
            shape s = shapes[i];
            bufs X = alloc_bufs(s, 100 + i);
            // Outputs start as NaN: forward and backward assign every element.
            fill_nan(X.out, X.nq), fill_nan(X.lse, X.nlse);
            fill_nan(X.dq, X.nq), fill_nan(X.dk, X.nkv), fill_nan(X.dv, X.nkv);
            poison_stack();
            attention_forward(&(mo_attention){s.B, s.T, s.nh, s.nkv, s.hd, X.q, X.k, X.v, X.out, X.lse});
            poison_stack();
            ref_attention_forward(&(ref_attention){s.B, s.T, s.nh, s.nkv, s.hd, X.q64, X.k64, X.v64, X.out64, X.att64,
                                                   X.lse64});
            attention_backward(&(mo_attention){s.B, s.T, s.nh, s.nkv, s.hd, X.q, X.k, X.v, X.out, X.lse}, X.dout, X.dq, X.dk,
                               X.dv);
            ref_attention_backward(&(ref_attention){s.B, s.T, s.nh, s.nkv, s.hd, X.q64, X.k64, X.v64, X.out64, X.att64,
                                                    X.lse64},
                                   X.dout64, X.dq64, X.dk64, X.dv64);
            const char *fmt = "%s %s B=%d T=%d nh=%d nkv=%d hd=%d: err %.3g";
            double e;
            e = tu_rel_err_f64(X.out, X.out64, X.nq);
            ck_assert_msg(e < TOL_F32, fmt, "out", lv, s.B, s.T, s.nh, s.nkv, s.hd, e);
            e = tu_rel_err_f64(X.lse, X.lse64, X.nlse);
            ck_assert_msg(e < TOL_F32, fmt, "lse", lv, s.B, s.T, s.nh, s.nkv, s.hd, e);
            // At T = 1 every softmax has one key, so dq and dk are exactly 0 in the oracle; the
            // kernel's are rounding (its row term comes from out, not from the probabilities),
            // measured against the scale of dv, the gradient beside them.
            double floor = s.T == 1 ? sqrt(sum_sq(X.dv64, X.nkv)) : 0.0;
            e = grad_err(X.dq, X.dq64, X.nq, floor);
            ck_assert_msg(e < TOL_F32, fmt, "dq", lv, s.B, s.T, s.nh, s.nkv, s.hd, e);
            e = grad_err(X.dk, X.dk64, X.nkv, floor);
            ck_assert_msg(e < TOL_F32, fmt, "dk", lv, s.B, s.T, s.nh, s.nkv, s.hd, e);
            e = tu_rel_err_f64(X.dv, X.dv64, X.nkv);
            ck_assert_msg(e < TOL_F32, fmt, "dv", lv, s.B, s.T, s.nh, s.nkv, s.hd, e);
            ck_assert_msg(guard_intact(X.out, X.nq) && guard_intact(X.lse, X.nlse) && guard_intact(X.dq, X.nq) &&
                              guard_intact(X.dk, X.nkv) && guard_intact(X.dv, X.nkv),
                          "a kernel wrote past its output");
            free_bufs(&X);
        }
    }
    simd_set(simd_best());
}
END_TEST

// --precision bf16: the products on bf16-rounded operands, fp32 accumulation. Against the
// double oracle on the same inputs rounded to bf16 (q, k, v, dout), so what is left is the
// rounding of p and ds to bf16 inside; the result must differ from the fp32 kernel's (the
// bf16 products ran). Where the bf16 heads do not run (hd not a multiple of 16, no
// AVX512_BF16) the bf16 calls must give the fp32 calls' bits.
#define TOL_BF16 1e-2  // normalized error; worst measured 2.5e-3 (dq, dk, dv), 2.0e-3 (out), 2.8e-4 (lse)

static void round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)ref_bf16_round(x[i]);
}

START_TEST(test_bf16) {
    double worst[5] = {0};
    for (size_t i = 0; i < N_SHAPES; i++) {
        shape s = shapes[i];
        bufs X = alloc_bufs(s, 500 + i);
        round_bf16(X.q, X.nq), round_bf16(X.k, X.nkv), round_bf16(X.v, X.nkv), round_bf16(X.dout, X.nq);
        tu_to_f64(X.q64, X.q, X.nq), tu_to_f64(X.k64, X.k, X.nkv), tu_to_f64(X.v64, X.v, X.nkv);
        tu_to_f64(X.dout64, X.dout, X.nq);
        mo_attention a = {s.B, s.T, s.nh, s.nkv, s.hd, X.q, X.k, X.v, X.out, X.lse};
        fill_nan(X.out, X.nq), fill_nan(X.lse, X.nlse);
        fill_nan(X.dq, X.nq), fill_nan(X.dk, X.nkv), fill_nan(X.dv, X.nkv);
        poison_stack();
        attention_forward_bf16(&a);
        poison_stack();
        attention_backward_bf16(&a, X.dout, X.dq, X.dk, X.dv);
        ck_assert_msg(guard_intact(X.out, X.nq) && guard_intact(X.lse, X.nlse) && guard_intact(X.dq, X.nq) &&
                          guard_intact(X.dk, X.nkv) && guard_intact(X.dv, X.nkv),
                      "a bf16 kernel wrote past its output");
        // the fp32 kernel on the same inputs
        float *o32 = malloc(X.nq * sizeof *o32), *l32 = malloc(X.nlse * sizeof *l32), *g32 = malloc(X.nq * sizeof *g32);
        float *k32 = malloc(X.nkv * sizeof *k32), *v32 = malloc(X.nkv * sizeof *v32);
        mo_attention a32 = {s.B, s.T, s.nh, s.nkv, s.hd, X.q, X.k, X.v, o32, l32};
        attention_forward(&a32);
        attention_backward(&a32, X.dout, g32, k32, v32);
        const float *got[5] = {X.out, X.lse, X.dq, X.dk, X.dv}, *f32[5] = {o32, l32, g32, k32, v32};
        size_t n[5] = {X.nq, X.nlse, X.nq, X.nkv, X.nkv};
        const char *name[5] = {"out", "lse", "dq", "dk", "dv"};
        if (!attention_bf16_takes(s.hd)) {
            for (int t = 0; t < 5; t++)
                ck_assert_msg(!memcmp(got[t], f32[t], n[t] * sizeof(float)), "bf16 %s at hd %d: not the fp32 bits",
                              name[t], s.hd);
        } else {
            ref_attention_forward(&(ref_attention){s.B, s.T, s.nh, s.nkv, s.hd, X.q64, X.k64, X.v64, X.out64, X.att64,
                                                   X.lse64});
            ref_attention_backward(&(ref_attention){s.B, s.T, s.nh, s.nkv, s.hd, X.q64, X.k64, X.v64, X.out64, X.att64,
                                                    X.lse64},
                                   X.dout64, X.dq64, X.dk64, X.dv64);
            const double *ref[5] = {X.out64, X.lse64, X.dq64, X.dk64, X.dv64};
            double floor = s.T == 1 ? sqrt(sum_sq(X.dv64, X.nkv)) : 0.0;
            for (int t = 0; t < 5; t++) {
                double e = t >= 2 ? grad_err(got[t], ref[t], n[t], t < 4 ? floor : 0.0) : tu_rel_err_f64(got[t], ref[t], n[t]);
                if (e > worst[t]) worst[t] = e;
                ck_assert_msg(e < TOL_BF16, "bf16 %s B=%d T=%d nh=%d nkv=%d hd=%d: err %.3g", name[t], s.B, s.T, s.nh,
                              s.nkv, s.hd, e);
            }
            if (s.T > 1)  // the products ran in bf16: p is rounded, so out is not the fp32 kernel's
                ck_assert_msg(memcmp(X.out, o32, X.nq * sizeof(float)), "bf16 out at hd %d: the fp32 bits", s.hd);
        }
        free(o32), free(l32), free(g32), free(k32), free(v32);
        free_bufs(&X);
    }
    if (getenv("ATT_PRINT"))  // ATT_PRINT=1 build/test_kernels_attention: the worst errors, for the tolerance above
        printf("bf16 worst: out %.3g lse %.3g dq %.3g dk %.3g dv %.3g\n", worst[0], worst[1], worst[2], worst[3],
               worst[4]);
}
END_TEST

// Changing k and v at position t0 leaves every output and probability of the queries
// before t0 bit-identical, and changes the ones at t0 and after.
START_TEST(test_causal) {
    shape s = {2, 80, 4, 2, 8};
    const int t0 = 37;
    bufs X = alloc_bufs(s, 7);
    float *out0 = malloc(X.nq * sizeof(float));
    attention_forward(&(mo_attention){s.B, s.T, s.nh, s.nkv, s.hd, X.q, X.k, X.v, out0, X.lse});
    for (int b = 0; b < s.B; b++)
        for (int j = 0; j < s.nkv * s.hd; j++) {
            size_t at = ((size_t)b * s.T + t0) * s.nkv * s.hd + j;
            X.k[at] += 0.5f, X.v[at] -= 0.5f;
        }
    attention_forward(&(mo_attention){s.B, s.T, s.nh, s.nkv, s.hd, X.q, X.k, X.v, X.out, X.lse});
    size_t row = (size_t)s.nh * s.hd;
    for (int b = 0; b < s.B; b++) {
        const float *o0 = out0 + (size_t)b * s.T * row, *o1 = X.out + (size_t)b * s.T * row;
        ck_assert_msg(memcmp(o0, o1, t0 * row * sizeof(float)) == 0, "batch %d: output before t0 changed", b);
        ck_assert_msg(memcmp(o0 + t0 * row, o1 + t0 * row, row * sizeof(float)) != 0, "batch %d: t0 unchanged", b);
    }
    free(out0);
    free_bufs(&X);
}
END_TEST

// Finite differences of L = sum w * out (random weights) through the reference.
typedef struct {
    bufs *X;
    shape s;
} fd_ctx;

static double attention_loss(void *p) {
    fd_ctx *c = p;
    bufs *X = c->X;
    ref_attention_forward(
        &(ref_attention){c->s.B, c->s.T, c->s.nh, c->s.nkv, c->s.hd, X->q64, X->k64, X->v64, X->out64, X->att64, NULL});
    double L = 0;
    for (size_t i = 0; i < X->nq; i++) L += X->w64[i] * X->out64[i];
    return L;
}

START_TEST(test_ref_backward_finite_differences) {
    const shape fs[] = {{2, 5, 4, 2, 3}, {1, 6, 2, 1, 4}, {1, 4, 3, 3, 2}, {1, 1, 2, 1, 2}};
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++) {
        shape s = fs[i];
        bufs X = alloc_bufs(s, 300 + i);
        tu_fill_f64(X.w64, X.nq, 400 + i, 1.0);
        fd_ctx c = {&X, s};
        attention_loss(&c);  // att64 of the unperturbed inputs
        ref_attention_backward(&(ref_attention){s.B, s.T, s.nh, s.nkv, s.hd, X.q64, X.k64, X.v64, X.out64, X.att64, NULL},
                               X.w64, X.dq64, X.dk64, X.dv64);
        tu_fd_check("attention dq", attention_loss, &c, X.q64, X.dq64, X.nq, X.nq, 1e-5, 1e-7);
        tu_fd_check("attention dk", attention_loss, &c, X.k64, X.dk64, X.nkv, X.nkv, 1e-5, 1e-7);
        tu_fd_check("attention dv", attention_loss, &c, X.v64, X.dv64, X.nkv, X.nkv, 1e-5, 1e-7);
        free_bufs(&X);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_attention");
    TCase *tc = tcase_create("attention");
    tcase_add_test(tc, test_matches_ref_every_level);
    tcase_add_test(tc, test_causal);
    tcase_add_test(tc, test_bf16);
    tcase_add_test(tc, test_ref_backward_finite_differences);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
