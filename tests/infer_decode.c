// infer_decode.c: prefill and KV-cache decode against full forward passes over the whole
// sequence: the training forward (engine/model.h) and a plain double-precision one
// (tm_oracle in tests/infer_model.h) from docs/design.md section 3 with the kernels/ref oracles. For the tiny, small
// and bench-S-shaped presets, GQA and MQA, dense layers, shared experts, norm_topk 0,
// batched prefill and decode, restricted routing, and the errors.
//
// Tolerance: the normalized error ||logits - full|| / ||full|| of every compared row
// must stay below TOL (TOL_Q8 for 8-bit weights), against either full pass. Float32 inference against the float64
// oracle gives errors around 1e-6 on these models, against the float32 training forward
// (other summation orders) similar; a wrong position, head, expert or gate gives 1e-2
// and more.
#include "engine/base/error.h"
#include "engine/config.h"
#include "engine/model.h"
#include "engine/params.h"
#include "infer/infer.h"
#include "infer/infer_ctx.h"
#include "kernels/gemv.h"
#include "kernels/ref/ref.h"
#include "kernels/threads.h"
#include "tests/infer_model.h"
#include "tests/testutil.h"

#define TOL 2e-5
// 8-bit decode against its round-tripped model: the products also round x to 16 bits
// per block of 32 (kernels/gemv.h), which adds 3-6e-5 on these models; a wrong expert or position still
// gives 1e-2 and more.
#define TOL_Q8 2e-4
// 8-bit weights against float32 (test_int8_accuracy_vs_f32): the normalized logit error
// and the largest absolute logit difference as a multiple of the logits' RMS.
#define INT8_TOL 4e-2  // measured 1.9e-2 (max |diff| 0.08 x RMS, top-1 24 of 24)
#define INT8_MAX_ABS_TOL 0.25

// ---------------------------------------------------------------------------- checks

static double check_row_tol(const char *what, int step, const float *got, const double *want, int V, double tol) {
    double err = tu_rel_err_f64(got, want, (size_t)V);
    ck_assert_msg(err < tol, "%s: step %d: logits differ from the full forward pass by %.3g (tol %.1g)", what, step,
                  err, tol);
    return err;
}

static double check_row(const char *what, int step, const float *got, const double *want, int V) {
    return check_row_tol(what, step, got, want, V, TOL);
}

// Prefills n_prompt tokens, then decodes the rest one by one (feeding the given tokens,
// teacher-forced), comparing every step's logits with the oracle over the whole sequence.
// Inference runs on m's weights at precision `w`; the full passes run on `ref` (m, or
// its 8-bit round trip for INT8).
static double prefill_then_decode_w(const test_model *m, const test_model *ref, infer_weights w, const char *what,
                                    int n_prompt, int n_total, uint64_t seed) {
    const int V = m->c.vocab_size;
    int *tok = malloc(sizeof(int) * n_total);
    random_tokens(tok, n_total, V, seed);
    double *want = malloc(sizeof(double) * n_total * V);
    tm_oracle(ref, tok, n_total, NULL, 0, want);
    // The double oracle knows softmax top-k (with the bias) only; with the other routing
    // variants inference answers to the training forward alone (itself checked against
    // PyTorch, tests/engine_model_fixtures.c).
    const int oracle = m->c.router_score == MO_SCORE_SOFTMAX && m->c.router_top_p == 0 && m->c.routed_scale == 1;
    // The training forward over the same tokens, B = 1, T = n_total.
    mo_model fw;
    ck_assert_msg(model_alloc(&fw, &ref->pt, 1, n_total) == 0, "%s", mo_error());
    ck_assert_msg(model_forward(&fw, ref->w, tok, NULL) == 0, "%s", mo_error());
    double *train = malloc(sizeof(double) * n_total * V);
    tu_to_f64(train, fw.logits, (size_t)n_total * V);
    model_free(&fw);

    infer_ctx *s = infer_new(&m->pt, m->w, 1, n_total + 3);
    ck_assert_msg(s != NULL, "%s", mo_error());
    ck_assert_msg(infer_set_weights(s, w) == 0, "%s", mo_error());
    ck_assert_int_eq(infer_get_weights(s), w);
    float *logits = malloc(sizeof(float) * V);
    double worst = 0;
    ck_assert_msg(infer_prefill(s, 0, 1, n_prompt, tok, logits) == 0, "%s", mo_error());
    const double tol = w == INFER_WEIGHTS_INT8 ? TOL_Q8 : TOL;
    if (oracle) worst = fmax(worst, check_row_tol(what, n_prompt - 1, logits, want + (size_t)(n_prompt - 1) * V, V, tol));
    worst = fmax(worst, check_row_tol(what, n_prompt - 1, logits, train + (size_t)(n_prompt - 1) * V, V, tol));
    for (int t = n_prompt; t < n_total; t++) {
        ck_assert_msg(infer_decode(s, 1, NULL, tok + t, logits) == 0, "%s", mo_error());
        ck_assert_int_eq(infer_seq_len(s, 0), t + 1);
        if (oracle) worst = fmax(worst, check_row_tol(what, t, logits, want + (size_t)t * V, V, tol));
        worst = fmax(worst, check_row_tol(what, t, logits, train + (size_t)t * V, V, tol));
    }
    infer_free(s);
    free(tok), free(want), free(train), free(logits);
    return worst;
}

