// data_tokens.c: token data sets (write, read back, documents whole in one split, width,
// refusals of bad files) and the loader (same seed same batches, save/restore gives the
// same next batches, mixture weights, val passes, wrong tokenizer hash refused).
#include "data/loader.h"
#include "data/tokens.h"
#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "engine/base/rng.h"
#include "tests/testutil.h"

#include <sys/stat.h>
#include <unistd.h>

// A token set whose documents are runs of distinct recognizable ids: document k holds
// len_k tokens k*1000 + 1, k*1000 + 2, ... (eot = vocab - 1). Returns 0 or -1.
static int write_set(const char *path, const char *domain, const char *hash, int64_t vocab, int n_docs,
                     const int *val_docs, int doc_len) {
    tokset_writer *w = tokset_create(path, domain, hash, vocab, vocab - 1, "test");
    if (!w) return -1;
    uint32_t *ids = malloc((size_t)doc_len * sizeof *ids);
    for (int k = 0; k < n_docs; k++) {
        int val = 0;
        for (int j = 0; val_docs && val_docs[j] >= 0; j++) val |= val_docs[j] == k;
        if (tokset_begin_document(w, val ? TOKSET_VAL : TOKSET_TRAIN)) goto err;
        for (int i = 0; i < doc_len; i++) ids[i] = (uint32_t)((k * 1000 + i + 1) % (vocab - 1));
        if (tokset_append(w, ids, (size_t)doc_len)) goto err;
    }
    free(ids);
    return tokset_finish(w);
err:
    free(ids);
    tokset_abort(w);
    return -1;
}

START_TEST(test_write_read_roundtrip) {
    const char *p = tu_scratch_path("a.h5");
    int val[] = {1, 3, -1};
    // 5 documents of 300000 tokens: more than one HDF5 chunk per split.
    ck_assert_msg(write_set(p, "speeches", "0123456789abcdef", 8192, 5, val, 300000) == 0, "%s", mo_error());
    ck_assert(access(tu_scratch_path("a.h5.tmp"), F_OK) != 0);
    tokset_info info;
    ck_assert_msg(tokset_info_read(p, &info) == 0, "%s", mo_error());
    ck_assert_str_eq(info.domain, "speeches");
    ck_assert_str_eq(info.tokenizer_hash, "0123456789abcdef");
    ck_assert_int_eq(info.vocab_size, 8192);
    ck_assert_int_eq(info.width, 2);
    ck_assert_int_eq(info.n_tokens[0], 3 * 300001);
    ck_assert_int_eq(info.n_tokens[1], 2 * 300001);
    ck_assert_int_eq(info.n_documents[0], 3);
    ck_assert_int_eq(info.n_documents[1], 2);
    tokset_split tr, va;
    ck_assert(tokset_load_split(p, &info, TOKSET_TRAIN, 1 << 30, &tr) == 0);
    ck_assert(tokset_load_split(p, &info, TOKSET_VAL, 1 << 30, &va) == 0);
    // Whole documents, in order, each after an eot: train = docs 0, 2, 4; val = 1, 3.
    int want_tr[] = {0, 2, 4}, want_va[] = {1, 3};
    for (int j = 0; j < 3; j++) {
        uint64_t base = (uint64_t)j * 300001;
        ck_assert_uint_eq(tokset_at(&tr, base), 8191);
        for (int i = 0; i < 300000; i += 7777)
            ck_assert_uint_eq(tokset_at(&tr, base + 1 + i), (uint32_t)((want_tr[j] * 1000 + i + 1) % 8191));
    }
    for (int j = 0; j < 2; j++) {
        ck_assert_uint_eq(tokset_at(&va, (uint64_t)j * 300001), 8191);
        ck_assert_uint_eq(tokset_at(&va, (uint64_t)j * 300001 + 5), (uint32_t)(want_va[j] * 1000 + 5));
    }
    // The memory cap is enforced with a message.
    tokset_split big;
    ck_assert(tokset_load_split(p, &info, TOKSET_TRAIN, 1000, &big) == -1);
    ck_assert_msg(strstr(mo_error(), "cap"), "%s", mo_error());
    tokset_split_free(&tr), tokset_split_free(&va);

    // A vocabulary over 65536 is stored as uint32.
    const char *p32 = tu_scratch_path("wide.h5");
    ck_assert(write_set(p32, "x", "h", 100000, 2, NULL, 100) == 0);
    ck_assert(tokset_info_read(p32, &info) == 0);
    ck_assert_int_eq(info.width, 4);
    ck_assert(tokset_load_split(p32, &info, TOKSET_TRAIN, 1 << 30, &tr) == 0);
    ck_assert_uint_eq(tokset_at(&tr, 0), 99999);
    tokset_split_free(&tr);
}
END_TEST

