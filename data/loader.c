// loader.c: weighted domain mixtures of random training windows; deterministic val passes.
#include "data/loader.h"

#include "data/tokens.h"
#include "engine/base/error.h"
#include "engine/base/hash.h"
#include "engine/base/rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[256];
    char path[4096];
    double weight;
    tokset_split train, val;
} domain;

struct loader {
    int n, B, T;
    domain d[LOADER_MAX_DOMAINS];
    double cum[LOADER_MAX_DOMAINS];  // cumulative normalized weights; cum[n-1] = 1
    char hash[64];
    mo_rng rng;
    uint64_t batches;
};

int loader_name_check(const char *name, const char *origin) {
    size_t n = strlen(name);
    int ok = n >= 1 && n <= LOADER_NAME_MAX;
    for (const char *p = name; ok && *p; p++)
        ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
             *p == '-' || *p == '.';
    if (!ok)
        return mo_errorf("%s: domain name '%.80s%s' (%zu bytes): use 1 to %d letters, digits, '.', '_' and '-'", origin,
                         name, n > 80 ? "..." : "", n, LOADER_NAME_MAX);
    return 0;
}

int loader_parse_spec(const char *spec, loader_spec *out) {
    memset(out, 0, sizeof *out);
    out->weight = 1.0;
    const char *eq = strchr(spec, '=');
    const char *path = spec;
    if (eq) {
        size_t nl = (size_t)(eq - spec);
        if (nl == 0 || nl >= sizeof out->name)
            return mo_errorf("--data '%s': the domain name before '=' must be 1..%zu characters", spec,
                             sizeof out->name - 1);
        memcpy(out->name, spec, nl);
        path = eq + 1;
    }
    size_t pl = strlen(path);
    // A trailing ":number" is the weight; a ':' followed by anything else belongs to the path.
    const char *colon = strrchr(path, ':');
    if (colon) {
        char *end;
        errno = 0;
        double w = strtod(colon + 1, &end);
        if (colon[1] && !*end && !errno) {
            if (!(w > 0) || !isfinite(w))
                return mo_errorf("--data '%s': the weight after ':' must be a positive number", spec);
            out->weight = w;
            pl = (size_t)(colon - path);
        }
    }
    if (pl == 0) return mo_errorf("--data '%s': no file (use name=path.h5[:weight])", spec);
    if (pl >= sizeof out->path) return mo_errorf("--data '%s': path too long", spec);
    memcpy(out->path, path, pl);
    return 0;
}

void loader_free(loader *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) {
        tokset_split_free(&l->d[i].train);
        tokset_split_free(&l->d[i].val);
    }
    free(l);
}

loader *loader_open(const loader_spec *specs, int n_specs, const loader_opts *o) {
    if (n_specs < 1 || n_specs > LOADER_MAX_DOMAINS) {
        mo_errorf("the loader takes 1..%d token sets (--data), got %d", LOADER_MAX_DOMAINS, n_specs);
        return NULL;
    }
    if (o->batch < 1 || o->seq_len < 1) {
        mo_errorf("the loader needs batch >= 1 and seq_len >= 1 (got %d and %d)", o->batch, o->seq_len);
        return NULL;
    }
    loader *l = calloc(1, sizeof *l);
    if (!l) {
        mo_errorf("out of memory");
        return NULL;
    }
    l->B = o->batch, l->T = o->seq_len;
    uint64_t cap = o->max_bytes ? o->max_bytes : (uint64_t)1 << 30, used = 0;
    for (int i = 0; i < n_specs; i++) {
        const loader_spec *s = &specs[i];
        domain *d = &l->d[i];
        tokset_info info;
        if (tokset_info_read(s->path, &info)) goto err;
        const char *want = o->expected_hash ? o->expected_hash : i ? l->hash : NULL;
        if (want && strcmp(want, info.tokenizer_hash) != 0) {
            const char *from = o->expected_hash ? (o->expected_from ? o->expected_from : "the model") : specs[0].path;
            mo_errorf("%s: tokenizer hash %s differs from %s's %s: prepare the data with the same tokenizer "
                      "(monolith data prepare --tokenizer ...)", s->path, info.tokenizer_hash, from, want);
            goto err;
        }
        if (!i) snprintf(l->hash, sizeof l->hash, "%s", info.tokenizer_hash);
        if (o->vocab_size > 0 && info.vocab_size > o->vocab_size) {
            mo_errorf("%s: vocab_size %lld is larger than the model's %lld", s->path, (long long)info.vocab_size,
                      (long long)o->vocab_size);
            goto err;
        }
        if (info.n_tokens[TOKSET_TRAIN] < (uint64_t)l->T + 1) {
            mo_errorf("%s: the train split has %llu tokens, fewer than seq_len + 1 = %d", s->path,
                      (unsigned long long)info.n_tokens[TOKSET_TRAIN], l->T + 1);
            goto err;
        }
        if (!s->name[0] && loader_name_check(info.domain, s->path)) goto err;  // files made before the rule
        snprintf(d->name, sizeof d->name, "%s", s->name[0] ? s->name : info.domain);
        snprintf(d->path, sizeof d->path, "%s", s->path);
        for (int j = 0; j < i; j++)
            if (!strcmp(l->d[j].name, d->name)) {
                mo_errorf("%s: domain name '%s' is used twice (name the sets: --data NAME=path.h5)", s->path,
                          d->name);
                goto err;
            }
        if (!(s->weight > 0) || !isfinite(s->weight)) {
            mo_errorf("%s: weight %g must be positive", s->path, s->weight);
            goto err;
        }
        d->weight = s->weight;
        l->n = i + 1;
        if (tokset_load_split(s->path, &info, TOKSET_TRAIN, cap - used, &d->train)) goto err;
        used += d->train.n * (uint64_t)d->train.width;
        if (tokset_load_split(s->path, &info, TOKSET_VAL, cap - used, &d->val)) goto err;
        used += d->val.n * (uint64_t)d->val.width;
    }
    // Weights relative to the largest: their sum cannot overflow (16 weights of 1e308
    // would sum to Inf and turn every share into 0).
    double mx = 0, total = 0, c = 0;
    for (int i = 0; i < l->n; i++) mx = l->d[i].weight > mx ? l->d[i].weight : mx;
    for (int i = 0; i < l->n; i++) total += l->d[i].weight / mx;
    for (int i = 0; i < l->n; i++) {
        c += l->d[i].weight / mx / total;
        l->cum[i] = c;
    }
    l->cum[l->n - 1] = 1.0;  // no rounding gap at the top
    mo_rng_seed(&l->rng, o->seed);
    return l;
err:
    loader_free(l);
    return NULL;
}