static double prefill_then_decode(const test_model *m, const char *what, int n_prompt, int n_total, uint64_t seed) {
    return prefill_then_decode_w(m, m, INFER_WEIGHTS_F32, what, n_prompt, n_total, seed);
}

START_TEST(test_tiny_gqa) {
    test_model m;
    tm_make(&m, "tiny", NULL, 1);
    ck_assert_int_lt(m.c.n_kv_heads, m.c.n_heads);  // GQA
    double e = prefill_then_decode(&m, "tiny", 7, 20, 2);
    // Decoding from the very first token (an empty cache) works too.
    prefill_then_decode(&m, "tiny from one token", 1, 9, 3);
    printf("tiny (GQA 4 heads / 2 kv): worst normalized logit error %.2g\n", e);
    tm_free(&m);
}
END_TEST

// The routing variants at inference: sigmoid scores with the bias and a gate scale, and
// top-p (fewer experts for some tokens), prefill and decode against the training forward
// (no noise and no capacity there: design.md section 4.1).
START_TEST(test_routing_variants) {
    test_model m;
    tm_make(&m, "tiny", (const char *const[]){"router_score=sigmoid", "routed_scale=1.7", "balance=bias", NULL}, 8);
    double e = prefill_then_decode(&m, "tiny, sigmoid + bias, gates x 1.7", 6, 16, 9);
    tm_free(&m);
    tm_make(&m, "tiny", (const char *const[]){"router_top_p=0.5", "top_k=3", NULL}, 10);
    e = fmax(e, prefill_then_decode(&m, "tiny, top-p 0.5 of 3", 6, 16, 11));
    printf("routing variants: worst normalized logit error %.2g\n", e);
    tm_free(&m);
}
END_TEST

START_TEST(test_small) {
    test_model m;
    tm_make(&m, "small", NULL, 4);
    double e = prefill_then_decode(&m, "small", 12, 20, 5);
    printf("small: worst normalized logit error %.2g\n", e);
    tm_free(&m);
}
END_TEST

START_TEST(test_bench_s_shaped) {
    // bench-S's widths (d 512, 8 heads, 8 experts of 1024, vocab 8192) on 2 of its 8 layers.
    test_model m;
    tm_make(&m, "bench-S", (const char *const[]){"n_layers=2", NULL}, 6);
    double e = prefill_then_decode(&m, "bench-S (2 layers)", 10, 14, 7);
    printf("bench-S shaped: worst normalized logit error %.2g\n", e);
    tm_free(&m);
}
END_TEST

START_TEST(test_dense_shared_norm_topk) {
    test_model m;
    // Layer 0 MoE with a shared expert, layer 1 dense, layer 2 MoE; multi-query (1 kv head).
    tm_make(&m, "tiny",
               (const char *const[]){"n_layers=3", "moe_layers=1,0,1", "n_shared_experts=1", "d_ff_shared=96",
                                     "d_ff_dense=160", "n_kv_heads=1", NULL},
               8);
    ck_assert_int_eq(m.pt.layer[1].is_moe, 0);
    ck_assert_int_ge(m.pt.layer[0].shared_w1, 0);
    prefill_then_decode(&m, "dense + shared + MQA", 5, 12, 9);
    tm_free(&m);
    tm_make(&m, "tiny", (const char *const[]){"norm_topk=0", "top_k=3", NULL}, 10);
    prefill_then_decode(&m, "norm_topk 0, top-3", 6, 12, 11);
    tm_free(&m);
}
END_TEST

