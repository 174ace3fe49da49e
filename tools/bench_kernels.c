// bench_kernels.c: `monolith bench kernels`, the kernel micro-benchmark.
//
// - Grouped expert GEMM at the bench-S expert shapes (8 experts, d 512, d_ff 1024,
//   8*256*2 routed rows split evenly, skewed, and with one expert taking over half), in each threading strategy, against
//   ONE dense sgemm of the same shape and FLOPs.
// - The experts' SwiGLU FFN of a bench-S layer (the rows even, and as uneven as one layer
//   of a bench-S step had them), forward + backward, fp32 and bf16: ffn_forward's default
//   (fp32: phases of single products; bf16: each expert's whole FFN one task) against one
//   grouped call per product (ffn_set_chained(0)); the same bits, timed in turns.
// - Causal attention forward and backward at B 8, T 256, 8 heads of 64, fp32 and with
//   --precision bf16's products where the CPU runs them (useful FLOPs:
//   the causal half of each product).
// - The elementwise ops in GB/s (each array read or written once, STREAM's counting),
//   against the memory bandwidth measured in the same run.
// Every rate is the best of several repetitions lasting about REP_SECONDS in all.
#include "tools/bench.h"
#include "tools/commands.h"
#include "tools/preinit.h"

#include "engine/moe.h"
#include "kernels/attention.h"
#include "kernels/bf16.h"
#include "kernels/cross_entropy.h"
#include "kernels/matmul.h"
#include "kernels/matmul_packed.h"
#include "kernels/residual.h"
#include "kernels/rmsnorm.h"
#include "kernels/roofline.h"
#include "kernels/rope.h"
#include "kernels/simd.h"
#include "kernels/softmax.h"
#include "kernels/swiglu.h"
#include "kernels/threads.h"
#include "train/adamw.h"
#include "train/freeze.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REP_SECONDS 0.25

// Best seconds of one call of each fn(ctx), after a warm-up call each. The calls take
// turns, round after round, so that load from other processes on a shared machine
// falls on all of them alike and the ratios between them hold.
typedef struct {
    void (*fn)(void *);
    void *ctx;
    double best;
} timed;

static void time_interleaved(timed *t, int n, double seconds) {
    for (int i = 0; i < n; i++) t[i].fn(t[i].ctx), t[i].best = 1e30;
    double start = now_seconds();
    for (int round = 0; round < 3 || now_seconds() - start < seconds; round++)
        for (int i = 0; i < n; i++) {
            double t0 = now_seconds();
            t[i].fn(t[i].ctx);
            double dt = now_seconds() - t0;
            if (dt < t[i].best) t[i].best = dt;
        }
}

static double time_best(void (*fn)(void *), void *ctx) {
    timed t = {fn, ctx, 0};
    time_interleaved(&t, 1, REP_SECONDS);
    return t.best;
}

static float *falloc(size_t n) {
    float *p = malloc(n * sizeof *p);
    if (p)
        for (size_t i = 0; i < n; i++) p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    return p;
}

// ---------------------------------------------------------------------------- grouped GEMM

enum { E = 8, D = 512, DFF = 1024, ROWS = 8 * 256 * 2 };

typedef struct {
    const int *offs;
    float *x, *h, *w, *dw, *wd;  // x[ROWS,D], h[ROWS,DFF], w[E,DFF,D], dw[E,DFF,D], wd[DFF,D] (dense)
    int op;                      // 0: h = x w^T (nt), 1: x = h w (nn), 2: dw += h^T x (tn)
    matmul_grouped_strategy strategy;
} gemm_ctx;

static const char *gemm_op_names[] = {"fwd  h = x w1^T   (nt)", "bwd  dx = dh w1   (nn)", "bwd  dW1 += dh^T x (tn)"};
static const char *gemm_op_keys[] = {"nt", "nn", "tn"};

