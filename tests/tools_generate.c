// tools_generate.c: `monolith generate` end to end on a tiny checkpoint that carries a
// small tokenizer: same seed same text, greedy = top-p 0, --max-tokens, stopping on
// <|endoftext|>, --show-routing and --experts-only, and the one-line errors.
#include "data/tokenizer.h"
#include "engine/base/error.h"
#include "engine/checkpoint.h"
#include "tests/testutil.h"

#include <sys/wait.h>
#include <unistd.h>

static char model[300], notok[300], eotmodel[300];

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

// Counts the "e:g" routing pairs of one --show-routing line into seen[e]; the token's
// quoted text (which may hold anything) is skipped first. Returns the number of pairs.
static int routing_pairs(const char *line, int *seen) {
    const char *p = strchr(line, '"');
    ck_assert_ptr_nonnull(p);
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\') p++;
    ck_assert_int_eq(*p, '"');
    int n = 0;
    char word[64];
    for (int used; sscanf(p + 1, "%63s%n", word, &used) == 1; p += used) {
        int e;
        float g;
        char rest;
        if (sscanf(word, "%d:%f%c", &e, &g, &rest) == 2) {
            ck_assert_msg(e >= 0 && e < 4 && g > 0 && g <= 1, "bad pair '%s' in '%s'", word, line);
            seen[e]++, n++;
        }
    }
    return n;
}

// The tokenizer: the 256 bytes plus a few merges, <|endoftext|> after them.
static void make_tokenizer(mo_tokenizer_blob *b) {
    enum { R = 256 + 4 };
    uint8_t single[256];
    const uint8_t *toks[R];
    size_t lens[R];
    for (int i = 0; i < 256; i++) single[i] = (uint8_t)i, toks[i] = single + i, lens[i] = 1;
    const char *merges[4] = {"th", "he", "the", " the"};
    for (int i = 0; i < 4; i++) toks[256 + i] = (const uint8_t *)merges[i], lens[256 + i] = strlen(merges[i]);
    char path[300];
    snprintf(path, sizeof path, "%s/tiny.tiktoken", tu_scratch());
    ck_assert_msg(tok_write_tiktoken(path, toks, lens, R) == 0, "%s", mo_error());
    FILE *f = fopen(path, "rb");
    b->tiktoken = malloc(1 << 16);
    b->tiktoken_len = fread(b->tiktoken, 1, 1 << 16, f);
    fclose(f);
    b->present = 1;
    b->n_special = 1;
    b->special_names = malloc(sizeof(char *));
    b->special_names[0] = strdup(TOK_EOT_NAME);
    b->special_ids = malloc(sizeof(int64_t));
    b->special_ids[0] = R;
}

static void setup(void) {
    ck_assert_ptr_nonnull(tu_scratch_make("generate"));
    snprintf(model, sizeof model, "%s/model.h5", tu_scratch());
    snprintf(notok, sizeof notok, "%s/notok.h5", tu_scratch());
    snprintf(eotmodel, sizeof eotmodel, "%s/eot.h5", tu_scratch());
    mo_config c;
    ck_assert_int_eq(config_preset(&c, "tiny"), 0);  // vocab 512 > the tokenizer's 261
    ck_assert_int_eq(config_finalize(&c), 0);
    mo_checkpoint ck;
    ck_assert_int_eq(ckpt_new(&ck, &c, 5, NULL), 0);
    ck_assert_msg(ckpt_save(notok, &ck) == 0, "%s", mo_error());
    make_tokenizer(&ck.tokenizer);
    ck_assert_msg(ckpt_save(model, &ck) == 0, "%s", mo_error());

    // A model that always predicts <|endoftext|> first: residual dimension 0 is +1 from
    // every embedding and nothing writes to it; the final norm keeps only that
    // dimension, and only the <|endoftext|> row of the output reads it.
    const mo_param_table *pt = &ck.table;
    const int d = c.d_model;
    float *w = ck.params;
    float *emb = params_at(pt, w, pt->tok_embeddings);
    for (int v = 0; v < c.vocab_size; v++) emb[(size_t)v * d] = 1.0f;
    for (int l = 0; l < c.n_layers; l++) {
        const mo_layer_ids *L = &pt->layer[l];
        memset(params_at(pt, w, L->wo), 0, sizeof(float) * (size_t)c.n_heads * c.head_dim);  // row 0 of wo
        float *w2 = params_at(pt, w, L->w2);  // [E, d, d_ff]: row 0 of each expert
        for (int e = 0; e < c.n_experts; e++) memset(w2 + (size_t)e * d * c.d_ff, 0, sizeof(float) * c.d_ff);
    }
    float *norm = params_at(pt, w, pt->norm), *out = params_at(pt, w, pt->output);
    for (int j = 0; j < d; j++) norm[j] = j == 0;
    for (int v = 0; v < c.vocab_size; v++) out[(size_t)v * d] = v == 260 ? 5.0f : 0.0f;
    ck_assert_msg(ckpt_save(eotmodel, &ck) == 0, "%s", mo_error());
    ckpt_free(&ck);
}

