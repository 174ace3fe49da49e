// engine_model_bf16.c: bf16 compute (model_set_precision) against the fp32 model on the
// same weights and batch: loss, logits and every parameter gradient, on the tiny preset
// and on a variant with a dense layer, shared experts and one kv head; a forward after
// the weights change sees the new weights, or the copy an optimizer wrote
// (model_bf16_weights_current); refusals.
//
// Tolerances (bf16 keeps 8 significant bits, relative rounding 2^-9 = 2e-3 per input;
// products accumulate in fp32): |loss_bf16 - loss_fp32| <= 1e-3 * loss, logits
// ||bf16 - fp32|| / ||fp32|| <= 1e-2, each gradient tensor's normalized error <= 3e-2,
// and at most 5% of the routing choices differ (a near-tie can flip; its token then
// trains other experts, which is what moves the gradients most). Measured values are
// printed; typical ones are several times below these bounds.
#include "engine/base/error.h"
#include "engine/model.h"
#include "kernels/bf16.h"
#include "tests/testutil.h"

#define B_ 2
#define T_ 32
#define TOL_LOSS 1e-3
#define TOL_LOGITS 1e-2
#define TOL_GRAD 3e-2
#define MAX_ROUTE_FLIPS 0.05

typedef struct {
    mo_param_table pt;
    float *params, *g32, *g16;
    int tokens[B_ * T_], targets[B_ * T_];
} setup;

static void make(setup *s, const char *const *overrides, uint64_t seed) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    for (int i = 0; overrides[i]; i += 2) ck_assert_int_eq(config_set(&c, overrides[i], overrides[i + 1]), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    ck_assert_int_eq(params_table_build(&s->pt, &c), 0);
    s->params = params_arena_alloc(&s->pt), s->g32 = params_arena_alloc(&s->pt), s->g16 = params_arena_alloc(&s->pt);
    ck_assert(s->params && s->g32 && s->g16);
    params_init(&s->pt, s->params, seed);
    mo_rng r;
    mo_rng_seed(&r, seed + 1);
    for (int i = 0; i < B_ * T_; i++) s->tokens[i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);
    for (int i = 0; i < B_ * T_; i++) s->targets[i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);
}

static void unmake(setup *s) {
    free(s->params), free(s->g32), free(s->g16);
    params_table_free(&s->pt);
}

static void compare(const char *what, setup *s) {
    mo_model m32, m16;
    const int N = B_ * T_, V = s->pt.cfg.vocab_size;
    ck_assert_msg(model_alloc(&m32, &s->pt, B_, T_) == 0, "%s", mo_error());
    ck_assert_msg(model_alloc(&m16, &s->pt, B_, T_) == 0, "%s", mo_error());
    ck_assert_msg(model_set_precision(&m16, MO_PRECISION_BF16) == 0, "%s", mo_error());
    ck_assert_int_eq(model_forward(&m32, s->params, s->tokens, s->targets), 0);
    ck_assert_int_eq(model_forward(&m16, s->params, s->tokens, s->targets), 0);

    double dl = fabs(m16.loss - m32.loss) / m32.loss;
    double el = tu_rel_err(m16.logits, m32.logits, (size_t)N * V);
    int flips = 0, slots = 0;
    for (int l = 0; l < s->pt.cfg.n_layers; l++) {
        if (!s->pt.layer[l].is_moe) continue;
        for (int i = 0; i < N * s->pt.cfg.top_k; i++, slots++) flips += m16.layer[l].r.experts[i] != m32.layer[l].r.experts[i];
    }
    memset(s->g32, 0, s->pt.numel * sizeof(float)), memset(s->g16, 0, s->pt.numel * sizeof(float));
    ck_assert_int_eq(model_backward(&m32, s->params, s->g32, 1.0f), 0);
    ck_assert_int_eq(model_backward(&m16, s->params, s->g16, 1.0f), 0);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < s->pt.n; i++) {
        const mo_tensor *t = &s->pt.t[i];
        double e = tu_rel_err(s->g16 + t->offset, s->g32 + t->offset, t->numel);
        ck_assert_msg(isfinite(e), "%s: %s gradient not finite", what, t->name);
        if (e > worst) worst = e, worst_name = t->name;
    }
    printf("%s: loss %.6f vs %.6f (rel %.2e), logits err %.2e, routing flips %d/%d, worst gradient err %.2e (%s)\n",
           what, m16.loss, m32.loss, dl, el, flips, slots, worst, worst_name);
    ck_assert_msg(dl <= TOL_LOSS, "%s: loss rel diff %.3g", what, dl);
    ck_assert_msg(el <= TOL_LOGITS, "%s: logits err %.3g", what, el);
    ck_assert_msg(flips <= MAX_ROUTE_FLIPS * slots, "%s: %d of %d routing choices differ", what, flips, slots);
    ck_assert_msg(worst <= TOL_GRAD, "%s: gradient of %s err %.3g", what, worst_name, worst);
    // and bf16 is not fp32 under another name: the products were rounded
    ck_assert_msg(el > 0, "%s: bf16 logits identical to fp32: the bf16 path did not run", what);
    model_free(&m32), model_free(&m16);
}

START_TEST(test_bf16_tiny) {
    if (!bf16_supported()) return;  // model_set_precision refuses: see test_refusals
    setup s;
    make(&s, (const char *const[]){NULL}, 7);
    compare("tiny", &s);
    unmake(&s);
}
END_TEST

