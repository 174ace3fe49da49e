// bench_train.c: `monolith bench train`, the throughput of full training steps.
//
// A randomly initialized model of a preset (bench-S by default) trains on random
// tokens, batch 8 x seq 256 unless --batch/--seq say otherwise: each step runs forward,
// a backward that sets the gradients (model_backward_first, as `monolith train`'s first
// micro-batch) and AdamW over what --train selects (train/adamw.h; a mask that trains a
// part runs as `monolith train` runs it: model_set_trainable and a sparse gradient arena,
// zeroed where it trains; under --precision bf16 the frozen GEMM weights are kept as bf16
// only, model_bf16_hold_frozen, unless --frozen-fp32). One warm-up step,
// then steps timed ones; the median step gives tokens/s and GFLOP/s. FLOPs per token are
// counted the way the PyTorch peer does (scripts/peer_torch_moe.py): 6 x active parameters (every
// matrix a token passes through; not the embedding table, a lookup) + 12 x n_layers x T x
// d_model for attention. Both rates are set beside the sgemm GFLOP/s and memory GB/s
// measured in the same run (under bf16 also the bf16 GEMM's, roofline_bf16_gflops).
//
// Under mpirun each rank trains its own random batch and the step is data parallel
// (train/dist.h: all-reduce, or --shard-optimizer's reduce-scatter + all-gather): rank 0
// reports tokens/s per rank and in all, the share of the step spent inside MPI calls, the
// bytes each rank sends per step (engine/comm.h's count) and the loopback bytes the
// kernel counted (/proc/net/dev, all ranks; only with a TCP transport, --mca btl self,tcp).
// With --expert-parallel G the experts of every MoE layer are split over groups of G
// ranks (engine/moe_ep.h) and the bytes of the expert exchange (all-to-all-v) are
// reported on their own beside the all-reduce's.
#include "tools/bench.h"
#include "tools/commands.h"

#include "engine/base/error.h"
#include "engine/base/rng.h"
#include "engine/comm.h"
#include "engine/config.h"
#include "engine/model.h"
#include "engine/params.h"
#include "kernels/roofline.h"
#include "kernels/threads.h"
#include "train/adamw.h"
#include "train/dist.h"
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
    "usage: monolith bench train [--preset NAME] [--precision fp32|bf16] [--seq T] [--batch B] [--train MASK]\n"
    "                            [--recompute] [--steps N] [--set FIELD=VALUE]... [--shard-optimizer]\n"
    "                            [--expert-parallel G] [--frozen-fp32] [--threads N] [--json]\n"
    "\n"
    "Tokens/s and GFLOP/s of training steps (forward, backward, AdamW) of a randomly initialized\n"
    "model on random tokens, median of the timed steps after one warm-up, beside this machine's\n"
    "sgemm and memory rates (under bf16 also the bf16 GEMM's) measured in the same run, and the\n"
    "process's peak memory (RSS high-water).\n"
    "  --preset NAME   tiny, small, bench-S (default) or fine-S\n"
    "  --precision P   fp32 (default, the reference) or bf16: the big GEMMs in bf16 with fp32\n"
    "                  accumulation and fp32 master weights (needs AVX512_BF16)\n"
    "  --seq T         tokens per sequence (default 256); past the preset's max_seq_len it raises\n"
    "                  max_seq_len to T (a field that changes no tensor's shape)\n"
    "  --batch B       sequences per step (default 8)\n"
    "  --train MASK    what trains, as `monolith train --train` (default all): e.g. experts=0;\n"
    "                  with --precision bf16 the frozen GEMM weights are held as bf16 only\n"
    "  --frozen-fp32   with --precision bf16 and --train: keep the frozen weights' fp32 values too\n"
    "                  (the layout before bf16-only frozen weights, for comparison)\n"
    "  --recompute     keep only each layer's input; redo its forward in backward (less memory)\n"
    "  --steps N       timed steps after the warm-up (default 3, at most 50)\n"
    "  --set F=V       override a config field of the preset, e.g. --set n-experts=16 --set d-ff=256\n"
    "                  (repeatable; the names of `monolith init`'s flags)\n"
    "  --shard-optimizer  under mpirun: AdamW's m and v sharded over the ranks (ZeRO-1)\n"
    "  --expert-parallel G  under mpirun: every MoE layer's experts split over groups of G ranks\n"
    "  --threads N     threads (default: one per core)\n"
    "  --json          one JSON object instead of the table\n";

