// data_bpe_train.c: BPE training against a naive trainer that recounts every pair at
// every merge (same vocabulary, token for token), a hand-checked small case, determinism,
// the requested vocabulary size, round trips with the trained vocabulary, and refusals.
#include "data/bpe_train.h"
#include "data/pretok.h"
#include "data/tokenizer.h"
#include "engine/base/error.h"
#include "engine/base/rng.h"
#include "tests/testutil.h"

#include <sys/stat.h>
#include <unistd.h>

// A corpus with structure (words from a small Zipf-ish vocabulary, punctuation, digits,
// some ill-formed bytes) so merges have real frequencies and ties.
static uint8_t *make_corpus(size_t n, uint64_t seed, size_t *len) {
    static const char *w[] = {"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with",
                              "be", "on", "not", "he", "I", "this", "are", "or", "his", "from", "at",
                              "which", "but", "have", "an", "had", "they", "you", "were", "their",
                              "int", "void", "return", "if", "(", ")", ";", "{", "}", "->", "==",
                              "\xc3\xa9t\xc3\xa9", "na\xc3\xafve", "12", "2024", "\xff\xfe", "ab", "ba"};
    size_t nw = sizeof w / sizeof w[0];
    uint8_t *buf = malloc(n + 64);
    mo_rng r;
    mo_rng_seed(&r, seed);
    size_t k = 0;
    static const char *syl[] = {"ka", "to", "ri", "men", "sa", "lo", "qu", "ex", "st", "ph", "ion", "ed", "ing", "un"};
    size_t ns = sizeof syl / sizeof syl[0];
    while (k < n) {
        if (mo_rng_below(&r, 3)) {  // a known word, skewed towards the first ones
            size_t i = (size_t)(nw * pow(mo_rng_uniform(&r), 2.0));
            size_t l = strlen(w[i]);
            memcpy(buf + k, w[i], l);
            k += l;
        } else {  // an invented word of 1..4 syllables: many distinct pieces
            for (uint64_t s = 0, m = 1 + mo_rng_below(&r, 4); s < m; s++) {
                const char *x = syl[(size_t)(ns * pow(mo_rng_uniform(&r), 1.5))];
                memcpy(buf + k, x, strlen(x));
                k += strlen(x);
            }
        }
        uint64_t sep = mo_rng_below(&r, 20);
        buf[k++] = sep == 0 ? '\n' : sep == 1 ? ',' : ' ';
    }
    *len = k;
    return buf;
}

// ---------------------------------------------------------------- the naive oracle

typedef struct {
    uint32_t *s;
    int len;
    long count;
} nword;

typedef struct {
    nword *w;
    int n, cap;
} nwords;

static int collect(const uint8_t *p, size_t n, void *ctx) {
    nwords *W = ctx;
    for (int i = 0; i < W->n; i++) {
        if (W->w[i].len == (int)n) {
            int same = 1;
            for (size_t j = 0; j < n && same; j++) same = W->w[i].s[j] == p[j];
            if (same) {
                W->w[i].count++;
                return 0;
            }
        }
    }
    if (W->n == W->cap) {
        W->cap = W->cap ? 2 * W->cap : 256;
        W->w = realloc(W->w, (size_t)W->cap * sizeof *W->w);
    }
    nword *x = &W->w[W->n++];
    x->s = malloc(n * sizeof *x->s);
    for (size_t j = 0; j < n; j++) x->s[j] = p[j];
    x->len = (int)n;
    x->count = 1;
    return 0;
}

