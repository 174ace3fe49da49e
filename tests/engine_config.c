// engine_config.c: presets, overrides by name, automatic values, and validation that
// names the bad field.
#include "engine/base/error.h"
#include "engine/config.h"
#include "engine/params.h"
#include "tests/testutil.h"

static mo_config tiny(void) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    return c;
}

START_TEST(test_presets_finalize) {
    for (int i = 0; config_preset_names[i]; i++) {
        mo_config c;
        ck_assert_int_eq(config_preset(&c, config_preset_names[i]), 0);
        ck_assert_msg(config_finalize(&c) == 0, "%s: %s", config_preset_names[i], mo_error());
        ck_assert_int_eq(c.head_dim, c.d_model / c.n_heads);
        ck_assert_int_eq(c.n_moe_layers_given, c.n_layers);
        ck_assert_int_eq(config_n_moe_layers(&c), c.n_layers);
        ck_assert_int_eq(c.d_ff_dense, 0);
        ck_assert_int_eq(c.d_ff_shared, c.n_shared_experts ? 1005 : 0);  // fine-S's shared expert
    }
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "huge"), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "huge"));
}
END_TEST

START_TEST(test_bench_s_is_the_issue_s) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "bench-S"), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    ck_assert_int_eq(c.vocab_size, 8192);
    ck_assert_int_eq(c.d_model, 512);
    ck_assert_int_eq(c.n_layers, 8);
    ck_assert_int_eq(c.n_heads, 8);
    ck_assert_int_eq(c.n_kv_heads, 8);
    ck_assert_int_eq(c.n_experts, 8);
    ck_assert_int_eq(c.d_ff, 1024);
    ck_assert_int_eq(c.top_k, 2);
    ck_assert_int_eq(c.norm_topk, 1);
    ck_assert(c.rope_theta == 10000.0 && c.norm_eps == 1e-5);
}
END_TEST

// Parameter counts of the presets, computed by hand from the shapes of docs/design.md section 10.1.
START_TEST(test_preset_param_counts) {
    struct {
        const char *name;
        size_t total, active;
    } want[4];
    // tiny: V 512, d 64, 2 layers, wq/wo 64x64, wk/wv 32x64, E 4 x 3 x 128x64, router 4x64.
    size_t tl = 64 + 64 * 64 * 2 + 32 * 64 * 2 + 64 + 4 * 64 + 4 * 3 * 128 * 64;
    want[0].name = "tiny", want[0].total = 2 * 512 * 64 + 64 + 2 * tl;
    want[0].active = want[0].total - 2 * (size_t)(4 - 2) * 3 * 128 * 64;
    // small: V 4096, d 256, 4 layers, 8 heads, 4 kv heads (hd 32), E 8 x d_ff 512.
    size_t sl = 256 + 256 * 256 * 2 + 128 * 256 * 2 + 256 + 8 * 256 + (size_t)8 * 3 * 512 * 256;
    want[1].name = "small", want[1].total = 2 * 4096 * 256 + 256 + 4 * sl;
    want[1].active = want[1].total - 4 * (size_t)(8 - 2) * 3 * 512 * 256;
    size_t bl = 512 + (size_t)4 * 512 * 512 + 512 + 8 * 512 + (size_t)8 * 3 * 1024 * 512;
    want[2].name = "bench-S", want[2].total = (size_t)2 * 8192 * 512 + 512 + 8 * bl;
    want[2].active = want[2].total - 8 * (size_t)(8 - 2) * 3 * 1024 * 512;
    // fine-S: bench-S's trunk, E 64 x 3 x 128x512, router 64x512, one shared expert 3 x 1005x512.
    size_t fl = 512 + (size_t)4 * 512 * 512 + 512 + 64 * 512 + (size_t)64 * 3 * 128 * 512 + (size_t)3 * 1005 * 512;
    want[3].name = "fine-S", want[3].total = (size_t)2 * 8192 * 512 + 512 + 8 * fl;
    want[3].active = want[3].total - 8 * (size_t)(64 - 8) * 3 * 128 * 512;
    // Its active parameters are bench-S's to 512 per layer (the router's extra rows against
    // the shared width's rounding).
    ck_assert_uint_eq(want[2].active - want[3].active, 8 * 512);
    for (int i = 0; i < 4; i++) {
        mo_config c;
        ck_assert_int_eq(config_preset(&c, want[i].name), 0);
        ck_assert_int_eq(config_finalize(&c), 0);
        mo_param_table pt;
        ck_assert_int_eq(params_table_build(&pt, &c), 0);
        ck_assert_uint_eq(params_count_total(&pt), want[i].total);
        ck_assert_uint_eq(params_count_active(&pt), want[i].active);
        params_table_free(&pt);
    }
    // The quickstart's model is 10-20M parameters.
    ck_assert(want[1].total > 10000000 && want[1].total < 20000000);
}
END_TEST

