// kernels_f16.c: binary16 conversion. Every half converts to a float and back to itself;
// for every pair of adjacent finite halves, their midpoint (exact in float) rounds to the
// even one and the floats one ulp either side of it round to the nearer one; overflow,
// infinities, NaN and signed zeros.
#include "kernels/f16.h"
#include "tests/testutil.h"

START_TEST(test_every_half_round_trips) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32_one((mo_f16)h);
        int exp = (h >> 10) & 31;
        if (exp == 31 && (h & 0x3ff)) {
            ck_assert(isnan(f));
            mo_f16 back = f16_from_f32_one(f);
            ck_assert_msg((back & 0x7e00) == 0x7e00 && (back & 0x8000) == (h & 0x8000), "NaN %04x -> %04x", h, back);
            continue;
        }
        // the value itself, independently: (-1)^s 2^(e-15) (1 + m/1024), or 2^-14 m/1024
        double m = h & 0x3ff, want = exp == 0 ? ldexp(m, -24) : exp == 31 ? INFINITY : ldexp(1024 + m, exp - 25);
        if (h & 0x8000) want = -want;
        ck_assert_msg((double)f == want && !!signbit(f) == !!(h & 0x8000), "half %04x -> %g, want %g", h, f, want);
        ck_assert_msg(f16_from_f32_one(f) == h, "half %04x -> %g -> %04x", h, f, f16_from_f32_one(f));
    }
}
END_TEST

START_TEST(test_ties_and_neighbours) {
    for (uint32_t s = 0; s < 2; s++)
        for (uint32_t h = 0; h < 0x7bff; h++) {  // h and h+1 both finite
            uint32_t a = h | s << 15, b = (h + 1) | s << 15;
            float fa = f16_to_f32_one((mo_f16)a), fb = f16_to_f32_one((mo_f16)b);
            float mid = (float)(((double)fa + (double)fb) / 2);
            ck_assert((double)mid * 2 == (double)fa + (double)fb);  // exact
            uint32_t even = (a & 1) ? b : a;
            ck_assert_msg(f16_from_f32_one(mid) == even, "tie %g between %04x and %04x -> %04x", mid, a, b,
                          f16_from_f32_one(mid));
            float mag = fabsf(mid), below = tu_from_bits(tu_bits(mag) - 1), above = tu_from_bits(tu_bits(mag) + 1);
            if (s) below = -below, above = -above;  // "below" and "above" in magnitude
            ck_assert_msg(f16_from_f32_one(below) == a, "below tie %g -> %04x, want %04x", below,
                          f16_from_f32_one(below), a);
            ck_assert_msg(f16_from_f32_one(above) == b, "above tie %g -> %04x, want %04x", above,
                          f16_from_f32_one(above), b);
        }
}
END_TEST

START_TEST(test_overflow_and_specials) {
    ck_assert_uint_eq(f16_from_f32_one(65504.0f), 0x7bff);
    ck_assert_uint_eq(f16_from_f32_one(65519.996f), 0x7bff);
    ck_assert_uint_eq(f16_from_f32_one(65520.0f), 0x7c00);  // the tie past the largest rounds to infinity
    ck_assert_uint_eq(f16_from_f32_one(-1e30f), 0xfc00);
    ck_assert_uint_eq(f16_from_f32_one(INFINITY), 0x7c00);
    ck_assert_uint_eq(f16_from_f32_one(-0.0f), 0x8000);
    ck_assert_uint_eq(f16_from_f32_one(ldexpf(1, -25)), 0x0000);           // half the smallest subnormal: tie to 0
    ck_assert_uint_eq(f16_from_f32_one(nextafterf(ldexpf(1, -25), 1)), 1);  // just above: 2^-24
    ck_assert_uint_eq(f16_from_f32_one(tu_from_bits(0x7f800001)) & 0x7e00, 0x7e00);  // signalling NaN -> quiet
    ck_assert_uint_eq(f16_from_f32_one(1.0f), 0x3c00);
    float x[5] = {1, -2, 0.5f, 65504, 0}, y[5];
    mo_f16 h[5];
    f16_from_f32(h, x, 5);
    f16_to_f32(y, h, 5);
    for (int i = 0; i < 5; i++) ck_assert(x[i] == y[i]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("kernels_f16");
    TCase *tc = tcase_create("f16");
    tcase_add_test(tc, test_every_half_round_trips);
    tcase_add_test(tc, test_ties_and_neighbours);
    tcase_add_test(tc, test_overflow_and_specials);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