// Returns the token byte strings (tokens[t], lens[t]) of a vocabulary of n_ranks, learned
// by recounting all pairs before every merge.
static int naive_train(const uint8_t *text, size_t n, int n_ranks, uint8_t **tokens, size_t *lens) {
    nwords W = {0};
    pretok *p = pretok_new();
    pretok_split(p, text, n, collect, &W);
    pretok_free(p);
    for (int b = 0; b < 256; b++) {
        tokens[b] = malloc(1);
        tokens[b][0] = (uint8_t)b;
        lens[b] = 1;
    }
    int done = 256;
    long *cnt = malloc(sizeof(long) * (size_t)n_ranks * (size_t)n_ranks);
    while (done < n_ranks) {
        memset(cnt, 0, sizeof(long) * (size_t)n_ranks * (size_t)n_ranks);
        for (int i = 0; i < W.n; i++)
            for (int j = 0; j + 1 < W.w[i].len; j++)
                cnt[(size_t)W.w[i].s[j] * n_ranks + W.w[i].s[j + 1]] += W.w[i].count;
        long best = 0;
        uint32_t ba = 0, bb = 0;
        for (int a = 0; a < done; a++)  // (a, b) in increasing order: the first max wins ties
            for (int b = 0; b < done; b++)
                if (cnt[(size_t)a * n_ranks + b] > best) best = cnt[(size_t)a * n_ranks + b], ba = (uint32_t)a, bb = (uint32_t)b;
        if (best == 0) break;
        size_t l = lens[ba] + lens[bb];
        uint8_t *cat = malloc(l);
        memcpy(cat, tokens[ba], lens[ba]);
        memcpy(cat + lens[ba], tokens[bb], lens[bb]);
        int nt = -1;
        for (int t = 0; t < done && nt < 0; t++)
            if (lens[t] == l && !memcmp(tokens[t], cat, l)) nt = t;
        if (nt < 0) {
            nt = done++;
            tokens[nt] = cat, lens[nt] = l;
        } else {
            free(cat);
        }
        for (int i = 0; i < W.n; i++) {
            int k = 0;
            uint32_t *s = W.w[i].s;
            for (int j = 0; j < W.w[i].len; k++) {
                if (j + 1 < W.w[i].len && s[j] == ba && s[j + 1] == bb)
                    s[k] = (uint32_t)nt, j += 2;
                else
                    s[k] = s[j], j++;
            }
            W.w[i].len = k;
        }
    }
    free(cnt);
    for (int i = 0; i < W.n; i++) free(W.w[i].s);
    free(W.w);
    return done;
}

static tokenizer *train_to(const uint8_t *text, size_t n, int vocab, const char *name, int *n_ranks) {
    bpe_trainer *tr = bpe_trainer_new();
    ck_assert(tr);
    ck_assert(bpe_trainer_add(tr, text, n) == 0);
    ck_assert_msg(bpe_train_run(tr, vocab, 1, NULL, NULL, n_ranks) == 0, "%s", mo_error());
    ck_assert_msg(bpe_trainer_write(tr, tu_scratch_path(name)) == 0, "%s", mo_error());
    bpe_trainer_free(tr);
    tokenizer *t = tok_load(tu_scratch_path(name));
    ck_assert_msg(t, "%s", mo_error());
    return t;
}

START_TEST(test_matches_naive_trainer) {
    size_t n;
    uint8_t *text = make_corpus(30000, 3, &n);
    int vocab = 700, n_ranks;
    tokenizer *t = train_to(text, n, vocab, "a.tiktoken", &n_ranks);
    uint8_t *tokens[700];
    size_t lens[700];
    int naive = naive_train(text, n, vocab - 1, tokens, lens);
    ck_assert_int_eq(n_ranks, naive);
    for (int r = 0; r < naive; r++) {
        size_t l;
        const uint8_t *b = tok_token_bytes(t, (uint32_t)r, &l);
        ck_assert_msg(l == lens[r] && !memcmp(b, tokens[r], l), "rank %d differs from the naive trainer", r);
        free(tokens[r]);
    }
    tok_free(t);
    free(text);
}
END_TEST

START_TEST(test_small_case_by_hand) {
    // Pieces "ab", " ab", " ab", " cd": (a,b) x3 -> "ab"; (' ', ab) x2 -> " ab"; then ties
    // of count 1 go to the lower ids: (' ', c) before (c, d).
    const char *s = "ab ab ab cd";
    int n_ranks;
    tokenizer *t = train_to((const uint8_t *)s, strlen(s), 261, "hand.tiktoken", &n_ranks);
    ck_assert_int_eq(n_ranks, 260);
    ck_assert_int_eq(tok_vocab_size(t), 261);
    const char *want[] = {"ab", " ab", " c", " cd"};
    for (int i = 0; i < 4; i++) {
        size_t l;
        const uint8_t *b = tok_token_bytes(t, (uint32_t)(256 + i), &l);
        ck_assert_msg(l == strlen(want[i]) && !memcmp(b, want[i], l), "rank %d is '%.*s', expected '%s'", 256 + i,
                      (int)l, b, want[i]);
    }
    tok_free(t);
    // Asking for more than the corpus has pairs for stops early, with every rank valid.
    t = train_to((const uint8_t *)s, strlen(s), 5000, "hand2.tiktoken", &n_ranks);
    ck_assert_int_eq(n_ranks, 260);
    tok_free(t);
}
END_TEST