size_t bench_flop_params(const mo_param_table *pt) {
    return params_count_active(pt) - pt->t[pt->tok_embeddings].numel - pt->t[pt->norm].numel;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    mo_precision prec;
    int steps, seq, batch, recompute, shard, ep, frozen_fp32;
    const char *train;
    const char *sets[SETS_MAX];
    int n_sets;
} train_flags;

// A whole number in [lo, hi] for `flag`, or -1 after printing the error.
static int take_int(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    long k = strtol(v, &end, 10);
    if (!*v || *end || k < lo || k > hi) {
        cli_usage_error("bench", "%s takes a whole number from %d to %d, not '%s'", flag, lo, hi, v);
        return -1;
    }
    *out = (int)k;
    return 0;
}

// Takes this benchmark's own flags out of argv (the rest goes to bench_parse_model_opts).
// Returns 0, or -1 after printing the error.
static int take_train_flags(int *argc, char **argv, train_flags *f) {
    static const char *const with_value[] = {"--precision", "--steps", "--set",  "--seq",
                                             "--batch",     "--train", "--expert-parallel"};
    int n = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "--recompute") || !strcmp(a, "--shard-optimizer") || !strcmp(a, "--frozen-fp32")) {
            *(a[2] == 'r' ? &f->recompute : a[2] == 's' ? &f->shard : &f->frozen_fp32) = 1;
            continue;
        }
        int which = 0;
        for (int w = 0; w < 7; w++)
            if (!strcmp(a, with_value[w])) which = w + 1;
        if (!which) {
            argv[n++] = argv[i];
            continue;
        }
        if (i + 1 == *argc) {
            cli_usage_error("bench", "%s needs a value", a);
            return -1;
        }
        v = argv[++i];
        if (which == 1 && model_precision_parse(v, "--precision", &f->prec)) {
            cli_usage_error("bench", "%s", mo_error());
            return -1;
        }
        if (which == 2 && take_int(a, v, 1, STEPS_MAX, &f->steps)) return -1;
        if (which == 3) {
            if (f->n_sets == SETS_MAX || !strchr(v, '=')) {
                cli_usage_error("bench", "--set takes FIELD=VALUE (at most %d of them), not '%s'", SETS_MAX, v);
                return -1;
            }
            f->sets[f->n_sets++] = v;
        }
        if (which == 4 && take_int(a, v, 1, 1 << 20, &f->seq)) return -1;
        if (which == 5 && take_int(a, v, 1, 1 << 16, &f->batch)) return -1;
        if (which == 6) f->train = v;
        if (which == 7 && take_int(a, v, 0, 1 << 16, &f->ep)) return -1;
    }
    argv[n] = NULL;
    *argc = n;
    return 0;
}

// This process's peak resident memory so far, bytes.
// Bytes sent over the loopback interface so far (all processes), or -1.
static double loopback_tx_bytes(void) {
    FILE *f = fopen("/proc/net/dev", "r");
    if (!f) return -1;
    char line[512];
    double tx = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long long v[9];
        const char *c = strchr(line, ':');
        if (!c || !strstr(line, "lo:")) continue;
        if (sscanf(c + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7], &v[8]) == 9)
            tx = (double)v[8];
    }
    fclose(f);
    return tx;
}

static double peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

// Expert parallel: the routed rows of the last forward that crossed ranks at this rank,
// over the MoE layers: its own rows sent to other ranks' experts (R_out) plus the other
// ranks' rows its experts received (R_in). Each is sent twice by this rank (R_out: rows
// and their gradients; R_in: outputs and input gradients back).
static double expert_rows_crossing(const mo_model *m) {
    if (m->ep.size <= 1) return 0;
    const mo_config *c = &m->pt->cfg;
    const int L = m->ep.local, me = m->ep.rank;
    double rows = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (!c->moe_layers[l]) continue;
        const int *offs = m->layer[l].disp.offs, *cnt = m->layer[l].ep_counts;
        rows += offs[c->n_experts] - (offs[(me + 1) * L] - offs[me * L]);  // R_out
        for (int s = 0; s < m->ep.size; s++)
            for (int e = 0; e < L && s != me; e++) rows += cnt[s * L + e];  // R_in
    }
    return rows;
}

