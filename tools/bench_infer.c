// bench_infer.c: `monolith bench infer`, prefill and decode throughput at batch 1.
//
// A randomly initialized model of a preset (bench-S by default) prefills a prompt of 256
// random tokens, then decodes 128 tokens greedily one at a time with the KV cache
// (infer/infer.h), as the PyTorch peer does (scripts/peer_torch_moe.py: the first new token
// comes from the prefill logits, then 128 single-token steps). One warm-up run, then the
// median of REPEATS. Prefill is compute-bound: its GFLOP/s (forward = 2 x active
// parameters + 4 x n_layers x T x d_model per token) is set beside the sgemm rate.
// Decode at batch 1 is memory-bound: every step reads the weights a token passes
// through (4 bytes x the active parameters, the embedding table aside) once, so those
// bytes per second are set beside the memory bandwidth. Both machine rates are measured
// in the same run. Decode's products alone (infer_probe) are then set beside a plain read
// of the same bytes, to tell the kernels' share of decode's gap from the rest's.
#include "tools/bench.h"
#include "tools/commands.h"

#include "data/tokens.h"
#include "engine/base/error.h"
#include "engine/base/rng.h"
#include "engine/checkpoint.h"
#include "engine/config.h"
#include "engine/params.h"
#include "infer/infer.h"
#include "infer/sample.h"
#include "kernels/roofline.h"
#include "kernels/threads.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFILL 256
#define DECODE 128
#define REPEATS 3
#define PROBE_ROUNDS 5

