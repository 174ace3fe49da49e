// bench_train.c: `monolith bench train`, the throughput of full training steps.
//
// A randomly initialized model of a preset (bench-S by default) trains on random
// tokens, batch 8 x seq 256: each step zeroes the gradients, runs forward and backward
// (engine/model.h) and AdamW over every parameter (train/adamw.h). One warm-up step,
// then STEPS timed ones; the median step gives tokens/s and GFLOP/s. FLOPs per token are
// counted the way the PyTorch peer does (../shared/peers): 6 x active parameters (every
// matrix a token passes through; not the embedding table, a lookup) + 12 x n_layers x T x
// d_model for attention. Both rates are set beside the sgemm GFLOP/s and memory GB/s
// measured in the same run.
#include "tools/bench.h"
#include "tools/commands.h"

#include "engine/base/rng.h"
#include "engine/config.h"
#include "engine/model.h"
#include "engine/params.h"
#include "kernels/roofline.h"
#include "kernels/threads.h"
#include "train/adamw.h"
#include "train/freeze.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 8
#define SEQ 256
#define STEPS 3

static const char usage[] =
    "usage: monolith bench train [--preset NAME] [--threads N] [--json]\n"
    "\n"
    "Tokens/s and GFLOP/s of training steps (forward, backward, AdamW) of a randomly initialized\n"
    "model, batch 8 x seq 256 (seq capped at the preset's max_seq_len), median of 3 steps after\n"
    "one warm-up, beside this machine's sgemm and memory rates measured in the same run.\n"
    "  --preset NAME   tiny, small or bench-S (default)\n"
    "  --threads N     threads (default: one per core)\n"
    "  --json          one JSON object instead of the table\n";

size_t bench_flop_params(const mo_param_table *pt) {
    return params_count_active(pt) - pt->t[pt->tok_embeddings].numel - pt->t[pt->norm].numel;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int bench_train(int argc, char **argv) {
    bench_opts o;
    const char *preset;
    int prc = bench_parse_model_opts(argc, argv, &o, &preset, usage);
    if (prc) return prc > 0 ? 0 : 2;
    threads_init(o.threads);

    mo_config c;
    if (config_preset(&c, preset) || config_finalize(&c)) return cmd_fail();
    const int B = BATCH, T = SEQ < c.max_seq_len ? SEQ : c.max_seq_len, N = B * T;

    int rc = 1;
    mo_param_table pt = {0};
    mo_model m;
    int model_ok = 0;
    float *params = NULL, *grads = NULL, *mom = NULL, *var = NULL;
    int *tokens = NULL, *targets = NULL;
    train_mask mask = {0};
    if (params_table_build(&pt, &c)) goto out;
    if (!(params = params_arena_alloc(&pt)) || !(grads = params_arena_alloc(&pt)) ||
        !(mom = params_arena_alloc(&pt)) || !(var = params_arena_alloc(&pt)))
        goto out;
    params_init(&pt, params, 1);
    if (freeze_parse(&pt, "all", &mask)) goto out;
    if (model_alloc(&m, &pt, B, T)) goto out;
    model_ok = 1;
    tokens = malloc(sizeof(int) * N);
    targets = malloc(sizeof(int) * N);
    if (!tokens || !targets) goto out;
    mo_rng r;
    mo_rng_seed(&r, 2);
    for (int i = 0; i < N; i++) tokens[i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);
    for (int i = 0; i < N; i++) targets[i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);

    if (!o.json)
        fprintf(stderr, "bench train: %s, batch %d x seq %d, %d threads: 1 warm-up + %d steps\n", preset, B, T,
                threads_count(), STEPS);
    adamw_step st = adamw_defaults();
    st.lr = 3e-4;
    double dt[STEPS + 1], cpu[STEPS + 1], loss_first = 0, loss_last = 0;
    for (int s = 0; s <= STEPS; s++) {
        double t0 = now_seconds(), c0 = bench_cpu_seconds();
        memset(grads, 0, pt.numel * sizeof *grads);
        if (model_forward(&m, params, tokens, targets) || model_backward(&m, params, grads, 1.0f)) goto out;
        st.t = s + 1;
        adamw_apply(params, grads, mom, var, mask.r, mask.n, &st);
        dt[s] = now_seconds() - t0;
        cpu[s] = bench_cpu_seconds() - c0;
        if (s == 0) loss_first = m.loss;
        loss_last = m.loss;
        if (!o.json)
            fprintf(stderr, "  step %d  %.3f s  (%.3f CPU-s)  loss %.4f%s\n", s, dt[s], cpu[s], m.loss,
                    s ? "" : "  (warm-up)");
    }
    double sorted[STEPS];
    memcpy(sorted, dt + 1, sizeof sorted);
    qsort(sorted, STEPS, sizeof *sorted, cmp_double);
    double med = sorted[STEPS / 2];
    memcpy(sorted, cpu + 1, sizeof sorted);
    qsort(sorted, STEPS, sizeof *sorted, cmp_double);
    double cpu_med = sorted[STEPS / 2];

    // The machine's own rates, right after the steps, with the same threads.
    double sgemm = roofline_sgemm_gflops(1024, 1.0), membw = roofline_membw_gbs(1.0);

    size_t active = bench_flop_params(&pt);
    double flops_tok = 6.0 * (double)active + 12.0 * c.n_layers * T * c.d_model;
    double tok_s = N / med, gflops = flops_tok * N / med / 1e9;
    if (o.json) {
        printf("{\"bench\": \"train\", \"preset\": \"%s\", \"threads\": %d, \"batch\": %d, \"seq\": %d, "
               "\"optimizer\": \"adamw\", \"step_s_median\": %.4f, \"step_s_all\": [",
               preset, threads_count(), B, T, med);
        for (int s = 1; s <= STEPS; s++) printf("%s%.4f", s > 1 ? ", " : "", dt[s]);
        printf("], \"cpu_s_median\": %.4f, \"train_tok_per_cpu_s\": %.1f", cpu_med, N / cpu_med);
        printf(", \"train_tok_s\": %.1f, \"flops_per_token\": %.0f, \"params_active\": %zu, \"gflops\": %.1f, "
               "\"sgemm_gflops\": %.1f, \"membw_gbs\": %.1f, \"sgemm_share\": %.3f, \"loss_first\": %.4f, "
               "\"loss_last\": %.4f}\n",
               tok_s, flops_tok, active, gflops, sgemm, membw, gflops / sgemm, loss_first, loss_last);
    } else {
        printf("bench train  %s  batch %d x seq %d  threads %d\n", preset, B, T, threads_count());
        printf("  step (fwd+bwd+AdamW)  %.3f s median of %d (%.3f CPU-s)\n", med, STEPS, cpu_med);
        printf("  tokens/s              %.1f  (%.1f per CPU-second)\n", tok_s, N / cpu_med);
        printf("  GFLOP/s               %.1f  (%.1f MFLOP/token = 6 x %.2fM active + 12 x %d x %d x %d)\n", gflops,
               flops_tok / 1e6, active / 1e6, c.n_layers, T, c.d_model);
        printf("  sgemm, same run       %.1f GFLOP/s (n=1024): training at %.0f%% of it\n", sgemm,
               100 * gflops / sgemm);
        printf("  memory, same run      %.1f GB/s\n", membw);
    }
    rc = 0;
out:
    if (rc) cmd_fail();
    if (model_ok) model_free(&m);
    train_mask_free(&mask);
    free(tokens), free(targets);
    free(params), free(grads), free(mom), free(var);
    params_table_free(&pt);
    return rc;
}
