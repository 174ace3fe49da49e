// engine_backward_first.c: model_backward_first (the GEMMs write the weight gradients,
// beta 0, instead of adding to a zeroed arena) gives the bits of memset + model_backward:
// into an arena full of garbage, at 1 and 2 threads, in fp32 and bf16, on the tiny
// preset, fine-grained experts (matmul_small's kernels, experts with no rows) and a
// dense layer with shared experts and one kv head; a second micro-batch accumulates on
// top as model_backward does; a trainable mask falls back to zeroing the whole arena.
#include "engine/base/error.h"
#include "engine/model.h"
#include "kernels/bf16.h"
#include "tests/testutil.h"

#include <omp.h>

#define B_ 2
#define T_ 32

typedef struct {
    mo_param_table pt;
    float *params, *want, *got;
    int tokens[2][B_ * T_], targets[2][B_ * T_];
} setup;

static void make(setup *s, const char *const *overrides, uint64_t seed) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    for (int i = 0; overrides[i]; i += 2) ck_assert_int_eq(config_set(&c, overrides[i], overrides[i + 1]), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    ck_assert_int_eq(params_table_build(&s->pt, &c), 0);
    s->params = params_arena_alloc(&s->pt), s->want = params_arena_alloc(&s->pt), s->got = params_arena_alloc(&s->pt);
    ck_assert(s->params && s->want && s->got);
    params_init(&s->pt, s->params, seed);
    mo_rng r;
    mo_rng_seed(&r, seed + 1);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < B_ * T_; i++) {
            s->tokens[b][i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);
            s->targets[b][i] = (int)mo_rng_below(&r, (uint64_t)c.vocab_size);
        }
}

static void unmake(setup *s) {
    free(s->params), free(s->want), free(s->got);
    params_table_free(&s->pt);
}

// A mask that trains the parameters in the arena's second half only.
static int second_half(void *ctx, size_t offset, size_t length) {
    const mo_param_table *pt = ctx;
    return offset + length > pt->numel / 2;
}

// Two micro-batches both ways; every gradient bit for bit, after the first and after both.
static void check(const char *what, setup *s, mo_precision prec, int masked) {
    mo_model m;
    ck_assert_msg(model_alloc(&m, &s->pt, B_, T_) == 0, "%s", mo_error());
    ck_assert_msg(model_set_precision(&m, prec) == 0, "%s", mo_error());
    if (masked) ck_assert_msg(model_set_trainable(&m, second_half, &s->pt) == 0, "%s", mo_error());
    const size_t bytes = s->pt.numel * sizeof(float);
    for (int b = 0; b < 2; b++) {
        // Each backward uses up its forward (logits, the h1/h3 caches): one forward each.
        ck_assert_int_eq(model_forward(&m, s->params, s->tokens[b], s->targets[b]), 0);
        if (b == 0) memset(s->want, 0, bytes);
        ck_assert_int_eq(model_backward(&m, s->params, s->want, 0.5f), 0);
        ck_assert_int_eq(model_forward(&m, s->params, s->tokens[b], s->targets[b]), 0);
        if (b == 0) {
            memset(s->got, 0xA5, bytes);  // garbage: -2.9e-16 in every float
            ck_assert_int_eq(model_backward_first(&m, s->params, s->got, 0.5f), 0);
        } else {
            ck_assert_int_eq(model_backward(&m, s->params, s->got, 0.5f), 0);
        }
        for (int i = 0; i < s->pt.n; i++) {
            const mo_tensor *t = &s->pt.t[i];
            ck_assert_msg(!memcmp(s->got + t->offset, s->want + t->offset, t->numel * sizeof(float)),
                          "%s%s, %d threads, micro-batch %d: gradient of %s differs", what, masked ? " (masked)" : "",
                          omp_get_max_threads(), b, t->name);
        }
    }
    model_free(&m);
}

static void run(const char *what, const char *const *overrides, uint64_t seed) {
    setup s;
    make(&s, overrides, seed);
    const int threads[] = {1, 2};
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(threads[t]);
        check(what, &s, MO_PRECISION_FP32, 0);
        check(what, &s, MO_PRECISION_FP32, 1);
        if (bf16_supported()) check(what, &s, MO_PRECISION_BF16, 0);
    }
    unmake(&s);
}

START_TEST(test_tiny) { run("tiny", (const char *const[]){NULL}, 3); }
END_TEST

// 32 experts of width 16 for 128 rows: matmul_small's kernels, and experts with no rows.
START_TEST(test_fine_grained) {
    run("fine-grained", (const char *const[]){"n-experts", "32", "top-k", "2", "d-ff", "16", NULL}, 4);
}
END_TEST

START_TEST(test_dense_shared) {
    run("dense+shared, 1 kv head",
        (const char *const[]){"moe-layers", "0,1", "d-ff-dense", "48", "n-shared-experts", "2", "d-ff-shared", "16",
                              "n-kv-heads", "1", NULL},
        5);
}
END_TEST

int main(void) {
    Suite *s = suite_create("backward_first");
    TCase *tc = tcase_create("backward_first");
    tcase_add_test(tc, test_tiny);
    tcase_add_test(tc, test_fine_grained);
    tcase_add_test(tc, test_dense_shared);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