static void run_grouped(void *p) {
    gemm_ctx *c = p;
    matmul_grouped_set_strategy(c->strategy);
    if (c->op == 0) matmul_grouped_nt(c->h, c->x, c->w, c->offs, E, DFF, D, 0);
    if (c->op == 1) matmul_grouped_nn(c->x, c->h, c->w, c->offs, E, D, DFF, 0);
    if (c->op == 2) matmul_grouped_tn(c->dw, c->h, c->x, c->offs, E, DFF, D, 1);
}

// The same product over all ROWS rows with one weight matrix: one sgemm, same FLOPs.
static void run_dense(void *p) {
    gemm_ctx *c = p;
    if (c->op == 0) matmul_nt(c->h, c->x, c->wd, ROWS, DFF, D, 0);
    if (c->op == 1) matmul_nn(c->x, c->h, c->wd, ROWS, D, DFF, 0);
    if (c->op == 2) matmul_tn(c->dw, c->h, c->x, DFF, D, ROWS, 1);
}

// ---------------------------------------------------------------------------- expert FFN

typedef struct {
    const int *offs;
    mo_ffn_weights w;
    float *xs, *ys, *dxs, *h1, *h3, *act, *dact, *dw1, *dw3, *dw2;
    int chained;
} ffn_ctx;

static void run_ffn(void *p) {
    ffn_ctx *c = p;
    mo_ffn_rows r = {c->offs, E, DFF, D, c->h1, c->h3, c->act, c->dact, NULL, 1};
    mo_ffn_grads g = {c->dw1, c->dw3, c->dw2, NULL, 1};
    ffn_set_chained(c->chained);
    ffn_forward(c->ys, c->xs, &c->w, &r, 0);
    ffn_backward(c->dxs, c->ys, c->xs, &c->w, &r, &g, 0);  // ys as dys
    ffn_set_chained(1);
}

// ---------------------------------------------------------------------------- attention

enum { AB = 8, AT = 256, ANH = 8, AHD = 64 };

typedef struct {
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
} att_ctx;

static void run_att_fwd(void *p) {
    att_ctx *c = p;
    attention_forward(&(mo_attention){AB, AT, ANH, ANH, AHD, c->q, c->k, c->v, c->out, c->lse});
}

static void run_att_bwd(void *p) {
    att_ctx *c = p;
    attention_backward(&(mo_attention){AB, AT, ANH, ANH, AHD, c->q, c->k, c->v, c->out, c->lse}, c->dout, c->dq, c->dk,
                       c->dv);
}

// --precision bf16's attention: the same with its products in bf16
static void run_att_fwd_bf16(void *p) {
    att_ctx *c = p;
    attention_forward_bf16(&(mo_attention){AB, AT, ANH, ANH, AHD, c->q, c->k, c->v, c->out, c->lse});
}

static void run_att_bwd_bf16(void *p) {
    att_ctx *c = p;
    attention_backward_bf16(&(mo_attention){AB, AT, ANH, ANH, AHD, c->q, c->k, c->v, c->out, c->lse}, c->dout, c->dq,
                            c->dk, c->dv);
}

// ---------------------------------------------------------------------------- elementwise

// 32M floats (128 MiB) per array, past the last-level cache even for the in-place ops
// (lscpu shows 32 MiB of L3, but rope in place over 64 MiB still ran from cache here).
enum { EN = 1 << 25, ROWD = 512, VOCAB = 8192, ROUTER_E = 64, RHEADS = 8, RHD = 64 };

typedef struct {
    float *a, *b, *c, *d, *e, *small, *cos_tab, *sin_tab;
    int *ints;
    mo_bf16 *wb;          // AdamW's bf16 copy [EN]
    adamw_range *ranges;  // AdamW over a, b, c, d as p, g, m, v in FREEZE_CHUNK ranges, as training runs it
    size_t n_ranges;
} ew_ctx;

