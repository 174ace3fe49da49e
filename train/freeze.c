// freeze.c: parsing --train masks into sorted, disjoint, chunked ranges of the arena.
#include "train/freeze.h"

#include "engine/base/error.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t off, len;
} span;

typedef struct {
    span *v;
    size_t n, cap;
} spans;

static int spans_push(spans *s, size_t off, size_t len) {
    if (!len) return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        span *v = realloc(s->v, cap * sizeof *v);
        if (!v) return mo_errorf("out of memory building the --train mask");
        s->v = v, s->cap = cap;
    }
    s->v[s->n++] = (span){off, len};
    return 0;
}

static int cmp_span(const void *a, const void *b) {
    size_t x = ((const span *)a)->off, y = ((const span *)b)->off;
    return x < y ? -1 : x > y;
}

// Parses `a`, `a-b`, continued by ",<digit>...", into set[0..max). Advances *pp.
static int parse_list(const char **pp, unsigned char *set, int max, const char *noun, const char *spec) {
    const char *p = *pp;
    for (;;) {
        if (!isdigit((unsigned char)*p))
            return mo_errorf("--train '%s': expected %s numbers (like 3 or 0-2) at '%s'", spec, noun, p);
        char *end;
        long a = strtol(p, &end, 10), b = a;
        p = end;
        if (*p == '-') {
            p++;
            if (!isdigit((unsigned char)*p))
                return mo_errorf("--train '%s': expected a number after '-' in a %s range", spec, noun);
            b = strtol(p, &end, 10);
            p = end;
        }
        if (b < a) return mo_errorf("--train '%s': %s range %ld-%ld is backwards", spec, noun, a, b);
        if (b >= max)
            return mo_errorf("--train '%s': %s %ld is out of range: the model has %d %ss (0-%d)", spec, noun, b, max,
                             noun, max - 1);
        for (long i = a; i <= b; i++) set[i] = 1;
        if (*p == ',' && isdigit((unsigned char)p[1])) {
            p++;
            continue;
        }
        *pp = p;
        return 0;
    }
}

// Kinds selected by each plain word.
static int word_kinds(const char *w, size_t n, unsigned char kinds[PK_COUNT]) {
    memset(kinds, 0, PK_COUNT);
#define IS(s) (n == strlen(s) && !strncmp(w, s, n))
    if (IS("all")) memset(kinds, 1, PK_COUNT);
    else if (IS("attention")) kinds[PK_WQ] = kinds[PK_WK] = kinds[PK_WV] = kinds[PK_WO] = 1;
    else if (IS("norms")) kinds[PK_ATTN_NORM] = kinds[PK_FFN_NORM] = kinds[PK_NORM] = 1;
    else if (IS("embeddings")) kinds[PK_TOK_EMBEDDINGS] = kinds[PK_OUTPUT] = 1;
    else if (IS("router")) kinds[PK_ROUTER] = 1;
    else if (IS("shared")) kinds[PK_SHARED_W1] = kinds[PK_SHARED_W3] = kinds[PK_SHARED_W2] = 1;
    else if (IS("dense")) kinds[PK_DENSE_W1] = kinds[PK_DENSE_W3] = kinds[PK_DENSE_W2] = 1;
    else return -1;
#undef IS
    return 0;
}

// One item: word[=LIST][@layers=LIST]. Appends its spans; advances *pp past it.
static int parse_item(const mo_param_table *pt, const char **pp, const char *spec, spans *out,
                      unsigned char *experts, unsigned char *layers) {
    const mo_config *c = &pt->cfg;
    const char *p = *pp, *w = p;
    while (isalpha((unsigned char)*p) || *p == '_') p++;
    size_t wn = (size_t)(p - w);
    int is_experts = wn == 7 && !strncmp(w, "experts", 7);
    // router=LIST: rows LIST of the router alone (a new expert's row fitted on its own).
    int router_rows = wn == 6 && !strncmp(w, "router", 6) && *p == '=';
    unsigned char kinds[PK_COUNT];
    if (!wn || (!is_experts && word_kinds(w, wn, kinds)))
        return mo_errorf("--train '%s': unknown part '%.*s' (use all, attention, norms, embeddings, router, shared, "
                         "dense, experts, experts=3,5, router=4, ...@layers=0-3)",
                         spec, (int)(strcspn(w, ",") ? strcspn(w, ",") : 1), w);
    if (router_rows) is_experts = 1;
    if (is_experts) {
        if (config_n_moe_layers(c) == 0)
            return mo_errorf("--train '%s': this model has no MoE layers, so no experts to train", spec);
        memset(experts, *p == '=' ? 0 : 1, (size_t)c->n_experts);
        if (*p == '=') {
            p++;
            if (parse_list(&p, experts, c->n_experts, "expert", spec)) return -1;
        }
    } else if (*p == '=') {
        return mo_errorf("--train '%s': '%.*s' takes no '=' (only experts=LIST and router=LIST do)", spec, (int)wn, w);
    }
    int by_layer = 0;
    memset(layers, 1, (size_t)c->n_layers);
    if (*p == '@') {
        if (strncmp(p, "@layers=", 8))
            return mo_errorf("--train '%s': expected '@layers=LIST' at '%s'", spec, p);
        p += 8;
        memset(layers, 0, (size_t)c->n_layers);
        if (parse_list(&p, layers, c->n_layers, "layer", spec)) return -1;
        by_layer = 1;
    }
    if (*p && *p != ',') return mo_errorf("--train '%s': unexpected '%s'", spec, p);

    size_t before = out->n;
    for (int i = 0; i < pt->n; i++) {
        const mo_tensor *t = &pt->t[i];
        if (t->layer < 0 ? by_layer : !layers[t->layer]) continue;
        if (t->no_grad) continue;  // router_bias: moved by its own rule, never by the optimizer
        if (!is_experts) {
            if (kinds[t->kind] && spans_push(out, t->offset, t->numel)) return -1;
        } else if (t->n_experts) {
            if (router_rows) continue;
            for (int e = 0; e < t->n_experts; e++)
                if (experts[e] && spans_push(out, t->offset + (size_t)e * t->expert_numel, t->expert_numel)) return -1;
        } else if (t->kind == PK_ROUTER) {
            size_t row = (size_t)t->shape[1];
            for (int e = 0; e < (int)t->shape[0]; e++)
                if (experts[e] && spans_push(out, t->offset + (size_t)e * row, row)) return -1;
        }
    }
    if (out->n == before)
        return mo_errorf("--train '%s': '%.*s' selects no parameter of this model (no such tensors in the chosen "
                         "layers)",
                         spec, (int)(p - *pp), *pp);
    *pp = p;
    return 0;
}