START_TEST(test_batched) {
    // Three sequences with prompts of different lengths, decoded together, one of them
    // paused for a step: each must match its own full forward pass.
    test_model m;
    tm_make(&m, "tiny", NULL, 12);
    const int V = m.c.vocab_size, n_prompt[3] = {4, 9, 1}, n_total = 16;
    int tok[3][16];
    double *want[3];
    for (int b = 0; b < 3; b++) {
        random_tokens(tok[b], n_total, V, 100 + (uint64_t)b);
        want[b] = malloc(sizeof(double) * n_total * V);
        tm_oracle(&m, tok[b], n_total, NULL, 0, want[b]);
    }
    infer_ctx *s = infer_new(&m.pt, m.w, 3, 32);
    ck_assert_ptr_nonnull(s);
    float *logits = malloc(sizeof(float) * 3 * V);
    for (int b = 0; b < 3; b++) {
        ck_assert_int_eq(infer_prefill(s, b, 1, n_prompt[b], tok[b], logits), 0);
        check_row("batched prefill", b, logits, want[b] + (size_t)(n_prompt[b] - 1) * V, V);
    }
    for (int step = 0; step < 6; step++) {
        // Step 2 skips sequence 1 (given in a different order the rest of the time).
        int seqs[3], in[3], B = 0;
        for (int j = 0; j < 3; j++) {
            int b = step % 2 ? 2 - j : j;
            if (step == 2 && b == 1) continue;
            seqs[B] = b;
            in[B++] = tok[b][infer_seq_len(s, b)];
        }
        ck_assert_int_eq(infer_decode(s, B, seqs, in, logits), 0);
        for (int i = 0; i < B; i++) {
            int b = seqs[i], t = infer_seq_len(s, b) - 1;
            check_row("batched decode", step, logits + (size_t)i * V, want[b] + (size_t)t * V, V);
        }
    }
    // Prefill of two equal-length prompts in one call equals one at a time.
    int two[2 * 5], in_next[3];
    memcpy(two, tok[0], sizeof(int) * 5);
    memcpy(two + 5, tok[1], sizeof(int) * 5);
    ck_assert_int_eq(infer_prefill(s, 1, 2, 5, two, logits), 0);
    check_row("prefill B=2 seq 0", 0, logits, want[0] + 4 * V, V);
    check_row("prefill B=2 seq 1", 1, logits + V, want[1] + 4 * V, V);
    ck_assert_int_eq(infer_seq_len(s, 2), 5);
    infer_free(s);
    // Three prompts of 5 in a context of 8: the prefill runs them one group at a time.
    s = infer_new(&m.pt, m.w, 3, 8);
    int three[3 * 5];
    for (int b = 0; b < 3; b++) memcpy(three + 5 * b, tok[b], sizeof(int) * 5);
    ck_assert_int_eq(infer_prefill(s, 0, 3, 5, three, logits), 0);
    for (int b = 0; b < 3; b++) check_row("prefill in groups", b, logits + (size_t)b * V, want[b] + 4 * V, V);
    for (int b = 0; b < 3; b++) in_next[b] = tok[b][5];
    ck_assert_int_eq(infer_decode(s, 3, NULL, in_next, logits), 0);
    for (int b = 0; b < 3; b++) check_row("decode after groups", b, logits + (size_t)b * V, want[b] + 5 * V, V);
    infer_free(s);
    for (int b = 0; b < 3; b++) free(want[b]);
    free(logits);
    tm_free(&m);
}
END_TEST