static void ew_swiglu_fwd(void *p) {
    ew_ctx *c = p;
    swiglu_forward(c->c, c->a, c->b, EN);
}
static void ew_swiglu_bwd(void *p) {
    ew_ctx *c = p;
    swiglu_backward(c->d, c->e, c->c, c->a, c->b, EN);
}
static void ew_residual_fwd(void *p) {
    ew_ctx *c = p;
    residual_forward(c->c, c->a, c->b, EN);
}
static void ew_residual_bwd(void *p) {
    ew_ctx *c = p;
    residual_backward(c->a, c->b, c->c, EN);
}
static void ew_rmsnorm_fwd(void *p) {
    ew_ctx *c = p;
    rmsnorm_forward(c->c, c->small, c->a, c->b, EN / ROWD, ROWD, 1e-5f);
}
static void ew_rmsnorm_bwd(void *p) {
    ew_ctx *c = p;
    rmsnorm_backward(c->d, c->e, c->c, c->a, c->b, c->small, EN / ROWD, ROWD);
}
static void ew_softmax_fwd(void *p) {
    ew_ctx *c = p;
    softmax_forward(c->c, c->a, EN / ROUTER_E, ROUTER_E);
}
static void ew_softmax_bwd(void *p) {
    ew_ctx *c = p;
    softmax_backward(c->d, c->b, c->c, EN / ROUTER_E, ROUTER_E);
}
static void ew_rope_fwd(void *p) {
    ew_ctx *c = p;
    rope_forward(c->a, c->ints, c->cos_tab, c->sin_tab, EN / (RHEADS * RHD), RHEADS, RHD);
}
static void ew_rope_bwd(void *p) {
    ew_ctx *c = p;
    rope_backward(c->a, c->ints, c->cos_tab, c->sin_tab, EN / (RHEADS * RHD), RHEADS, RHD);
}
static void ew_ce_fwd(void *p) {
    ew_ctx *c = p;
    cross_entropy_forward(c->small, c->e, c->a, c->ints, EN / VOCAB, VOCAB);
}
static void ew_ce_bwd(void *p) {
    ew_ctx *c = p;
    cross_entropy_backward(c->c, c->a, c->e, c->ints, c->small, EN / VOCAB, VOCAB);  // forward's stats in e
}

static void ew_adamw(void *p) {
    ew_ctx *c = p;
    adamw_step s = adamw_defaults();
    s.lr = 1e-4;
    adamw_apply(c->a, c->b, c->c, c->d, c->ranges, c->n_ranges, &s);
}
static void ew_adamw_bf16(void *p) {
    ew_ctx *c = p;
    adamw_step s = adamw_defaults();
    s.lr = 1e-4;
    adamw_apply_bf16(c->a, c->b, c->c, c->d, c->wb, c->ranges, c->n_ranges, &s);
}

// Arrays of EN floats each op moves (reads + writes, per-row vectors ignored; a bf16
// array is half of one).
static const struct {
    const char *name;
    void (*fn)(void *);
    double arrays;
} ew_ops[] = {
    {"swiglu fwd", ew_swiglu_fwd, 3},     {"swiglu bwd", ew_swiglu_bwd, 5},     {"residual fwd", ew_residual_fwd, 3},
    {"residual bwd", ew_residual_bwd, 5}, {"rmsnorm fwd", ew_rmsnorm_fwd, 2},   {"rmsnorm bwd", ew_rmsnorm_bwd, 4},
    {"softmax fwd", ew_softmax_fwd, 2},   {"softmax bwd", ew_softmax_bwd, 3},   {"rope fwd", ew_rope_fwd, 2},
    {"rope bwd", ew_rope_bwd, 2},         {"xent fwd", ew_ce_fwd, 1},           {"xent bwd", ew_ce_bwd, 2},
    {"adamw", ew_adamw, 7},               {"adamw + bf16", ew_adamw_bf16, 7.5},
};
#define N_EW (int)(sizeof ew_ops / sizeof ew_ops[0])

// ---------------------------------------------------------------------------- main

