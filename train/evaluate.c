// evaluate.c: per-domain validation loss and domain x expert routing counts.
#include "train/evaluate.h"

#include "data/tokenizer.h"
#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "engine/checkpoint.h"
#include "train/options.h"
#include "train/route_map.h"
#include "train/state.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int eval_domain(const eval_bufs *b, int d, int64_t max_batches, double *loss, int64_t *n_tokens, int64_t *counts,
                int64_t *drops) {
    mo_model *m = b->model;
    const mo_config *c = &m->pt->cfg;
    const int B = m->B, T = m->T, E = c->n_experts;
    double sum = 0;
    int64_t n = 0;
    for (int64_t i = 0; max_batches <= 0 || i < max_batches; i++) {
        int rows = loader_val_batch(b->ld, d, (uint64_t)i * B, b->window);
        if (rows <= 0) break;
        for (int r = 0; r < B; r++)
            for (int j = 0; j < T; j++) {
                size_t at = (size_t)r * T + j;
                const int *w = b->window + (size_t)r * (T + 1);
                b->tokens[at] = r < rows ? w[j] : 0;
                b->targets[at] = r < rows ? w[j + 1] : -1;  // a short last batch: padding rows score nothing
                if (b->forced) b->forced[at] = b->expert_of ? b->expert_of[d] : d;
            }
        if (model_forward(m, b->params, b->tokens, b->targets)) return -1;
        sum += m->ce * m->n_targets;
        n += m->n_targets;
        // Only the real rows: padding rows route too, but are not the domain's tokens.
        int ml = 0;
        for (int l = 0; l < c->n_layers; l++) {
            if (!c->moe_layers[l]) continue;
            const int *ex = m->layer[l].r.experts, *sel = m->layer[l].r.sel;
            for (size_t s = 0; s < (size_t)rows * T * c->top_k; s++) {
                if (counts && ex[s] >= 0) counts[(size_t)ml * E + ex[s]]++;
                if (drops && sel[s] >= 0) drops[2 * ml]++, drops[2 * ml + 1] += ex[s] < 0;
            }
            ml++;
        }
    }
    *loss = n ? sum / (double)n : NAN;
    *n_tokens = n;
    return 0;
}

// The --seq a training checkpoint was trained with (from the run options in its /train),
// or 0 when it has none (written by init, compose, expert add, ...).
static int trained_seq(const char *path) {
    hid_t f = ckpt_open(path);
    if (f < 0) return 0;
    char *text = train_state_options(f);
    h5_close(f);
    if (!text) return 0;
    train_opts t;
    train_opts_defaults(&t);
    int seq = train_opts_load_ini_text(&t, text, path) ? 0 : t.seq;
    free(text);
    return seq;
}

loader *eval_loader_open(const mo_checkpoint *ck, const char *ck_name, const loader_spec *data, int n_data, int batch,
                         int seq, uint64_t seed) {
    tokenizer *tok = NULL;
    if (ck->tokenizer.present) {
        tok = tok_from_bytes(ck->tokenizer.tiktoken, ck->tokenizer.tiktoken_len, ck_name,
                             (const char *const *)ck->tokenizer.special_names, ck->tokenizer.special_ids,
                             ck->tokenizer.n_special);
        if (!tok) return NULL;
    }
    loader_opts lo = {.batch = batch, .seq_len = seq, .seed = seed, .expected_hash = tok ? tok_hash(tok) : NULL,
                      .expected_from = ck_name, .vocab_size = ck->table.cfg.vocab_size};
    loader *ld = loader_open(data, n_data, &lo);
    tok_free(tok);
    return ld;
}