START_TEST(test_bf16_dense_shared) {
    if (!bf16_supported()) return;
    setup s;
    make(&s,
         (const char *const[]){"moe-layers", "0,1", "d-ff-dense", "48", "n-shared-experts", "2", "d-ff-shared", "16",
                               "n-kv-heads", "1", NULL},
         8);
    compare("tiny dense+shared, 1 kv head", &s);
    unmake(&s);
}
END_TEST

// Each forward rounds the current weights: after an update (as an optimizer step makes)
// bf16 still tracks fp32.
START_TEST(test_bf16_sees_new_weights) {
    if (!bf16_supported()) return;
    setup s;
    make(&s, (const char *const[]){NULL}, 9);
    mo_model m;
    ck_assert_int_eq(model_alloc(&m, &s.pt, B_, T_), 0);
    ck_assert_int_eq(model_set_precision(&m, MO_PRECISION_BF16), 0);
    ck_assert_int_eq(model_forward(&m, s.params, s.tokens, s.targets), 0);
    double before = m.loss;
    for (size_t i = 0; i < s.pt.numel; i++) s.params[i] *= 1.5f;
    ck_assert_int_eq(model_forward(&m, s.params, s.tokens, s.targets), 0);
    ck_assert_msg(fabs(m.loss - before) > 1e-4, "loss did not move with the weights (%.6f)", m.loss);
    model_free(&m);
    compare("tiny, weights x1.5", &s);
    unmake(&s);
}
END_TEST

// model_bf16_weights_current: the next forward (only that one) reads the copy as the
// caller left it. A copy written as bf16_from_f32 of the new weights gives the loss of
// the forward that rounds them itself, bit for bit; a copy left stale is used once (the
// flag took effect) and rounded again by the forward after it.
START_TEST(test_bf16_copy_from_optimizer) {
    if (!bf16_supported()) return;
    setup s;
    make(&s, (const char *const[]){NULL}, 11);
    mo_model m;
    ck_assert_int_eq(model_alloc(&m, &s.pt, B_, T_), 0);
    ck_assert_int_eq(model_set_precision(&m, MO_PRECISION_BF16), 0);
    ck_assert(model_bf16_weights(&m) == m.wb);
    float *p0 = malloc(s.pt.numel * sizeof *p0);
    memcpy(p0, s.params, s.pt.numel * sizeof *p0);
    ck_assert_int_eq(model_forward(&m, s.params, s.tokens, s.targets), 0);
    const double old_loss = m.loss;
    for (size_t i = 0; i < s.pt.numel; i++) s.params[i] *= 1.25f;
    ck_assert_int_eq(model_forward(&m, s.params, s.tokens, s.targets), 0);  // rounds the new weights itself
    const double new_loss = m.loss;
    bf16_from_f32(model_bf16_weights(&m), s.params, s.pt.numel);  // what adamw_apply_bf16 writes
    model_bf16_weights_current(&m);
    ck_assert_int_eq(model_forward(&m, s.params, s.tokens, s.targets), 0);
    ck_assert_msg(m.loss == new_loss, "copy from the optimizer: loss %.9g, want %.9g", m.loss, new_loss);
    memcpy(s.params, p0, s.pt.numel * sizeof *p0);  // the copy still holds the x1.25 weights
    model_bf16_weights_current(&m);
    ck_assert_int_eq(model_forward(&m, s.params, s.tokens, s.targets), 0);
    ck_assert_msg(fabs(m.loss - old_loss) > 1e-4, "a copy declared current was rounded again (%.9g)", m.loss);
    ck_assert_int_eq(model_forward(&m, s.params, s.tokens, s.targets), 0);
    ck_assert_msg(m.loss == old_loss, "the forward after it kept the copy (%.9g, want %.9g)", m.loss, old_loss);
    free(p0);
    model_free(&m);
    unmake(&s);
}
END_TEST

START_TEST(test_refusals) {
    mo_precision p;
    ck_assert_int_eq(model_precision_parse("bf16", "--precision", &p), 0);
    ck_assert_int_eq(p, MO_PRECISION_BF16);
    ck_assert_int_eq(model_precision_parse("fp32", "--precision", &p), 0);
    ck_assert_int_eq(p, MO_PRECISION_FP32);
    ck_assert_int_eq(model_precision_parse("fp16", "--precision", &p), -1);
    ck_assert_msg(strstr(mo_error(), "--precision 'fp16'") && strstr(mo_error(), "bf16"), "%s", mo_error());
    setup s;
    make(&s, (const char *const[]){NULL}, 10);
    mo_model m;
    ck_assert_int_eq(model_alloc(&m, &s.pt, B_, T_), 0);
    int rc = model_set_precision(&m, MO_PRECISION_BF16);
    if (bf16_supported()) ck_assert_int_eq(rc, 0);
    else ck_assert_msg(rc == -1 && strstr(mo_error(), "AVX512_BF16"), "%s", mo_error());
    ck_assert_int_eq(model_set_precision(&m, MO_PRECISION_FP32), 0);  // back to fp32 frees the copies
    ck_assert(m.bf16 == 0 && m.wb == NULL);
    model_free(&m);
    unmake(&s);
}
END_TEST

int main(void) {
    Suite *s = suite_create("engine_model_bf16");
    TCase *tc = tcase_create("bf16");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_bf16_tiny);
    tcase_add_test(tc, test_bf16_dense_shared);
    tcase_add_test(tc, test_bf16_sees_new_weights);
    tcase_add_test(tc, test_bf16_copy_from_optimizer);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