START_TEST(test_bad_sets) {
    // Ids beyond the vocabulary are refused on write.
    tokset_writer *w = tokset_create(tu_scratch_path("bad.h5"), "x", "h", 100, 99, "");
    ck_assert(w);
    ck_assert(tokset_begin_document(w, TOKSET_TRAIN) == 0);
    uint32_t big = 100;
    ck_assert(tokset_append(w, &big, 1) == -1);
    ck_assert_msg(strstr(mo_error(), "vocab_size"), "%s", mo_error());
    tokset_abort(w);
    ck_assert(access(tu_scratch_path("bad.h5.tmp"), F_OK) != 0);
    ck_assert(access(tu_scratch_path("bad.h5"), F_OK) != 0);
    // Nothing in train: refused, nothing left behind.
    int all_val[] = {0, -1};
    ck_assert(write_set(tu_scratch_path("empty.h5"), "x", "h", 100, 1, all_val, 10) == -1);
    ck_assert_msg(strstr(mo_error(), "no training documents"), "%s", mo_error());
    ck_assert(access(tu_scratch_path("empty.h5"), F_OK) != 0);
    // Missing file, not HDF5, wrong format, missing attribute, out-of-range id on read.
    tokset_info info;
    ck_assert(tokset_info_read(tu_scratch_path("nope.h5"), &info) == -1);
    ck_assert_msg(strstr(mo_error(), "nope.h5"), "%s", mo_error());
    FILE *f = fopen(tu_scratch_path("text.h5"), "w");
    fputs("not hdf5", f);
    fclose(f);
    ck_assert(tokset_info_read(tu_scratch_path("text.h5"), &info) == -1);
    hid_t h = h5_create(tu_scratch_path("other.h5"));
    h5_set_format(h, "monolith-checkpoint", 1);
    h5_finish(h, tu_scratch_path("other.h5"));
    ck_assert(tokset_info_read(tu_scratch_path("other.h5"), &info) == -1);
    ck_assert_msg(strstr(mo_error(), "monolith-tokens"), "%s", mo_error());
    h = h5_create(tu_scratch_path("noattr.h5"));
    h5_set_format(h, TOKSET_FORMAT, 1);
    h5_finish(h, tu_scratch_path("noattr.h5"));
    ck_assert(tokset_info_read(tu_scratch_path("noattr.h5"), &info) == -1);
    ck_assert_msg(strstr(mo_error(), "missing attribute"), "%s", mo_error());
    // A hand-made file with an id >= vocab_size.
    const char *hp = tu_scratch_path("corrupt.h5");
    h = h5_create(hp);
    uint16_t toks[4] = {9, 1, 2, 77};
    hsize_t dims[1] = {4};
    h5_write(h, "train/tokens", H5T_NATIVE_UINT16, toks, 1, dims);
    h5_write(h, "val/tokens", H5T_NATIVE_UINT16, toks, 1, dims);
    h5_set_format(h, TOKSET_FORMAT, 1);
    h5_attr_set_str(h, ".", "domain", "x");
    h5_attr_set_str(h, ".", "tokenizer_hash", "h");
    h5_attr_set_str(h, ".", "sources", "");
    h5_attr_set_i64(h, ".", "vocab_size", 10);
    h5_attr_set_i64(h, ".", "eot_id", 9);
    ck_assert(h5_finish(h, hp) == 0);
    ck_assert_msg(tokset_info_read(hp, &info) == 0, "%s", mo_error());
    tokset_split s;
    ck_assert(tokset_load_split(hp, &info, TOKSET_TRAIN, 1 << 30, &s) == -1);
    ck_assert_msg(strstr(mo_error(), "77"), "%s", mo_error());
}
END_TEST