static void teardown(void) { ck_assert_int_eq(tu_scratch_remove(), 0); }

#define RUN(args, out, err) tu_monolith(&out, &err, "generate --threads 1 %s", args)

START_TEST(test_same_seed_same_text) {
    char args[1024], *o1, *e1, *o2, *e2, *o3, *e3;
    snprintf(args, sizeof args, "--checkpoint %s --prompt 'the cat' --max-tokens 24 --temperature 1.2 --seed 7", model);
    ck_assert_int_eq(RUN(args, o1, e1), 0);
    ck_assert_int_eq(RUN(args, o2, e2), 0);
    ck_assert_str_eq(o1, o2);
    ck_assert_msg(strstr(e1, "24 tokens generated") != NULL, "stderr: %s", e1);
    snprintf(args, sizeof args, "--checkpoint %s --prompt 'the cat' --max-tokens 24 --temperature 1.2 --seed 8", model);
    ck_assert_int_eq(RUN(args, o3, e3), 0);
    ck_assert_str_ne(o1, o3);
    free(o1), free(e1), free(o2), free(e2), free(o3), free(e3);
}
END_TEST

START_TEST(test_greedy_is_top_p_zero) {
    char args[1024], *o1, *e1, *o2, *e2;
    snprintf(args, sizeof args, "--checkpoint %s --prompt 'the' --max-tokens 16 --temperature 0 --seed 1", model);
    ck_assert_int_eq(RUN(args, o1, e1), 0);
    snprintf(args, sizeof args, "--checkpoint %s --prompt 'the' --max-tokens 16 --temperature 1 --top-p 0 --seed 2",
             model);
    ck_assert_int_eq(RUN(args, o2, e2), 0);
    ck_assert_str_eq(o1, o2);
    free(o1), free(e1), free(o2), free(e2);
}
END_TEST

START_TEST(test_int8_weights) {
    // --weights int8 generates (the same seed gives the same text) and reports its speed.
    char args[1024], *o1, *e1, *o2, *e2;
    snprintf(args, sizeof args, "--checkpoint %s --prompt 'the cat' --max-tokens 20 --seed 4 --weights int8", model);
    ck_assert_int_eq(RUN(args, o1, e1), 0);
    ck_assert_int_eq(RUN(args, o2, e2), 0);
    ck_assert_str_eq(o1, o2);
    ck_assert_msg(strstr(e1, "20 tokens generated") != NULL, "stderr: %s", e1);
    free(o1), free(e1), free(o2), free(e2);
}
END_TEST

START_TEST(test_routing_and_restriction) {
    char args[1024], *o, *e;
    snprintf(args, sizeof args, "--checkpoint %s --prompt 'hello' --max-tokens 6 --show-routing --seed 3", model);
    ck_assert_int_eq(RUN(args, o, e), 0);
    ck_assert_int_eq(count_lines(o), 6);  // one line per generated token
    ck_assert_ptr_nonnull(strstr(o, " L0 "));
    ck_assert_ptr_nonnull(strstr(o, " L1 "));
    free(o), free(e);
    // Only experts 1 and 3 may appear: every "e:g" pair names one of them.
    snprintf(args, sizeof args,
             "--checkpoint %s --prompt 'hello' --max-tokens 6 --show-routing --experts-only 3,1 --seed 3", model);
    ck_assert_int_eq(RUN(args, o, e), 0);
    ck_assert_int_eq(count_lines(o), 6);
    int pairs = 0, seen[4] = {0};
    for (char *line = o; *line;) {
        char *nl = strchr(line, '\n');
        *nl = 0;
        pairs += routing_pairs(line, seen);
        line = nl + 1;
    }
    ck_assert_msg(seen[1] + seen[3] == pairs && seen[0] == 0 && seen[2] == 0, "experts outside 3,1:\n%s", o);
    ck_assert_int_ge(pairs, 6);
    free(o), free(e);
    snprintf(args, sizeof args, "--checkpoint %s --prompt 'x' --experts-only 7", model);
    ck_assert_int_eq(RUN(args, o, e), 1);
    ck_assert_msg(strstr(e, "expert 7") && count_lines(e) == 1, "stderr: %s", e);
    free(o), free(e);
}
END_TEST

