// bench_train.c: `monolith bench train`, the throughput of full training steps.
//
// A randomly initialized model of a preset (bench-S by default) trains on random
// tokens, batch 8 x seq 256: each step zeroes the gradients, runs forward and backward
// (engine/model.h) and AdamW over every parameter (train/adamw.h). One warm-up step,
// then steps timed ones; the median step gives tokens/s and GFLOP/s. FLOPs per token are
// counted the way the PyTorch peer does (../shared/peers): 6 x active parameters (every
// matrix a token passes through; not the embedding table, a lookup) + 12 x n_layers x T x
// d_model for attention. Both rates are set beside the sgemm GFLOP/s and memory GB/s
// measured in the same run.
#include "tools/bench.h"
#include "tools/commands.h"

#include "engine/base/error.h"
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
#include <sys/resource.h>

#define BATCH 8
#define SEQ 256
#define STEPS_DEFAULT 3
#define STEPS_MAX 50
#define SETS_MAX 16

static const char usage[] =
    "usage: monolith bench train [--preset NAME] [--precision fp32|bf16] [--steps N] [--set FIELD=VALUE]...\n"
    "                            [--threads N] [--json]\n"
    "\n"
    "Tokens/s and GFLOP/s of training steps (forward, backward, AdamW) of a randomly initialized\n"
    "model, batch 8 x seq 256 (seq capped at the preset's max_seq_len), median of the timed steps after\n"
    "one warm-up, beside this machine's sgemm and memory rates measured in the same run.\n"
    "  --preset NAME   tiny, small or bench-S (default)\n"
    "  --precision P   fp32 (default, the reference) or bf16: the big GEMMs in bf16 with fp32\n"
    "                  accumulation and fp32 master weights (needs AVX512_BF16)\n"
    "  --steps N       timed steps after the warm-up (default 3, at most 50)\n"
    "  --set F=V       override a config field of the preset, e.g. --set n-experts=16 --set d-ff=256\n"
    "                  (repeatable; the names of `monolith init`'s flags)\n"
    "  --threads N     threads (default: one per core)\n"
    "  --json          one JSON object instead of the table\n";