int loader_n_domains(const loader *l) { return l->n; }
const char *loader_domain(const loader *l, int d) { return d >= 0 && d < l->n ? l->d[d].name : NULL; }
const char *loader_tokenizer_hash(const loader *l) { return l->hash; }
uint64_t loader_train_tokens(const loader *l, int d) { return l->d[d].train.n; }

static void copy_window(const tokset_split *s, uint64_t off, int len, int *dst) {
    if (s->width == 2) {
        const uint16_t *p = (const uint16_t *)s->data + off;
        for (int i = 0; i < len; i++) dst[i] = p[i];
    } else {
        const uint32_t *p = (const uint32_t *)s->data + off;
        for (int i = 0; i < len; i++) dst[i] = (int)p[i];
    }
}

// One row's draws: the domain, then the window's offset (two numbers from the rng).
static const tokset_split *draw_row(loader *l, int *d_out, uint64_t *off) {
    double u = mo_rng_uniform(&l->rng);
    int d = 0;
    while (d < l->n - 1 && u >= l->cum[d]) d++;
    const tokset_split *s = &l->d[d].train;
    *off = mo_rng_below(&l->rng, s->n - (uint64_t)(l->T + 1) + 1);
    *d_out = d;
    return s;
}

void loader_next(loader *l, int *tokens, int *domains) {
    int W = l->T + 1;
    for (int b = 0; b < l->B; b++) {
        int d;
        uint64_t off;
        const tokset_split *s = draw_row(l, &d, &off);
        copy_window(s, off, W, tokens + (size_t)b * W);
        if (domains) domains[b] = d;
    }
    l->batches++;
}

void loader_skip(loader *l, uint64_t batches) {
    for (uint64_t k = 0; k < batches; k++) {
        for (int b = 0; b < l->B; b++) {
            int d;
            uint64_t off;
            draw_row(l, &d, &off);
        }
        l->batches++;
    }
}

uint64_t loader_hash(const loader *l, uint64_t h) {
    for (int i = 0; i < l->n; i++) {
        const domain *d = &l->d[i];
        h = mo_hash(h, d->name, strlen(d->name) + 1);
        h = mo_hash(h, &d->weight, sizeof d->weight);
        const tokset_split *sp[2] = {&d->train, &d->val};
        for (int k = 0; k < 2; k++) {
            h = mo_hash(h, &sp[k]->n, sizeof sp[k]->n);
            h = mo_hash(h, sp[k]->data, sp[k]->n * (uint64_t)sp[k]->width);
        }
    }
    return mo_hash(h, l->hash, strlen(l->hash));
}

void loader_get_state(const loader *l, loader_state *s) {
    memcpy(s->rng, l->rng.s, sizeof s->rng);
    s->batches = l->batches;
}

void loader_set_state(loader *l, const loader_state *s) {
    memcpy(l->rng.s, s->rng, sizeof s->rng);
    l->batches = s->batches;
}

uint64_t loader_val_windows(const loader *l, int d) {
    uint64_t n = l->d[d].val.n;
    return n < (uint64_t)l->T + 1 ? 0 : (n - 1) / (uint64_t)l->T;
}

int loader_val_batch(const loader *l, int d, uint64_t first, int *tokens) {
    uint64_t total = loader_val_windows(l, d);
    int rows = 0, W = l->T + 1;
    for (uint64_t w = first; w < total && rows < l->B; w++, rows++)
        copy_window(&l->d[d].val, w * (uint64_t)l->T, W, tokens + (size_t)rows * W);
    return rows;
}