START_TEST(test_stops) {
    char args[1024], *o, *e;
    // The EOT model ends at once (greedy) and prints nothing but the newline.
    snprintf(args, sizeof args, "--checkpoint %s --prompt 'the' --max-tokens 50 --temperature 0", eotmodel);
    ck_assert_int_eq(RUN(args, o, e), 0);
    ck_assert_str_eq(o, "\n");
    ck_assert_msg(strstr(e, "0 tokens generated") != NULL, "stderr: %s", e);
    free(o), free(e);
    // Sampled, it stops as soon as <|endoftext|> comes, well before 200 tokens.
    snprintf(args, sizeof args, "--checkpoint %s --prompt 'the' --max-tokens 200 --temperature 1 --top-k 0 "
             "--top-p 1 --show-routing --seed 4", eotmodel);
    ck_assert_int_eq(RUN(args, o, e), 0);
    ck_assert_int_lt(count_lines(o), 20);
    free(o), free(e);
    // --max-tokens 0 generates nothing; no prompt starts from <|endoftext|>.
    snprintf(args, sizeof args, "--checkpoint %s --max-tokens 0", model);
    ck_assert_int_eq(RUN(args, o, e), 0);
    ck_assert_msg(strstr(e, "prompt 1 tokens") && strstr(e, "0 tokens generated"), "stderr: %s", e);
    free(o), free(e);
    // The context fills: tiny's max_seq_len is 256; a 250-byte prompt leaves 6 positions.
    char prompt[260];
    memset(prompt, 'q', 250);
    prompt[250] = 0;
    snprintf(args, sizeof args, "--checkpoint %s --prompt %s --max-tokens 40 --seed 5", model, prompt);
    ck_assert_int_eq(RUN(args, o, e), 0);
    ck_assert_msg(strstr(e, "context is full") && strstr(e, "7 tokens generated"), "stderr: %s", e);
    free(o), free(e);
}
END_TEST

START_TEST(test_errors) {
    struct {
        const char *args, *want;
        int rc;
    } cases[] = {
        {"--temperature -1", "--temperature", 2},
        {"--top-p 1.5", "--top-p", 2},
        {"--top-k -2", "--top-k", 2},
        {"--repetition-penalty 0", "--repetition-penalty", 2},
        {"--max-tokens many", "--max-tokens", 2},
        {"--prompt a --prompt-file b", "not both", 2},
        {"--prompt-file /nonexistent/p.txt", "/nonexistent/p.txt", 1},
        {"--weights int4", "--weights 'int4'", 2},
    };
    char args[1024], *o, *e;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, "--checkpoint %s %s", model, cases[i].args);
        ck_assert_int_eq(RUN(args, o, e), cases[i].rc);
        ck_assert_msg(strstr(e, cases[i].want) && count_lines(e) == 1 && !strncmp(e, "monolith: ", 10),
                      "%s: stderr '%s'", cases[i].args, e);
        free(o), free(e);
    }
    // A prompt longer than max_seq_len (256 single-byte tokens + 44).
    char prompt[310];
    memset(prompt, 'z', 300);
    prompt[300] = 0;
    snprintf(args, sizeof args, "--checkpoint %s --prompt %s", model, prompt);
    ck_assert_int_eq(RUN(args, o, e), 1);
    ck_assert_msg(strstr(e, "prompt of 300 tokens is longer than the model's max_seq_len 256") && count_lines(e) == 1,
                  "stderr: %s", e);
    free(o), free(e);
    // A checkpoint without a tokenizer.
    snprintf(args, sizeof args, "--checkpoint %s --prompt hi", notok);
    ck_assert_int_eq(RUN(args, o, e), 1);
    ck_assert_msg(strstr(e, "has no /tokenizer") && count_lines(e) == 1, "stderr: %s", e);
    free(o), free(e);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tools_generate");
    TCase *tc = tcase_create("generate");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_same_seed_same_text);
    tcase_add_test(tc, test_greedy_is_top_p_zero);
    tcase_add_test(tc, test_int8_weights);
    tcase_add_test(tc, test_routing_and_restriction);
    tcase_add_test(tc, test_stops);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
