// train_freeze.c: --train masks cover exactly what they say, element by element, against
// an independent per-element rule; ranges are sorted, disjoint, chunked, inside one
// tensor, with decay off exactly on norms; bad masks are one-line errors.
#include "engine/base/error.h"
#include "tests/testutil.h"
#include "train/freeze.h"

static mo_param_table pt;

// tiny with layer 0 MoE, layer 1 dense, one shared expert: every kind of tensor.
static void setup(void) {
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    ck_assert_int_eq(config_set(&c, "moe_layers", "1,0"), 0);
    ck_assert_int_eq(config_set(&c, "n_shared_experts", "1"), 0);
    ck_assert_int_eq(config_set(&c, "vocab_size", "4096"), 0);  // tok_embeddings > FREEZE_CHUNK: chunking runs
    ck_assert_msg(config_finalize(&c) == 0, "%s", mo_error());
    ck_assert_int_eq(params_table_build(&pt, &c), 0);
}
static void teardown(void) { params_table_free(&pt); }

// The rule written independently: is element i of tensor t selected by `want`?
typedef int (*rule_fn)(const mo_tensor *t, size_t j);

static void check_mask(const char *spec, rule_fn rule) {
    train_mask m;
    ck_assert_msg(freeze_parse(&pt, spec, &m) == 0, "%s: %s", spec, mo_error());
    size_t count = 0;
    for (int ti = 0; ti < pt.n; ti++) {
        const mo_tensor *t = &pt.t[ti];
        for (size_t j = 0; j < t->numel; j++) {
            int want = !t->no_grad && rule(t, j), got = train_mask_has(&m, t->offset + j);
            // (plain if: every Check assertion records a mark point, too slow per element)
            if (want != got) ck_abort_msg("%s: %s element %zu: want %d got %d", spec, t->name, j, want, got);
            count += (size_t)want;
        }
    }
    ck_assert_uint_eq(m.numel, count);
    size_t sum = 0;
    for (size_t r = 0; r < m.n; r++) {
        const adamw_range *a = &m.r[r];
        ck_assert(a->length > 0 && a->length <= FREEZE_CHUNK);
        if (r) ck_assert(m.r[r - 1].offset + m.r[r - 1].length <= a->offset);
        int ti = -1;
        for (int i = 0; i < pt.n; i++)
            if (pt.t[i].offset <= a->offset && a->offset < pt.t[i].offset + pt.t[i].numel) ti = i;
        ck_assert(ti >= 0 && a->offset + a->length <= pt.t[ti].offset + pt.t[ti].numel);
        ck_assert_int_eq(a->decay, !pt.t[ti].is_norm);
        sum += a->length;
    }
    ck_assert_uint_eq(sum, m.numel);
    train_mask_free(&m);
}

static int expert_of(const mo_tensor *t, size_t j) {
    if (t->n_experts) return (int)(j / t->expert_numel);
    if (t->kind == PK_ROUTER) return (int)(j / (size_t)t->shape[1]);
    return -1;
}

static int r_all(const mo_tensor *t, size_t j) { return (void)t, (void)j, 1; }
static int r_router(const mo_tensor *t, size_t j) { return (void)j, t->kind == PK_ROUTER; }
static int r_experts13(const mo_tensor *t, size_t j) {
    int e = expert_of(t, j);
    return e == 1 || e == 3;
}
static int r_mixed(const mo_tensor *t, size_t j) {  // experts=0-1,3@layers=0,norms,embeddings
    int e = expert_of(t, j);
    return (t->layer == 0 && (e == 0 || e == 1 || e == 3)) || t->is_norm || t->kind == PK_TOK_EMBEDDINGS ||
           t->kind == PK_OUTPUT;
}
static int r_attn1_dense_shared(const mo_tensor *t, size_t j) {  // attention@layers=1,dense,shared
    (void)j;
    int attn = t->kind == PK_WQ || t->kind == PK_WK || t->kind == PK_WV || t->kind == PK_WO;
    return (attn && t->layer == 1) || t->kind == PK_DENSE_W1 || t->kind == PK_DENSE_W2 || t->kind == PK_DENSE_W3 ||
           t->kind == PK_SHARED_W1 || t->kind == PK_SHARED_W2 || t->kind == PK_SHARED_W3;
}
static int r_all_experts(const mo_tensor *t, size_t j) { return expert_of(t, j) >= 0; }
static int r_router_rows13(const mo_tensor *t, size_t j) {  // router=1,3: router rows only
    int e = expert_of(t, j);
    return t->kind == PK_ROUTER && (e == 1 || e == 3);
}

