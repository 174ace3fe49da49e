// engine_params.c: the parameter table (names and shapes of docs/design.md section 10.1, contiguous
// offsets, contiguous expert slices) and initialization.
#include "engine/params.h"
#include "tests/testutil.h"

static void build(mo_param_table *pt, const char *preset, const char *const *overrides) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, preset), 0);
    for (int i = 0; overrides && overrides[i]; i += 2) ck_assert_int_eq(config_set(&c, overrides[i], overrides[i + 1]), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    ck_assert_int_eq(params_table_build(pt, &c), 0);
}

START_TEST(test_offsets_contiguous) {
    const char *const ov[] = {"moe-layers", "1,0,1", "n-layers", "3", "n-shared-experts", "1", NULL};
    mo_param_table pt;
    build(&pt, "tiny", ov);
    size_t off = 0;
    for (int i = 0; i < pt.n; i++) {
        ck_assert_uint_eq(pt.t[i].offset, off);
        size_t n = 1;
        for (int k = 0; k < pt.t[i].rank; k++) n *= (size_t)pt.t[i].shape[k];
        ck_assert_uint_eq(pt.t[i].numel, n);
        off += n;
    }
    ck_assert_uint_eq(off, pt.numel);
    params_table_free(&pt);
}
END_TEST

START_TEST(test_expert_slices) {
    mo_param_table pt;
    build(&pt, "tiny", NULL);
    const mo_config *c = &pt.cfg;
    int n_stacked = 0;
    for (int i = 0; i < pt.n; i++) {
        const mo_tensor *t = &pt.t[i];
        if (!t->n_experts) continue;
        n_stacked++;
        ck_assert_int_eq(t->n_experts, c->n_experts);
        ck_assert_int_eq(t->shape[0], c->n_experts);
        ck_assert_uint_eq(t->expert_numel * (size_t)t->n_experts, t->numel);
        ck_assert_uint_eq(t->expert_numel, (size_t)c->d_ff * c->d_model);
        // Expert e of a [E, a, b] row-major tensor is elements [e*a*b, (e+1)*a*b).
        ck_assert_uint_eq(t->expert_numel, (size_t)t->shape[1] * t->shape[2]);
    }
    ck_assert_int_eq(n_stacked, 3 * c->n_layers);
    params_table_free(&pt);
}
END_TEST

START_TEST(test_names_and_shapes) {
    const char *const ov[] = {"moe-layers", "1,0", "n-shared-experts", "2", "d-ff-shared", "48", "d-ff-dense", "96",
                              NULL};
    mo_param_table pt;
    build(&pt, "tiny", ov);
    struct {
        const char *name;
        int rank;
        int64_t s[3];
    } want[] = {
        {"tok_embeddings", 2, {512, 64}},      {"norm", 1, {64}},
        {"output", 2, {512, 64}},              {"layers/0/attn_norm", 1, {64}},
        {"layers/0/attn/wq", 2, {64, 64}},     {"layers/0/attn/wk", 2, {32, 64}},
        {"layers/0/attn/wv", 2, {32, 64}},     {"layers/0/attn/wo", 2, {64, 64}},
        {"layers/0/ffn_norm", 1, {64}},        {"layers/0/moe/router", 2, {4, 64}},
        {"layers/0/moe/router_bias", 1, {4}},
        {"layers/0/moe/w1", 3, {4, 128, 64}},  {"layers/0/moe/w3", 3, {4, 128, 64}},
        {"layers/0/moe/w2", 3, {4, 64, 128}},  {"layers/0/moe/shared_w1", 2, {96, 64}},
        {"layers/0/moe/shared_w3", 2, {96, 64}}, {"layers/0/moe/shared_w2", 2, {64, 96}},
        {"layers/1/ffn/w1", 2, {96, 64}},      {"layers/1/ffn/w3", 2, {96, 64}},
        {"layers/1/ffn/w2", 2, {64, 96}},
    };
    int n = (int)(sizeof want / sizeof want[0]);
    for (int i = 0; i < n; i++) {
        int id = params_find(&pt, want[i].name);
        ck_assert_msg(id >= 0, "missing %s", want[i].name);
        ck_assert_int_eq(pt.t[id].rank, want[i].rank);
        for (int k = 0; k < want[i].rank; k++) ck_assert_int_eq(pt.t[id].shape[k], want[i].s[k]);
    }
    // Layer 1 is dense: no moe/; layer 0 is MoE: no ffn/. Plus the 6 attention-side tensors of layer 1.
    ck_assert_int_eq(params_find(&pt, "layers/1/moe/router"), -1);
    ck_assert_int_eq(params_find(&pt, "layers/0/ffn/w1"), -1);
    ck_assert_int_eq(pt.n, n + 6);
    ck_assert_int_eq(pt.layer[0].is_moe, 1);
    ck_assert_int_eq(pt.layer[1].is_moe, 0);
    ck_assert_int_eq(pt.layer[1].router, -1);
    params_table_free(&pt);
}
END_TEST

START_TEST(test_init) {
    mo_param_table pt;
    build(&pt, "tiny", NULL);
    float *a = params_arena_alloc(&pt), *b = params_arena_alloc(&pt);
    params_init(&pt, a, 7);
    params_init(&pt, b, 7);
    ck_assert_int_eq(memcmp(a, b, pt.numel * sizeof(float)), 0);
    params_init(&pt, b, 8);
    ck_assert_int_ne(memcmp(a, b, pt.numel * sizeof(float)), 0);
    double std_out = 0.02 / sqrt(2.0 * pt.cfg.n_layers);
    for (int i = 0; i < pt.n; i++) {
        const mo_tensor *t = &pt.t[i];
        const float *x = a + t->offset;
        double s = 0, s2 = 0;
        for (size_t j = 0; j < t->numel; j++) s += x[j], s2 += (double)x[j] * x[j];
        double mean = s / t->numel, sd = sqrt(s2 / t->numel - mean * mean);
        if (t->is_norm) {
            ck_assert_msg(mean == 1.0 && sd < 1e-12, "%s: norms start at 1", t->name);
            continue;
        }
        if (t->no_grad) {
            ck_assert_msg(mean == 0.0 && sd == 0.0, "%s: router_bias starts at 0", t->name);
            continue;
        }
        int out = t->kind == PK_WO || t->kind == PK_W2 || t->kind == PK_SHARED_W2 || t->kind == PK_DENSE_W2;
        double want = out ? std_out : 0.02;
        // Sample std of >= 256 normals: within 20% of the target.
        ck_assert_msg(fabs(sd - want) < 0.2 * want, "%s: std %g, want %g", t->name, sd, want);
        ck_assert_msg(fabs(mean) < 0.3 * want, "%s: mean %g", t->name, mean);
    }
    free(a);
    free(b);
    params_table_free(&pt);
}
END_TEST

int main(void) {
    Suite *s = suite_create("engine_params");
    TCase *tc = tcase_create("params");
    tcase_add_test(tc, test_offsets_contiguous);
    tcase_add_test(tc, test_expert_slices);
    tcase_add_test(tc, test_names_and_shapes);
    tcase_add_test(tc, test_init);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
