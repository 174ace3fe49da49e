// engine_model_fd.c: the float model's analytic gradients against central finite
// differences of an independent double-precision reference forward (tests/model_ref.h),
// for a sample of every parameter tensor, on the tiny preset and on variants covering a
// dense layer, a shared expert, norm_topk 0, top-1, one kv head, and forced routing with
// and without the router cross-entropy term (model_set_router_ce).
//
// Routing has kinks where a token's top-k set changes. Weights are drawn (std 0.1, norms
// 1 + 0.1 N(0,1), so every gradient is sizeable) with seeds tried in order until every
// token of every MoE layer has its k-th probability at least MARGIN above the best
// unchosen one, and that margin is asserted. A step of H moves a router probability by
// far less than MARGIN, so no difference crosses a kink.
//
// Tolerance: per tensor, over the sampled elements, ||analytic - fd|| / ||fd|| <= 1e-4
// (the float32 model against double differences: 1e-6 to 2e-6 measured), and the float
// model's loss within 1e-5 of the reference loss (they compute the same function).
#include "engine/base/error.h"
#include "engine/model.h"
#include "tests/model_ref.h"
#include "tests/testutil.h"

#define MARGIN 2e-3
#define H 1e-4
#define TOL 1e-4
#define SAMPLES 10
#define B_ 2
#define T_ 8

typedef struct {
    const mo_param_table *pt;
    double *p;
    int *tokens, *targets;
    const int *forced;
    double router_ce;
    int targets_only;
} fd_ctx;

// Router noise (router_noise > 0) of every forward, the model's and the reference's: the
// same stream from the same seed.
#define NOISE_SEED 77

static ref_model_result ref_at(const fd_ctx *c) {
    mo_rng noise;
    mo_rng_seed(&noise, NOISE_SEED);
    return ref_model_forward(c->pt, c->p, c->tokens, c->targets, c->forced, c->router_ce, c->targets_only, B_, T_,
                             c->pt->cfg.router_noise > 0 ? &noise : NULL);
}

static double loss_fn(void *ctx) { return ref_at(ctx).loss; }

static void draw(const mo_param_table *pt, float *params, int *tokens, int *targets, uint64_t seed) {
    mo_rng r;
    mo_rng_seed(&r, seed);
    for (int i = 0; i < pt->n; i++) {
        float *x = params + pt->t[i].offset;
        for (size_t j = 0; j < pt->t[i].numel; j++)
            x[j] = (float)(pt->t[i].is_norm ? 1.0 + 0.1 * mo_rng_normal(&r) : 0.1 * mo_rng_normal(&r));
    }
    int V = pt->cfg.vocab_size;
    for (int b = 0; b < B_; b++) {
        int prev = (int)mo_rng_below(&r, (uint64_t)V);
        for (int t = 0; t < T_; t++) {
            int next = (int)mo_rng_below(&r, (uint64_t)V);
            tokens[b * T_ + t] = prev;
            targets[b * T_ + t] = next;
            prev = next;
        }
    }
}