static const char *usage = "usage: monolith bench kernels [--threads N] [--json]\n"
                           "  grouped expert GEMM vs one sgemm, attention GFLOP/s, elementwise GB/s vs memory\n";

int bench_kernels(int argc, char **argv) {
    bench_opts o;
    int rc = bench_parse_opts(argc, argv, &o, usage);
    if (rc) return rc > 0 ? 0 : 2;
    if (cli_threads(o.threads)) return 1;
    int ret = 1;

    static const int even[E + 1] = {0, 512, 1024, 1536, 2048, 2560, 3072, 3584, 4096};
    static const int skew[E + 1] = {0, 1536, 2560, 3072, 3456, 3712, 3904, 4032, 4096};  // 1536 .. 64 rows
    static const int hot[E + 1] = {0, 2304, 2560, 2816, 3072, 3328, 3584, 3840, 4096};   // one expert > 1/2
    // The rows of one layer of a bench-S training step (337 .. 1074): the FFN's uneven case.
    static const int uneven[E + 1] = {0, 337, 1005, 1333, 1727, 2333, 2732, 3022, 4096};
    static const char *split_names[] = {"even", "skewed", "hot"};
    static const char *strat_names[] = {"auto", "blas-parallel", "block-parallel"};
    const int *splits[] = {even, skew, hot};
    double dense_gf[3], grouped_gf[3][3][3], att_gf[4] = {0}, ew_gbs[N_EW], ffn_gf[2][2][2] = {{{0}}};  // [uneven][bf16][default path]

    gemm_ctx g = {0};
    att_ctx a = {0};
    ew_ctx w = {0};
    ffn_ctx fc = {0};
    const char *stage = "buffers";

    // Machine limits first, with the same threads.
    double sgemm_gf = roofline_sgemm_gflops(1024, 0.5), membw = roofline_membw_gbs(0.5);

    g.x = falloc((size_t)ROWS * D), g.h = falloc((size_t)ROWS * DFF), g.w = falloc((size_t)E * DFF * D);
    g.dw = falloc((size_t)E * DFF * D), g.wd = falloc((size_t)DFF * D);
    if (!g.x || !g.h || !g.w || !g.dw || !g.wd) goto err;
    for (g.op = 0; g.op < 3; g.op++) {
        double flops = 2.0 * ROWS * DFF * D;
        gemm_ctx v[10];
        timed t[10];
        for (int i = 0; i < 10; i++) {
            v[i] = g;
            if (i) v[i].offs = splits[(i - 1) / 3], v[i].strategy = (matmul_grouped_strategy)((i - 1) % 3);
            t[i] = (timed){i ? run_grouped : run_dense, &v[i], 0};
        }
        time_interleaved(t, 10, 8 * REP_SECONDS);
        dense_gf[g.op] = flops / t[0].best * 1e-9;
        for (int i = 1; i < 10; i++) grouped_gf[g.op][(i - 1) / 3][(i - 1) % 3] = flops / t[i].best * 1e-9;
    }
    matmul_grouped_set_strategy(MATMUL_GROUPED_AUTO);

    stage = "expert FFN buffers";
    const size_t nw = (size_t)E * DFF * D, nx = (size_t)ROWS * D, nh = (size_t)ROWS * DFF;
    fc.offs = even, fc.xs = g.x, fc.h1 = g.h, fc.ys = falloc(nx), fc.dxs = falloc(nx), fc.h3 = falloc(nh);
    fc.act = falloc(nh), fc.dact = falloc(nh), fc.dw1 = g.dw, fc.dw3 = falloc(nw), fc.dw2 = falloc(nw);
    float *w3 = falloc(nw), *w2 = falloc(nw);
    mo_bf16 *bw = malloc(3 * nw * sizeof *bw), *bs = malloc((nx + 2 * nh) * sizeof *bs);
    // fp32 on oneDNN's packed weights where the model uses them (kernels/matmul_packed.h)
    fc.w = (mo_ffn_weights){g.w, w3, w2, NULL, NULL, NULL, bs, bs + nx, bs + nx + nh, NULL, NULL, 0, matmul_packed_available()};
    int ffn_ok = fc.ys && fc.dxs && fc.h3 && fc.act && fc.dact && fc.dw3 && fc.dw2 && w3 && w2 && bw && bs;
    for (int bf = 0; ffn_ok && bf < 1 + bf16_supported(); bf++) {
        if (bf) {
            bf16_from_f32(bw, g.w, nw), bf16_from_f32(bw + nw, w3, nw), bf16_from_f32(bw + 2 * nw, w2, nw);
            fc.w.b1 = bw, fc.w.b3 = bw + nw, fc.w.b2 = bw + 2 * nw;
        }
        for (int u = 0; u < 2; u++) {
            ffn_ctx v[2] = {fc, fc};
            v[0].offs = v[1].offs = u ? uneven : even;
            v[1].chained = 1;
            timed t[2] = {{run_ffn, &v[0], 0}, {run_ffn, &v[1], 0}};
            time_interleaved(t, 2, 8 * REP_SECONDS);
            for (int c = 0; c < 2; c++) ffn_gf[u][bf][c] = 3 * 6.0 * ROWS * D * DFF / t[c].best * 1e-9;  // 3 products, x3
        }
    }
    free(fc.ys), free(fc.dxs), free(fc.h3), free(fc.act), free(fc.dact), free(fc.dw3), free(fc.dw2);
    free(w3), free(w2), free(bw), free(bs);
    if (!ffn_ok) goto err;

    size_t nq = (size_t)AB * AT * ANH * AHD;
    a.q = falloc(nq), a.k = falloc(nq), a.v = falloc(nq), a.out = falloc(nq), a.dout = falloc(nq);
    a.dq = falloc(nq), a.dk = falloc(nq), a.dv = falloc(nq), a.lse = falloc((size_t)AB * ANH * AT);
    if (!a.q || !a.k || !a.v || !a.out || !a.dout || !a.dq || !a.dk || !a.dv || !a.lse) goto err;
    double att_flops = 2.0 * AHD * AT * (AT + 1.0) * AB * ANH;  // two causal products of 2*hd*T(T+1)/2 each
    // fp32, and where its products run in bf16 (AVX512_BF16) the bf16 calls, in turns
    timed ta[4] = {{run_att_fwd, &a, 0}, {run_att_bwd, &a, 0}, {run_att_fwd_bf16, &a, 0}, {run_att_bwd_bf16, &a, 0}};
    int n_att = attention_bf16_takes(AHD) ? 4 : 2;
    time_interleaved(ta, n_att, n_att * REP_SECONDS);
    for (int i = 0; i < n_att; i++) att_gf[i] = (i % 2 ? 2 : 1) * att_flops / ta[i].best * 1e-9;  // bwd: four products

    stage = "elementwise buffers";
    w.a = falloc(EN), w.b = falloc(EN), w.c = falloc(EN), w.d = falloc(EN), w.e = falloc(EN);
    w.small = falloc(EN / ROWD > EN / VOCAB ? EN / ROWD : EN / VOCAB);
    w.cos_tab = malloc((size_t)EN / (RHEADS * RHD) * RHD / 2 * sizeof(float));
    w.sin_tab = malloc((size_t)EN / (RHEADS * RHD) * RHD / 2 * sizeof(float));
    w.ints = malloc((size_t)EN / (RHEADS * RHD) * sizeof(int));
    w.wb = malloc((size_t)EN * sizeof *w.wb);
    w.n_ranges = EN / FREEZE_CHUNK, w.ranges = malloc(w.n_ranges * sizeof *w.ranges);
    if (!w.a || !w.b || !w.c || !w.d || !w.e || !w.small || !w.cos_tab || !w.sin_tab || !w.ints || !w.wb || !w.ranges)
        goto err;
    for (size_t r = 0; r < w.n_ranges; r++) w.ranges[r] = (adamw_range){r * FREEZE_CHUNK, FREEZE_CHUNK, 1};
    rope_tables(w.cos_tab, w.sin_tab, EN / (RHEADS * RHD), RHD, 10000.0);
    for (int i = 0; i < EN / (RHEADS * RHD); i++) w.ints[i] = i % VOCAB;  // positions and targets
    for (int i = 0; i < EN / VOCAB; i++) w.small[i] = 1.0f;
    for (int i = 0; i < N_EW; i++) {
        if (!strncmp(ew_ops[i].name, "rmsnorm", 7))  // rstd and dloss share `small`: refresh rstd
            rmsnorm_forward(w.c, w.small, w.a, w.b, EN / ROWD, ROWD, 1e-5f);
        if (!strncmp(ew_ops[i].name, "xent", 4))
            for (int r = 0; r < EN / VOCAB; r++) w.small[r] = 1.0f;
        if (!strncmp(ew_ops[i].name, "adamw", 5))  // m and v as a run starts them (v >= 0)
            memset(w.c, 0, EN * sizeof *w.c), memset(w.d, 0, EN * sizeof *w.d);
        ew_gbs[i] = ew_ops[i].arrays * EN * sizeof(float) / time_best(ew_ops[i].fn, &w) * 1e-9;
    }

    const char *core = openblas_get_corename(), *ct = getenv("OPENBLAS_CORETYPE");
    if (o.json) {
        printf("{\"threads\": %d, \"simd\": \"%s\", \"openblas_core\": \"%s\", \"openblas_coretype_env\": \"%s\", "
               "\"sgemm_gflops\": %.1f, \"membw_gbs\": %.1f,\n \"grouped_gemm\": [",
               threads_count(), simd_name(simd_active()), core, ct ? ct : "", sgemm_gf, membw);
        for (int op = 0; op < 3; op++)
            for (int s = 0; s < 3; s++)
                for (int st = 0; st < 3; st++)
                    printf("%s\n  {\"op\": \"%s\", \"split\": \"%s\", \"strategy\": \"%s\", \"gflops\": %.1f, "
                           "\"dense_gflops\": %.1f}",
                           op + s + st ? "," : "", gemm_op_keys[op], split_names[s], strat_names[st],
                           grouped_gf[op][s][st], dense_gf[op]);
        printf("],\n \"expert_ffn\": {\"fp32_default_gflops\": %.1f, \"fp32_per_product_gflops\": %.1f, "
               "\"bf16_default_gflops\": %.1f, \"bf16_per_product_gflops\": %.1f, "
               "\"uneven_fp32_default_gflops\": %.1f, \"uneven_fp32_per_product_gflops\": %.1f, "
               "\"uneven_bf16_default_gflops\": %.1f, \"uneven_bf16_per_product_gflops\": %.1f}",
               ffn_gf[0][0][1], ffn_gf[0][0][0], ffn_gf[0][1][1], ffn_gf[0][1][0], ffn_gf[1][0][1], ffn_gf[1][0][0],
               ffn_gf[1][1][1], ffn_gf[1][1][0]);
        printf(",\n \"attention\": {\"fwd_gflops\": %.1f, \"bwd_gflops\": %.1f, \"bf16_fwd_gflops\": %.1f, "
               "\"bf16_bwd_gflops\": %.1f},\n \"elementwise\": [",
               att_gf[0], att_gf[1], att_gf[2], att_gf[3]);
        for (int i = 0; i < N_EW; i++)
            printf("%s\n  {\"op\": \"%s\", \"gbs\": %.1f}", i ? "," : "", ew_ops[i].name, ew_gbs[i]);
        printf("]}\n");
    } else {
        printf("threads %d   simd %s   OpenBLAS core %s (OPENBLAS_CORETYPE=%s)\n", threads_count(),
               simd_name(simd_active()), core, ct ? ct : "unset");
        const char *pick = openblas_core();  // what the binary sets when the user sets nothing
        if (ct && *ct && (!pick || strcasecmp(ct, pick)))
            printf("note: OPENBLAS_CORETYPE=%s overrides the kernels chosen for this CPU (%s; Haswell, for\n"
                   "      one, means AVX2 kernels on an AVX-512 CPU); run again with it unset to compare\n",
                   ct, pick ? pick : "OpenBLAS's own choice");
        printf("machine: sgemm %.1f GFLOP/s (n=1024)   memory %.1f GB/s\n\n", sgemm_gf, membw);
        printf("grouped expert GEMM, %d experts, d %d, d_ff %d, %d rows; GFLOP/s (%% of one dense sgemm)\n", E, D,
               DFF, ROWS);
        printf("  %-24s %8s  %-6s %14s %16s %16s\n", "op", "dense", "split", "auto", "blas-parallel",
               "block-parallel");
        for (int op = 0; op < 3; op++)
            for (int s = 0; s < 3; s++) {
                printf("  %-24s %8.1f  %-6s", s ? "" : gemm_op_names[op], dense_gf[op], split_names[s]);
                for (int st = 0; st < 3; st++)
                    printf(" %8.1f (%3.0f%%)", grouped_gf[op][s][st], 100 * grouped_gf[op][s][st] / dense_gf[op]);
                printf("\n");
            }
        printf("\nexperts' SwiGLU FFN, forward + backward: GFLOP/s, the default path (fp32: phases of single "
               "products; bf16: one task per expert) / one call per product\n");
        for (int u = 0; u < 2; u++) {
            printf("  %-7s fp32 %.1f / %.1f (%.3fx)", u ? "uneven" : "even", ffn_gf[u][0][1], ffn_gf[u][0][0],
                   ffn_gf[u][0][1] / ffn_gf[u][0][0]);
            if (ffn_gf[u][1][0] > 0)
                printf("  bf16 %.1f / %.1f (%.3fx)", ffn_gf[u][1][1], ffn_gf[u][1][0], ffn_gf[u][1][1] / ffn_gf[u][1][0]);
            printf("\n");
        }
        printf("\nattention B %d T %d heads %d (kv %d) hd %d: forward %.1f GFLOP/s, backward %.1f GFLOP/s "
               "(%.0f%% / %.0f%% of sgemm)\n",
               AB, AT, ANH, ANH, AHD, att_gf[0], att_gf[1], 100 * att_gf[0] / sgemm_gf, 100 * att_gf[1] / sgemm_gf);
        if (att_gf[2] > 0)
            printf("  with --precision bf16's products: forward %.1f, backward %.1f GFLOP/s (%.2fx / %.2fx fp32)\n",
                   att_gf[2], att_gf[3], att_gf[2] / att_gf[0], att_gf[3] / att_gf[1]);
        printf("\n");
        printf("elementwise, %d floats per array: GB/s (%% of memory bandwidth)\n", EN);
        for (int i = 0; i < N_EW; i++)
            printf("  %-14s %6.1f (%3.0f%%)\n", ew_ops[i].name, ew_gbs[i], 100 * ew_gbs[i] / membw);
    }
    ret = 0;
    goto out;
err:
    fprintf(stderr, "monolith: bench kernels: out of memory allocating the %s; free memory or use a larger machine\n",
            stage);
out:
    free(g.x), free(g.h), free(g.w), free(g.dw), free(g.wd);
    free(a.q), free(a.k), free(a.v), free(a.out), free(a.dout), free(a.dq), free(a.dk), free(a.dv), free(a.lse);
    free(w.a), free(w.b), free(w.c), free(w.d), free(w.e), free(w.small), free(w.cos_tab), free(w.sin_tab);
    free(w.ints), free(w.wb), free(w.ranges);
    return ret;
}
