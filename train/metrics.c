// metrics.c: metrics.jsonl writer.
#include "train/metrics.h"

#include "engine/base/atomic_file.h"
#include "engine/base/error.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// JSON has no NaN or Inf: write null.
static void put_num(FILE *f, const char *key, double v, int last) {
    if (isfinite(v)) fprintf(f, "\"%s\": %.9g%s", key, v, last ? "" : ", ");
    else fprintf(f, "\"%s\": null%s", key, last ? "" : ", ");
}

// Rewrites `path` keeping the lines whose "step" is <= keep_until.
static int cut_after(const char *path, int64_t keep_until) {
    FILE *in = fopen(path, "r");
    if (!in) return errno == ENOENT ? 0 : mo_errorf("%s: cannot read: %s", path, strerror(errno));
    atomic_file a;
    FILE *out = atomic_open(&a, path, "w");
    if (!out) {
        fclose(in);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, in) > 0) {
        const char *s = strstr(line, "\"step\": ");
        if (!s || strtoll(s + 8, NULL, 10) > keep_until || !strchr(line, '\n')) continue;
        fputs(line, out);
    }
    free(line);
    int bad = ferror(in);
    fclose(in);
    return atomic_commit(&a, bad);
}

int metrics_open(metrics_log *m, const char *dir, int64_t keep_until) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    if (keep_until >= 0 && cut_after(path, keep_until)) return -1;
    m->f = fopen(path, keep_until >= 0 ? "a" : "w");
    if (!m->f) return mo_errorf("%s: cannot write: %s", path, strerror(errno));
    return 0;
}

// "key": {"<layer>": dropped share, ...}, "experts_per_token": {...} from drops[n_moe, 2].
static void put_drops(FILE *f, const int64_t *drops, int n_moe, const int *moe_layer, int64_t tokens,
                      const char *open, const char *close) {
    fprintf(f, "%s\"dropped\": {", open);
    for (int l = 0; l < n_moe; l++) {
        double fr = drops[2 * l] ? (double)drops[2 * l + 1] / (double)drops[2 * l] : 0.0;
        fprintf(f, "%s\"%d\": %.6g", l ? ", " : "", moe_layer[l], fr);
    }
    fprintf(f, "}, \"experts_per_token\": {");
    for (int l = 0; l < n_moe; l++)
        fprintf(f, "%s\"%d\": %.6g", l ? ", " : "", moe_layer[l], tokens ? (double)drops[2 * l] / (double)tokens : 0.0);
    fprintf(f, "}%s", close);
}

int metrics_write_step(metrics_log *m, const metrics_step *s) {
    FILE *f = m->f;
    fprintf(f, "{\"type\": \"train\", \"step\": %lld, \"tokens_seen\": %lld, ", (long long)s->step,
            (long long)s->tokens_seen);
    put_num(f, "loss", s->loss, 0);
    put_num(f, "ce", s->ce, 0);
    put_num(f, "aux", s->aux, 0);
    put_num(f, "z", s->z, 0);
    put_num(f, "router_ce", s->router_ce, 0);
    put_num(f, "lr", s->lr, 0);
    put_num(f, "grad_norm", s->grad_norm, 0);
    put_num(f, "tokens_per_s", s->tokens_per_s, 0);
    put_num(f, "elapsed_s", s->elapsed_s, 0);
    fprintf(f, "\"expert_tokens\": {");
    for (int l = 0; l < s->n_moe; l++) {
        fprintf(f, "%s\"%d\": [", l ? ", " : "", s->moe_layer[l]);
        for (int e = 0; e < s->n_experts; e++)
            fprintf(f, "%s%lld", e ? ", " : "", (long long)s->counts[(size_t)l * s->n_experts + e]);
        fprintf(f, "]");
    }
    fprintf(f, "}");
    if (s->drops && s->n_moe) put_drops(f, s->drops, s->n_moe, s->moe_layer, s->tokens, ", ", "");
    fprintf(f, "}\n");
    if (fflush(f) || ferror(f)) return mo_errorf("metrics.jsonl: write failed: %s", strerror(errno));
    return 0;
}

int metrics_write_eval(metrics_log *m, const metrics_eval *e) {
    FILE *f = m->f;
    fprintf(f, "{\"type\": \"eval\", \"step\": %lld, \"val\": {", (long long)e->step);
    for (int i = 0; i < e->n; i++) {
        fprintf(f, "%s\"%s\": {", i ? ", " : "", e->names[i]);
        put_num(f, "loss", e->loss[i], 0);
        put_num(f, "ppl", exp(e->loss[i]), 0);
        fprintf(f, "\"tokens\": %lld}", (long long)e->tokens[i]);
    }
    fprintf(f, "}");
    if (e->counts && e->n_moe) {
        fprintf(f, ", \"routing\": {");
        for (int i = 0; i < e->n; i++) {
            fprintf(f, "%s\"%s\": {", i ? ", " : "", e->names[i]);
            for (int l = 0; l < e->n_moe; l++) {
                fprintf(f, "%s\"%d\": [", l ? ", " : "", e->moe_layer[l]);
                const int64_t *c = e->counts + ((size_t)i * e->n_moe + l) * e->n_experts;
                for (int x = 0; x < e->n_experts; x++) fprintf(f, "%s%lld", x ? ", " : "", (long long)c[x]);
                fprintf(f, "]");
            }
            fprintf(f, "}");
        }
        fprintf(f, "}");
    }
    if (e->drops && e->n_moe) {
        // Per domain: the same two maps, keyed by domain then layer.
        for (int pass = 0; pass < 2; pass++) {
            fprintf(f, ", \"%s\": {", pass ? "experts_per_token" : "dropped");
            for (int i = 0; i < e->n; i++) {
                fprintf(f, "%s\"%s\": {", i ? ", " : "", e->names[i]);
                for (int l = 0; l < e->n_moe; l++) {
                    const int64_t *d = e->drops + ((size_t)i * e->n_moe + l) * 2;
                    double v = pass ? (e->tokens[i] ? (double)d[0] / (double)e->tokens[i] : 0.0)
                                    : (d[0] ? (double)d[1] / (double)d[0] : 0.0);
                    fprintf(f, "%s\"%d\": %.6g", l ? ", " : "", e->moe_layer[l], v);
                }
                fprintf(f, "}");
            }
            fprintf(f, "}");
        }
    }
    fprintf(f, "}\n");
    if (fflush(f) || ferror(f)) return mo_errorf("metrics.jsonl: write failed: %s", strerror(errno));
    return 0;
}

void metrics_close(metrics_log *m) {
    if (m->f) fclose(m->f);
    m->f = NULL;
}