START_TEST(test_restricted_experts) {
    test_model m;
    tm_make(&m, "tiny", NULL, 13);
    const int V = m.c.vocab_size, T = 10;
    int tok[10];
    random_tokens(tok, T, V, 14);
    double *want = malloc(sizeof(double) * T * V);
    float *logits = malloc(sizeof(float) * V);
    infer_ctx *s = infer_new(&m.pt, m.w, 1, 0);
    ck_assert_int_eq(infer_max_seq(s), m.c.max_seq_len);
    const int subsets[3][3] = {{1, 3, -1}, {2, -1, -1}, {0, 1, 2}};
    for (int i = 0; i < 3; i++) {
        unsigned char allowed[4] = {0};
        int ids[3], n = 0;
        for (int j = 0; j < 3 && subsets[i][j] >= 0; j++) ids[n++] = subsets[i][j], allowed[subsets[i][j]] = 1;
        tm_oracle(&m, tok, T, allowed, 0, want);
        ck_assert_int_eq(infer_restrict_experts(s, ids, n), 0);
        ck_assert_int_eq(infer_prefill(s, 0, 1, 6, tok, logits), 0);
        check_row("restricted prefill", i, logits, want + 5 * V, V);
        for (int t = 6; t < T; t++) {
            ck_assert_int_eq(infer_decode(s, 1, NULL, tok + t, logits), 0);
            check_row("restricted decode", t, logits, want + (size_t)t * V, V);
            // The recorded routing uses only allowed experts, best first, gates summing to 1.
            for (int l = 0; l < m.c.n_layers; l++) {
                const int *ex;
                const float *g;
                int k = infer_routing(s, 0, l, &ex, &g);
                ck_assert_int_eq(k, n < m.c.top_k ? n : m.c.top_k);
                float sum = 0;
                for (int j = 0; j < k; j++) ck_assert(allowed[ex[j]]), sum += g[j];
                ck_assert_float_eq_tol(sum, 1.0f, 1e-6f);
                if (k == 2) ck_assert(g[0] >= g[1]);
            }
        }
    }
    // With norm_topk 0 the gates are the renormalized probabilities themselves.
    test_model m0;
    tm_make(&m0, "tiny", (const char *const[]){"norm_topk=0", NULL}, 17);
    infer_ctx *s0 = infer_new(&m0.pt, m0.w, 1, 16);
    unsigned char allowed[4] = {1, 0, 1, 1};
    tm_oracle(&m0, tok, T, allowed, 0, want);
    ck_assert_int_eq(infer_restrict_experts(s0, (const int[]){3, 0, 2}, 3), 0);
    ck_assert_int_eq(infer_prefill(s0, 0, 1, T - 1, tok, logits), 0);
    check_row("restricted, norm_topk 0, prefill", T - 2, logits, want + (size_t)(T - 2) * V, V);
    ck_assert_int_eq(infer_decode(s0, 1, NULL, tok + T - 1, logits), 0);
    check_row("restricted, norm_topk 0, decode", T - 1, logits, want + (size_t)(T - 1) * V, V);
    infer_free(s0);
    tm_free(&m0);

    // Back to all experts: equals the unrestricted oracle.
    ck_assert_int_eq(infer_restrict_experts(s, NULL, 0), 0);
    tm_oracle(&m, tok, T, NULL, 0, want);
    ck_assert_int_eq(infer_prefill(s, 0, 1, T, tok, logits), 0);
    check_row("unrestricted again", T - 1, logits, want + (size_t)(T - 1) * V, V);
    ck_assert_int_eq(infer_routing(s, 0, 0, NULL, NULL), 0);  // prefill records no routing
    // Bad ids are refused.
    ck_assert_int_eq(infer_restrict_experts(s, (const int[]){0, 4}, 2), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "expert 4"));
    infer_free(s);
    free(want), free(logits);
    tm_free(&m);
}
END_TEST

START_TEST(test_thread_counts) {
    // One, two and four threads (rows of each product split over them, attention heads
    // spread), on GQA, on MQA with a dense layer and shared expert, and on 8-bit weights.
    const char *const mqa[] = {"n_layers=3", "moe_layers=1,0,1", "n_shared_experts=1", "d_ff_shared=96",
                               "d_ff_dense=160", "n_kv_heads=1", NULL};
    for (int nt = 1; nt <= 4; nt *= 2) {
        threads_init(nt);
        test_model m, q;
        tm_make(&m, "tiny", NULL, 80);
        prefill_then_decode(&m, "tiny, threads", 3, 10, 81);
        tm_copy(&q, &m), tm_q8_round_trip(&q);
        prefill_then_decode_w(&m, &q, INFER_WEIGHTS_INT8, "tiny int8, threads", 3, 10, 82);
        tm_free(&m), tm_free(&q);
        tm_make(&m, "tiny", mqa, 83);
        prefill_then_decode(&m, "MQA + dense + shared, threads", 3, 10, 84);
        tm_free(&m);
    }
    threads_init(0);
}
END_TEST

