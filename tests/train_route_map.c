// train_route_map.c: route-by-domain's domain -> expert map (train/route_map.h): by
// /experts domain, then by name, then by position; refusals name the domains.
#include "engine/base/error.h"
#include "tests/testutil.h"
#include "train/route_map.h"

static char *names4[4] = {"code", "math", "", "x"};
static char *domains4[4] = {"", "legal", "code", ""};

START_TEST(maps_by_domain_then_name_then_position) {
    mo_experts_meta ex = {.n = 4, .name = names4, .domain = domains4};
    const char *d[3] = {"code", "x", "legal"};
    int of[3];
    ck_assert_msg(route_map(&ex, 4, 3, d, of) == 0, "%s", mo_error());
    ck_assert_int_eq(of[0], 2);  // the domain "code" of expert 2 beats the name "code" of expert 0
    ck_assert_int_eq(of[1], 3);  // by name
    ck_assert_int_eq(of[2], 1);  // by domain
    const char *p[2] = {"new", "other"};  // neither: by position
    ck_assert_int_eq(route_map(&ex, 4, 2, p, of), 0);
    ck_assert_int_eq(of[0], 0);
    ck_assert_int_eq(of[1], 1);
}
END_TEST

START_TEST(refuses_collisions_and_missing_experts) {
    mo_experts_meta ex = {.n = 4, .name = names4, .domain = domains4};
    int of[2];
    const char *d[2] = {"math", "legal"};  // expert 1's name and expert 1's domain
    ck_assert_int_eq(route_map(&ex, 4, 2, d, of), -1);
    ck_assert_msg(strstr(mo_error(), "math") && strstr(mo_error(), "legal"), "%s", mo_error());
    const char *far[1] = {"nowhere"};
    mo_experts_meta none = {0};
    ck_assert_int_eq(route_map(&none, 0, 1, far, of), -1);
    ck_assert_ptr_nonnull(strstr(mo_error(), "nowhere"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("route_map");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, maps_by_domain_then_name_then_position);
    tcase_add_test(tc, refuses_collisions_and_missing_experts);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
