// engine_checkpoint.c: the checkpoint round trip is bit-exact, and every damaged file is
// refused with one line naming the file and the tensor or attribute at fault.
#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "engine/checkpoint.h"
#include "tests/testutil.h"

#include <unistd.h>

static void new_ckpt(mo_checkpoint *ck, const char *const *overrides) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    for (int i = 0; overrides && overrides[i]; i += 2) ck_assert_int_eq(config_set(&c, overrides[i], overrides[i + 1]), 0);
    ck_assert_int_eq(config_finalize(&c), 0);
    ck_assert_int_eq(ckpt_new(ck, &c, 3, "{\"test\": 1}"), 0);
}

// A checkpoint written to `name`; returns its path.
static const char *saved(const char *name, const char *const *overrides) {
    mo_checkpoint ck;
    new_ckpt(&ck, overrides);
    const char *p = tu_scratch_path(name);
    ck_assert_msg(ckpt_save(p, &ck) == 0, "%s", mo_error());
    ckpt_free(&ck);
    return p;
}

// Loading `path` must fail with a message containing every string of `want`.
static void assert_refused(const char *path, const char *const *want) {
    mo_checkpoint ck;
    mo_error_clear();
    int rc = ckpt_load(path, &ck);
    ck_assert_msg(rc == -1, "%s was accepted", path);
    ck_assert_msg(!strchr(mo_error(), '\n'), "message is not one line: %s", mo_error());
    for (int i = 0; want[i]; i++)
        ck_assert_msg(strstr(mo_error(), want[i]), "message '%s' does not mention '%s'", mo_error(), want[i]);
}

START_TEST(test_round_trip_bit_exact) {
    const char *const ov[] = {"moe-layers", "1,0", "n-shared-experts", "1", "norm-topk", "0", NULL};
    mo_checkpoint a, b;
    new_ckpt(&a, ov);
    ck_assert_int_eq(ckpt_experts_set(&a.experts, 2, "legal", "spdx", "{\"steps\": 5}"), 0);
    static const char ranks[] = "IQ== 0\nIg== 1\n";
    a.tokenizer.present = 1;
    a.tokenizer.tiktoken_len = sizeof ranks - 1;
    a.tokenizer.tiktoken = malloc(sizeof ranks);
    memcpy(a.tokenizer.tiktoken, ranks, sizeof ranks);
    a.tokenizer.n_special = 1;
    a.tokenizer.special_names = calloc(1, sizeof(char *));
    a.tokenizer.special_names[0] = strdup("<|endoftext|>");
    a.tokenizer.special_ids = calloc(1, sizeof(int64_t));
    a.tokenizer.special_ids[0] = 2;
    const char *p = tu_scratch_path("rt.h5");
    ck_assert_msg(ckpt_save(p, &a) == 0, "%s", mo_error());
    ck_assert_int_ne(access(tu_scratch_path("rt.h5.tmp"), F_OK), 0);  // the temporary was renamed
    ck_assert_msg(ckpt_load(p, &b) == 0, "%s", mo_error());
    ck_assert_int_eq(memcmp(&a.table.cfg, &b.table.cfg, sizeof a.table.cfg), 0);
    ck_assert_uint_eq(a.table.numel, b.table.numel);
    ck_assert_int_eq(memcmp(a.params, b.params, a.table.numel * sizeof(float)), 0);
    ck_assert_int_eq(b.experts.n, 4);
    ck_assert_str_eq(b.experts.name[2], "legal");
    ck_assert_str_eq(b.experts.domain[2], "spdx");
    ck_assert_str_eq(b.experts.provenance[2], "{\"steps\": 5}");
    ck_assert_str_eq(b.experts.name[0], "expert0");
    ck_assert_str_eq(b.experts.provenance[0], "{\"test\": 1}");
    ck_assert_int_eq(b.tokenizer.present, 1);
    ck_assert_uint_eq(b.tokenizer.tiktoken_len, sizeof ranks - 1);
    ck_assert_int_eq(memcmp(b.tokenizer.tiktoken, ranks, sizeof ranks - 1), 0);
    ck_assert_str_eq(b.tokenizer.special_names[0], "<|endoftext|>");
    ck_assert_int_eq(b.tokenizer.special_ids[0], 2);
    ckpt_free(&a);
    ckpt_free(&b);
}
END_TEST