// Logits of `steps` single-token decode steps after a prompt of 5 tokens, at weights w,
// the steps on nt threads, into out[steps, V]. The prompt is prefilled on one thread:
// its GEMMs split their columns over the threads, and OpenBLAS rounds the edge of an
// uneven split (d_ff 1000) its own way, which is not what these tests are about.
static void decode_run(const test_model *m, infer_weights w, int nt, int steps, float *out) {
    const int V = m->c.vocab_size;
    int tok[16];
    random_tokens(tok, 5 + steps, V, 91);
    threads_init(1);
    infer_ctx *s = infer_new(&m->pt, m->w, 1, 5 + steps);
    ck_assert_msg(s != NULL, "%s", mo_error());
    ck_assert_int_eq(infer_set_weights(s, w), 0);
    ck_assert_int_eq(infer_prefill(s, 0, 1, 5, tok, out), 0);
    threads_init(nt);
    for (int i = 0; i < steps; i++) ck_assert_int_eq(infer_decode(s, 1, NULL, tok + 5 + i, out + (size_t)i * V), 0);
    infer_free(s);
}

START_TEST(test_thread_counts_bitwise) {
    // Single-token decode gives the same bits with 1, 2 and 3 threads: every output row is
    // computed by one thread the same way, and the serial steps run alike on every thread.
    // bench-S's widths (2 layers); MQA + dense + shared; and bench-S's d_model with FFN
    // widths that are no multiple of 16 (the threads' chunks of hidden units then end
    // inside an expert, where SwiGLU's vector and scalar tails meet), fp32 and 8-bit
    // weights.
    const char *const *cfgs[] = {
        (const char *const[]){"n_layers=2", NULL},
        (const char *const[]){"n_layers=3", "moe_layers=1,0,1", "n_shared_experts=1", "d_ff_shared=96",
                              "d_ff_dense=160", "n_kv_heads=1", NULL},
        (const char *const[]){"n_layers=2", "d_ff=1000", "n_shared_experts=1", "d_ff_shared=200", NULL},
    };
    const char *presets[] = {"bench-S", "tiny", "bench-S"};
    const int steps = 6;
    for (int i = 0; i < 3; i++) {
        test_model m;
        tm_make(&m, presets[i], cfgs[i], 90 + (uint64_t)i);
        const size_t n = (size_t)steps * m.c.vocab_size;
        float *one = malloc(sizeof(float) * n), *many = malloc(sizeof(float) * n);
        for (int w = 0; w <= 1; w++) {
            decode_run(&m, (infer_weights)w, 1, steps, one);
            for (int nt = 2; nt <= 3; nt++) {
                decode_run(&m, (infer_weights)w, nt, steps, many);
                ck_assert_msg(!memcmp(one, many, sizeof(float) * n),
                              "model %d, %s weights: decode logits with %d threads differ from 1 thread's", i,
                              w ? "int8" : "f32", nt);
            }
        }
        free(one), free(many);
        tm_free(&m);
    }
    threads_init(0);
}
END_TEST

START_TEST(test_int8_is_its_model) {
    // 8-bit prefill (dequantized GEMMs) and decode (8-bit matrix-vector products) compute
    // the round-tripped model to float32 accuracy: GQA, bench-S's widths, dense + shared
    // + MQA, top-3 without renormalization.
    const char *const *cfgs[] = {
        NULL,
        (const char *const[]){"n_layers=3", "moe_layers=1,0,1", "n_shared_experts=1", "d_ff_shared=96",
                              "d_ff_dense=160", "n_kv_heads=1", NULL},
        (const char *const[]){"norm_topk=0", "top_k=3", NULL},
    };
    for (int i = 0; i < 4; i++) {
        test_model m, q;
        if (i < 3) tm_make(&m, "tiny", cfgs[i], 30 + (uint64_t)i);
        else tm_make(&m, "bench-S", (const char *const[]){"n_layers=2", NULL}, 33);
        tm_copy(&q, &m), tm_q8_round_trip(&q);
        double e = prefill_then_decode_w(&m, &q, INFER_WEIGHTS_INT8, "int8", 6, 13, 40 + (uint64_t)i);
        printf("int8 model %d: worst normalized logit error against its round-tripped model %.2g\n", i, e);
        tm_free(&m), tm_free(&q);
    }
}
END_TEST

