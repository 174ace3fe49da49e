// train_lr_schedule.c: warmup, cosine to the floor, constant, and the validation messages.
#include "engine/base/error.h"
#include "tests/testutil.h"
#include "train/lr_schedule.h"

START_TEST(test_warmup_then_cosine) {
    lr_schedule s = {.kind = LR_SCHEDULE_COSINE, .lr = 1e-3, .floor_frac = 0.1, .warmup = 10, .total = 110};
    ck_assert_int_eq(lr_schedule_validate(&s), 0);
    ck_assert_double_eq_tol(lr_schedule_at(&s, 0), 1e-4, 1e-15);   // (0+1)/10
    ck_assert_double_eq_tol(lr_schedule_at(&s, 4), 5e-4, 1e-15);
    ck_assert_double_eq_tol(lr_schedule_at(&s, 9), 1e-3, 1e-15);   // warmup ends at the peak
    ck_assert_double_eq_tol(lr_schedule_at(&s, 10), 1e-3, 1e-15);  // cosine starts at the peak
    ck_assert_double_eq_tol(lr_schedule_at(&s, 60), 0.55e-3, 1e-15);  // half way: (peak + floor) / 2
    ck_assert_double_eq_tol(lr_schedule_at(&s, 110), 1e-4, 1e-15);    // the floor at total
    ck_assert_double_eq_tol(lr_schedule_at(&s, 500), 1e-4, 1e-15);
    // Monotone non-increasing after warmup and never under the floor.
    for (int64_t t = 11; t < 110; t++) {
        ck_assert(lr_schedule_at(&s, t) <= lr_schedule_at(&s, t - 1));
        ck_assert(lr_schedule_at(&s, t) >= 1e-4);
    }
}
END_TEST

START_TEST(test_constant_and_no_warmup) {
    lr_schedule s = {.kind = LR_SCHEDULE_CONSTANT, .lr = 2e-3, .floor_frac = 0, .warmup = 0, .total = 5};
    ck_assert_int_eq(lr_schedule_validate(&s), 0);
    for (int64_t t = 0; t < 8; t++) ck_assert_double_eq(lr_schedule_at(&s, t), 2e-3);
    s.kind = LR_SCHEDULE_COSINE;  // no warmup: step 0 is the peak, floor 0 at the end
    ck_assert_double_eq(lr_schedule_at(&s, 0), 2e-3);
    ck_assert_double_eq_tol(lr_schedule_at(&s, 5), 0, 1e-18);
    s.warmup = 5;  // warmup covering the whole run
    ck_assert_int_eq(lr_schedule_validate(&s), 0);
    ck_assert_double_eq_tol(lr_schedule_at(&s, 4), 2e-3, 1e-18);
}
END_TEST

START_TEST(test_validation) {
    lr_schedule ok = {.kind = LR_SCHEDULE_COSINE, .lr = 1e-3, .floor_frac = 0.1, .warmup = 10, .total = 100};
    lr_schedule s = ok;
    s.lr = 0;
    ck_assert_int_eq(lr_schedule_validate(&s), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "--lr"));
    s = ok, s.lr = NAN;
    ck_assert_int_eq(lr_schedule_validate(&s), -1);
    s = ok, s.warmup = 101;
    ck_assert_int_eq(lr_schedule_validate(&s), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "--warmup"));
    s = ok, s.floor_frac = 1.5;
    ck_assert_int_eq(lr_schedule_validate(&s), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "--lr-floor"));
    s = ok, s.total = 0, s.warmup = 0;
    ck_assert_int_eq(lr_schedule_validate(&s), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "--steps"));
    lr_schedule_kind k;
    ck_assert_int_eq(lr_schedule_parse_kind("constant", &k), 0);
    ck_assert_int_eq(k, LR_SCHEDULE_CONSTANT);
    ck_assert_int_eq(lr_schedule_parse_kind("linear", &k), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "cosine"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("lr_schedule");
    TCase *tc = tcase_create("schedule");
    tcase_add_test(tc, test_warmup_then_cosine);
    tcase_add_test(tc, test_constant_and_no_warmup);
    tcase_add_test(tc, test_validation);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
