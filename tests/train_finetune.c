// train_finetune.c: training a part of the model (model_set_trainable + sparse gradient
// and moment arenas, as `monolith train --train MASK` runs it) gives, step after step,
// bit for bit the parameters and Adam moments of the path that computes every gradient
// and lets the mask pick (the path before model_set_trainable existed); frozen gradients
// are never written; the backward stops below the lowest trainable block. In fp32 and, on
// a CPU with AVX512_BF16, in bf16, where the frozen GEMM weights may also be held as
// bf16 only (model_bf16_hold_frozen: their fp32 values dropped).
#include "engine/base/error.h"
#include "engine/base/rng.h"
#include "engine/model.h"
#include "tests/testutil.h"
#include "train/adamw.h"
#include "train/clip.h"
#include "train/freeze.h"

#include <math.h>

#define B_ 2
#define T_ 24
#define STEPS 3

static mo_param_table pt;
static float *init;
static int tokens[B_ * T_], targets[B_ * T_];

// tiny with a MoE layer, a dense layer and a MoE layer, one shared expert: every kind of
// tensor; d_ff as given (100: experts' rows that do not start on 16-element boundaries,
// where the backward's elementwise passes cannot take one expert alone: engine/moe.c).
static void setup_width(const char *d_ff) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    ck_assert_int_eq(config_set(&c, "n_layers", "3"), 0);
    ck_assert_int_eq(config_set(&c, "moe_layers", "1,0,1"), 0);
    ck_assert_int_eq(config_set(&c, "n_shared_experts", "1"), 0);
    ck_assert_int_eq(config_set(&c, "d_ff", d_ff), 0);
    ck_assert_msg(config_finalize(&c) == 0, "%s", mo_error());
    ck_assert_int_eq(params_table_build(&pt, &c), 0);
    init = params_arena_alloc(&pt);
    params_init(&pt, init, 5);
    mo_rng r;
    mo_rng_seed(&r, 9);
    for (int i = 0; i < B_ * T_; i++) tokens[i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);
    for (int i = 0; i < B_ * T_; i++) targets[i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);
}
static void setup(void) { setup_width("128"); }
static void setup_odd(void) { setup_width("100"); }
static void teardown(void) {
    free(init);
    params_table_free(&pt);
}

typedef struct {
    float *params, *grads, *m, *v;
    int sparse;
    unsigned char *only;  // held: 1 for the elements kept as bf16 only (their fp32 dropped)
} state;

// STEPS optimizer steps under `mask`. partial = 0: every gradient computed into a full
// arena zeroed whole, the mask only picks what AdamW updates; 1: as the trainer runs a
// mask that trains a part; 2: that, with the frozen GEMM weights held as bf16 only (the
// parameter arena filled tensor by tensor, as a fine-tune loads it). Returns 0, or -1 if
// `prec` is not available here.
static int run(const train_mask *mask, int partial, mo_precision prec, state *s) {
    s->sparse = partial;
    s->only = NULL;
    s->params = partial == 2 ? params_arena_alloc_sparse(&pt) : params_arena_alloc(&pt);
    if (partial != 2) memcpy(s->params, init, pt.numel * sizeof(float));
    s->grads = partial ? params_arena_alloc_sparse(&pt) : params_arena_alloc(&pt);
    s->m = partial ? params_arena_alloc_sparse(&pt) : params_arena_alloc(&pt);
    s->v = partial ? params_arena_alloc_sparse(&pt) : params_arena_alloc(&pt);
    ck_assert(s->params && s->grads && s->m && s->v);
    mo_model model;
    ck_assert_msg(model_alloc(&model, &pt, B_, T_) == 0, "%s", mo_error());
    if (model_set_precision(&model, prec)) {
        model_free(&model);
        return -1;
    }
    if (partial) ck_assert_int_eq(model_set_trainable(&model, train_mask_any, (void *)mask), 0);
    if (partial == 2) {
        ck_assert_ptr_nonnull(s->only = calloc(pt.numel, 1));
        for (int i = 0; i < pt.n; i++) {
            const mo_tensor *t = &pt.t[i];
            memcpy(s->params + t->offset, init + t->offset, t->numel * sizeof(float));
            model_bf16_hold_frozen(&model, s->params, i);
            for (int e = 0; e < (t->n_experts ? t->n_experts : 1); e++) {
                size_t n = t->n_experts ? t->expert_numel : t->numel;
                if (!model_bf16_only(&model, i, t->n_experts ? e : -1)) continue;
                memset(s->only + t->offset + e * n, 1, n);
                // Whatever of them stays (partial pages): NaN, so any read of it would show.
                for (size_t j = 0; j < n; j++) s->params[t->offset + e * n + j] = NAN;
            }
        }
    }
    double *partial_sums = calloc(mask->n + 1, sizeof *partial_sums);
    adamw_step opt = adamw_defaults();
    opt.lr = 1e-2;
    for (int step = 0; step < STEPS; step++) {
        if (partial) train_mask_zero(mask, s->grads);
        else memset(s->grads, 0, pt.numel * sizeof(float));
        ck_assert_int_eq(model_forward(&model, s->params, tokens, targets), 0);
        ck_assert_int_eq(model_backward(&model, s->params, s->grads, 1.0f), 0);
        grad_clip(s->grads, mask->r, mask->n, 1.0, partial_sums);
        opt.t = step + 1;
        adamw_apply(s->params, s->grads, s->m, s->v, mask->r, mask->n, &opt);
    }
    free(partial_sums);
    model_free(&model);
    return 0;
}