size_t bench_flop_params(const mo_param_table *pt) {
    return params_count_active(pt) - pt->t[pt->tok_embeddings].numel - pt->t[pt->norm].numel;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Takes --precision, --steps and --set out of argv (the rest goes to
// bench_parse_model_opts). Returns 0, or -1 after printing the error.
static int take_train_flags(int *argc, char **argv, mo_precision *prec, int *steps, const char **sets, int *n_sets) {
    int n = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        int which = !strcmp(a, "--precision") ? 1 : !strcmp(a, "--steps") ? 2 : !strcmp(a, "--set") ? 3 : 0;
        if (!which) {
            argv[n++] = argv[i];
            continue;
        }
        if (i + 1 == *argc) {
            fprintf(stderr, "monolith: %s needs a value\n%s", a, usage);
            return -1;
        }
        v = argv[++i];
        if (which == 1 && model_precision_parse(v, "--precision", prec)) {
            fprintf(stderr, "monolith: %s\n", mo_error());
            return -1;
        }
        if (which == 2) {
            char *end;
            long k = strtol(v, &end, 10);
            if (*end || k < 1 || k > STEPS_MAX) {
                fprintf(stderr, "monolith: --steps takes a whole number from 1 to %d, not '%s'\n", STEPS_MAX, v);
                return -1;
            }
            *steps = (int)k;
        }
        if (which == 3) {
            if (*n_sets == SETS_MAX || !strchr(v, '=')) {
                fprintf(stderr, "monolith: --set takes FIELD=VALUE (at most %d of them), not '%s'\n", SETS_MAX, v);
                return -1;
            }
            sets[(*n_sets)++] = v;
        }
    }
    argv[n] = NULL;
    *argc = n;
    return 0;
}

// This process's peak resident memory so far, bytes.
static double peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

int bench_train(int argc, char **argv) {
    bench_opts o;
    const char *preset;
    mo_precision prec = MO_PRECISION_FP32;
    int steps = STEPS_DEFAULT, n_sets = 0;
    const char *sets[SETS_MAX];
    if (take_train_flags(&argc, argv, &prec, &steps, sets, &n_sets)) return 2;
    int prc = bench_parse_model_opts(argc, argv, &o, &preset, usage);
    if (prc) return prc > 0 ? 0 : 2;
    threads_init(o.threads);

    mo_config c;
    char names[SETS_MAX][64];
    config_override ov[SETS_MAX];
    for (int i = 0; i < n_sets; i++) {
        const char *eq = strchr(sets[i], '=');
        snprintf(names[i], sizeof names[i], "%.*s", (int)(eq - sets[i]), sets[i]);
        ov[i] = (config_override){names[i], eq + 1};
    }
    if (config_build(&c, preset, ov, n_sets)) return cmd_fail();
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
    if (model_set_precision(&m, prec)) goto out;
    tokens = malloc(sizeof(int) * N);
    targets = malloc(sizeof(int) * N);
    if (!tokens || !targets) goto out;
    mo_rng r;
    mo_rng_seed(&r, 2);
    for (int i = 0; i < N; i++) tokens[i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);
    for (int i = 0; i < N; i++) targets[i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);

    if (!o.json)
        fprintf(stderr, "bench train: %s, %s, batch %d x seq %d, %d threads: 1 warm-up + %d steps\n", preset,
                prec == MO_PRECISION_BF16 ? "bf16" : "fp32", B, T, threads_count(), steps);
    adamw_step st = adamw_defaults();
    st.lr = 3e-4;
    double dt[STEPS_MAX + 1], cpu[STEPS_MAX + 1], loss_first = 0, loss_last = 0;
    for (int s = 0; s <= steps; s++) {
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
    double sorted[STEPS_MAX];
    memcpy(sorted, dt + 1, sizeof sorted);
    qsort(sorted, steps, sizeof *sorted, cmp_double);
    double med = sorted[steps / 2];
    memcpy(sorted, cpu + 1, sizeof sorted);
    qsort(sorted, steps, sizeof *sorted, cmp_double);
    double cpu_med = sorted[steps / 2];

    // Memory of a step: what the arenas take (parameters, gradients, AdamW m and v,
    // activations, bf16 copies and scratch) against the peak resident size the process
    // reached (before the rate measurements below, which allocate buffers of their own).
    const double MB = 1048576.0, p_bytes = (double)pt.numel * sizeof(float);
    const double act_bytes = (double)m.arena_bytes, bf_bytes = (double)m.bf16_bytes;
    const double computed = 4 * p_bytes + act_bytes + bf_bytes, peak = peak_rss_bytes();

    // The machine's own rates, right after the steps, with the same threads.
    double sgemm = roofline_sgemm_gflops(1024, 1.0), membw = roofline_membw_gbs(1.0);

    size_t active = bench_flop_params(&pt);
    double flops_tok = 6.0 * (double)active + 12.0 * c.n_layers * T * c.d_model;
    double tok_s = N / med, gflops = flops_tok * N / med / 1e9;
    if (o.json) {
        printf("{\"bench\": \"train\", \"preset\": \"%s\", \"precision\": \"%s\", \"threads\": %d, \"batch\": %d, "
               "\"seq\": %d, \"n_experts\": %d, \"top_k\": %d, \"d_ff\": %d, \"optimizer\": \"adamw\", "
               "\"step_s_median\": %.4f, \"step_s_all\": [",
               preset, prec == MO_PRECISION_BF16 ? "bf16" : "fp32", threads_count(), B, T, c.n_experts, c.top_k, c.d_ff,
               med);
        for (int s = 1; s <= steps; s++) printf("%s%.4f", s > 1 ? ", " : "", dt[s]);
        printf("], \"cpu_s_median\": %.4f, \"train_tok_per_cpu_s\": %.1f", cpu_med, N / cpu_med);
        printf(", \"mem_params_mb\": %.1f, \"mem_grads_mb\": %.1f, \"mem_adam_mb\": %.1f, \"mem_activations_mb\": %.1f, "
               "\"mem_bf16_mb\": %.1f, \"mem_computed_mb\": %.1f, \"peak_rss_mb\": %.1f",
               p_bytes / MB, p_bytes / MB, 2 * p_bytes / MB, act_bytes / MB, bf_bytes / MB, computed / MB, peak / MB);
        printf(", \"train_tok_s\": %.1f, \"flops_per_token\": %.0f, \"params_active\": %zu, \"gflops\": %.1f, "
               "\"sgemm_gflops\": %.1f, \"membw_gbs\": %.1f, \"sgemm_share\": %.3f, \"loss_first\": %.4f, "
               "\"loss_last\": %.4f}\n",
               tok_s, flops_tok, active, gflops, sgemm, membw, gflops / sgemm, loss_first, loss_last);
    } else {
        printf("bench train  %s  %s  batch %d x seq %d  threads %d\n", preset,
               prec == MO_PRECISION_BF16 ? "bf16" : "fp32", B, T, threads_count());
        printf("  step (fwd+bwd+AdamW)  %.3f s median of %d (%.3f CPU-s)\n", med, steps, cpu_med);
        printf("  tokens/s              %.1f  (%.1f per CPU-second)\n", tok_s, N / cpu_med);
        printf("  GFLOP/s               %.1f  (%.1f MFLOP/token = 6 x %.2fM active + 12 x %d x %d x %d)\n", gflops,
               flops_tok / 1e6, active / 1e6, c.n_layers, T, c.d_model);
        printf("  sgemm, same run       %.1f GFLOP/s (n=1024): training at %.0f%% of it\n", sgemm,
               100 * gflops / sgemm);
        printf("  memory, same run      %.1f GB/s\n", membw);
        printf("  step memory           %.0f MB computed = params %.0f + grads %.0f + AdamW m,v %.0f + activations %.0f"
               " + bf16 %.0f; peak RSS %.0f MB\n",
               computed / MB, p_bytes / MB, p_bytes / MB, 2 * p_bytes / MB, act_bytes / MB, bf_bytes / MB, peak / MB);
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