static const char usage[] =
    "usage: monolith bench infer [--preset NAME] [--weights f32|int8] [--precision fp32|bf16] [--threads N]\n"
    "                            [--json]\n"
    "\n"
    "Prefill 256 tokens, then decode 128 tokens one at a time (greedy, KV cache), batch 1, with a\n"
    "randomly initialized model; median of 3 runs after one warm-up, beside this machine's sgemm\n"
    "and memory rates measured in the same run. Then decode's matrix-vector products alone (16\n"
    "tokens' worth, 5 alternating rounds) beside a plain read of the same bytes: in guided\n"
    "chunks and in contiguous halves, with decode's meetings, with a parallel region a token, and\n"
    "in halves with the fp32 rows one after the other instead of in pairs.\n"
    "  --preset NAME   tiny, small, bench-S (default) or fine-S\n"
    "  --weights W     f32 (default) or int8 (8-bit weights quantized at load; also prints the\n"
    "                  logit difference to f32 and top-1 agreement along the f32 greedy text)\n"
    "  --precision P   fp32 (default) or bf16: prefill's products with bf16 inputs and fp32 sums\n"
    "                  (needs AVX512_BF16), and the KV cache in bf16 (half the bytes decode\n"
    "                  reads for attention)\n"
    "  --checkpoint F  a trained model instead of the preset's random one\n"
    "  --data F.h5     a token set (monolith data prepare) of the model's vocabulary: the prompt is\n"
    "                  the start of its validation split, and int8 is compared with f32 along the\n"
    "                  text that follows (teacher-forced) instead of the greedy continuation\n"
    "  --threads N     threads (default: one per core)\n"
    "  --json          one JSON object instead of the table\n";

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median of v[n] (n <= PROBE_ROUNDS), v left in run order.
static double median(const double *v, int n) {
    double t[PROBE_ROUNDS];
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

// A fast path's accuracy along `text` (D tokens after the prompt) or, when NULL, the
// reference's greedy continuation of the prompt: the reference setting (rw weights, rp
// precision) and the variant (vw, vp) read the same tokens (teacher forcing), and at
// each of the D+1 positions (the prompt's last, then D decode steps) the logits are
// compared. Leaves s in the variant.
typedef struct {
    double max_abs, mean_abs, logit_rms;  // |variant - reference| max and mean, RMS of the reference logits
    double top1;                          // share of positions where both pick the same token
    double sum, sq;                       // running sums of |diff| and reference^2 (accuracy_add)
    int positions, agree;
} accuracy;

// One position's logits, the variant's `got` against the reference's `ref`.
static void accuracy_add(accuracy *a, const float *got, const float *ref, int V) {
    for (int j = 0; j < V; j++) {
        double dd = fabs((double)got[j] - ref[j]);
        a->sum += dd, a->sq += (double)ref[j] * ref[j], a->max_abs = dd > a->max_abs ? dd : a->max_abs;
    }
    a->agree += sample_argmax(got, V) == sample_argmax(ref, V);
    a->positions++;
}

// The means and shares over the positions added.
static void accuracy_finish(accuracy *a, int V) {
    const double n = (double)a->positions * V;
    a->mean_abs = a->sum / n, a->logit_rms = sqrt(a->sq / n), a->top1 = (double)a->agree / a->positions;
}

static int measure_text_accuracy(infer_ctx *s, const int *prompt, int P, int D, int V, const int *text,
                                 infer_weights rw, mo_precision rp, infer_weights vw, mo_precision vp, accuracy *a) {
    int rc = -1;
    float *ref = malloc(sizeof(float) * (size_t)(D + 1) * V), *lg = malloc(sizeof(float) * V);
    int *toks = malloc(sizeof(int) * (D + 1));
    if (!ref || !lg || !toks) goto out;
    if (infer_set_weights(s, rw) || infer_set_precision(s, rp) || infer_prefill(s, 0, 1, P, prompt, ref)) goto out;
    for (int i = 0; i < D; i++) {
        toks[i] = text ? text[i] : sample_argmax(ref + (size_t)i * V, V);
        if (infer_decode(s, 1, NULL, &toks[i], ref + (size_t)(i + 1) * V)) goto out;
    }
    if (infer_set_weights(s, vw) || infer_set_precision(s, vp)) goto out;
    *a = (accuracy){0};
    for (int i = 0; i <= D; i++) {
        if (i == 0 ? infer_prefill(s, 0, 1, P, prompt, lg) : infer_decode(s, 1, NULL, &toks[i - 1], lg)) goto out;
        accuracy_add(a, lg, ref + (size_t)i * V, V);
    }
    accuracy_finish(a, V);
    rc = 0;
out:
    free(ref), free(lg), free(toks);
    return rc;
}

// bf16 against fp32 prefill: the last position's logits of ACC_PROMPTS prompts of P
// tokens (windows 8 tokens apart of `text`, which holds P + 8 * (ACC_PROMPTS - 1) tokens,
// or random ones when NULL), compared as measure_text_accuracy does. Leaves s in bf16.
#define ACC_PROMPTS 8
static int measure_bf16_accuracy(infer_ctx *s, int P, int V, const int *text, accuracy *a) {
    int rc = -1;
    float *f = malloc(sizeof(float) * V), *b = malloc(sizeof(float) * V);
    int *prompt = malloc(sizeof(int) * P);
    *a = (accuracy){0};
    mo_rng r;
    mo_rng_seed(&r, 5);
    if (!f || !b || !prompt) goto out;
    for (int w = 0; w < ACC_PROMPTS; w++) {
        for (int i = 0; i < P; i++) prompt[i] = text ? text[8 * w + i] : (int)mo_rng_below(&r, (uint64_t)V);
        if (infer_set_precision(s, MO_PRECISION_FP32) || infer_prefill(s, 0, 1, P, prompt, f)) goto out;
        if (infer_set_precision(s, MO_PRECISION_BF16) || infer_prefill(s, 0, 1, P, prompt, b)) goto out;
        accuracy_add(a, b, f, V);
    }
    accuracy_finish(a, V);
    rc = 0;
out:
    free(f), free(b), free(prompt);
    return rc;
}

int bench_infer(int argc, char **argv) {
    bench_opts o;
    const char *preset;
    // --weights is ours; the rest are the common model flags.
    infer_weights weights = INFER_WEIGHTS_F32;
    mo_precision precision = MO_PRECISION_FP32;
    const char *ckpt_path = NULL, *data_path = NULL;
    char **rest = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (!rest) return 1;
    int nrest = 0;
    for (int i = 0; i < argc; i++) {
        const char *w = NULL;
        if (i > 0 && !strcmp(argv[i], "--checkpoint") && i + 1 < argc) ckpt_path = argv[++i];
        else if (i > 0 && !strcmp(argv[i], "--data") && i + 1 < argc) data_path = argv[++i];
        else if (i > 0 && !strcmp(argv[i], "--weights") && i + 1 < argc) w = argv[++i];
        else if (i > 0 && !strncmp(argv[i], "--weights=", 10)) w = argv[i] + 10;
        else if (i > 0 && (!strcmp(argv[i], "--precision") || !strncmp(argv[i], "--precision=", 12))) {
            const char *v = argv[i][11] == '=' ? argv[i] + 12 : i + 1 < argc ? argv[++i] : "";
            if (model_precision_parse(v, "--precision", &precision)) {
                cli_usage_error("bench", "%s", mo_error());
                free(rest);
                return 2;
            }
        }
        else rest[nrest++] = argv[i];
        if (w && strcmp(w, "f32") && strcmp(w, "int8")) {
            cli_usage_error("bench", "--weights %s: use f32 or int8", w);
            free(rest);
            return 2;
        }
        if (w) weights = !strcmp(w, "int8") ? INFER_WEIGHTS_INT8 : INFER_WEIGHTS_F32;
    }
    rest[nrest] = NULL;
    int prc = bench_parse_model_opts(nrest, rest, &o, &preset, usage);
    free(rest);
    if (prc) return prc > 0 ? 0 : 2;
    if (cli_threads(o.threads)) return 1;

    int rc = 1;
    mo_checkpoint ck = {0};
    mo_param_table pt = {0};
    float *params = NULL, *logits = NULL;
    uint64_t *rbuf = NULL;  // the read roofline's buffer
    int *prompt = NULL, *text = NULL;
    infer_ctx *s = NULL;
    tokset_split split = {0};
    mo_config c;
    if (ckpt_path) {
        if (ckpt_load(ckpt_path, &ck)) goto out;
        c = ck.table.cfg;
        preset = ckpt_path;
    } else if (config_build(&c, preset, NULL, 0)) {
        goto out;
    }
    // Prompt and generated tokens must fit the context: shrink both for a short one.
    int P = PREFILL, D = DECODE;
    if (P + D > c.max_seq_len) P = c.max_seq_len * 2 / 3, D = c.max_seq_len - P;
    if (data_path) {
        tokset_info info;
        if (tokset_info_read(data_path, &info)) goto out;
        if (info.vocab_size != c.vocab_size) {
            mo_errorf("--data %s: its vocabulary has %lld ids, the model's %d; prepare it with the model's tokenizer",
                      data_path, (long long)info.vocab_size, c.vocab_size);
            goto out;
        }
        if (tokset_load_split(data_path, &info, TOKSET_VAL, (uint64_t)1 << 30, &split)) goto out;
        if (split.n < (uint64_t)(P + D)) {
            mo_errorf("--data %s: its validation split has %llu tokens, %d needed", data_path,
                      (unsigned long long)split.n, P + D);
            goto out;
        }
        if (!(text = malloc(sizeof(int) * (P + D)))) goto out;
        for (int i = 0; i < P + D; i++) text[i] = (int)tokset_at(&split, (uint64_t)i);
    }
    if (ckpt_path) {
        params = ck.params;
        if (!(s = infer_new(&ck.table, params, 1, P + D))) goto out;
    } else {
        if (params_table_build(&pt, &c)) goto out;
        if (!(params = params_arena_alloc(&pt))) goto out;
        params_init(&pt, params, 1);
    }
    if (!s && !(s = infer_new(&pt, params, 1, P + D))) goto out;
    if (infer_set_weights(s, weights) || infer_set_precision(s, precision)) goto out;
    prompt = malloc(sizeof(int) * P);
    logits = malloc(sizeof(float) * c.vocab_size);
    if (!prompt || !logits) goto out;
    mo_rng r;
    mo_rng_seed(&r, 3);
    for (int i = 0; i < P; i++) prompt[i] = text ? text[i] : (int)mo_rng_below(&r, (uint64_t)c.vocab_size);

    if (!o.json)
        fprintf(stderr,
                "bench infer: %s, %s weights, %s prefill %d + decode %d, batch 1, %d threads: 1 warm-up + %d runs\n",
                preset, weights ? "int8" : "f32", precision ? "bf16" : "fp32", P, D, threads_count(), REPEATS);
    // The read roofline is measured right after every decode run (the mean rate over a
    // quarter of a second, about half a decode run) as well as once at the end (the best
    // pass): on a shared machine the rate memory gives moves by 2x within a minute, and a
    // run is best set beside the rate of its own moment.
    size_t nread;
    rbuf = roofline_read_buffer(&nread);
    if (!rbuf) {
        mo_errorf("out of memory for the 256 MB read-roofline buffer; free memory or use a larger machine");
        goto out;
    }
    // The same read right before each decode run (after its prefill) too: when the two
    // differ, memory's rate moved during the run (a burst or a dip of the other tenants).
    double pre[REPEATS], dec[REPEATS], pre_cpu[REPEATS], dec_cpu[REPEATS], rd[REPEATS], rd0[REPEATS];
    for (int rep = 0; rep <= REPEATS; rep++) {
        double t0 = now_seconds(), c0 = bench_cpu_seconds();
        if (infer_prefill(s, 0, 1, P, prompt, logits)) goto out;
        int next = sample_argmax(logits, c.vocab_size);
        double tp = now_seconds(), cp = bench_cpu_seconds();
        const double read_before = roofline_read_mean_gbs(rbuf, nread, 0.25);
        double t1 = now_seconds(), c1 = bench_cpu_seconds();
        for (int i = 0; i < D; i++) {
            if (infer_decode(s, 1, NULL, &next, logits)) goto out;
            next = sample_argmax(logits, c.vocab_size);
        }
        double t2 = now_seconds(), c2 = bench_cpu_seconds();
        if (!o.json)
            fprintf(stderr, "  run %d  prefill %.1f tok/s  decode %.1f tok/s%s\n", rep, P / (tp - t0), D / (t2 - t1),
                    rep ? "" : "  (warm-up)");
        const double read_now = roofline_read_mean_gbs(rbuf, nread, 0.25);
        if (rep) {
            rd[rep - 1] = read_now, rd0[rep - 1] = read_before;
            pre[rep - 1] = P / (tp - t0), dec[rep - 1] = D / (t2 - t1);
            pre_cpu[rep - 1] = P / (cp - c0), dec_cpu[rep - 1] = D / (c2 - c1);
        }
    }
    // Decode's products alone (infer_probe) in PROBE_ROUNDS rounds of every mode, the
    // order reversed every other round; each mode's rate over the plain read of the same
    // bytes in the same round.
    double probe[INFER_PROBE_MODES][PROBE_ROUNDS], probe_share[INFER_PROBE_MODES][PROBE_ROUNDS];
    for (int r = 0; r < PROBE_ROUNDS; r++) {
        for (int i = 0; i < INFER_PROBE_MODES; i++) {
            const int m = r & 1 ? INFER_PROBE_MODES - 1 - i : i;
            if (infer_probe(s, (infer_probe_mode)m, &probe[m][r], NULL)) goto out;
        }
        for (int m = 0; m < INFER_PROBE_MODES; m++) probe_share[m][r] = probe[m][r] / probe[INFER_PROBE_READ][r];
    }
    double prefill_tok_s = median(pre, REPEATS), decode_tok_s = median(dec, REPEATS);
    double prefill_tok_cpu = median(pre_cpu, REPEATS), decode_tok_cpu = median(dec_cpu, REPEATS);

    double sgemm = roofline_sgemm_gflops(1024, 1.0), membw_stream = roofline_membw_gbs(1.0);
    double membw_read = roofline_read_gbs(rbuf, nread, 5);
    for (int i = 0; i < REPEATS; i++) membw_read = rd[i] > membw_read ? rd[i] : membw_read;
    double membw = membw_read > membw_stream ? membw_read : membw_stream;

    size_t active = bench_flop_params(ckpt_path ? &ck.table : &pt);
    // Prefill: forward FLOPs per token, attention at the prompt's length (the same count
    // as training's 12 L T d, divided by three for forward only).
    double prefill_flops_tok = 2.0 * (double)active + 4.0 * c.n_layers * P * c.d_model;
    double prefill_gflops = prefill_flops_tok * prefill_tok_s / 1e9;
    // Decode reads the weights a token passes through once per step (its k experts
    // only, at the weights' precision) and the KV cache of its position.
    double weight_bytes = infer_decode_weight_bytes(s);
    double decode_gbs = weight_bytes * decode_tok_s / 1e9;
    // The KV cache read per step, on average over the decode (positions P .. P+D-1).
    double kv_bytes = infer_decode_kv_bytes(s, P + (D - 1) / 2.0);
    // The memory roofline: every byte above streamed once at the best bandwidth of the
    // run; and each run against the read rate measured right after it.
    double roof_tok_s = membw * 1e9 / (weight_bytes + kv_bytes), run_share[REPEATS];
    for (int i = 0; i < REPEATS; i++) run_share[i] = dec[i] * (weight_bytes + kv_bytes) / 1e9 / rd[i];
    double run_share_med = median(run_share, REPEATS), before_share[REPEATS];
    const double decode_bytes_gbs = decode_tok_s * (weight_bytes + kv_bytes) / 1e9;  // weights and cache
    for (int i = 0; i < REPEATS; i++) before_share[i] = dec[i] * (weight_bytes + kv_bytes) / 1e9 / rd0[i];
    const double before_share_med = median(before_share, REPEATS);
    // Whether the weights and the read's buffer are on huge pages: the read is the
    // weights' roofline only when both are (kernels/roofline.h).
    size_t wbytes;
    const void *wbuf = infer_weight_buffer(s, &wbytes);
    const double huge_w = roofline_huge_share(wbuf, wbytes), huge_r = roofline_huge_share(rbuf, nread * sizeof *rbuf);
    // int8 against f32 weights (fp32 arithmetic); bf16 against fp32 on the run's weights:
    // the prefill of 8 prompts, and a text through the bf16 KV cache.
    accuracy acc = {0}, bacc = {0}, dacc = {0};
    const int *follow = text ? text + P : NULL;
    if (weights == INFER_WEIGHTS_INT8 &&
        measure_text_accuracy(s, prompt, P, D, c.vocab_size, follow, INFER_WEIGHTS_F32, MO_PRECISION_FP32,
                              INFER_WEIGHTS_INT8, MO_PRECISION_FP32, &acc))
        goto out;
    if (precision == MO_PRECISION_BF16 &&
        (measure_bf16_accuracy(s, P, c.vocab_size, D >= 8 * (ACC_PROMPTS - 1) ? text : NULL, &bacc) ||
         measure_text_accuracy(s, prompt, P, D, c.vocab_size, follow, weights, MO_PRECISION_FP32, weights,
                               MO_PRECISION_BF16, &dacc)))
        goto out;
    if (o.json) {
        printf("{\"bench\": \"infer\", \"preset\": \"%s\", \"threads\": %d, \"batch\": 1, \"prefill_tokens\": %d, "
               "\"decode_tokens\": %d, \"prefill_tok_s\": %.1f, \"decode_tok_s\": %.2f, \"prefill_all\": [",
               preset, threads_count(), P, D, prefill_tok_s, decode_tok_s);
        for (int i = 0; i < REPEATS; i++) printf("%s%.1f", i ? ", " : "", pre[i]);
        printf("], \"decode_all\": [");
        for (int i = 0; i < REPEATS; i++) printf("%s%.2f", i ? ", " : "", dec[i]);
        printf("], \"read_after_run_gbs\": [");
        for (int i = 0; i < REPEATS; i++) printf("%s%.1f", i ? ", " : "", rd[i]);
        printf("], \"read_before_run_gbs\": [");
        for (int i = 0; i < REPEATS; i++) printf("%s%.1f", i ? ", " : "", rd0[i]);
        printf("], \"decode_run_before_share\": %.3f, \"weights_huge_share\": %.3f, \"read_buffer_huge_share\": %.3f",
               before_share_med, huge_w, huge_r);
        printf(", \"weights\": \"%s\", \"precision\": \"%s\", \"decode_roofline_tok_s\": %.1f, "
               "\"decode_roofline_share\": %.3f, \"decode_run_roofline_share\": %.3f",
               weights ? "int8" : "f32", precision ? "bf16" : "fp32", roof_tok_s, decode_tok_s / roof_tok_s,
               run_share_med);
        if (weights == INFER_WEIGHTS_INT8)
            printf(", \"int8_logit_max_abs\": %.5f, \"int8_logit_mean_abs\": %.6f, \"f32_logit_rms\": %.5f, "
                   "\"int8_top1_agreement\": %.4f",
                   acc.max_abs, acc.mean_abs, acc.logit_rms, acc.top1);
        if (precision == MO_PRECISION_BF16)
            printf(", \"bf16_logit_max_abs\": %.5f, \"bf16_logit_mean_abs\": %.6f, \"bf16_ref_logit_rms\": %.5f, "
                   "\"bf16_top1_agreement\": %.4f",
                   bacc.max_abs, bacc.mean_abs, bacc.logit_rms, bacc.top1);
        if (precision == MO_PRECISION_BF16)
            printf(", \"bf16_decode_logit_max_abs\": %.5f, \"bf16_decode_logit_mean_abs\": %.6f, "
                   "\"bf16_decode_top1_agreement\": %.4f",
                   dacc.max_abs, dacc.mean_abs, dacc.top1);
        for (int m = 0; m < INFER_PROBE_MODES; m++)
            printf(", \"probe_%s_gbs\": %.1f, \"probe_%s_share\": %.3f", infer_probe_name(m),
                   median(probe[m], PROBE_ROUNDS), infer_probe_name(m), median(probe_share[m], PROBE_ROUNDS));
        printf(", \"probe_decode_share\": %.3f", decode_bytes_gbs / median(probe[INFER_PROBE_READ], PROBE_ROUNDS));
        printf(", \"prefill_tok_per_cpu_s\": %.1f, \"decode_tok_per_cpu_s\": %.2f", prefill_tok_cpu,
               decode_tok_cpu);
        printf(", \"prefill_gflops\": %.1f, \"decode_weight_bytes_per_token\": %.0f, \"decode_weight_gbs\": %.1f, "
               "\"decode_kv_bytes_per_token\": %.0f, \"sgemm_gflops\": %.1f, \"membw_gbs\": %.1f, "
               "\"membw_stream_gbs\": %.1f, \"membw_read_gbs\": %.1f, "
               "\"prefill_sgemm_share\": %.3f, \"decode_membw_share\": %.3f}\n",
               prefill_gflops, weight_bytes, decode_gbs, kv_bytes, sgemm, membw, membw_stream, membw_read,
               prefill_gflops / sgemm,
               decode_gbs / membw);
    } else {
        printf("bench infer  %s  %s weights  %s prefill  batch 1  threads %d\n", preset, weights ? "int8" : "f32",
               precision ? "bf16" : "fp32", threads_count());
        printf("  prefill %d tokens      %.1f tok/s  %.1f GFLOP/s: %.0f%% of sgemm\n", P, prefill_tok_s,
               prefill_gflops, 100 * prefill_gflops / sgemm);
        printf("  decode %d tokens       %.1f tok/s  %.1f GB/s of weights (%.1f MB/token): %.0f%% of memory bandwidth\n",
               D, decode_tok_s, decode_gbs, weight_bytes / 1e6, 100 * decode_gbs / membw);
        printf("  decode roofline       %.1f tok/s (weights + %.1f MB of KV cache per token at the memory rate): "
               "%.0f%% of it\n",
               roof_tok_s, kv_bytes / 1e6, 100 * decode_tok_s / roof_tok_s);
        printf("  each run vs the read  %.0f%% of the read rate measured right after it (median; %.1f",
               100 * run_share_med, rd[0]);
        for (int i = 1; i < REPEATS; i++) printf(", %.1f", rd[i]);
        printf(" GB/s)\n");
        printf("  and the read before   %.0f%% of the read rate measured right before it (median; %.1f", 100 * before_share_med,
               rd0[0]);
        for (int i = 1; i < REPEATS; i++) printf(", %.1f", rd0[i]);
        printf(" GB/s)\n");
        printf("  huge pages            weights %.0f%%, the read's buffer %.0f%% (the read is their roofline when both "
               "are)\n",
               100 * huge_w, 100 * huge_r);
        if (weights == INFER_WEIGHTS_INT8)
            printf("  int8 vs f32 logits    max |diff| %.4f, mean %.5f (f32 logits RMS %.4f); top-1 agreement %.1f%% "
                   "over %d positions\n",
                   acc.max_abs, acc.mean_abs, acc.logit_rms, 100 * acc.top1, D + 1);
        if (precision == MO_PRECISION_BF16)
            printf("  bf16 vs fp32 prefill  max |diff| %.4f, mean %.5f (fp32 logits RMS %.4f); top-1 agreement %.0f%% "
                   "over %d prompts\n",
                   bacc.max_abs, bacc.mean_abs, bacc.logit_rms, 100 * bacc.top1, ACC_PROMPTS);
        if (precision == MO_PRECISION_BF16)
            printf("  bf16 vs fp32 decode   max |diff| %.4f, mean %.5f (fp32 logits RMS %.4f); top-1 agreement %.1f%% "
                   "over %d positions (bf16 prefill, then decode through the bf16 KV cache)\n",
                   dacc.max_abs, dacc.mean_abs, dacc.logit_rms, 100 * dacc.top1, D + 1);
        printf("  products alone        %.1f GB/s read of their bytes in contiguous halves (median of %d rounds); "
               "over it:\n                        guided chunks %.2f, contiguous halves %.2f, with decode's meetings %.2f, "
               "and a region a token %.2f; decode %.2f\n"
               "                        halves with the fp32 rows one after the other instead of in pairs %.2f\n",
               median(probe[INFER_PROBE_READ], PROBE_ROUNDS), PROBE_ROUNDS,
               median(probe_share[INFER_PROBE_PRODUCTS], PROBE_ROUNDS), median(probe_share[INFER_PROBE_HALVES], PROBE_ROUNDS),
               median(probe_share[INFER_PROBE_MEETINGS], PROBE_ROUNDS), median(probe_share[INFER_PROBE_REGIONS], PROBE_ROUNDS),
               decode_bytes_gbs / median(probe[INFER_PROBE_READ], PROBE_ROUNDS),
               median(probe_share[INFER_PROBE_STREAM], PROBE_ROUNDS));
        printf("  per CPU-second        prefill %.1f tok, decode %.1f tok (all threads' CPU time)\n",
               prefill_tok_cpu, decode_tok_cpu);
        printf("  sgemm, same run       %.1f GFLOP/s (n=1024)\n", sgemm);
        printf("  memory, same run      %.1f GB/s read, %.1f GB/s STREAM scale (read + write)\n", membw_read,
               membw_stream);
    }
    rc = 0;
out:
    if (rc) cmd_fail();
    infer_free(s);
    free(prompt), free(logits), free(text), free(rbuf);
    tokset_split_free(&split);
    if (ckpt_path) {
        ckpt_free(&ck);
    } else {
        free(params);
        params_table_free(&pt);
    }
    return rc;
}
