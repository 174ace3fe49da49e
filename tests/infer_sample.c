// infer_sample.c: the sampler's distributions (frequencies of many seeded draws against
// the exact probabilities), greedy and its ties, top-k, top-p (nucleus), the repetition
// penalty, determinism of a seed, and the one-line errors for bad values.
#include "engine/base/error.h"
#include "infer/sample.h"
#include "tests/testutil.h"

#define N_DRAWS 100000

// Draws N_DRAWS tokens from fixed logits and checks each frequency against want[v]
// within 5 standard deviations of a binomial count (plus a hair for want = 0: never).
static void check_frequencies(const char *what, const sample_params *p, const float *logits, int V,
                              const double *want) {
    sampler s;
    ck_assert_int_eq(sampler_init(&s, p, V), 0);
    int *count = calloc((size_t)V, sizeof *count);
    float *row = malloc((size_t)V * sizeof *row);
    for (int i = 0; i < N_DRAWS; i++) {
        memcpy(row, logits, (size_t)V * sizeof *row);
        int t = sampler_next(&s, row, NULL, 0);
        ck_assert_msg(t >= 0 && t < V, "%s: token %d out of range", what, t);
        count[t]++;
    }
    for (int v = 0; v < V; v++) {
        double f = (double)count[v] / N_DRAWS;
        double sd = sqrt(want[v] * (1 - want[v]) / N_DRAWS);
        if (want[v] == 0)
            ck_assert_msg(count[v] == 0, "%s: token %d drawn %d times, want never", what, v, count[v]);
        else
            ck_assert_msg(fabs(f - want[v]) <= 5 * sd + 1e-12, "%s: token %d frequency %.5f, want %.5f (sd %.5f)",
                          what, v, f, want[v], sd);
    }
    free(count);
    free(row);
    sampler_free(&s);
}

// softmax(logits / T) in double.
static void softmax_t(double *out, const float *logits, int V, double T) {
    double mx = logits[0], sum = 0;
    for (int v = 1; v < V; v++) mx = fmax(mx, logits[v]);
    for (int v = 0; v < V; v++) sum += out[v] = exp((logits[v] - mx) / T);
    for (int v = 0; v < V; v++) out[v] /= sum;
}

static const float L6[6] = {1.0f, 2.5f, -0.5f, 0.3f, 2.0f, -3.0f};

START_TEST(test_temperature_distribution) {
    double want[6];
    const double temps[] = {1.0, 0.5, 2.0};
    for (int i = 0; i < 3; i++) {
        sample_params p = sample_params_default();
        p.temperature = (float)temps[i];
        p.seed = 11 + (uint64_t)i;
        softmax_t(want, L6, 6, temps[i]);
        check_frequencies("temperature", &p, L6, 6, want);
    }
}
END_TEST

START_TEST(test_top_k_distribution) {
    // Ranks: 1 (2.5), 4 (2.0), 0 (1.0), 3 (0.3), 2, 5. top-k 3 keeps {1, 4, 0}, renormalized.
    double full[6], want[6] = {0};
    softmax_t(full, L6, 6, 0.8);
    double z = full[1] + full[4] + full[0];
    want[1] = full[1] / z, want[4] = full[4] / z, want[0] = full[0] / z;
    sample_params p = sample_params_default();
    p.temperature = 0.8f;
    p.top_k = 3;
    p.seed = 5;
    check_frequencies("top-k 3", &p, L6, 6, want);
    // top-k >= V changes nothing.
    p.top_k = 6;
    check_frequencies("top-k 6", &p, L6, 6, full);
    p.top_k = 100;
    check_frequencies("top-k 100", &p, L6, 6, full);
}
END_TEST

