// data_split.c: the train/val split of data prepare (data/split.h): by document when that
// gives enough val documents, else by bytes (whole documents, then the tail of one), every
// byte in exactly one piece, deterministic for a seed; and the text cut points.
#include "data/split.h"
#include "tests/testutil.h"

#include <string.h>

static uint64_t cut_here(void *ctx, size_t doc, uint64_t pos, uint64_t size) {
    (void)ctx, (void)doc, (void)size;
    return pos;
}

// Every byte of every document in exactly one piece, pieces in input order; returns the val bytes.
static uint64_t check_cover(const split_plan *sp, const uint64_t *sizes, size_t n) {
    uint64_t val = 0;
    size_t k = 0;
    for (size_t d = 0; d < n; d++) {
        uint64_t at = 0;
        while (k < sp->n && sp->p[k].doc == d) {
            ck_assert_uint_eq(sp->p[k].off, at);
            at += sp->p[k].len;
            if (sp->p[k].val) val += sp->p[k].len;
            k++;
        }
        ck_assert_uint_eq(at, sizes[d]);
    }
    ck_assert_uint_eq(k, sp->n);
    ck_assert_uint_eq(val, sp->val_bytes);
    return val;
}

START_TEST(test_by_document) {
    uint64_t sizes[100];
    for (int i = 0; i < 100; i++) sizes[i] = 1000 + (uint64_t)i;
    split_plan a, b;
    ck_assert_int_eq(split_make(sizes, 100, 0.05, 1, cut_here, NULL, &a), 0);
    ck_assert_int_eq(a.by_document, 1);
    ck_assert_uint_eq(a.n_val_docs, 5);
    ck_assert_uint_eq(a.n, 100);  // no document cut
    check_cover(&a, sizes, 100);
    ck_assert_int_eq(split_make(sizes, 100, 0.05, 1, cut_here, NULL, &b), 0);  // same seed, same plan
    for (size_t i = 0; i < a.n; i++) ck_assert_int_eq(a.p[i].val, b.p[i].val);
    split_plan_free(&a), split_plan_free(&b);
}
END_TEST

START_TEST(test_one_document) {
    uint64_t size = 100000;
    split_plan sp;
    ck_assert_int_eq(split_make(&size, 1, 0.05, 1, cut_here, NULL, &sp), 0);
    ck_assert_int_eq(sp.by_document, 0);
    ck_assert_uint_eq(sp.n, 2);  // head in train, tail in val
    ck_assert_int_eq(sp.p[0].val, 0);
    ck_assert_int_eq(sp.p[1].val, 1);
    ck_assert_uint_eq(sp.cut_doc, 0);
    ck_assert_uint_eq(check_cover(&sp, &size, 1), 5000);
    split_plan_free(&sp);
}
END_TEST

START_TEST(test_few_documents) {
    uint64_t sizes[20];  // the case: 20 small files, 5% would be one document
    for (int i = 0; i < 20; i++) sizes[i] = 700 + 10 * (uint64_t)i;
    uint64_t total = 0;
    for (int i = 0; i < 20; i++) total += sizes[i];
    split_plan sp;
    ck_assert_int_eq(split_make(sizes, 20, 0.05, 3, cut_here, NULL, &sp), 0);
    ck_assert_int_eq(sp.by_document, 0);
    uint64_t val = check_cover(&sp, sizes, 20);
    ck_assert_uint_eq(val, (uint64_t)((double)total * 0.05 + 0.5));
    ck_assert_uint_ne(sp.cut_doc, SIZE_MAX);  // whole documents while they fit, then a tail
    ck_assert_uint_eq(sp.n, 21);
    split_plan_free(&sp);
    // No val split asked: everything in train, by document.
    ck_assert_int_eq(split_make(sizes, 20, 0, 3, cut_here, NULL, &sp), 0);
    ck_assert_uint_eq(check_cover(&sp, sizes, 20), 0);
    split_plan_free(&sp);
}
END_TEST

START_TEST(test_text_cut) {
    const char *t = "alpha beta\ngamma delta\nepsilon zeta eta theta iota kappa\n";
    size_t n = strlen(t);
    // The first '\n' after a printable byte at or after pos, within half of the tail.
    size_t c = split_text_cut((const uint8_t *)t, n, 5);
    ck_assert_uint_eq(c, 10);
    // None in reach: pos itself, moved back to the start of a UTF-8 character.
    const char *u = "aaaa\xc3\xa9\xc3\xa9\xc3\xa9 bbbbbbbbbbbbbbbb";
    ck_assert_uint_eq(split_text_cut((const uint8_t *)u, strlen(u), 6), 4 + 2 - 0);
    ck_assert_uint_eq(split_text_cut((const uint8_t *)u, strlen(u), 7), 6);
    ck_assert_uint_eq(split_safe_cut((const uint8_t *)t, 0, n), 10);
    ck_assert_uint_eq(split_safe_cut((const uint8_t *)t, 11, 15), 15);
}
END_TEST

int main(void) {
    Suite *s = suite_create("data_split");
    TCase *tc = tcase_create("split");
    tcase_add_test(tc, test_by_document);
    tcase_add_test(tc, test_one_document);
    tcase_add_test(tc, test_few_documents);
    tcase_add_test(tc, test_text_cut);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