static void state_free(state *s) {
    if (s->only) params_arena_free_sparse(&pt, s->params);
    else free(s->params);
    free(s->only);
    if (s->sparse) params_arena_free_sparse(&pt, s->grads), params_arena_free_sparse(&pt, s->m), params_arena_free_sparse(&pt, s->v);
    else free(s->grads), free(s->m), free(s->v);
}

// Whole tensors that the mask leaves frozen: their gradients were never written.
static void check_frozen_untouched(const train_mask *mask, const state *s, const char *spec) {
    for (int i = 0; i < pt.n; i++) {
        const mo_tensor *t = &pt.t[i];
        if (train_mask_any((void *)mask, t->offset, t->numel)) continue;
        for (size_t j = 0; j < t->numel; j++)
            ck_assert_msg(s->grads[t->offset + j] == 0.0f, "%s: frozen %s has a gradient written", spec, t->name);
    }
}

static const char *const masks[] = {"experts=1",      "experts=0,3@layers=2", "router",    "attention@layers=1",
                                    "norms",          "embeddings",           "shared",    "dense,experts=2",
                                    "experts@layers=0", "all"};

static void compare_masks(mo_precision prec, const char *const *masks, size_t n_masks) {
    for (size_t k = 0; k < n_masks; k++) {
        train_mask mask;
        ck_assert_msg(freeze_parse(&pt, masks[k], &mask) == 0, "%s", mo_error());
        state a, b;
        if (run(&mask, 0, prec, &a)) {  // bf16 not available on this CPU: nothing to compare
            state_free(&a);
            train_mask_free(&mask);
            return;
        }
        ck_assert_int_eq(run(&mask, 1, prec, &b), 0);
        ck_assert_msg(memcmp(a.params, b.params, pt.numel * sizeof(float)) == 0,
                      "--train %s: parameters differ from the full-gradient path", masks[k]);
        int moved = 0;
        for (size_t r = 0; r < mask.n; r++) {
            size_t o = mask.r[r].offset, n = mask.r[r].length;
            ck_assert_msg(!memcmp(a.m + o, b.m + o, n * sizeof(float)) && !memcmp(a.v + o, b.v + o, n * sizeof(float)),
                          "--train %s: Adam moments differ", masks[k]);
            moved |= memcmp(a.params + o, init + o, n * sizeof(float)) != 0;
        }
        ck_assert_msg(moved, "--train %s: nothing trained", masks[k]);
        check_frozen_untouched(&mask, &b, masks[k]);
        if (prec == MO_PRECISION_BF16) {  // the same with the frozen GEMM weights held as bf16 only
            state c;
            ck_assert_int_eq(run(&mask, 2, prec, &c), 0);
            size_t dropped = 0;
            for (size_t j = 0; j < pt.numel; j++) {
                dropped += c.only[j];
                if (!c.only[j])
                    ck_assert_msg(!memcmp(&a.params[j], &c.params[j], sizeof(float)),
                                  "--train %s, frozen weights in bf16 only: parameter %zu differs", masks[k], j);
            }
            for (size_t r = 0; r < mask.n; r++) {
                size_t o = mask.r[r].offset, n = mask.r[r].length;
                ck_assert_msg(!memcmp(a.m + o, c.m + o, n * sizeof(float)) && !memcmp(a.v + o, c.v + o, n * sizeof(float)),
                              "--train %s, frozen weights in bf16 only: Adam moments differ", masks[k]);
                for (size_t j = o; j < o + n; j++) ck_assert(!c.only[j]);
            }
            // Every mask but all leaves some GEMM weight frozen.
            ck_assert_msg(dropped > 0 || !strcmp(masks[k], "all"), "--train %s: no frozen weight held as bf16 only",
                          masks[k]);
            state_free(&c);
        }
        state_free(&a), state_free(&b);
        train_mask_free(&mask);
    }
}