// The tensor holding arena element `i` (tensors are contiguous in table order).
static int tensor_of(const mo_param_table *pt, size_t i) {
    int lo = 0, hi = pt->n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (pt->t[mid].offset <= i) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

int freeze_parse(const mo_param_table *pt, const char *spec, train_mask *out) {
    memset(out, 0, sizeof *out);
    spans s = {0};
    unsigned char *experts = calloc((size_t)pt->cfg.n_experts + 1, 1);
    unsigned char *layers = calloc((size_t)pt->cfg.n_layers + 1, 1);
    if (!experts || !layers) {
        mo_errorf("out of memory parsing --train");
        goto err;
    }
    if (!spec || !*spec) {
        mo_errorf("--train is empty (use all, or a list such as router,experts=3)");
        goto err;
    }
    for (const char *p = spec;;) {
        if (parse_item(pt, &p, spec, &s, experts, layers)) goto err;
        if (!*p) break;
        p++;  // the ',' between items
    }
    // Sort and merge overlapping or touching spans.
    qsort(s.v, s.n, sizeof *s.v, cmp_span);
    size_t m = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (m && s.v[i].off <= s.v[m - 1].off + s.v[m - 1].len) {
            size_t end = s.v[i].off + s.v[i].len, cur = s.v[m - 1].off + s.v[m - 1].len;
            if (end > cur) s.v[m - 1].len = end - s.v[m - 1].off;
        } else {
            s.v[m++] = s.v[i];
        }
    }
    // Split at tensor boundaries (the decay flag is per tensor) and into chunks.
    // Each span splits at most len/CHUNK + 1 times, plus once per tensor boundary, and the
    // spans are disjoint, so all of them cross at most pt->n boundaries together.
    size_t cap = (size_t)pt->n + 1;
    for (size_t i = 0; i < m; i++) cap += s.v[i].len / FREEZE_CHUNK + 2;
    out->r = malloc(cap * sizeof *out->r);
    if (!out->r) {
        mo_errorf("out of memory building the --train mask");
        goto err;
    }
    for (size_t i = 0; i < m; i++) {
        size_t a = s.v[i].off, end = s.v[i].off + s.v[i].len;
        while (a < end) {
            const mo_tensor *t = &pt->t[tensor_of(pt, a)];
            size_t b = t->offset + t->numel < end ? t->offset + t->numel : end;
            // Chunks end at multiples of FREEZE_CHUNK of the arena, so a range never
            // straddles an optimizer shard's edge (train/dist.h) and every way of
            // splitting the arena sums the same per-range norms.
            size_t edge = (a / FREEZE_CHUNK + 1) * FREEZE_CHUNK;
            if (b > edge) b = edge;
            out->r[out->n++] = (adamw_range){.offset = a, .length = b - a, .decay = !t->is_norm};
            out->numel += b - a;
            a = b;
        }
    }
    free(s.v), free(experts), free(layers);
    return 0;
err:
    free(s.v), free(experts), free(layers);
    train_mask_free(out);
    return -1;
}

void train_mask_free(train_mask *m) {
    free(m->r);
    memset(m, 0, sizeof *m);
}

int train_mask_has(const train_mask *m, size_t i) {
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->r[mid].offset + m->r[mid].length <= i) lo = mid + 1;
        else hi = mid;
    }
    return lo < m->n && m->r[lo].offset <= i;
}

int train_mask_any(void *mask, size_t offset, size_t length) {
    const train_mask *m = mask;
    if (!length) return 0;
    // The first range ending after `offset`; it trains part of the span if it starts before its end.
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->r[mid].offset + m->r[mid].length <= offset) lo = mid + 1;
        else hi = mid;
    }
    return lo < m->n && m->r[lo].offset < offset + length;
}

void train_mask_zero(const train_mask *m, float *grads) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < m->n; i++) memset(grads + m->r[i].offset, 0, m->r[i].length * sizeof *grads);
}

int train_mask_is_all(const train_mask *m, const mo_param_table *pt) {
    size_t trainable = 0;  // buffers (router_bias) are never in a mask
    for (int i = 0; i < pt->n; i++)
        if (!pt->t[i].no_grad) trainable += pt->t[i].numel;
    return m->numel == trainable;
}