static loader *open_two(uint64_t seed, double w0, double w1, int B, int T) {
    loader_spec sp[2];
    char a[600], b[600];
    snprintf(a, sizeof a, "alpha=%s:%g", tu_scratch_path("l0.h5"), w0);
    snprintf(b, sizeof b, "beta=%s:%g", tu_scratch_path("l1.h5"), w1);
    ck_assert(loader_parse_spec(a, &sp[0]) == 0 && loader_parse_spec(b, &sp[1]) == 0);
    loader_opts o = {.batch = B, .seq_len = T, .seed = seed, .expected_hash = "feedfacefeedface", .vocab_size = 4096};
    loader *l = loader_open(sp, 2, &o);
    ck_assert_msg(l, "%s", mo_error());
    return l;
}

static void make_loader_sets(void) {
    int val[] = {0, -1};
    ck_assert(write_set(tu_scratch_path("l0.h5"), "alpha", "feedfacefeedface", 4096, 4, val, 5000) == 0);
    ck_assert(write_set(tu_scratch_path("l1.h5"), "beta", "feedfacefeedface", 4096, 3, val, 7000) == 0);
}

START_TEST(test_loader_determinism_and_resume) {
    make_loader_sets();
    int B = 8, T = 64, W = T + 1;
    loader *a = open_two(42, 1, 1, B, T), *b = open_two(42, 1, 1, B, T), *c = open_two(43, 1, 1, B, T);
    ck_assert_int_eq(loader_n_domains(a), 2);
    ck_assert_str_eq(loader_domain(a, 1), "beta");
    int *ta = malloc(sizeof(int) * B * W), *tb = malloc(sizeof(int) * B * W);
    int da[8], db[8], differs = 0;
    for (int step = 0; step < 20; step++) {
        loader_next(a, ta, da);
        loader_next(b, tb, db);
        ck_assert(memcmp(ta, tb, sizeof(int) * B * W) == 0 && memcmp(da, db, sizeof da) == 0);
        loader_next(c, tb, db);
        differs |= memcmp(ta, tb, sizeof(int) * B * W) != 0;
        // Every row is a real window of its domain: consecutive ids or an eot in between.
        for (int r = 0; r < B; r++) {
            ck_assert(da[r] == 0 || da[r] == 1);
            for (int i = 1; i < W; i++) {
                int x = ta[r * W + i - 1], y = ta[r * W + i];
                ck_assert_msg(y == x + 1 || x == 4095 || y == 4095 || (x == 4094 && y == 0), "row %d pos %d: %d %d",
                              r, i, x, y);
            }
        }
    }
    ck_assert_msg(differs, "another seed gave the same batches");
    // Save after 20 batches, draw 5 more; restore into a fresh loader: the same 5.
    loader_state st;
    loader_get_state(a, &st);
    ck_assert_uint_eq(st.batches, 20);
    int *next5 = malloc(sizeof(int) * B * W * 5);
    for (int k = 0; k < 5; k++) loader_next(a, next5 + k * B * W, NULL);
    loader *r = open_two(7, 1, 1, B, T);
    loader_set_state(r, &st);
    for (int k = 0; k < 5; k++) {
        loader_next(r, ta, NULL);
        ck_assert_msg(memcmp(ta, next5 + k * B * W, sizeof(int) * B * W) == 0, "batch %d after restore differs", k);
    }
    free(next5), free(ta), free(tb);
    loader_free(a), loader_free(b), loader_free(c), loader_free(r);
}
END_TEST

START_TEST(test_loader_mixture_weights) {
    make_loader_sets();
    int B = 64, T = 16;
    loader *l = open_two(5, 0.25, 0.75, B, T);
    int *t = malloc(sizeof(int) * B * (T + 1)), d[64];
    long counts[2] = {0, 0};
    for (int s = 0; s < 500; s++) {
        loader_next(l, t, d);
        for (int r = 0; r < B; r++) counts[d[r]]++;
    }
    double share = (double)counts[0] / (counts[0] + counts[1]);
    // 32000 rows: the standard deviation of the share is 0.0024; allow 5 of them.
    ck_assert_msg(fabs(share - 0.25) < 0.012, "domain 0 share %.4f, weight 0.25", share);
    free(t);
    loader_free(l);
}
END_TEST