// Several sequences decoded together on 8-bit weights (the batched path: per-row 8-bit
// products, experts with several tokens), then back to float32. More than 4 sequences
// take the output projection through the prefill's products, whose dequantization
// scratch holds no output matrix.
static void int8_batched_and_switch(int n_seq) {
    // A vocabulary whose output matrix (2048 x 64) is the largest 8-bit tensor.
    static const char *const big_vocab[] = {"vocab-size=2048", NULL};
    test_model m, q;
    tm_make(&m, "tiny", big_vocab, 50);
    tm_copy(&q, &m), tm_q8_round_trip(&q);
    const int V = m.c.vocab_size, T = 16;
    int tok[8][16];
    double *want[8], *want32 = malloc(sizeof(double) * T * V);
    ck_assert_int_le(n_seq, 8);
    for (int b = 0; b < n_seq; b++) {
        random_tokens(tok[b], T, V, 60 + (uint64_t)b);
        want[b] = malloc(sizeof(double) * T * V);
        tm_oracle(&q, tok[b], T, NULL, 0, want[b]);
    }
    infer_ctx *s = infer_new(&m.pt, m.w, n_seq, T);
    ck_assert_int_eq(infer_set_weights(s, INFER_WEIGHTS_INT8), 0);
    float *logits = malloc(sizeof(float) * n_seq * V);
    for (int b = 0; b < n_seq; b++) ck_assert_int_eq(infer_prefill(s, b, 1, 3 + b, tok[b], logits), 0);
    for (int step = 0; step < 5; step++) {
        int in[8];
        for (int b = 0; b < n_seq; b++) in[b] = tok[b][infer_seq_len(s, b)];
        ck_assert_int_eq(infer_decode(s, n_seq, NULL, in, logits), 0);
        for (int b = 0; b < n_seq; b++) {
            int t = infer_seq_len(s, b) - 1;
            check_row_tol("int8 batched decode", step, logits + (size_t)b * V, want[b] + (size_t)t * V, V, TOL_Q8);
        }
    }
    ck_assert_int_eq(infer_set_weights(s, INFER_WEIGHTS_F32), 0);
    tm_oracle(&m, tok[0], T, NULL, 0, want32);
    ck_assert_int_eq(infer_prefill(s, 0, 1, T, tok[0], logits), 0);
    check_row("float32 again", T - 1, logits, want32 + (size_t)(T - 1) * V, V);
    infer_free(s);
    for (int b = 0; b < n_seq; b++) free(want[b]);
    free(want32), free(logits);
    tm_free(&m), tm_free(&q);
}

START_TEST(test_int8_batched_and_switch) { int8_batched_and_switch(3); }
END_TEST

START_TEST(test_int8_batched_past_four) { int8_batched_and_switch(6); }
END_TEST

