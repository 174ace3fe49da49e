// train_router_ce.c: the router supervision term under forced routing teaches the router
// the forced experts. Two synthetic domains (disjoint halves of a small vocabulary) are
// forced to experts 2 and 1 of the tiny preset; only the router is trained (the
// `--train router` mask, AdamW) for a few steps. Then, with normal routing, the router's
// argmax must be the domain's expert for most tokens of every MoE layer. The same run
// with the term off (router_ce 0: the router sees only aux and z, and a forced gate is
// the constant 1) must not get there, so the test fails without the term. Supervised
// routing (model_set_forced_targets_only: the forced experts are the term's targets, every
// token keeps the router's top-k) must get there too, while routing each step as the
// router would without forcing.
#include "engine/base/error.h"
#include "engine/base/rng.h"
#include "engine/model.h"
#include "train/adamw.h"
#include "train/freeze.h"
#include "tests/testutil.h"

#define B_ 4
#define T_ 16
#define VOCAB 64
#define STEPS 60

static const int expert_of[2] = {2, 1};  // domain -> forced expert

// A batch: rows 0..B/2-1 of domain 0 (tokens 0..V/2-1), the rest of domain 1 (V/2..V-1).
static void batch(mo_rng *r, int *tokens, int *targets, int *forced) {
    for (int b = 0; b < B_; b++) {
        int dom = b >= B_ / 2, lo = dom * VOCAB / 2;
        for (int t = 0; t < T_; t++) {
            tokens[b * T_ + t] = lo + (int)mo_rng_below(r, VOCAB / 2);
            targets[b * T_ + t] = lo + (int)mo_rng_below(r, VOCAB / 2);
            forced[b * T_ + t] = expert_of[dom];
        }
    }
}

// Trains the router for STEPS steps with router_ce weight `coef`, then returns the worst
// (over MoE layers) share of a fresh batch's tokens whose argmax expert, under normal
// routing, is their domain's.
static double train_and_match(double coef, int targets_only) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    ck_assert_int_eq(config_set(&c, "vocab-size", "64"), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    mo_param_table pt;
    ck_assert_int_eq(params_table_build(&pt, &c), 0);
    float *params = params_arena_alloc(&pt), *grads = params_arena_alloc(&pt);
    float *m1 = params_arena_alloc(&pt), *m2 = params_arena_alloc(&pt);
    ck_assert(params && grads && m1 && m2);
    params_init(&pt, params, 7);
    train_mask mask;
    ck_assert_msg(freeze_parse(&pt, "router", &mask) == 0, "%s", mo_error());
    mo_model m;
    ck_assert_msg(model_alloc(&m, &pt, B_, T_) == 0, "%s", mo_error());
    int tokens[B_ * T_], targets[B_ * T_], forced[B_ * T_];
    model_set_forced_experts(&m, forced);
    model_set_router_ce(&m, coef);
    model_set_forced_targets_only(&m, targets_only);
    adamw_step s = adamw_defaults();
    s.lr = 3e-2;
    mo_rng r;
    mo_rng_seed(&r, 11);
    double first = 0;
    for (int step = 1; step <= STEPS; step++) {
        batch(&r, tokens, targets, forced);
        if (targets_only && (step == 1 || step == STEPS)) {
            // The routing of an unforced forward of the same batch: the supervised one must equal it.
            model_set_forced_experts(&m, NULL);
            ck_assert_int_eq(model_forward(&m, params, tokens, targets), 0);
            double ce = m.ce;
            int *free_sel = malloc((size_t)B_ * T_ * c.top_k * sizeof *free_sel);
            memcpy(free_sel, m.layer[0].r.experts, (size_t)B_ * T_ * c.top_k * sizeof *free_sel);
            model_set_forced_experts(&m, forced);
            ck_assert_int_eq(model_forward(&m, params, tokens, targets), 0);
            ck_assert(m.ce == ce && m.router_ce > 0);
            ck_assert(!memcmp(free_sel, m.layer[0].r.experts, (size_t)B_ * T_ * c.top_k * sizeof *free_sel));
            free(free_sel);
        }
        ck_assert_int_eq(model_forward(&m, params, tokens, targets), 0);
        if (step == 1) first = m.router_ce;
        ck_assert(coef == 0 || fabs(m.loss - (m.ce + c.aux_coef * m.aux + c.z_coef * m.z + coef * m.router_ce)) < 1e-9);
        memset(grads, 0, pt.numel * sizeof *grads);
        ck_assert_int_eq(model_backward(&m, params, grads, 1.0f), 0);
        s.t = step;
        adamw_apply(params, grads, m1, m2, mask.r, mask.n, &s);
    }
    double last = m.router_ce;
    // Normal routing on a fresh batch: does the router pick the domain's expert?
    batch(&r, tokens, targets, forced);
    model_set_forced_experts(&m, NULL);
    ck_assert_int_eq(model_forward(&m, params, tokens, targets), 0);
    ck_assert(m.router_ce == 0);  // no forced rows: the term is gone
    double worst = 1;
    for (int l = 0; l < c.n_layers; l++) {
        if (!c.moe_layers[l]) continue;
        int hit = 0;
        for (int i = 0; i < B_ * T_; i++) hit += m.layer[l].r.experts[(size_t)i * c.top_k] == forced[i];
        worst = fmin(worst, (double)hit / (B_ * T_));
    }
    printf("router_ce %.1f%s: router_ce %.3f -> %.3f over %d router-only steps; argmax = forced expert for %.0f%% of "
           "tokens (worst layer)\n",
           coef, targets_only ? " (targets only)" : "", first, last, STEPS, 100 * worst);
    model_free(&m);
    train_mask_free(&mask);
    free(params), free(grads), free(m1), free(m2);
    params_table_free(&pt);
    return worst;
}

START_TEST(test_router_learns_forced_experts) {
    double with = train_and_match(1.0, 0), without = train_and_match(0.0, 0), supervised = train_and_match(1.0, 1);
    ck_assert_msg(with >= 0.9, "with the router term, argmax matches the forced expert for only %.0f%%", 100 * with);
    ck_assert_msg(supervised >= 0.9, "supervised routing: argmax matches the domain's expert for only %.0f%%",
                  100 * supervised);
    ck_assert_msg(without < 0.6, "without the term the router should not find the experts (%.0f%%)", 100 * without);
}
END_TEST

int main(void) {
    Suite *s = suite_create("train_router_ce");
    TCase *tc = tcase_create("router_ce");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_router_learns_forced_experts);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_NOFORK);
}