START_TEST(test_loader_val_pass) {
    make_loader_sets();
    int B = 4, T = 100, W = T + 1;
    loader *l = open_two(1, 1, 1, B, T);
    // alpha's val split: document 0 = eot + 5000 tokens -> (5001 - 1) / 100 = 50 windows.
    ck_assert_uint_eq(loader_val_windows(l, 0), 50);
    int *t = malloc(sizeof(int) * B * W);
    uint64_t seen = 0;
    for (uint64_t first = 0;; first += (uint64_t)B) {
        int rows = loader_val_batch(l, 0, first, t);
        if (!rows) break;
        for (int r = 0; r < rows; r++) {
            uint64_t w = first + (uint64_t)r;
            int expect0 = w == 0 ? 4095 : (int)(w * T % 4095);  // offset j of doc 0 holds j % 4095
            ck_assert_int_eq(t[r * W], expect0);
            ck_assert_int_eq(t[r * W + T], (int)((w * T + T) % 4095));
        }
        seen += (uint64_t)rows;
    }
    ck_assert_uint_eq(seen, 50);
    free(t);
    loader_free(l);
}
END_TEST

START_TEST(test_loader_refusals) {
    make_loader_sets();
    int val[] = {0, -1};
    ck_assert(write_set(tu_scratch_path("other_tok.h5"), "gamma", "0000000000000000", 4096, 2, val, 500) == 0);
    loader_spec sp[2];
    char a[600];
    snprintf(a, sizeof a, "%s", tu_scratch_path("l0.h5"));
    ck_assert(loader_parse_spec(a, &sp[0]) == 0);
    ck_assert_str_eq(sp[0].path, tu_scratch_path("l0.h5"));
    ck_assert(sp[0].weight == 1.0);
    loader_opts o = {.batch = 2, .seq_len = 8, .seed = 1, .expected_hash = "0000000000000000",
                     .expected_from = "model.h5"};
    ck_assert(loader_open(sp, 1, &o) == NULL);
    const char *e = mo_error();
    ck_assert_msg(strstr(e, "feedfacefeedface") && strstr(e, "0000000000000000") && strstr(e, "model.h5"), "%s", e);
    // Two sets with different hashes and no expected hash: refused too.
    snprintf(a, sizeof a, "%s:2", tu_scratch_path("other_tok.h5"));
    ck_assert(loader_parse_spec(a, &sp[1]) == 0);
    ck_assert(sp[1].weight == 2.0);
    o.expected_hash = NULL;
    ck_assert(loader_open(sp, 2, &o) == NULL);
    ck_assert_msg(strstr(mo_error(), "feedfacefeedface"), "%s", mo_error());
    // Model vocabulary too small, windows longer than the data, bad specs.
    o.expected_hash = "feedfacefeedface";
    o.vocab_size = 1000;
    ck_assert(loader_open(sp, 1, &o) == NULL);
    ck_assert_msg(strstr(mo_error(), "vocab_size"), "%s", mo_error());
    o.vocab_size = 0;
    o.seq_len = 100000;
    ck_assert(loader_open(sp, 1, &o) == NULL);
    ck_assert_msg(strstr(mo_error(), "seq_len"), "%s", mo_error());
    ck_assert(loader_parse_spec("x=", &sp[0]) == -1);
    ck_assert(loader_parse_spec("x=a.h5:0", &sp[0]) == -1);
    ck_assert(loader_parse_spec("x=a.h5:-1", &sp[0]) == -1);
    ck_assert(loader_parse_spec("=a.h5", &sp[0]) == -1);
    ck_assert(loader_parse_spec("x=dir:with:colons.h5", &sp[0]) == 0);
    ck_assert_str_eq(sp[0].path, "dir:with:colons.h5");
    snprintf(a, sizeof a, "x=%s", tu_scratch_path("missing.h5"));
    ck_assert(loader_parse_spec(a, &sp[0]) == 0);
    o.seq_len = 8;
    ck_assert(loader_open(sp, 1, &o) == NULL);
    ck_assert_msg(strstr(mo_error(), "missing.h5"), "%s", mo_error());
}
END_TEST

int main(void) {
    Suite *s = suite_create("data_tokens");
    TCase *tc = tcase_create("tokens");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_write_read_roundtrip);
    tcase_add_test(tc, test_bad_sets);
    tcase_add_test(tc, test_loader_determinism_and_resume);
    tcase_add_test(tc, test_loader_mixture_weights);
    tcase_add_test(tc, test_loader_val_pass);
    tcase_add_test(tc, test_loader_refusals);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_NOFORK);  // tests share the temporary folder's files
}