START_TEST(test_top_p_distribution) {
    // Probabilities 0.5, 0.3, 0.1, 0.1 exactly (logits are their logs).
    const float L[4] = {logf(0.1f), logf(0.5f), logf(0.1f), logf(0.3f)};
    sample_params p = sample_params_default();
    p.seed = 9;
    // 0.6: 0.5 < 0.6, 0.5 + 0.3 >= 0.6: the nucleus is {1, 3}.
    p.top_p = 0.6f;
    check_frequencies("top-p 0.6", &p, L, 4, (double[]){0, 0.625, 0, 0.375});
    // 0.45: the most likely token alone reaches it.
    p.top_p = 0.45f;
    check_frequencies("top-p 0.45", &p, L, 4, (double[]){0, 1, 0, 0});
    // 0.85 needs a third token: both 0.1s tie, the lower id (0) ranks first.
    p.top_p = 0.85f;
    check_frequencies("top-p 0.85", &p, L, 4, (double[]){1.0 / 9, 5.0 / 9, 0, 3.0 / 9});
    p.top_p = 1.0f;
    check_frequencies("top-p 1", &p, L, 4, (double[]){0.1, 0.5, 0.1, 0.3});
    // top-k then top-p relative to what top-k kept: k=3 keeps 0.5, 0.3, 0.1 (id 0); of
    // their 0.9, top-p 0.85 needs 0.765: 0.5 + 0.3 = 0.8 suffices.
    p.top_k = 3, p.top_p = 0.85f;
    check_frequencies("top-k 3 top-p 0.85", &p, L, 4, (double[]){0, 0.625, 0, 0.375});
}
END_TEST

START_TEST(test_top_p_large_vocabulary) {
    // A GPT-2-sized row: the prefilter must not change the nucleus. The test finds the
    // nucleus by a full sort and compares the frequencies of its members.
    enum { V = 50257 };
    float *L = malloc(V * sizeof *L);
    tu_fill(L, V, 77, 2.0f);
    // Three leaders hold ~3/4 of the mass; the other 50254 tokens hold the rest, and
    // some of them pass the prefilter's cut, so both its branches run.
    L[123] = 12.0f, L[40000] = 11.5f, L[7] = 11.0f;
    double *prob = malloc(V * sizeof *prob);
    softmax_t(prob, L, V, 1.0);
    int *order = malloc(V * sizeof *order);
    for (int i = 0; i < V; i++) order[i] = i;
    // Selection sort of the first few suffices: the nucleus at 0.7 is small.
    double cum = 0;
    int n = 0;
    while (cum < 0.7) {
        int b = n;
        for (int i = n + 1; i < V; i++)
            if (prob[order[i]] > prob[order[b]]) b = i;
        int t = order[n];
        order[n] = order[b], order[b] = t;
        cum += prob[order[n++]];
    }
    ck_assert_int_eq(n, 3);
    double *want = calloc(V, sizeof *want);
    for (int i = 0; i < n; i++) want[order[i]] = prob[order[i]] / cum;
    sample_params p = sample_params_default();
    p.top_p = 0.7f;
    p.seed = 3;
    sampler s;
    ck_assert_int_eq(sampler_init(&s, &p, V), 0);
    float *row = malloc(V * sizeof *row);
    int *count = calloc(V, sizeof *count);
    const int draws = 1000;
    for (int i = 0; i < draws; i++) {
        memcpy(row, L, V * sizeof *row);
        count[sampler_next(&s, row, NULL, 0)]++;
    }
    for (int v = 0; v < V; v++) {
        if (want[v] == 0) {
            ck_assert_msg(count[v] == 0, "token %d outside the nucleus drawn %d times", v, count[v]);
            continue;
        }
        double f = (double)count[v] / draws, sd = sqrt(want[v] * (1 - want[v]) / draws);
        ck_assert_msg(fabs(f - want[v]) <= 5 * sd, "token %d: %.4f, want %.4f", v, f, want[v]);
    }
    sampler_free(&s);
    free(L), free(prob), free(order), free(want), free(row), free(count);
}
END_TEST

START_TEST(test_top_p_uniform_tiny) {
    // Uniform logits and a tiny top-p: the prefilter would drop every token; the nucleus
    // is then the single best, which on a tie is the lowest id.
    enum { V = 1000 };
    float L[V], row[V];
    for (int i = 0; i < V; i++) L[i] = 0.25f;
    sample_params p = sample_params_default();
    p.top_p = 1e-4f;
    sampler s;
    ck_assert_int_eq(sampler_init(&s, &p, V), 0);
    for (int i = 0; i < 50; i++) {
        memcpy(row, L, sizeof row);
        ck_assert_int_eq(sampler_next(&s, row, NULL, 0), 0);
    }
    sampler_free(&s);
}
END_TEST

