// sample.c: repetition penalty, greedy, temperature, top-k and top-p sampling.
#include "infer/sample.h"

#include "engine/base/error.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

sample_params sample_params_default(void) {
    return (sample_params){.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .repetition_penalty = 1.0f, .seed = 0};
}

int sample_params_check(const sample_params *p) {
    // Written so that NaN fails every test.
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return mo_errorf("--temperature %g: must be a finite number >= 0 (0 = always the most likely token)",
                         (double)p->temperature);
    if (p->top_k < 0) return mo_errorf("--top-k %d: must be >= 0 (0 = no limit)", p->top_k);
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return mo_errorf("--top-p %g: must be in [0, 1] (1 = no limit, 0 = always the most likely token)",
                         (double)p->top_p);
    if (!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty))
        return mo_errorf("--repetition-penalty %g: must be a finite number > 0 (1 = off, above 1 discourages repeats)",
                         (double)p->repetition_penalty);
    return 0;
}

int sampler_init(sampler *s, const sample_params *p, int vocab) {
    memset(s, 0, sizeof *s);
    if (sample_params_check(p)) return -1;
    if (vocab <= 0) return mo_errorf("sampler: vocabulary size %d must be positive", vocab);
    s->p = *p;
    s->vocab = vocab;
    mo_rng_seed(&s->rng, p->seed);
    s->cand = malloc((size_t)vocab * sizeof *s->cand);
    s->seen = calloc((size_t)vocab, 1);
    if (!s->cand || !s->seen) {
        sampler_free(s);
        return mo_errorf("sampler: out of memory for a vocabulary of %d", vocab);
    }
    return 0;
}

void sampler_free(sampler *s) {
    free(s->cand);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

int sample_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) best = i;
    return best;
}

// a ranks before b: more likely first, ties to the lower id (deterministic order).
static int cand_before(const sample_cand *a, const sample_cand *b) {
    return a->p > b->p || (a->p == b->p && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb) {
    const sample_cand *a = pa, *b = pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

// Min-heap on the rank order (the root is the worst kept candidate).
static void heap_sift_down(sample_cand *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && cand_before(&h[w], &h[l])) w = l;
        if (r < n && cand_before(&h[w], &h[r])) w = r;
        if (w == i) return;
        sample_cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

// Keeps the k best of c[n] in c[0..k), sorted best first. O(n log k).
static void keep_top_k(sample_cand *c, int n, int k) {
    for (int i = k / 2 - 1; i >= 0; i--) heap_sift_down(c, k, i);
    for (int i = k; i < n; i++)
        if (cand_before(&c[i], &c[0])) {
            c[0] = c[i];
            heap_sift_down(c, k, 0);
        }
    qsort(c, (size_t)k, sizeof *c, cand_cmp);
}

static void apply_repetition_penalty(sampler *s, float *logits, const int *history, int n_history) {
    float rp = s->p.repetition_penalty;
    // Each distinct token is penalized once, however often it occurred.
    for (int i = 0; i < n_history; i++) {
        int t = history[i];
        if (t < 0 || t >= s->vocab || s->seen[t]) continue;
        s->seen[t] = 1;
        // Kept finite (a tiny or huge penalty would overflow to Inf, and Inf - Inf is NaN
        // in the softmax below).
        float l = logits[t] > 0 ? logits[t] / rp : logits[t] * rp;
        logits[t] = l > FLT_MAX ? FLT_MAX : l < -FLT_MAX ? -FLT_MAX : l;
    }
    for (int i = 0; i < n_history; i++)
        if (history[i] >= 0 && history[i] < s->vocab) s->seen[history[i]] = 0;
}

int sampler_next(sampler *s, float *logits, const int *history, int n_history) {
    const int V = s->vocab;
    const sample_params *p = &s->p;
    if (p->repetition_penalty != 1.0f && n_history > 0) apply_repetition_penalty(s, logits, history, n_history);
    if (p->temperature == 0.0f || p->top_p == 0.0f || p->top_k == 1) return sample_argmax(logits, V);

    // Probabilities are softmax(logits / T), unnormalized, in double (a tiny T would
    // overflow 1/T in float). NaN logits never win.
    int amax = sample_argmax(logits, V);
    double mx = logits[amax], inv_t = 1.0 / p->temperature, total = 0;
    sample_cand *c = s->cand;
    int n = V;
    if (p->top_k > 0 && p->top_k < V) {
        // The k most likely tokens are the k largest logits: select on the logits, then
        // exponentiate only those (top-p below is relative to their mass, as in Hugging
        // Face's warpers, top-k first).
        for (int v = 0; v < V; v++) c[v] = (sample_cand){isnan(logits[v]) ? -INFINITY : logits[v], v};
        keep_top_k(c, V, p->top_k);
        n = p->top_k;
        for (int i = 0; i < n; i++) total += c[i].p = exp((c[i].p - mx) * inv_t);
    } else {
        for (int v = 0; v < V; v++) {
            double e = exp(((double)logits[v] - mx) * inv_t);
            if (!(e >= 0)) e = 0;
            c[v] = (sample_cand){e, v};
            total += e;
        }
    }
    if (!(total > 0) || isinf(total)) return amax;
    if (n == V && p->top_p < 1.0f) {
        // Only tokens with p >= (1 - top_p) / (V - 1) can be in the nucleus: all the others
        // together hold less than 1 - top_p (llama2.c's trick). Drops most of a large
        // vocabulary before the sort; `total` stays the whole mass.
        double cut = V > 1 ? (1.0 - p->top_p) / (V - 1) * total : 0;
        int m = 0;
        for (int i = 0; i < n; i++)
            if (c[i].p >= cut) c[m++] = c[i];
        if (m > 0) n = m;
        qsort(c, (size_t)n, sizeof *c, cand_cmp);
    }
    if (p->top_p < 1.0f) {
        double target = p->top_p * total, cum = 0;
        int m = 0;
        while (m < n) {
            cum += c[m++].p;
            if (cum >= target) break;
        }
        n = m;
        total = cum;
    }
    double u = mo_rng_uniform(&s->rng) * total, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += c[i].p;
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id;  // rounding left u just above the last partial sum
}