START_TEST(test_masks_cover_exactly) {
    check_mask("all", r_all);
    check_mask("router", r_router);
    check_mask("experts=1,3", r_experts13);
    check_mask("experts=3,1", r_experts13);
    check_mask("experts=1,experts=3,experts=1", r_experts13);  // overlaps merge
    check_mask("experts=0-1,3@layers=0,norms,embeddings", r_mixed);
    check_mask("attention@layers=1,dense,shared", r_attn1_dense_shared);
    check_mask("experts", r_all_experts);
    check_mask("router,experts,all", r_all);
    check_mask("router=3,1", r_router_rows13);
}
END_TEST

// "all" is every parameter, the buffers (router_bias, in no mask) aside: train and bench
// train then take the whole-arena path (model_backward_first, no zeroing pass).
START_TEST(test_all_is_all) {
    const char *part[] = {"router", "experts=1,3", "norms,embeddings,attention,dense,shared"};
    train_mask m;
    ck_assert_int_eq(freeze_parse(&pt, "all", &m), 0);
    ck_assert(train_mask_is_all(&m, &pt));
    ck_assert_uint_lt(m.numel, pt.numel);  // the router_bias buffer is in the table, not the mask
    train_mask_free(&m);
    for (size_t i = 0; i < sizeof part / sizeof *part; i++) {
        ck_assert_msg(freeze_parse(&pt, part[i], &m) == 0, "%s", mo_error());
        ck_assert_msg(!train_mask_is_all(&m, &pt), "%s", part[i]);
        train_mask_free(&m);
    }
}
END_TEST

static void check_error(const char *spec, const char *needle) {
    train_mask m;
    ck_assert_msg(freeze_parse(&pt, spec, &m) == -1, "'%s' should fail", spec);
    const char *e = mo_error();
    ck_assert_msg(strstr(e, "--train") && strstr(e, needle), "'%s': message '%s' lacks '%s'", spec, e, needle);
    ck_assert_msg(!strchr(e, '\n'), "one line: %s", e);
    ck_assert_ptr_null(m.r);
}

START_TEST(test_errors) {
    check_error("", "empty");
    check_error("foo", "unknown part 'foo'");
    check_error("router,", "unknown part");
    check_error("experts=4", "expert 4 is out of range");
    check_error("experts=2-1", "backwards");
    check_error("experts=x", "expected expert numbers");
    check_error("attention=3", "takes no '='");
    check_error("experts=1@layer=0", "@layers=");
    check_error("experts=1@layers=2", "layer 2 is out of range");
    check_error("router@layers=1", "selects no parameter");  // layer 1 is dense
    check_error("experts=1;router", "unexpected");
}
END_TEST

START_TEST(test_dense_model_has_no_experts) {
    mo_config c;
    mo_param_table d;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);
    ck_assert_int_eq(config_set(&c, "moe_layers", "0,0"), 0);
    ck_assert_msg(config_finalize(&c) == 0, "%s", mo_error());
    ck_assert_int_eq(params_table_build(&d, &c), 0);
    train_mask m;
    ck_assert_int_eq(freeze_parse(&d, "experts=1", &m), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "no MoE layers"));
    ck_assert_int_eq(freeze_parse(&d, "router", &m), -1);
    ck_assert_int_eq(freeze_parse(&d, "all", &m), 0);
    ck_assert_uint_eq(m.numel, d.numel);
    train_mask_free(&m);
    params_table_free(&d);
}
END_TEST

int main(void) {
    Suite *s = suite_create("freeze");
    TCase *tc = tcase_create("freeze");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_masks_cover_exactly);
    tcase_add_test(tc, test_all_is_all);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_dense_model_has_no_experts);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