START_TEST(test_refuse_missing) {
    assert_refused(tu_scratch_path("nope.h5"), (const char *const[]){"nope.h5", "no such file", NULL});
}
END_TEST

START_TEST(test_refuse_truncated) {
    const char *p = saved("full.h5", NULL);
    FILE *in = fopen(p, "rb");
    fseek(in, 0, SEEK_END);
    long n = ftell(in);
    fseek(in, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, in), n);
    fclose(in);
    // Cut at several points: inside the header, the middle, and just before the end.
    long cuts[] = {100, n / 2, n - 100};
    for (int i = 0; i < 3; i++) {
        const char *q = tu_scratch_path("cut.h5");
        FILE *out = fopen(q, "wb");
        fwrite(buf, 1, (size_t)cuts[i], out);
        fclose(out);
        assert_refused(q, (const char *const[]){"cut.h5", NULL});
    }
    free(buf);
}
END_TEST

START_TEST(test_refuse_other_format) {
    const char *p = tu_scratch_path("tokens.h5");
    hid_t f = h5_create(p);
    ck_assert_int_eq(h5_set_format(f, "monolith-tokens", 1), 0);
    ck_assert_int_eq(h5_finish(f, p), 0);
    assert_refused(p, (const char *const[]){"tokens.h5", "monolith-tokens", "monolith-checkpoint", NULL});
}
END_TEST

static hid_t open_rw(const char *p) {
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert_int_ge(f, 0);
    return f;
}

START_TEST(test_refuse_newer_version) {
    const char *p = saved("v2.h5", NULL);
    hid_t f = open_rw(p);
    ck_assert_int_eq(h5_attr_set_i64(f, ".", "format_version", 2), 0);
    H5Fclose(f);
    assert_refused(p, (const char *const[]){"v2.h5", "format_version 2", NULL});
}
END_TEST

START_TEST(test_refuse_wrong_shape) {
    const char *p = saved("shape.h5", NULL);
    hid_t f = open_rw(p);
    ck_assert_int_ge(H5Ldelete(f, "model/layers/1/attn/wk", H5P_DEFAULT), 0);
    float z[16 * 64] = {0};
    hsize_t dims[2] = {16, 64};
    ck_assert_int_eq(h5_write_f32(f, "model/layers/1/attn/wk", z, 2, dims), 0);
    H5Fclose(f);
    assert_refused(p, (const char *const[]){"shape.h5", "layers/1/attn/wk", "[32, 64]", NULL});
}
END_TEST

START_TEST(test_refuse_missing_tensor_and_attr) {
    const char *p = saved("gone.h5", NULL);
    hid_t f = open_rw(p);
    ck_assert_int_ge(H5Ldelete(f, "model/layers/0/moe/w3", H5P_DEFAULT), 0);
    H5Fclose(f);
    assert_refused(p, (const char *const[]){"gone.h5", "layers/0/moe/w3", NULL});

    p = saved("noattr.h5", NULL);
    f = open_rw(p);
    ck_assert_int_ge(H5Adelete_by_name(f, "config", "top_k", H5P_DEFAULT), 0);
    H5Fclose(f);
    assert_refused(p, (const char *const[]){"noattr.h5", "top_k", NULL});

    // A config that fails validation is refused naming the field.
    p = saved("badcfg.h5", NULL);
    f = open_rw(p);
    ck_assert_int_eq(h5_attr_set_i64(f, "config", "top_k", 9), 0);
    H5Fclose(f);
    assert_refused(p, (const char *const[]){"badcfg.h5", "top_k", NULL});

    // An integer field stored as a real is refused rather than truncated.
    p = saved("realint.h5", NULL);
    f = open_rw(p);
    ck_assert_int_eq(h5_attr_set_f64(f, "config", "d_ff", 128.5), 0);
    H5Fclose(f);
    assert_refused(p, (const char *const[]){"realint.h5", "d_ff", "int64", NULL});
}
END_TEST