int eval_checkpoint(const eval_opts *o, eval_report *r) {
    memset(r, 0, sizeof *r);
    mo_checkpoint ck = {0};
    mo_model model = {0};
    loader *ld = NULL;
    int *window = NULL, *tokens = NULL, *targets = NULL, *forced = NULL;
    if (!o->n_data) return mo_errorf("no data: give --data NAME=FILE.h5 (a token set) at least once");
    if (o->batch < 1) return mo_errorf("--batch must be at least 1, not %d", o->batch);
    if (o->max_batches < 0) return mo_errorf("--batches must be >= 0 (0: the whole val split)");
    if (ckpt_load(o->checkpoint, &ck)) return mo_errorf("--checkpoint: %s", mo_error());
    const mo_config *c = &ck.table.cfg;
    int T = o->seq, trained = o->seq ? 0 : trained_seq(o->checkpoint);
    r->seq_from = "--seq";
    if (!T && trained >= 2 && trained <= c->max_seq_len) T = trained, r->seq_from = "the run's --seq (/train)";
    if (!T) T = c->max_seq_len < 256 ? c->max_seq_len : 256, r->seq_from = "the model's max_seq_len, at most 256";
    r->seq = T;
    if (T < 1 || T > c->max_seq_len) {
        mo_errorf("--seq %d must be between 1 and the model's max_seq_len %d", T, c->max_seq_len);
        goto err;
    }
    ld = eval_loader_open(&ck, o->checkpoint, o->data, o->n_data, o->batch, T, 1);
    if (!ld) goto err;
    r->n_domains = loader_n_domains(ld);
    r->n_experts = c->n_experts;
    for (int l = 0; l < c->n_layers; l++)
        if (c->moe_layers[l]) r->moe_layer[r->n_moe++] = l;
    if (o->route_by_domain && (!r->n_moe || r->n_domains > c->n_experts)) {
        mo_errorf("--route-by-domain needs a MoE model with at least as many experts as domains (%d domains, %d "
                  "experts, %d MoE layers)",
                  r->n_domains, c->n_experts, r->n_moe);
        goto err;
    }
    for (int d = 0; d < r->n_domains; d++) {
        snprintf(r->names[d], sizeof r->names[d], "%s", loader_domain(ld, d));
        if (!loader_val_windows(ld, d)) {
            mo_errorf("--data %s: the val split is shorter than one window of %d tokens; lower --seq", r->names[d], T + 1);
            goto err;
        }
    }
    size_t N = (size_t)o->batch * T;
    r->counts = calloc((size_t)r->n_domains * (r->n_moe + 1) * r->n_experts, sizeof *r->counts);
    r->drops = calloc((size_t)r->n_domains * (r->n_moe + 1) * 2, sizeof *r->drops);
    window = malloc((size_t)o->batch * (T + 1) * sizeof *window);
    tokens = malloc(N * sizeof *tokens);
    targets = malloc(N * sizeof *targets);
    if (o->route_by_domain) forced = malloc(N * sizeof *forced);
    if (!r->counts || !r->drops || !window || !tokens || !targets || (o->route_by_domain && !forced)) {
        mo_errorf("out of memory");
        goto err;
    }
    if (model_alloc(&model, &ck.table, o->batch, T)) goto err;
    if (forced) model_set_forced_experts(&model, forced);
    int expert_of[LOADER_MAX_DOMAINS];
    if (o->route_by_domain) {
        const char *names[LOADER_MAX_DOMAINS];
        for (int d = 0; d < r->n_domains; d++) names[d] = r->names[d];
        if (route_map(&ck.experts, c->n_experts, r->n_domains, names, expert_of)) goto err;
    }
    eval_bufs b = {.model = &model, .params = ck.params, .ld = ld, .window = window, .tokens = tokens,
                   .targets = targets, .forced = forced, .expert_of = o->route_by_domain ? expert_of : NULL};
    for (int d = 0; d < r->n_domains; d++) {
        if (eval_domain(&b, d, o->max_batches, &r->loss[d], &r->tokens[d],
                        r->counts + (size_t)d * r->n_moe * r->n_experts, r->drops + (size_t)d * r->n_moe * 2))
            goto err;
        if (!isfinite(r->loss[d])) {
            mo_errorf("%s: the validation loss on %s is %s: the model's activations or logits overflow (its weights "
                      "are finite but too large?); this checkpoint cannot be evaluated",
                      o->checkpoint, r->names[d], isnan(r->loss[d]) ? "NaN" : "Inf");
            goto err;
        }
    }
    model_free(&model);
    loader_free(ld);
    ckpt_free(&ck);
    free(window), free(tokens), free(targets), free(forced);
    return 0;
err:
    if (model.arena) model_free(&model);
    loader_free(ld);
    ckpt_free(&ck);
    free(window), free(tokens), free(targets), free(forced);
    eval_report_free(r);
    return -1;
}

void eval_report_free(eval_report *r) {
    free(r->counts);
    free(r->drops);
    r->counts = NULL;
    r->drops = NULL;
}

double eval_routing_share(const eval_report *r, int d, int l, int e) {
    int from = l < r->n_moe ? l : 0, to = l < r->n_moe ? l + 1 : r->n_moe;
    double share = 0;
    for (int k = from; k < to; k++) {
        const int64_t *c = r->counts + ((size_t)d * r->n_moe + k) * r->n_experts;
        int64_t tot = 0;
        for (int x = 0; x < r->n_experts; x++) tot += c[x];
        share += tot ? (double)c[e] / (double)tot : 0;
    }
    return to > from ? share / (to - from) : 0;
}