START_TEST(test_deterministic_size_roundtrip) {
    size_t n;
    uint8_t *text = make_corpus(200000, 11, &n);
    int r1, r2;
    tokenizer *a = train_to(text, n, 1024, "d1.tiktoken", &r1);
    tokenizer *b = train_to(text, n, 1024, "d2.tiktoken", &r2);
    ck_assert_int_eq(r1, 1023);
    ck_assert_int_eq(tok_vocab_size(a), 1024);
    size_t n1, n2;
    uint8_t *f1 = tu_read_all(tu_scratch_path("d1.tiktoken"), &n1, ""), *f2 = tu_read_all(tu_scratch_path("d2.tiktoken"), &n2, "");
    ck_assert_msg(n1 == n2 && !memcmp(f1, f2, n1), "two runs on the same corpus gave different files");
    ck_assert_str_eq(tok_hash(a), tok_hash(b));
    // The trained vocabulary compresses its corpus and round-trips it and random bytes.
    tok_ids ids = {0};
    ck_assert(tok_encode(a, text, n, 0, &ids) == 0);
    ck_assert_msg(ids.n < n / 3, "%zu ids for %zu bytes", ids.n, n);
    uint8_t *back;
    size_t bl;
    ck_assert(tok_decode(a, ids.v, ids.n, &back, &bl) == 0);
    ck_assert(bl == n && !memcmp(back, text, n));
    free(back);
    mo_rng r;
    mo_rng_seed(&r, 8);
    uint8_t rnd[5000];
    for (size_t i = 0; i < sizeof rnd; i++) rnd[i] = (uint8_t)mo_rng_u64(&r);
    ids.n = 0;
    ck_assert(tok_encode(a, rnd, sizeof rnd, 0, &ids) == 0);
    ck_assert(tok_decode(a, ids.v, ids.n, &back, &bl) == 0);
    ck_assert(bl == sizeof rnd && !memcmp(back, rnd, bl));
    free(back);
    tok_ids_free(&ids);
    free(f1), free(f2), free(text);
    tok_free(a), tok_free(b);
}
END_TEST

// A piece of 3000 letters is counted in 256-byte chunks: no token is longer than that.
START_TEST(test_long_pieces_chunked) {
    size_t n = 3000;
    uint8_t *text = malloc(n);
    memset(text, 'x', n);
    int n_ranks;
    tokenizer *t = train_to(text, n, 300, "long.tiktoken", &n_ranks);
    size_t longest = 0;
    for (int r = 0; r < n_ranks; r++) {
        size_t l;
        tok_token_bytes(t, (uint32_t)r, &l);
        if (l > longest) longest = l;
    }
    ck_assert_uint_eq(longest, 256);  // x, xx, xxxx, ..., x^256: doubling up to the chunk
    tok_ids ids = {0};
    ck_assert(tok_encode(t, text, n, 0, &ids) == 0);
    uint8_t *back;
    size_t bl;
    ck_assert(tok_decode(t, ids.v, ids.n, &back, &bl) == 0 && bl == n && !memcmp(back, text, n));
    free(back), free(text);
    tok_ids_free(&ids);
    tok_free(t);
}
END_TEST

START_TEST(test_refusals) {
    bpe_trainer *tr = bpe_trainer_new();
    int nr;
    ck_assert(bpe_train_run(tr, 1000, 1, NULL, NULL, &nr) == -1);
    ck_assert_msg(strstr(mo_error(), "no text"), "%s", mo_error());
    ck_assert(bpe_trainer_add(tr, (const uint8_t *)"hello", 5) == 0);
    ck_assert(bpe_train_run(tr, 256, 1, NULL, NULL, &nr) == -1);
    ck_assert_msg(strstr(mo_error(), "too small") && strstr(mo_error(), "257"), "%s", mo_error());
    ck_assert(bpe_trainer_add_file(tr, "/nonexistent/corpus.txt") == -1);
    ck_assert_msg(strstr(mo_error(), "/nonexistent/corpus.txt"), "%s", mo_error());
    bpe_trainer_free(tr);
}
END_TEST

int main(void) {
    if (!tu_scratch_make("bpe")) return 1;  // before the tests fork, so main removes it once
    Suite *s = suite_create("data_bpe_train");
    TCase *tc = tcase_create("bpe_train");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_matches_naive_trainer);
    tcase_add_test(tc, test_small_case_by_hand);
    tcase_add_test(tc, test_deterministic_size_roundtrip);
    tcase_add_test(tc, test_long_pieces_chunked);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