static void run_config_t(const char *what, const char *const *overrides, const int *forced, double router_ce,
                         int targets_only) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    for (int i = 0; overrides[i]; i += 2) ck_assert_int_eq(config_set(&c, overrides[i], overrides[i + 1]), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    mo_param_table pt;
    ck_assert_int_eq(params_table_build(&pt, &c), 0);
    float *params = params_arena_alloc(&pt), *grads = params_arena_alloc(&pt);
    double *p64 = malloc(pt.numel * sizeof *p64);
    int tokens[B_ * T_], targets[B_ * T_];

    // Seeds in order until no token is near a top-k tie.
    ref_model_result ref;
    fd_ctx ctx = {&pt, p64, tokens, targets, forced, router_ce, targets_only};
    uint64_t seed = 100;
    for (;; seed++) {
        ck_assert_msg(seed < 200, "%s: no seed in 100..199 keeps every token %g from a top-k tie", what, MARGIN);
        draw(&pt, params, tokens, targets, seed);
        tu_to_f64(p64, params, pt.numel);
        ref = ref_at(&ctx);
        if (ref.min_margin >= MARGIN) break;
    }
    ck_assert(ref.min_margin >= MARGIN);

    mo_model m;
    ck_assert_msg(model_alloc(&m, &pt, B_, T_) == 0, "%s", mo_error());
    model_set_forced_experts(&m, forced);
    model_set_router_ce(&m, router_ce);
    model_set_forced_targets_only(&m, targets_only);
    mo_rng noise;
    mo_rng_seed(&noise, NOISE_SEED);
    if (c.router_noise > 0) model_set_noise(&m, &noise);
    ck_assert_int_eq(model_forward(&m, params, tokens, targets), 0);
    double le = fabs(m.loss - ref.loss) / fabs(ref.loss);
    ck_assert_msg(le < 1e-5, "%s: float loss %.9g vs reference %.9g", what, m.loss, ref.loss);
    ck_assert_msg(fabs(m.aux - ref.aux) < 1e-5 && fabs(m.z - ref.z) < 1e-5 * fmax(1, ref.z), "%s: aux/z", what);
    ck_assert_msg(fabs(m.router_ce - ref.router_ce) < 1e-5 * fmax(1, ref.router_ce), "%s: router_ce %.9g vs %.9g",
                  what, m.router_ce, ref.router_ce);
    ck_assert_msg((ref.router_ce > 0) == (forced != NULL), "%s: router_ce %g", what, ref.router_ce);
    ck_assert_int_eq(model_backward(&m, params, grads, 1.0f), 0);

    double worst = 0;
    for (int i = 0; i < pt.n; i++) {
        const mo_tensor *t = &pt.t[i];
        // Sample indices spread over the tensor; for the embeddings, rows of tokens in the batch.
        size_t idx[SAMPLES];
        int n = 0;
        for (int s = 0; s < SAMPLES; s++) {
            size_t j;
            if (t->kind == PK_TOK_EMBEDDINGS)
                j = (size_t)tokens[(s * 5) % (B_ * T_)] * c.d_model + (size_t)(s * 7) % c.d_model;
            else
                j = (t->numel * (size_t)s) / SAMPLES + (size_t)s % 3;
            if (j < t->numel) idx[n++] = j;
        }
        double fd[SAMPLES], an[SAMPLES], num = 0, den = 0;
        for (int s = 0; s < n; s++) {
            double *x = p64 + t->offset + idx[s], x0 = *x;
            *x = x0 + H;
            double fp = loss_fn(&ctx);
            *x = x0 - H;
            double fm = loss_fn(&ctx);
            *x = x0;
            fd[s] = (fp - fm) / (2 * H);
            an[s] = grads[t->offset + idx[s]];
            num += (fd[s] - an[s]) * (fd[s] - an[s]);
            den += fd[s] * fd[s];
        }
        if (t->no_grad) {
            // router_bias only selects: the loss does not move with it, and nothing flows into it.
            for (int q = 0; q < n; q++)
                ck_assert_msg(fd[q] == 0 && an[q] == 0, "%s: %s moves the loss (fd %.3g, gradient %.3g)", what,
                              t->name, fd[q], an[q]);
            continue;
        }
        ck_assert_msg(den > 1e-20, "%s: %s: every sampled gradient is zero; the sample says nothing", what, t->name);
        double e = sqrt(num / den);
        worst = fmax(worst, e);
        ck_assert_msg(e <= TOL, "%s: %s: analytic vs finite differences, normalized error %.3e > %g (first: %.8g vs %.8g)",
                      what, t->name, e, TOL, an[0], fd[0]);
    }
    printf("%-34s seed %llu, top-k margin %.2e, loss %.6f, worst gradient error %.2e over %d tensors\n", what,
           (unsigned long long)seed, ref.min_margin, ref.loss, worst, pt.n);
    model_free(&m);
    free(params), free(grads), free(p64);
    params_table_free(&pt);
}

static void run_config(const char *what, const char *const *overrides, const int *forced, double router_ce) {
    run_config_t(what, overrides, forced, router_ce, 0);
}

START_TEST(test_fd_tiny) { run_config("tiny", (const char *const[]){NULL}, NULL, 0); }
END_TEST

// The routing variants (docs/design.md, "Routing"), alone and combined, with a random
// router_bias (draw): the router's gradient through sigmoid scores, scaled gates, slots
// capacity drops (still in the renormalizing sum), top-p, the training noise.
START_TEST(test_fd_sigmoid_bias_scale) {
    run_config("sigmoid + bias, gates x 2",
               (const char *const[]){"router_score", "sigmoid", "balance", "bias", "routed_scale", "2", NULL}, NULL, 0);
}
END_TEST

START_TEST(test_fd_capacity) {
    run_config("capacity 0.75 (C = 6 of 32 slots)", (const char *const[]){"capacity_factor", "0.75", NULL}, NULL, 0);
}
END_TEST