START_TEST(test_int8_accuracy_vs_f32) {
    // The accuracy cost of 8-bit weights on bench-S's widths (4 layers, uniform weights
    // of std 0.02, clear routing margins): normalized logit error against the float32
    // model, the largest absolute difference relative to the logits' RMS, and whether
    // the most likely token stays the same, over 24 positions.
    test_model m;
    tm_make(&m, "bench-S", (const char *const[]){"n_layers=4", NULL}, 70);
    const int V = m.c.vocab_size, T = 24;
    int tok[24];
    random_tokens(tok, T, V, 71);
    infer_ctx *s32 = infer_new(&m.pt, m.w, 1, T), *s8 = infer_new(&m.pt, m.w, 1, T);
    ck_assert_int_eq(infer_set_weights(s8, INFER_WEIGHTS_INT8), 0);
    float *a = malloc(sizeof(float) * V), *b = malloc(sizeof(float) * V);
    double worst = 0, max_abs = 0, rms = 0;
    int agree = 0;
    for (int t = 0; t < T; t++) {
        if (t == 0) {
            ck_assert_int_eq(infer_prefill(s32, 0, 1, 1, tok, a), 0);
            ck_assert_int_eq(infer_prefill(s8, 0, 1, 1, tok, b), 0);
        } else {
            ck_assert_int_eq(infer_decode(s32, 1, NULL, tok + t, a), 0);
            ck_assert_int_eq(infer_decode(s8, 1, NULL, tok + t, b), 0);
        }
        worst = fmax(worst, tu_rel_err(b, a, (size_t)V));
        int ia = 0, ib = 0;
        for (int j = 0; j < V; j++) {
            max_abs = fmax(max_abs, fabs((double)a[j] - b[j]));
            rms += (double)a[j] * a[j];
            ia = a[j] > a[ia] ? j : ia, ib = b[j] > b[ib] ? j : ib;
        }
        agree += ia == ib;
    }
    rms = sqrt(rms / ((double)T * V));
    printf("int8 vs float32 (bench-S widths, 4 layers): normalized logit error %.3g, max |diff| %.3g = %.3g x the "
           "logits' RMS, top-1 agreement %d/%d\n",
           worst, max_abs, max_abs / rms, agree, T);
    ck_assert_msg(worst < INT8_TOL, "int8 logits differ from float32 by %.3g (tol %.2g)", worst, INT8_TOL);
    ck_assert_msg(max_abs < INT8_MAX_ABS_TOL * rms, "max |diff| %.3g is more than %.2g x the RMS %.3g", max_abs,
                  INT8_MAX_ABS_TOL, rms);
    ck_assert_int_ge(agree, T - 1);
    infer_free(s32), infer_free(s8);
    free(a), free(b);
    tm_free(&m);
}
END_TEST

START_TEST(test_errors) {
    test_model m;
    tm_make(&m, "tiny", NULL, 15);
    const int V = m.c.vocab_size;
    float *logits = malloc(sizeof(float) * 2 * V);
    int tok[40] = {0};
    ck_assert_ptr_null(infer_new(&m.pt, m.w, 1, m.c.max_seq_len + 1));
    ck_assert_ptr_nonnull(strstr(mo_error(), "max_seq"));
    infer_ctx *s = infer_new(&m.pt, m.w, 2, 32);
    ck_assert_ptr_nonnull(s);
    // A prompt longer than the context: one line naming both lengths.
    int long_prompt[33] = {0};
    ck_assert_int_eq(infer_prefill(s, 0, 1, 33, long_prompt, logits), -1);
    ck_assert_msg(strstr(mo_error(), "prompt of 33 tokens is longer than the context of 32") != NULL, "%s",
                  mo_error());
    ck_assert_ptr_null(strchr(mo_error(), '\n'));
    // Token ids outside the vocabulary.
    tok[3] = V;
    ck_assert_int_eq(infer_prefill(s, 0, 1, 5, tok, logits), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "outside the model's vocabulary"));
    tok[3] = 0;
    // Sequences outside the batch, twice in a step.
    ck_assert_int_eq(infer_prefill(s, 1, 2, 5, tok, logits), -1);
    ck_assert_int_eq(infer_decode(s, 2, (const int[]){1, 1}, tok, logits), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "twice"));
    // Filling the context exactly works; one more token is refused.
    ck_assert_int_eq(infer_prefill(s, 0, 1, 30, tok, logits), 0);
    ck_assert_int_eq(infer_decode(s, 1, NULL, tok, logits), 0);
    ck_assert_int_eq(infer_decode(s, 1, NULL, tok, logits), 0);
    ck_assert_int_eq(infer_seq_len(s, 0), 32);
    ck_assert_int_eq(infer_decode(s, 1, NULL, tok, logits), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "is full"));
    infer_free(s);
    // A dense-only model has nothing to restrict.
    tm_free(&m);
    tm_make(&m, "tiny", (const char *const[]){"moe_layers=0,0", NULL}, 16);
    s = infer_new(&m.pt, m.w, 1, 8);
    ck_assert_int_eq(infer_restrict_experts(s, (const int[]){0}, 1), -1);
    infer_free(s);
    free(logits);
    tm_free(&m);
}
END_TEST