// Floats the data-parallel all-reduce covers: the whole arena, or under expert
// parallelism the mask's replicated ranges.
static double replicated_numel(const dist_opt *d) {
    if (d->ep <= 1) return (double)d->numel;
    double n = 0;
    for (size_t i = 0; i < d->split.n; i++)
        if (d->owner[i] < 0) n += (double)d->split.r[i].length;
    return n;
}

// params_init_each's callback: tensor i's frozen GEMM weights to bf16 only.
typedef struct {
    mo_model *m;
    float *params;
} hold_ctx;
static void hold_frozen(void *ctx, int i) {
    hold_ctx *h = ctx;
    model_bf16_hold_frozen(h->m, h->params, i);
}

int bench_train(int argc, char **argv) {
    bench_opts o;
    const char *preset;
    train_flags fl = {.prec = MO_PRECISION_FP32, .steps = STEPS_DEFAULT, .seq = SEQ, .batch = BATCH, .train = "all"};
    if (take_train_flags(&argc, argv, &fl)) return 2;
    const mo_precision prec = fl.prec;
    const int steps = fl.steps, shard = fl.shard;
    const int rank = comm_rank(), ranks = comm_size();
    int prc = bench_parse_model_opts(argc, argv, &o, &preset, usage);
    if (prc) return prc > 0 ? 0 : 2;
    if (cli_threads(o.threads)) return 1;

    mo_config c;
    char names[SETS_MAX][64];
    config_override ov[SETS_MAX];
    for (int i = 0; i < fl.n_sets; i++) {
        const char *eq = strchr(fl.sets[i], '=');
        snprintf(names[i], sizeof names[i], "%.*s", (int)(eq - fl.sets[i]), fl.sets[i]);
        ov[i] = (config_override){names[i], eq + 1};
    }
    if (config_build(&c, preset, ov, fl.n_sets)) return cmd_fail();
    if (c.max_seq_len < fl.seq) {  // a field no tensor's shape depends on
        c.max_seq_len = fl.seq;
        if (config_finalize(&c)) return cmd_fail();
    }
    const int B = fl.batch, T = fl.seq;
    if ((double)B * T > 1 << 24) {
        fprintf(stderr, "monolith: --batch %d x --seq %d is more than %d tokens a step\n", B, T, 1 << 24);
        return 2;
    }
    const int N = B * T;
    mo_model_opts mopts = {.recompute = fl.recompute, .expert_parallel = fl.ep};
    if (fl.ep > 1 && comm_expert_groups(fl.ep)) return cmd_fail();

    int rc = 1;
    mo_param_table pt = {0};
    mo_model m;
    int model_ok = 0;
    float *params = NULL, *grads = NULL;
    int *tokens = NULL, *targets = NULL;
    train_mask mask = {0};
    dist_opt d = {0};
    int part = 0, sparse = 0;  // the mask trains a part; the gradient arena is sparse (one rank)
    int held = 0;              // the frozen GEMM weights are held as bf16 only
    if (params_table_build(&pt, &c)) goto out;
    if (freeze_parse(&pt, fl.train, &mask)) goto out;
    part = !train_mask_is_all(&mask, &pt), sparse = (part && ranks == 1) || fl.ep > 1;
    // One process training a part in bf16: the frozen GEMM weights live in the model's
    // bf16 copy alone (engine/model.h), set there tensor by tensor as they are made.
    held = part && ranks == 1 && fl.ep <= 1 && prec == MO_PRECISION_BF16 && !fl.frozen_fp32;
    if (!(params = held ? params_arena_alloc_sparse(&pt) : params_arena_alloc(&pt)) ||
        !(grads = sparse ? params_arena_alloc_sparse(&pt) : params_arena_alloc(&pt)))
        goto out;
    if (dist_opt_init(&d, &pt, &mask, shard, fl.ep)) goto out;
    if (model_alloc_opts(&m, &pt, B, T, &mopts)) goto out;
    model_ok = 1;
    if (part && model_set_trainable(&m, train_mask_any, &mask)) goto out;
    if (model_set_precision(&m, prec)) goto out;
    params_init_each(&pt, params, 1, held ? hold_frozen : NULL, &(hold_ctx){&m, params});
    const size_t p_numel = pt.numel - (held ? model_bf16_frozen_numel(&pt, train_mask_any, &mask) : 0);  // the fp32 parameters held
    tokens = malloc(sizeof(int) * N);
    targets = malloc(sizeof(int) * N);
    if (!tokens || !targets) goto out;
    mo_rng r;
    mo_rng_seed(&r, 2 + (uint64_t)rank);  // each rank its own batch
    for (int i = 0; i < N; i++) tokens[i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);
    for (int i = 0; i < N; i++) targets[i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);

    const int say = !o.json && rank == 0;
    if (say)
        fprintf(stderr,
                "bench train: %s, %s, batch %d x seq %d, --train %s%s, %d rank%s x %d threads%s: 1 warm-up + %d "
                "steps\n",
                preset, prec == MO_PRECISION_BF16 ? "bf16" : "fp32", B, T, fl.train, fl.recompute ? ", --recompute" : "",
                ranks, ranks > 1 ? "s" : "", threads_count(), d.shard ? ", optimizer sharded" : "", steps);
    adamw_step st = adamw_defaults();
    st.lr = 3e-4;
    double dt[STEPS_MAX + 1], cpu[STEPS_MAX + 1], comm_s[STEPS_MAX + 1], sent[STEPS_MAX + 1], a2a[STEPS_MAX + 1];
    double rows_off[STEPS_MAX + 1];  // expert parallel: R_out + R_in (expert_rows_crossing)
    double loss_first = 0, loss_last = 0, lo_tx0 = 0;
    for (int s = 0; s <= steps; s++) {
        if (s == 1) lo_tx0 = loopback_tx_bytes();
        comm_reset_stats();
        double t0 = now_seconds(), c0 = bench_cpu_seconds();
        if (sparse) dist_zero_grads(&d, grads);  // else backward sets them: model_backward_first
        if (model_forward(&m, params, tokens, targets) ||
            (sparse ? model_backward : model_backward_first)(&m, params, grads, 1.0f / (float)ranks))
            goto out;
        int err;
        st.t = s + 1;
        mo_bf16 *wb = ranks == 1 ? model_bf16_weights(&m) : NULL;  // as monolith train: AdamW writes the bf16 copy
        if (dist_sync_grads(&d, grads) || (dist_clip(&d, grads, 0, &st.grad_scale, &err), err) ||
            dist_apply(&d, params, grads, wb, &st))
            goto out;
        if (wb) model_bf16_weights_current(&m);
        dt[s] = now_seconds() - t0;
        cpu[s] = bench_cpu_seconds() - c0;
        comm_stats cs = comm_get_stats();
        comm_s[s] = cs.seconds, sent[s] = cs.bytes_sent, a2a[s] = cs.bytes_alltoall;
        rows_off[s] = expert_rows_crossing(&m);
        if (s == 0) loss_first = m.loss;
        loss_last = m.loss;
        if (say)
            fprintf(stderr, "  step %d  %.3f s  (%.3f CPU-s, %.3f s in MPI)  loss %.4f%s\n", s, dt[s], cpu[s], comm_s[s],
                    m.loss, s ? "" : "  (warm-up)");
    }
    double lo_bytes = lo_tx0 >= 0 ? (loopback_tx_bytes() - lo_tx0) / steps : -1;
    double sorted[STEPS_MAX];
    memcpy(sorted, dt + 1, sizeof sorted);
    qsort(sorted, steps, sizeof *sorted, cmp_double);
    double med = sorted[steps / 2];
    memcpy(sorted, cpu + 1, sizeof sorted);
    qsort(sorted, steps, sizeof *sorted, cmp_double);
    double cpu_med = sorted[steps / 2];
    double comm_sum = 0, step_sum = 0, sent_step = sent[steps], a2a_step = a2a[steps];
    // docs/distributed.md: the expert exchange sends each crossing row twice (forward and
    // backward) as d floats; the all-reduce covers the mask's replicated ranges.
    const double a2a_formula = 2.0 * rows_off[steps] * c.d_model * sizeof(float);
    const double dense_formula = ranks > 1 ? 2.0 * (ranks - 1) / ranks * replicated_numel(&d) * sizeof(float) : 0;
    for (int s = 1; s <= steps; s++) comm_sum += comm_s[s], step_sum += dt[s];
    double comm_share = step_sum > 0 ? comm_sum / step_sum : 0;

    // Memory of a step: what the arenas take (parameters, gradients, AdamW m and v,
    // activations, bf16 copies and scratch) against the peak resident size the process
    // reached (before the rate measurements below, which allocate buffers of their own).
    // Gradients and moments of a mask that trains a part take memory only where it trains
    // (the frozen pages are never written).
    const double MB = 1048576.0, p_bytes = (double)p_numel * sizeof(float);
    double own = 0;  // what this rank trains: the mask, or under expert parallelism its own ranges
    for (size_t i = 0; i < d.n_own; i++) own += (double)d.own[i].length;
    const double g_bytes = (sparse ? own : (double)pt.numel) * sizeof(float);
    const double adam_bytes = 2.0 * (d.shard ? (double)dist_opt_moment_numel(&d) : own) * sizeof(float);
    const double act_bytes = (double)m.arena_bytes, bf_bytes = (double)m.bf16_bytes;
    const double computed = p_bytes + g_bytes + adam_bytes + act_bytes + bf_bytes, peak = peak_rss_bytes();

    // The machine's own rates, right after the steps, with the same threads.
    // (rank 0 only: the other ranks would take cores from it).
    double sgemm = rank ? 1 : roofline_sgemm_gflops(1024, 1.0), membw = rank ? 1 : roofline_membw_gbs(1.0);
    // Under bf16 also the bf16 product's rate: bf16 / sgemm is the ceiling of the speed-up
    // over fp32 on the products, which this CPU's vdpbf16ps sets.
    double bgemm = rank || prec != MO_PRECISION_BF16 ? 0 : roofline_bf16_gflops(1024, 1.0);

    size_t active = bench_flop_params(&pt);
    double flops_tok = 6.0 * (double)active + 12.0 * c.n_layers * T * c.d_model;
    double tok_s = N / med, gflops = flops_tok * N / med / 1e9;
    if (rank != 0) {
    } else if (o.json) {
        printf("{\"bench\": \"train\", \"preset\": \"%s\", \"precision\": \"%s\", \"threads\": %d, \"batch\": %d, "
               "\"seq\": %d, \"train\": \"%s\", \"recompute\": %d, \"params_total\": %zu, \"params_trained\": %zu, "
               "\"n_experts\": %d, \"top_k\": %d, \"d_ff\": %d, \"optimizer\": \"adamw\", "
               "\"step_s_median\": %.4f, \"step_s_all\": [",
               preset, prec == MO_PRECISION_BF16 ? "bf16" : "fp32", threads_count(), B, T, fl.train, fl.recompute,
               pt.numel, mask.numel, c.n_experts, c.top_k, c.d_ff, med);
        for (int s = 1; s <= steps; s++) printf("%s%.4f", s > 1 ? ", " : "", dt[s]);
        printf("], \"cpu_s_median\": %.4f, \"train_tok_per_cpu_s\": %.1f", cpu_med, N / cpu_med);
        printf(", \"ranks\": %d, \"shard_optimizer\": %s, \"tok_s_per_rank\": %.1f, \"tok_s_total\": %.1f, "
               "\"comm_share\": %.4f, \"comm_bytes_sent_per_step\": %.0f, \"loopback_bytes_per_step\": %.0f, "
               "\"params\": %zu, \"expert_parallel\": %d, \"alltoall_bytes_per_step\": %.0f, "
               "\"alltoall_formula_bytes\": %.0f, \"allreduce_formula_bytes\": %.0f, \"rows_crossing\": %.0f",
               ranks, d.shard ? "true" : "false", tok_s, tok_s * ranks, comm_share, sent_step, lo_bytes, pt.numel,
               d.ep, a2a_step, a2a_formula, dense_formula, rows_off[steps]);
        printf(", \"mem_params_mb\": %.1f, \"mem_grads_mb\": %.1f, \"mem_adam_mb\": %.1f, \"mem_activations_mb\": %.1f, "
               "\"mem_bf16_mb\": %.1f, \"mem_computed_mb\": %.1f, \"peak_rss_mb\": %.1f, \"frozen_bf16_only\": %d",
               p_bytes / MB, g_bytes / MB, adam_bytes / MB, act_bytes / MB, bf_bytes / MB, computed / MB, peak / MB, held);
        printf(", \"train_tok_s\": %.1f, \"flops_per_token\": %.0f, \"params_active\": %zu, \"gflops\": %.1f, "
               "\"sgemm_gflops\": %.1f, \"membw_gbs\": %.1f, \"sgemm_share\": %.3f, \"loss_first\": %.4f, "
               "\"loss_last\": %.4f",
               tok_s * ranks, flops_tok, active, gflops, sgemm, membw, gflops / sgemm, loss_first, loss_last);
        if (bgemm > 0) printf(", \"bf16_gemm_gflops\": %.1f", bgemm);
        printf("}\n");
    } else {
        printf("bench train  %s  %s  batch %d x seq %d  --train %s%s  threads %d\n", preset,
               prec == MO_PRECISION_BF16 ? "bf16" : "fp32", B, T, fl.train, fl.recompute ? "  --recompute" : "",
               threads_count());
        printf("  parameters            %zu, training %zu\n", pt.numel, mask.numel);
        printf("  step (fwd+bwd+AdamW)  %.3f s median of %d (%.3f CPU-s)\n", med, steps, cpu_med);
        printf("  tokens/s              %.1f  (%.1f per CPU-second)\n", tok_s, N / cpu_med);
        if (ranks > 1) {
            printf("  ranks                 %d (data parallel%s): %.1f tokens/s in all, %.1f per rank\n", ranks,
                   d.shard ? ", optimizer sharded" : d.ep > 1 ? ", experts split over groups" : "", tok_s * ranks, tok_s);
            if (d.ep > 1)
                printf("  expert exchange       groups of %d: %.2f MB sent per step by rank 0 in all-to-all-v; formula "
                       "2 x (R_out + R_in = %.0f rows) x 4 d = %.2f MB; all-reduce of the replicated part, formula %.2f MB\n",
                       d.ep, a2a_step / 1e6, rows_off[steps], a2a_formula / 1e6, dense_formula / 1e6);
            printf("  communication         %.1f%% of the step inside MPI; %.2f MB sent per step by each rank "
                   "(ring count); %.2f MB per step over loopback (all ranks, TCP only)\n",
                   100 * comm_share, sent_step / 1e6, lo_bytes / 1e6);
        }
        printf("  GFLOP/s               %.1f  (%.1f MFLOP/token = 6 x %.2fM active + 12 x %d x %d x %d)\n", gflops,
               flops_tok / 1e6, active / 1e6, c.n_layers, T, c.d_model);
        printf("  sgemm, same run       %.1f GFLOP/s (n=1024): training at %.0f%% of it\n", sgemm,
               100 * gflops / sgemm);
        if (bgemm > 0)
            printf("  bf16 GEMM, same run   %.1f GFLOP/s (n=1024): %.2fx the sgemm rate\n", bgemm, bgemm / sgemm);
        printf("  memory, same run      %.1f GB/s\n", membw);
        printf("  step memory           %.0f MB computed = params %.0f%s + grads %.0f + AdamW m,v %.0f%s + activations %.0f"
               " + bf16 %.0f; peak RSS %.0f MB\n",
               computed / MB, p_bytes / MB, held ? " (fp32 of what trains and of norms, router, embeddings; frozen GEMM "
               "weights in the bf16 copy only)" : "", g_bytes / MB, adam_bytes / MB, d.shard ? " (this rank's shard)" : "",
               act_bytes / MB, bf_bytes / MB, peak / MB);
    }
    rc = 0;
out:
    if (rc) cmd_fail();
    if (model_ok) model_free(&m);
    train_mask_free(&mask);
    dist_opt_free(&d);
    free(tokens), free(targets);
    if (held) params_arena_free_sparse(&pt, params);
    else free(params);
    if (sparse) params_arena_free_sparse(&pt, grads);
    else free(grads);
    params_table_free(&pt);
    return rc;
}