START_TEST(test_fd_sigmoid_capacity_norm0) {
    run_config("sigmoid, norm_topk 0, top-3, capacity 0.8",
               (const char *const[]){"router_score", "sigmoid", "norm_topk", "0", "top_k", "3", "capacity_factor", "0.8",
                                     NULL},
               NULL, 0);
}
END_TEST

START_TEST(test_fd_top_p) {
    run_config("top-p 0.6 of top-3, gates x 1.5",
               (const char *const[]){"router_top_p", "0.6", "top_k", "3", "routed_scale", "1.5", NULL}, NULL, 0);
}
END_TEST

START_TEST(test_fd_noise_capacity) {
    run_config("training noise 0.8, capacity 1.0",
               (const char *const[]){"router_noise", "0.8", "capacity_factor", "1.0", NULL}, NULL, 0);
}
END_TEST

START_TEST(test_fd_dense_shared_norm0) {
    run_config("tiny dense+shared, norm_topk 0, 1 kv head",
               (const char *const[]){"moe-layers", "0,1", "d-ff-dense", "48", "n-shared-experts", "2", "d-ff-shared",
                                     "16", "norm-topk", "0", "n-kv-heads", "1", "aux-coef", "0.1", "z-coef", "0.01",
                                     NULL},
               NULL, 0);
}
END_TEST

START_TEST(test_fd_top1) {
    run_config("tiny top-1 of 6, norm_topk 0", (const char *const[]){"top-k", "1", "n-experts", "6", "norm-topk", "0",
                                                                     "aux-coef", "0.1", NULL},
               NULL, 0);
}

// Route-by-domain: rows of the first sequence forced to experts 0..3 in turn (to 3 and
// 1 for the second sequence's even positions), the rest routed; the gradient of the
// router then comes from the routed rows' gates and from aux and z over all rows.
START_TEST(test_fd_forced_rows) {
    int forced[B_ * T_];
    for (int i = 0; i < B_ * T_; i++) forced[i] = i < T_ ? i % 4 : (i % 2 ? -1 : (i % 4 == 0 ? 3 : 1));
    run_config("tiny, forced experts on 3/4 of the rows", (const char *const[]){"aux-coef", "0.1", "z-coef", "0.01", NULL},
               forced, 0);
}
END_TEST

// The same with the router cross-entropy against the forced experts in the loss: its
// gradient reaches the router (and through the router input, every earlier tensor).
// Weight 0.7 so that the term is not hidden behind a coefficient of 1; top-1 of 6 with
// norm_topk 0 as well, where a forced row's gate must still be exactly 1.
START_TEST(test_fd_forced_router_ce) {
    int forced[B_ * T_];
    for (int i = 0; i < B_ * T_; i++) forced[i] = i < T_ ? i % 4 : (i % 2 ? -1 : (i % 4 == 0 ? 3 : 1));
    run_config("tiny, forced rows, router_ce 0.7", (const char *const[]){"aux-coef", "0.1", "z-coef", "0.01", NULL},
               forced, 0.7);
    run_config("top-1 of 6, forced rows, router_ce 0.7",
               (const char *const[]){"top-k", "1", "n-experts", "6", "norm-topk", "0", NULL}, forced, 0.7);
}
END_TEST

// Supervised routing: the same forced rows as targets of the router term only, every row
// routed by the router's own top-k (its gates train the router through the language-model
// loss as well).
START_TEST(test_fd_supervised_routing) {
    int forced[B_ * T_];
    for (int i = 0; i < B_ * T_; i++) forced[i] = i < T_ ? i % 4 : (i % 2 ? -1 : (i % 4 == 0 ? 3 : 1));
    run_config_t("tiny, forced rows as targets only, router_ce 0.7",
                 (const char *const[]){"aux-coef", "0.1", "z-coef", "0.01", NULL}, forced, 0.7, 1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("engine_model_fd");
    TCase *tc = tcase_create("fd");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_fd_tiny);
    tcase_add_test(tc, test_fd_sigmoid_bias_scale);
    tcase_add_test(tc, test_fd_capacity);
    tcase_add_test(tc, test_fd_sigmoid_capacity_norm0);
    tcase_add_test(tc, test_fd_top_p);
    tcase_add_test(tc, test_fd_noise_capacity);
    tcase_add_test(tc, test_fd_dense_shared_norm0);
    tcase_add_test(tc, test_fd_top1);
    tcase_add_test(tc, test_fd_forced_rows);
    tcase_add_test(tc, test_fd_forced_router_ce);
    tcase_add_test(tc, test_fd_supervised_routing);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_NOFORK);
}