START_TEST(test_set_by_dashed_name) {
    mo_config c = tiny();
    ck_assert_int_eq(config_set(&c, "n-experts", "16"), 0);
    ck_assert_int_eq(config_set(&c, "top_k", "1"), 0);
    ck_assert_int_eq(config_set(&c, "norm-topk", "0"), 0);
    ck_assert_int_eq(config_set(&c, "n-kv-heads", "1"), 0);
    ck_assert_int_eq(config_set(&c, "n-shared-experts", "1"), 0);
    ck_assert_int_eq(config_set(&c, "d-ff-shared", "64"), 0);
    ck_assert_int_eq(config_set(&c, "moe-layers", "1,0"), 0);
    ck_assert_int_eq(config_set(&c, "d-ff-dense", "96"), 0);
    ck_assert_int_eq(config_set(&c, "rope-theta", "500"), 0);
    ck_assert_int_eq(config_set(&c, "norm-eps", "1e-3"), 0);
    ck_assert_int_eq(config_set(&c, "vocab-size", "300"), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    ck_assert_int_eq(c.n_experts, 16);
    ck_assert_int_eq(c.top_k, 1);
    ck_assert_int_eq(c.norm_topk, 0);
    ck_assert_int_eq(c.n_kv_heads, 1);
    ck_assert_int_eq(c.n_shared_experts, 1);
    ck_assert_int_eq(c.d_ff_shared, 64);
    ck_assert_int_eq(c.moe_layers[0], 1);
    ck_assert_int_eq(c.moe_layers[1], 0);
    ck_assert_int_eq(c.d_ff_dense, 96);
    ck_assert(c.rope_theta == 500.0 && c.norm_eps == 1e-3);
    ck_assert_int_eq(c.vocab_size, 300);
    ck_assert(config_is_field("n-experts") && config_is_field("z_coef") && !config_is_field("n-expert"));
}
END_TEST

START_TEST(test_automatic_values) {
    mo_config c = tiny();
    ck_assert_int_eq(config_set(&c, "moe-layers", "0,1"), 0);
    ck_assert_int_eq(config_set(&c, "n-shared-experts", "2"), 0);
    ck_assert_int_eq(config_set(&c, "n-heads", "8"), 0);
    ck_assert_int_eq(config_set(&c, "n-kv-heads", "4"), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    ck_assert_int_eq(c.d_ff_dense, c.d_ff);
    ck_assert_int_eq(c.d_ff_shared, c.d_ff);
    ck_assert_int_eq(c.head_dim, 8);
    // More layers with no moe_layers given: every layer MoE.
    c = tiny();
    ck_assert_int_eq(config_set(&c, "n-layers", "5"), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    ck_assert_int_eq(config_n_moe_layers(&c), 5);
}
END_TEST

// Each bad value is refused with a message that names its field.
// config_build: preset, overrides in order (the later wins), finalize; or a given start.
START_TEST(test_build) {
    mo_config c;
    config_override ov[] = {{"vocab_size", "300"}, {"n-experts", "8"}, {"vocab-size", "700"}, {"moe_layers", "1,0"}};
    ck_assert_msg(config_build(&c, "tiny", ov, 4) == 0, "%s", mo_error());
    ck_assert_int_eq(c.vocab_size, 700);
    ck_assert_int_eq(c.n_experts, 8);
    ck_assert_int_eq(c.head_dim, 16);       // finalized: d_model / n_heads
    ck_assert_int_eq(c.d_ff_dense, c.d_ff); // finalized: a dense layer's width
    config_override top[] = {{"top_k", "1"}};
    ck_assert_msg(config_build(&c, NULL, top, 1) == 0, "%s", mo_error());  // from c as it is
    ck_assert_int_eq(c.top_k, 1);
    ck_assert_int_eq(c.n_experts, 8);
    config_override bad[] = {{"n_experts", "x"}};
    ck_assert_int_eq(config_build(&c, "tiny", bad, 1), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "--n-experts: "));
    config_override kv[] = {{"n-kv-heads", "3"}};
    ck_assert_int_eq(config_build(&c, "tiny", kv, 1), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "n_kv_heads 3"));
    ck_assert_int_eq(config_build(&c, "huge", NULL, 0), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "unknown preset 'huge'"));
}
END_TEST

START_TEST(test_validation_names_field) {
    struct {
        const char *field, *value, *named;
    } bad[] = {
        {"n-heads", "3", "n_heads"},          // 64 % 3 != 0
        {"n-kv-heads", "3", "n_kv_heads"},    // does not divide 4
        {"top-k", "5", "top_k"},              // > 4 experts
        {"top-k", "0", "top_k"},
        {"n-experts", "0", "n_experts"},
        {"n-experts", "100000", "n_experts"},
        {"head-dim", "7", "head_dim"},        // odd: RoPE pairs
        {"moe-layers", "1,0,1", "moe_layers"},  // 3 entries, 2 layers
        {"moe-layers", "1,2", "moe_layers"},
        {"moe-layers", "1,", "moe_layers"},
        {"d-ff-dense", "96", "d_ff_dense"},   // no dense layer
        {"d-ff-shared", "32", "d_ff_shared"}, // no shared expert
        {"norm-topk", "2", "norm_topk"},
        {"norm-eps", "0", "norm_eps"},
        {"rope-theta", "-1", "rope_theta"},
        {"aux-coef", "-0.5", "aux_coef"},
        {"vocab-size", "1", "vocab_size"},
        {"vocab-size", "12x", "vocab_size"},  // does not parse
        {"n-layers", "0", "n_layers"},
        {"d-model", "-4", "d_model"},
        {"max-seq-len", "0", "max_seq_len"},
        {"n-shared-experts", "-1", "n_shared_experts"},
        {"z-coef", "nan", "z_coef"},
        {"no-such-field", "1", "no-such-field"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mo_config c = tiny();
        mo_error_clear();
        int rc = config_set(&c, bad[i].field, bad[i].value);
        if (rc == 0) rc = config_finalize(&c);
        ck_assert_msg(rc == -1, "--%s %s was accepted", bad[i].field, bad[i].value);
        ck_assert_msg(strstr(mo_error(), bad[i].named), "--%s %s: message '%s' does not name %s", bad[i].field,
                      bad[i].value, mo_error(), bad[i].named);
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("engine_config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_presets_finalize);
    tcase_add_test(tc, test_bench_s_is_the_issue_s);
    tcase_add_test(tc, test_preset_param_counts);
    tcase_add_test(tc, test_set_by_dashed_name);
    tcase_add_test(tc, test_automatic_values);
    tcase_add_test(tc, test_validation_names_field);
    tcase_add_test(tc, test_build);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