// A header may claim any shape: a config of 20M x 64 embeddings with datasets that claim
// that shape but store nothing is refused before anything that size is allocated.
START_TEST(test_refuse_claimed_but_unstored) {
    const char *p = saved("claims.h5", NULL);
    hid_t f = open_rw(p);
    ck_assert_int_eq(h5_attr_set_i64(f, "config", "vocab_size", 20000000), 0);
    const char *names[2] = {"model/tok_embeddings", "model/output"};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_ge(H5Ldelete(f, names[i], H5P_DEFAULT), 0);
        hsize_t dims[2] = {20000000, 64};
        hid_t sp = H5Screate_simple(2, dims, NULL);
        hid_t ds = H5Dcreate2(f, names[i], H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ck_assert_int_ge(ds, 0);
        H5Dclose(ds);
        H5Sclose(sp);
    }
    H5Fclose(f);
    assert_refused(p, (const char *const[]){"claims.h5", "tok_embeddings", "no (or not all) data", NULL});
}
END_TEST

START_TEST(test_refuse_extra_group) {
    const char *p = saved("extra.h5", NULL);
    hid_t f = open_rw(p);
    float z[128 * 64] = {0};
    hsize_t dims[2] = {128, 64};
    ck_assert_int_eq(h5_write_f32(f, "model/layers/0/ffn/w1", z, 2, dims), 0);
    H5Fclose(f);
    assert_refused(p, (const char *const[]){"extra.h5", "layers/0/ffn", NULL});
}
END_TEST

START_TEST(test_refuse_nan_and_inf) {
    const float bad[2] = {NAN, INFINITY};
    const char *what[2] = {"NaN", "Inf"};
    for (int i = 0; i < 2; i++) {
        mo_checkpoint ck;
        new_ckpt(&ck, NULL);
        int id = params_find(&ck.table, "layers/1/moe/w2");
        params_at(&ck.table, ck.params, id)[77] = bad[i];
        const char *p = tu_scratch_path("nan.h5");
        ck_assert_int_eq(ckpt_save(p, &ck), 0);
        ckpt_free(&ck);
        assert_refused(p, (const char *const[]){"nan.h5", "layers/1/moe/w2", what[i], NULL});
    }
}
END_TEST

START_TEST(test_failed_write_keeps_old_file) {
    // A write into a folder that does not exist fails cleanly and leaves nothing behind.
    mo_checkpoint ck;
    new_ckpt(&ck, NULL);
    ck_assert_int_eq(ckpt_save(tu_scratch_path("no/such/dir/x.h5"), &ck), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "x.h5"));
    ckpt_free(&ck);
}
END_TEST

int main(void) {
    if (!tu_scratch_make("ckpt")) return 1;
    Suite *s = suite_create("engine_checkpoint");
    TCase *tc = tcase_create("checkpoint");
    tcase_add_test(tc, test_round_trip_bit_exact);
    tcase_add_test(tc, test_refuse_missing);
    tcase_add_test(tc, test_refuse_truncated);
    tcase_add_test(tc, test_refuse_other_format);
    tcase_add_test(tc, test_refuse_newer_version);
    tcase_add_test(tc, test_refuse_wrong_shape);
    tcase_add_test(tc, test_refuse_missing_tensor_and_attr);
    tcase_add_test(tc, test_refuse_claimed_but_unstored);
    tcase_add_test(tc, test_refuse_extra_group);
    tcase_add_test(tc, test_refuse_nan_and_inf);
    tcase_add_test(tc, test_failed_write_keeps_old_file);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_NOFORK);
}