START_TEST(test_greedy) {
    const float L[5] = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};  // tie between 1 and 3 -> 1
    float row[5];
    sample_params ps[4];
    for (int i = 0; i < 4; i++) ps[i] = sample_params_default(), ps[i].seed = (uint64_t)i;
    ps[0].temperature = 0.0f;               // greedy by temperature
    ps[1].top_p = 0.0f;                     // top-p 0 behaves as greedy
    ps[2].top_k = 1;                        // top-k 1 is greedy too
    ps[3].temperature = 0.0f, ps[3].top_k = 3, ps[3].top_p = 0.9f;
    for (int i = 0; i < 4; i++) {
        sampler s;
        ck_assert_int_eq(sampler_init(&s, &ps[i], 5), 0);
        for (int r = 0; r < 100; r++) {
            memcpy(row, L, sizeof row);
            ck_assert_int_eq(sampler_next(&s, row, NULL, 0), 1);
        }
        sampler_free(&s);
    }
    ck_assert_int_eq(sample_argmax((const float[]){NAN, 1.0f, 2.0f}, 3), 2);
    ck_assert_int_eq(sample_argmax((const float[]){-INFINITY, -INFINITY}, 2), 0);
}
END_TEST

START_TEST(test_repetition_penalty) {
    sample_params p = sample_params_default();
    p.temperature = 0.0f;
    p.repetition_penalty = 2.0f;
    sampler s;
    ck_assert_int_eq(sampler_init(&s, &p, 5), 0);
    float row[5] = {4.0f, 3.0f, -1.0f, 0.5f, 0.0f};
    // 0 occurs three times: penalized once (4 -> 2). Negative 2 grows more negative.
    // -7 and 99 are outside the vocabulary: ignored.
    const int hist[] = {0, 2, 0, 0, -7, 99};
    int t = sampler_next(&s, row, hist, 6);
    ck_assert_float_eq(row[0], 2.0f);
    ck_assert_float_eq(row[1], 3.0f);
    ck_assert_float_eq(row[2], -2.0f);
    ck_assert_float_eq(row[3], 0.5f);
    ck_assert_int_eq(t, 1);  // 0 was the best before the penalty
    // The marks are cleared: the same history penalizes the same way next time.
    float row2[5] = {4.0f, 3.0f, -1.0f, 0.5f, 0.0f};
    sampler_next(&s, row2, hist, 6);
    ck_assert_float_eq(row2[0], 2.0f);
    sampler_free(&s);

    // Sampled, the penalty shifts the distribution exactly like the changed logits.
    const float L[3] = {1.0f, 1.0f, -0.5f};
    p = sample_params_default();
    p.repetition_penalty = 1.5f;
    p.seed = 21;
    ck_assert_int_eq(sampler_init(&s, &p, 3), 0);
    const float pen[3] = {1.0f / 1.5f, 1.0f, -0.5f};
    double want[3];
    softmax_t(want, pen, 3, 1.0);
    int count[3] = {0};
    for (int i = 0; i < N_DRAWS; i++) {
        float r[3] = {L[0], L[1], L[2]};
        count[sampler_next(&s, r, (const int[]){0}, 1)]++;
    }
    for (int v = 0; v < 3; v++) {
        double f = (double)count[v] / N_DRAWS, sd = sqrt(want[v] * (1 - want[v]) / N_DRAWS);
        ck_assert_msg(fabs(f - want[v]) <= 5 * sd, "penalized token %d: %.4f want %.4f", v, f, want[v]);
    }
    sampler_free(&s);
}
END_TEST