START_TEST(test_decode_share) {
    // Each thread's share of a decode step: the shares of threads 0..nt-1 tile [0, n) in
    // order, every cut short of n a multiple of `align`, and no share longer than another by
    // more than `align` rows (the threads finish a step together).
    const int ns[] = {0, 1, 8, 15, 24, 512, 1000, 2048, 8192, 8200}, aligns[] = {1, 16};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        for (int a = 0; a < 2; a++)
            for (int nt = 1; nt <= 5; nt++) {
                const int n = ns[i], align = aligns[a];
                int prev = 0, shortest = n, longest = 0;
                for (int t = 0; t < nt; t++) {
                    int lo, hi;
                    decode_share(n, align, t, nt, &lo, &hi);
                    ck_assert_msg(lo == prev && hi >= lo, "n %d align %d nt %d: thread %d has [%d, %d) after %d", n,
                                  align, nt, t, lo, hi, prev);
                    ck_assert_msg(hi == n || hi % align == 0, "n %d align %d nt %d: cut at %d", n, align, nt, hi);
                    shortest = hi - lo < shortest ? hi - lo : shortest, longest = hi - lo > longest ? hi - lo : longest;
                    prev = hi;
                }
                ck_assert_int_eq(prev, n);
                ck_assert_msg(longest - shortest <= align, "n %d align %d nt %d: shares of %d to %d rows", n, align,
                              nt, shortest, longest);
            }
}
END_TEST

// The decode probe (infer_probe) reads what a decode step's products read: the weights
// infer_decode_weight_bytes counts but the routers, norms and embedding row, in every mode,
// for MoE, shared and dense FFNs at both precisions.
START_TEST(test_probe_reads_decodes_bytes) {
    test_model m;
    tm_make(&m, "tiny",
            (const char *const[]){"n_layers=3", "moe_layers=1,0,1", "n_shared_experts=1", "d_ff_shared=96",
                                  "d_ff_dense=160", "n_kv_heads=1", NULL},
            8);
    infer_ctx *s = infer_new(&m.pt, m.w, 1, 8);
    ck_assert_msg(s != NULL, "%s", mo_error());
    const int d = m.c.d_model;
    double fp32_only = 4.0 * d * (1 + 2 * m.c.n_layers + 1);  // embedding row, norms
    for (int l = 0; l < m.c.n_layers; l++)
        if (m.pt.layer[l].is_moe) fp32_only += 4.0 * m.pt.t[m.pt.layer[l].router].numel;
    for (int w = INFER_WEIGHTS_F32; w <= INFER_WEIGHTS_INT8; w++) {
        ck_assert_msg(infer_set_weights(s, (infer_weights)w) == 0, "%s", mo_error());
        for (int mode = 0; mode < INFER_PROBE_MODES; mode++) {
            double gbs = 0, bytes = 0;
            ck_assert_msg(infer_probe(s, (infer_probe_mode)mode, &gbs, &bytes) == 0, "%s", mo_error());
            ck_assert_msg(gbs > 0, "%s: %g GB/s", infer_probe_name((infer_probe_mode)mode), gbs);
            ck_assert_msg(fabs(bytes - (infer_decode_weight_bytes(s) - fp32_only)) < 1e-6 * bytes, "%s %s: %.0f bytes, %.0f",
                          w ? "int8" : "f32", infer_probe_name((infer_probe_mode)mode), bytes,
                          infer_decode_weight_bytes(s) - fp32_only);
        }
    }
    infer_free(s);
    tm_free(&m);
}
END_TEST

int main(void) {
    Suite *s = suite_create("infer_decode");
    TCase *tc = tcase_create("decode");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_tiny_gqa);
    tcase_add_test(tc, test_routing_variants);
    tcase_add_test(tc, test_small);
    tcase_add_test(tc, test_bench_s_shaped);
    tcase_add_test(tc, test_dense_shared_norm_topk);
    tcase_add_test(tc, test_batched);
    tcase_add_test(tc, test_restricted_experts);
    tcase_add_test(tc, test_thread_counts);
    tcase_add_test(tc, test_thread_counts_bitwise);
    tcase_add_test(tc, test_int8_is_its_model);
    tcase_add_test(tc, test_int8_batched_and_switch);
    tcase_add_test(tc, test_int8_batched_past_four);
    tcase_add_test(tc, test_int8_accuracy_vs_f32);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_decode_share);
    tcase_add_test(tc, test_probe_reads_decodes_bytes);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