static void compare(mo_precision prec) { compare_masks(prec, masks, sizeof masks / sizeof masks[0]); }

START_TEST(test_same_as_full_gradients_fp32) { compare(MO_PRECISION_FP32); }
END_TEST

START_TEST(test_same_as_full_gradients_bf16) { compare(MO_PRECISION_BF16); }
END_TEST

// The lowest trainable FFN with experts of odd width (the fallback of engine/moe.c).
static const char *const odd_masks[] = {"experts=1", "experts=0,3@layers=2", "experts=2@layers=0"};
START_TEST(test_odd_width) {
    compare_masks(MO_PRECISION_FP32, odd_masks, 3);
    compare_masks(MO_PRECISION_BF16, odd_masks, 3);
}
END_TEST

// Which blocks backward runs: everything above the lowest trainable block, nothing below.
START_TEST(test_blocks_needed) {
    train_mask mask;
    mo_model model;
    ck_assert_int_eq(model_alloc(&model, &pt, 1, 4), 0);
    ck_assert_int_eq(freeze_parse(&pt, "experts=1@layers=2", &mask), 0);
    ck_assert_int_eq(model_set_trainable(&model, train_mask_any, &mask), 0);
    const unsigned char want_attn[] = {0, 0, 0}, want_ffn[] = {0, 0, 1};
    ck_assert_mem_eq(model.need_attn, want_attn, 3);
    ck_assert_mem_eq(model.need_ffn, want_ffn, 3);
    train_mask_free(&mask);
    ck_assert_int_eq(freeze_parse(&pt, "attention@layers=1", &mask), 0);
    ck_assert_int_eq(model_set_trainable(&model, train_mask_any, &mask), 0);
    const unsigned char want_attn2[] = {0, 1, 1}, want_ffn2[] = {0, 1, 1};
    ck_assert_mem_eq(model.need_attn, want_attn2, 3);
    ck_assert_mem_eq(model.need_ffn, want_ffn2, 3);
    // Only expert 1's slices of layer 2's stacked tensors want weight gradients.
    int w1 = pt.layer[2].w1;
    ck_assert_int_eq(model.expert_trains[(size_t)w1 * pt.cfg.n_experts + 1], 0);
    train_mask_free(&mask);
    ck_assert_int_eq(freeze_parse(&pt, "experts=1@layers=2", &mask), 0);
    ck_assert_int_eq(model_set_trainable(&model, train_mask_any, &mask), 0);
    for (int e = 0; e < pt.cfg.n_experts; e++)
        ck_assert_int_eq(model.expert_trains[(size_t)w1 * pt.cfg.n_experts + e], e == 1);
    ck_assert_int_eq(model_set_trainable(&model, NULL, NULL), 0);  // back to everything
    ck_assert_ptr_null(model.trains);
    train_mask_free(&mask);
    model_free(&model);
}
END_TEST

int main(void) {
    Suite *s = suite_create("train_finetune");
    TCase *tc = tcase_create("finetune");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_same_as_full_gradients_fp32);
    tcase_add_test(tc, test_same_as_full_gradients_bf16);
    tcase_add_test(tc, test_blocks_needed);
    suite_add_tcase(s, tc);
    TCase *odd = tcase_create("odd_width");
    tcase_add_checked_fixture(odd, setup_odd, teardown);
    tcase_add_test(odd, test_odd_width);
    suite_add_tcase(s, odd);
    return tu_run_suite(s, CK_FORK_GETENV);
}