START_TEST(test_nan_and_masked_logits) {
    // NaN logits are never drawn; -inf ones (ids a caller masks out) neither, with or
    // without top-k.
    const float L[6] = {NAN, 1.0f, 2.0f, NAN, 0.0f, -INFINITY};
    double e1 = exp(1.0), e2 = exp(2.0), e0 = 1.0, z = e1 + e2 + e0;
    sample_params p = sample_params_default();
    p.seed = 31;
    check_frequencies("NaN, -inf, no top-k", &p, L, 6, (double[]){0, e1 / z, e2 / z, 0, e0 / z, 0});
    p.top_k = 2;
    check_frequencies("NaN, -inf, top-k 2", &p, L, 6, (double[]){0, e1 / (e1 + e2), e2 / (e1 + e2), 0, 0, 0});
    p.top_k = 5, p.top_p = 0.9f;  // 0.665 + 0.245 = 0.91 >= 0.9: ids 2 and 1
    check_frequencies("NaN, -inf, top-k 5 top-p 0.9", &p, L, 6, (double[]){0, e1 / (e1 + e2), e2 / (e1 + e2), 0, 0, 0});
}
END_TEST

static void draw_sequence(int *out, int n, uint64_t seed, const sample_params *base) {
    sample_params p = *base;
    p.seed = seed;
    sampler s;
    ck_assert_int_eq(sampler_init(&s, &p, 6), 0);
    for (int i = 0; i < n; i++) {
        float row[6];
        memcpy(row, L6, sizeof row);
        out[i] = sampler_next(&s, row, out, i);
    }
    sampler_free(&s);
}

START_TEST(test_same_seed_same_tokens) {
    sample_params p = sample_params_default();
    p.temperature = 1.3f, p.top_k = 4, p.top_p = 0.95f, p.repetition_penalty = 1.1f;
    int a[500], b[500], c[500];
    draw_sequence(a, 500, 1234, &p);
    draw_sequence(b, 500, 1234, &p);
    draw_sequence(c, 500, 1235, &p);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, c, sizeof a) != 0);
}
END_TEST

static void expect_bad(sample_params p, const char *flag) {
    sampler s;
    mo_error_clear();
    ck_assert_int_eq(sample_params_check(&p), -1);
    ck_assert_int_eq(sampler_init(&s, &p, 10), -1);
    ck_assert_msg(strstr(mo_error(), flag) != NULL, "error '%s' should name %s", mo_error(), flag);
    ck_assert_msg(strchr(mo_error(), '\n') == NULL, "error should be one line: '%s'", mo_error());
}

START_TEST(test_bad_values) {
    sample_params d = sample_params_default();
    ck_assert_int_eq(sample_params_check(&d), 0);
    sample_params p;
    p = d, p.temperature = -0.1f, expect_bad(p, "--temperature");
    p = d, p.temperature = NAN, expect_bad(p, "--temperature");
    p = d, p.temperature = INFINITY, expect_bad(p, "--temperature");
    p = d, p.top_p = 1.01f, expect_bad(p, "--top-p");
    p = d, p.top_p = -0.5f, expect_bad(p, "--top-p");
    p = d, p.top_p = NAN, expect_bad(p, "--top-p");
    p = d, p.top_k = -1, expect_bad(p, "--top-k");
    p = d, p.repetition_penalty = 0.0f, expect_bad(p, "--repetition-penalty");
    p = d, p.repetition_penalty = -1.0f, expect_bad(p, "--repetition-penalty");
    // Boundaries that are valid.
    p = d, p.top_p = 0.0f;
    ck_assert_int_eq(sample_params_check(&p), 0);
    p = d, p.top_p = 1.0f, p.temperature = 0.0f;
    ck_assert_int_eq(sample_params_check(&p), 0);
    sampler s;
    ck_assert_int_eq(sampler_init(&s, &d, 0), -1);
}
END_TEST

int main(void) {
    Suite *s = suite_create("infer_sample");
    TCase *tc = tcase_create("sample");
    tcase_set_timeout(tc, 120);  // the statistical tests draw 10^5 tokens; slow on a busy machine
    tcase_add_test(tc, test_temperature_distribution);
    tcase_add_test(tc, test_top_k_distribution);
    tcase_add_test(tc, test_top_p_distribution);
    tcase_add_test(tc, test_top_p_large_vocabulary);
    tcase_add_test(tc, test_top_p_uniform_tiny);
    tcase_add_test(tc, test_greedy);
    tcase_add_test(tc, test_repetition_penalty);
    tcase_add_test(tc, test_nan_and_masked_logits);
    tcase_add_test(tc, test_same_seed_same_tokens);
    tcase_add_test(tc, test_bad_values);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
