// trainer_open.c: a run's setup: every check before any work (options, tokenizer, data,
// memory, the same inputs on every rank), the model built or read, the arenas allocated,
// a --resume read back; and its close. The steps are in train/trainer.c.
#include "train/trainer_ctx.h"

#include "data/tokens.h"
#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "engine/base/hash.h"
#include "engine/base/rng.h"
#include "engine/comm.h"
#include "kernels/threads.h"
#include "train/route_map.h"
#include "train/rundir.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---------------------------------------------------------------------------- setup

static int validate_numbers(const train_opts *o) {
    if (o->batch < 1) return mo_errorf("--batch must be at least 1, not %d", o->batch);
    if (o->seq < 2) return mo_errorf("--seq must be at least 2, not %d", o->seq);
    if (o->grad_accum < 1) return mo_errorf("--grad-accum must be at least 1, not %d", o->grad_accum);
    if ((int64_t)o->batch * o->seq > INT_MAX / 16)
        return mo_errorf("--batch %d x --seq %d is too many tokens for one micro-batch; use --grad-accum", o->batch,
                         o->seq);
    if (o->weight_decay < 0) return mo_errorf("--weight-decay must be >= 0, not %g", o->weight_decay);
    if (!(o->beta1 >= 0 && o->beta1 < 1)) return mo_errorf("--beta1 must be in [0, 1), not %g", o->beta1);
    if (!(o->beta2 >= 0 && o->beta2 < 1)) return mo_errorf("--beta2 must be in [0, 1), not %g", o->beta2);
    if (!(o->eps > 0)) return mo_errorf("--eps must be positive, not %g", o->eps);
    if (o->clip < 0) return mo_errorf("--clip must be >= 0 (0: off), not %g", o->clip);
    if (o->router_ce < 0) return mo_errorf("--router-ce must be >= 0 (0: off), not %g", o->router_ce);
    if (o->supervise_routing && (!o->route_by_domain || o->router_ce <= 0))
        return mo_errorf("--supervise-routing needs --route-by-domain (the domains' experts) and --router-ce > 0 (the "
                         "term that teaches them); add both");
    if (o->keep < 1) return mo_errorf("--keep must be at least 1, not %d", o->keep);
    if (o->eval_every < 0) return mo_errorf("--eval-every must be >= 0, not %lld", (long long)o->eval_every);
    if (o->eval_batches < 1) return mo_errorf("--eval-batches must be at least 1, not %lld", (long long)o->eval_batches);
    if (o->save_every < 0) return mo_errorf("--save-every must be >= 0, not %lld", (long long)o->save_every);
    if (o->log_every < 1) return mo_errorf("--log-every must be at least 1, not %lld", (long long)o->log_every);
    if (o->expert_parallel < 0)
        return mo_errorf("--expert-parallel must be >= 0 (0 or 1: off), not %d", o->expert_parallel);
    if (o->threads < -1) return mo_errorf("--threads must be >= 0 (0: one per core), not %d", o->threads);
    if (!*o->out) return mo_errorf("--out is empty");
    if (o->n_data == 0) return mo_errorf("no training data: give --data NAME=FILE.h5 (a token set from monolith data prepare)");
    if (!!*o->preset + !!*o->init != 1)
        return mo_errorf("give exactly one of --preset NAME (a new model) and --init CKPT (start from a checkpoint)");
    return 0;
}

// The tokenizer blob for checkpoints, from the loaded tokenizer.
static int tokenizer_blob(const tokenizer *tok, mo_tokenizer_blob *b) {
    ckpt_tokenizer_free(b);
    size_t n;
    const uint8_t *bytes = tok_tiktoken_bytes(tok, &n);
    int ns = tok_n_specials(tok);
    b->tiktoken = malloc(n ? n : 1);
    b->special_names = calloc((size_t)ns + 1, sizeof *b->special_names);
    b->special_ids = calloc((size_t)ns + 1, sizeof *b->special_ids);
    if (!b->tiktoken || !b->special_names || !b->special_ids) return mo_errorf("out of memory");
    memcpy(b->tiktoken, bytes, n);
    b->tiktoken_len = n;
    b->n_special = ns;
    for (int i = 0; i < ns; i++) {
        b->special_names[i] = strdup(tok_special_name(tok, i));
        if (!b->special_names[i]) return mo_errorf("out of memory");
        b->special_ids[i] = tok_n_ranks(tok) + i;
    }
    b->present = 1;
    return 0;
}

// The tokenizer: --tokenizer, or the --init checkpoint's /tokenizer; both must agree.
static int open_tokenizer(trainer *t) {
    const train_opts *o = &t->o;
    tokenizer *from_ckpt = NULL;
    if (t->ck.tokenizer.present) {
        char origin[TRAIN_PATH_MAX + 16];
        snprintf(origin, sizeof origin, "%s:/tokenizer", *o->init ? o->init : "checkpoint");
        from_ckpt = tok_from_bytes(t->ck.tokenizer.tiktoken, t->ck.tokenizer.tiktoken_len, origin,
                                   (const char *const *)t->ck.tokenizer.special_names, t->ck.tokenizer.special_ids,
                                   t->ck.tokenizer.n_special);
        if (!from_ckpt) return -1;
    }
    if (*o->tokenizer) {
        t->tok = tok_open(o->tokenizer);
        if (!t->tok) {
            tok_free(from_ckpt);
            return mo_errorf("--tokenizer: %s", mo_error());
        }
        if (from_ckpt && strcmp(tok_hash(from_ckpt), tok_hash(t->tok))) {
            mo_errorf("--tokenizer %s (hash %s) differs from the one inside %s (hash %s); drop --tokenizer to use "
                      "the checkpoint's",
                      o->tokenizer, tok_hash(t->tok), o->init, tok_hash(from_ckpt));
            tok_free(from_ckpt);
            return -1;
        }
        tok_free(from_ckpt);
    } else if (from_ckpt) {
        t->tok = from_ckpt;
    } else {
        return mo_errorf("no tokenizer: give --tokenizer FILE.tiktoken (the one the token sets were made with)");
    }
    return 0;
}

// Every token set: readable, made with this tokenizer, long enough for one window.
static int check_token_sets(trainer *t) {
    const train_opts *o = &t->o;
    for (int i = 0; i < o->n_data; i++) {
        tokset_info info;
        const char *label = *o->data[i].name ? o->data[i].name : o->data[i].path;
        if (tokset_info_read(o->data[i].path, &info)) return mo_errorf("--data %s: %s", label, mo_error());
        if (strcmp(info.tokenizer_hash, tok_hash(t->tok)))
            return mo_errorf("--data %s: %s was made with another tokenizer (hash %s, this run's is %s); prepare it "
                             "again with this tokenizer",
                             label, o->data[i].path, info.tokenizer_hash, tok_hash(t->tok));
        if (info.vocab_size > t->ck.table.cfg.vocab_size)
            return mo_errorf("--data %s: token ids go up to %lld but the model's vocab_size is %d", label,
                             (long long)info.vocab_size - 1, t->ck.table.cfg.vocab_size);
        for (int s = 0; s < 2; s++)
            if (info.n_tokens[s] < (uint64_t)o->seq + 1)
                return mo_errorf("--data %s: the %s split of %s has %llu tokens, fewer than one window of --seq %d "
                                 "+ 1; lower --seq or prepare more text",
                                 label, s ? "val" : "train", o->data[i].path,
                                 (unsigned long long)info.n_tokens[s], o->seq);
    }
    return 0;
}

// Same tensors and shapes in two tables.
static int same_shapes(const mo_param_table *a, const mo_param_table *b) {
    if (a->n != b->n || a->numel != b->numel) return 0;
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->t[i].name, b->t[i].name) || memcmp(a->t[i].shape, b->t[i].shape, sizeof a->t[i].shape))
            return 0;
    return 1;
}

// Refuses, before anything is allocated, a run whose parameters, gradients, Adam state
// and activations (model_arena_bytes) do not fit in 90% of this machine's memory, with
// the estimate. Gradients and Adam moments count only what --train trains (their frozen
// pages are never touched), except the moments a --resume reads whole (`full_moments`);
// under --precision bf16 the bf16 copy of the weights counts too, and with `held` (the
// checkpoint read tensor by tensor: held_load) the frozen GEMM weights count only there.
static int check_memory(const mo_config *c, const train_opts *o, int full_moments, int held) {
    mo_param_table pt;
    if (params_table_build(&pt, c)) return -1;
    mo_model_opts mo = {.recompute = o->recompute, .expert_parallel = o->expert_parallel};
    double act = (double)model_arena_bytes_opts(&pt, o->batch, o->seq, &mo);
    train_mask mask;
    double trained = (double)pt.numel, fp32 = (double)pt.numel;
    if (freeze_parse(&pt, o->train, &mask) == 0) {  // a bad mask is reported later
        trained = (double)mask.numel;
        if (held) fp32 -= (double)model_bf16_frozen_numel(&pt, train_mask_any, &mask);
    }
    train_mask_free(&mask);
    double params = sizeof(float) * (fp32 + trained + 2.0 * (full_moments ? (double)pt.numel : trained));
    if (!strcmp(o->precision, "bf16")) params += 2.0 * (double)pt.numel;
    params_table_free(&pt);
    if (act == 0) return 0;  // an impossible batch: model_alloc says why
    double have = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (have > 0 && act + params > 0.9 * have)
        return mo_errorf("this run needs %.3g GB (parameters, gradients and Adam state %.3g GB + activations %.3g GB "
                         "for --batch %d --seq %d), more than 90%% of this machine's %.3g GB; use a smaller model, or "
                         "lower --batch/--seq and raise --grad-accum",
                         (act + params) / 1e9, params / 1e9, act / 1e9, o->batch, o->seq, have / 1e9);
    // Under ulimit -v, OpenBLAS would spin forever on a buffer it cannot get: refuse now.
    // (The threads' own OpenBLAS buffers were checked before threads_init; the ones for
    // BLAS calls inside parallel regions come on first use, after the arenas.)
    return threads_check_memory_limit(0, act + params + threads_count() * THREADS_LAZY_BYTES_PER_THREAD,
                                      "this run's parameters, Adam state, activations and per-thread BLAS buffers");
}

// A run whose checkpoint is read tensor by tensor once the model exists (allocate):
// one process (no expert parallelism) training a part under --precision bf16, where
// the frozen GEMM weights need no fp32 copy (docs/design.md section 10.1), unless
// --frozen-fp32 asks to keep it.
static int held_load(const train_opts *o) {
    return !strcmp(o->precision, "bf16") && strcmp(o->train, "all") && !o->frozen_fp32 && comm_size() == 1 &&
           o->expert_parallel <= 1;
}

// The model of a new run: --preset + overrides, or --init + overrides that keep shapes.
static int build_model(trainer *t) {
    const train_opts *o = &t->o;
    mo_config c;
    // A preset's vocabulary follows the tokenizer unless overridden: an override before
    // the run's own (a later one wins).
    config_override ov[TRAIN_MAX_OVERRIDES + 1];
    char vocab[16];
    int n = 0;
    if (*o->preset) {
        snprintf(vocab, sizeof vocab, "%d", tok_vocab_size(t->tok));
        ov[n++] = (config_override){"vocab_size", vocab};
    } else {
        if (held_load(o)) {
            hid_t f = ckpt_open(o->init);
            int rc = f < 0 || ckpt_load_meta_from(f, &t->ck);
            if (f >= 0) h5_close(f);
            if (rc) return mo_errorf("--init: %s", mo_error());
            snprintf(t->source, sizeof t->source, "%s", o->init);
        } else if (ckpt_load(o->init, &t->ck)) {
            return mo_errorf("--init: %s", mo_error());
        }
        c = t->ck.table.cfg;
    }
    for (int i = 0; i < o->n_overrides; i++) ov[n++] = (config_override){o->overrides[i].name, o->overrides[i].value};
    if (config_build(&c, *o->preset ? o->preset : NULL, ov, n)) return mo_errorf("model config: %s", mo_error());
    if (t->tok && c.vocab_size < tok_vocab_size(t->tok))  // --init checks after reading its tokenizer
        return mo_errorf("vocab_size %d is smaller than the tokenizer's %d tokens", c.vocab_size, tok_vocab_size(t->tok));
    if (check_memory(&c, o, 0, t->ck.sparse)) return -1;
    if (*o->preset) return ckpt_new(&t->ck, &c, o->seed, NULL);
    mo_param_table nt;
    if (params_table_build(&nt, &c)) return -1;
    int same = same_shapes(&nt, &t->ck.table);
    params_table_free(&nt);
    if (!same)
        return mo_errorf("the model overrides change tensor shapes of --init %s; only shape-free fields (aux_coef, "
                         "z_coef, top_k, norm_topk, rope_theta, max_seq_len, ...) can change",
                         o->init);
    t->ck.table.cfg = c;
    return 0;
}

// --moments-from CKPT: Adam's m and v from another run's training checkpoint whose tensors
// have the shapes of the model --init built, and the Adam steps behind them (*step0), so
// that the bias correction goes on where that run stopped. A stage that continues another
// run's training on other weights (pipeline plug's [all] after a MoE seed) then starts
// with moments that fit, not zeros whose first steps move every weight by the full rate.
static int load_moments(trainer *t, int64_t *step0) {
    const train_opts *o = &t->o;
    if (!*o->init) return mo_errorf("--moments-from %s needs --init (the run's weights)", o->moments_from);
    if (t->ranks > 1 || o->expert_parallel > 1)
        return mo_errorf("--moments-from: one process only (not under mpirun, not with --expert-parallel)");
    mo_checkpoint ck;
    train_state st;
    if (train_state_load(o->moments_from, &ck, &t->m, &t->v, &st)) return mo_errorf("--moments-from: %s", mo_error());
    const int same = same_shapes(&ck.table, &t->ck.table);
    ckpt_free(&ck);
    if (!same) {
        free(t->m), free(t->v);
        t->m = t->v = NULL;
        return mo_errorf("--moments-from %s: its tensors do not have the shapes of --init %s's model; take the moments "
                         "of a checkpoint of the same shape (e.g. the run --init's weights came from)",
                         o->moments_from, o->init);
    }
    *step0 = st.adam_step0 + st.step;
    return 0;
}

// The ranges of [at, end) (one tensor) the mask does not train, from mask range *k on
// (ranges are sorted, each inside one tensor): each added to `a`, with its values and
// then given back to the OS when `arena` is given, as zeros when it is NULL.
static int absent_untrained(const train_mask *mask, size_t *k, size_t at, size_t end, mo_absent *a, float *arena) {
    for (;; ++*k) {
        const int in = *k < mask->n && mask->r[*k].offset < end;
        const size_t stop = in ? mask->r[*k].offset : end;
        if (stop > at) {
            if (ckpt_absent_add(a, at, stop - at, arena ? arena + at : NULL)) return -1;
            if (arena) params_arena_release(arena, at, stop - at);
        }
        if (!in) return 0;
        at = mask->r[*k].offset + mask->r[*k].length;
    }
}

// A new run's moments of what it does not train are zeros that are never written; listed
// as absent zeros (mo_absent without a file), the saves write them without reading the
// moments' untouched pages, which would take memory (ckpt_write_tensors_from).
static int untrained_moments_zero(trainer *t) {
    const mo_param_table *pt = &t->ck.table;
    for (int g = 0; g < 2; g++)
        for (size_t i = 0, k = 0; i < (size_t)pt->n; i++)
            if (absent_untrained(&t->mask, &k, pt->t[i].offset, pt->t[i].offset + pt->t[i].numel, &t->absent_mv[g],
                                 NULL))
                return -1;
    return 0;
}

// read_held's callbacks, one per tensor read.
typedef struct {
    trainer *t;
    float *arena;     // the moments' arena (m or v) of the optim groups
    mo_absent *absent;
    int is_v;
    size_t k;         // the first mask range not yet passed
    const char *path;
} held_ctx;

// /model tensor i: its bf16-only parts (model_bf16_hold_frozen) listed as absent first.
static int held_weights(void *ctx, int i) {
    held_ctx *h = ctx;
    trainer *t = h->t;
    const mo_tensor *x = &t->ck.table.t[i];
    const int n = x->n_experts && t->model.trains && t->model.trains[i] ? x->n_experts : 1;
    const size_t len = n > 1 ? x->expert_numel : x->numel;
    for (int e = 0; e < n; e++) {
        const size_t o = x->offset + (size_t)e * len;
        if (model_bf16_only(&t->model, i, n > 1 ? e : -1) && ckpt_absent_add(&t->ck.absent, o, len, t->ck.params + o))
            return -1;
    }
    model_bf16_hold_frozen(&t->model, t->ck.params, i);
    return 0;
}

// /optim/m or v tensor i: what the mask does not train is listed as absent and dropped.
static int held_moments(void *ctx, int i) {
    held_ctx *h = ctx;
    const train_mask *mask = &h->t->mask;
    const mo_tensor *x = &h->t->ck.table.t[i];
    const size_t end = x->offset + x->numel;
    if (h->is_v)
        for (size_t j = x->offset; j < end; j++)
            if (!(h->arena[j] >= 0))
                return mo_errorf("%s: Adam's second moment /optim/v/%s is %g at element %zu, not >= 0; the optimizer "
                                 "state is damaged (start from its weights with --init instead)",
                                 h->path, x->name, (double)h->arena[j], j - x->offset);
    return absent_untrained(mask, &h->k, x->offset, end, h->absent, h->arena);
}

// Reads the tensors of t->source that ckpt_load_meta_from left out: the weights, with
// the frozen GEMM weights going to the model's bf16 copy alone, and when resumed the
// moments, of which only the trained ranges stay. What is dropped is listed (with its
// hash) for the saves, which copy it from the newest checkpoint.
static int read_held(trainer *t) {
    hid_t f = ckpt_open(t->source);
    if (f < 0) return -1;
    held_ctx h = {.t = t, .path = t->source};
    int rc = ckpt_read_tensors_each(f, "model", &t->ck.table, t->ck.params, held_weights, &h) ||
             ckpt_absent_source(&t->ck.absent, t->source);
    const int resumed = t->resumed;
    for (int g = 0; g < 2 && resumed && !rc; g++) {
        h = (held_ctx){.t = t, .arena = g ? t->dist.v : t->dist.m, .absent = &t->absent_mv[g], .is_v = g,
                       .path = t->source};
        rc = ckpt_read_tensors_each(f, g ? "optim/v" : "optim/m", &t->ck.table, h.arena, held_moments, &h) ||
             ckpt_absent_source(&t->absent_mv[g], t->source);
    }
    h5_close(f);
    return rc ? -1 : 0;
}

// Allocates the arenas, the model and the batch buffers; checks memory.
static int allocate(trainer *t) {
    const train_opts *o = &t->o;
    const mo_param_table *pt = &t->ck.table;
    if (check_memory(&pt->cfg, o, t->m != NULL, t->ck.sparse)) return -1;  // --resume and --init reach here first
    const size_t N = (size_t)o->batch * o->seq;
    // A mask that trains a part: a gradient arena whose frozen pages are never touched,
    // so it takes memory only for what trains (docs/design.md section 10.1); the moments
    // (train/dist.c) are written only where the mask trains. Several ranks all-reduce the
    // whole arena, so they keep a plain one.
    const int part = !train_mask_is_all(&t->mask, pt);
    // Expert parallel: the other ranks' expert slices of the gradients are never written either.
    t->sparse_grads = (part && t->ranks == 1) || o->expert_parallel > 1;
    if (!t->grads) t->grads = t->sparse_grads ? params_arena_alloc_sparse(pt) : params_arena_alloc(pt);
    if (!t->grads || dist_opt_init(&t->dist, pt, &t->mask, o->shard_optimizer, o->expert_parallel)) return -1;
    // Expert parallel: the experts other ranks hold are never read here; give their pages
    // back (rank 0 keeps the whole model: it writes the checkpoints).
    if (o->expert_parallel > 1 && t->rank != 0)
        for (int i = 0; i < pt->n; i++)
            for (int e = 0; e < pt->t[i].n_experts; e++)
                if (e / t->dist.ep_local != t->dist.ep_rank)
                    params_arena_release(t->ck.params, pt->t[i].offset + (size_t)e * pt->t[i].expert_numel,
                                         pt->t[i].expert_numel);
    if (t->m) {  // resumed: keep this rank's part
        dist_load_moments(&t->dist, t->m, t->v);
        free(t->m), free(t->v);
        t->m = t->v = NULL;
    }
    t->mb_loss = calloc((size_t)t->ranks * o->grad_accum * 5, sizeof *t->mb_loss);
    t->tokens = malloc(N * sizeof *t->tokens);
    t->targets = malloc(N * sizeof *t->targets);
    t->window = malloc((size_t)o->batch * (o->seq + 1) * sizeof *t->window);
    t->domain = calloc((size_t)o->batch, sizeof *t->domain);
    t->val_loss = calloc((size_t)o->n_data, sizeof *t->val_loss);
    t->val_tokens = calloc((size_t)o->n_data, sizeof *t->val_tokens);
    t->val_counts = calloc((size_t)o->n_data * (t->n_moe + 1) * pt->cfg.n_experts, sizeof *t->val_counts);
    t->counts = calloc((size_t)(t->n_moe + 1) * (size_t)pt->cfg.n_experts, sizeof *t->counts);
    t->drops = calloc((size_t)(t->n_moe + 1) * 2, sizeof *t->drops);
    t->bias_new = calloc((size_t)pt->cfg.n_experts + 1, sizeof *t->bias_new);
    t->val_drops = calloc((size_t)o->n_data * (t->n_moe + 1) * 2, sizeof *t->val_drops);
    if (o->route_by_domain) t->forced = malloc(N * sizeof *t->forced);
    if (!t->mb_loss || !t->tokens || !t->targets || !t->window || !t->domain ||
        !t->val_loss || !t->val_tokens || !t->val_counts || !t->counts || !t->drops || !t->val_drops || !t->bias_new ||
        (o->route_by_domain && !t->forced))
        return mo_errorf("out of memory for %zu MB of parameters, gradients and optimizer state",
                         4 * pt->numel * sizeof(float) >> 20);
    mo_model_opts mo = {.recompute = o->recompute, .expert_parallel = o->expert_parallel};
    if (model_alloc_opts(&t->model, pt, o->batch, o->seq, &mo)) return -1;
    if (part && model_set_trainable(&t->model, train_mask_any, &t->mask)) return -1;
    mo_precision prec;
    if (model_precision_parse(o->precision, "--precision", &prec) || model_set_precision(&t->model, prec)) return -1;
    if (t->ck.sparse && read_held(t)) return -1;
    if (part && t->ranks == 1 && o->expert_parallel <= 1 && !t->resumed && untrained_moments_zero(t)) return -1;
    if (o->route_by_domain) model_set_forced_experts(&t->model, t->forced), model_set_router_ce(&t->model, o->router_ce);
    model_set_forced_targets_only(&t->model, o->supervise_routing);
    return 0;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) free(s), s = NULL;
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

// --resume DIR: the folder's options and its newest checkpoint.
static int open_resume(trainer *t, const train_opts *cli) {
    char ini[TRAIN_PATH_MAX + 16], dir[TRAIN_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", cli->resume);
    snprintf(ini, sizeof ini, "%s/run.ini", dir);
    if (access(ini, R_OK))
        return mo_errorf("--resume %s: no run.ini there (not a run folder of monolith train)", dir);
    // Nothing in the folder changes before its lock is ours: another process may be
    // running it (train/run_lock.h).
    // Under MPI rank 0 alone writes the folder, so it alone takes the lock and cleans up.
    const int owner = comm_rank() == 0;
    if (owner && run_lock_acquire(dir, &t->lock)) return mo_errorf("--resume: %s", mo_error());
    train_opts_defaults(&t->o);
    t->o.router_ce = 0;  // a run.ini without the key predates --router-ce: that run trained without it
    if (train_opts_load_ini(&t->o, ini)) return -1;
    snprintf(t->o.out, sizeof t->o.out, "%s", dir);
    if (cli->threads >= 0) t->o.threads = cli->threads;  // else the count the run used (run.ini)
    rundir_state state;
    if (rundir_state_of(dir, &state) || (owner && rundir_clean_tmp(dir))) return -1;
    if (state != RUNDIR_CHECKPOINTED) {
        // Stopped before its first save: nothing to resume, so start it again from step 0
        // with its own settings (its tokenizer file included).
        t->restart = 1;
        snprintf(t->note, sizeof t->note,
                 "note: %s has no checkpoint yet (the run stopped before its first save); starting it again from "
                 "step 0 with its run.ini",
                 dir);
        return 0;
    }
    t->o.tokenizer[0] = 0;  // the checkpoint's own /tokenizer (the file may be gone by now)
    int64_t *steps;
    int n;
    if (rundir_steps(dir, &steps, &n)) return -1;
    if (!n) return mo_errorf("--resume %s: no checkpoint to resume from", dir);
    char path[TRAIN_PATH_MAX + 32];
    rundir_ckpt_path(dir, steps[n - 1], path, sizeof path);
    free(steps);
    if (held_load(&t->o) ? train_state_load_meta(path, &t->ck, &t->st) : train_state_load(path, &t->ck, &t->m, &t->v, &t->st))
        return mo_errorf("--resume: %s (delete that file to resume from the checkpoint before it)", mo_error());
    if (held_load(&t->o)) snprintf(t->source, sizeof t->source, "%s", path);
    if (t->st.sched.total != t->o.steps)
        return mo_errorf("--resume: %s is from a run of %lld steps but %s says %lld", path,
                         (long long)t->st.sched.total, ini, (long long)t->o.steps);
    // The global batch is the same whatever the number of ranks: its micro-batches are
    // re-split, grad_accum = micro-batches / ranks (the loader's one stream gives every
    // micro-batch the windows it had; train/dist.h).
    int64_t micro = t->st.micro_batches ? t->st.micro_batches : t->st.ranks * t->o.grad_accum;
    if (micro % comm_size())
        return mo_errorf("--resume %s: the run has %lld micro-batches per step (%lld ranks x --grad-accum %lld) and "
                         "%d ranks cannot split them evenly; resume with a number of ranks that divides %lld",
                         dir, (long long)micro, (long long)t->st.ranks, (long long)(micro / t->st.ranks),
                         comm_size(), (long long)micro);
    t->o.grad_accum = (int)(micro / comm_size());
    return 0;
}

// Under MPI every rank must train the same model on the same data with the same
// options; a rank started with another data file, config, tokenizer or binary would
// silently train something else. Each rank hashes its inputs (engine/base/hash.h) and
// all compare with rank 0's before any work.
static int check_same_inputs(trainer *t) {
    if (t->ranks == 1) return 0;
    enum { K = 4 };
    static const char *what[K] = {"options (run.ini, paths aside) and tokenizer", "initial model parameters",
                                  "training data (names, weights and tokens of every --data)", "binary"};
    uint64_t mine[K], *all = malloc(sizeof *all * K * (size_t)t->ranks);
    if (!all) return mo_errorf("out of memory");
    train_opts o = t->o;  // paths may differ between machines; the contents are compared
    for (int i = 0; i < o.n_data; i++) o.data[i].path[0] = 0;
    o.init[0] = o.tokenizer[0] = o.out[0] = 0;
    o.threads = 0;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return free(all), mo_errorf("out of memory");
    train_opts_write(&o, f);
    fprintf(f, "tokenizer %s\n", tok_hash(t->tok));
    fclose(f);
    mine[0] = mo_hash(MO_HASH_INIT, text, len);
    free(text);
    mine[1] = mo_hash(MO_HASH_INIT, t->ck.params, t->ck.table.numel * sizeof *t->ck.params);
    mine[2] = loader_hash(t->ld, MO_HASH_INIT);
    mine[3] = mo_hash_file(MO_HASH_INIT, "/proc/self/exe");
    if (comm_allgather_u64(mine, all, K)) return free(all), -1;
    for (int r = 1; r < t->ranks; r++)
        for (int k = 0; k < K; k++)
            if (all[(size_t)r * K + k] != all[k]) {
                mo_errorf("rank %d's %s differ from rank 0's (hash %016llx, rank 0: %016llx); every rank must run the "
                          "same monolith with the same options and the same files",
                          r, what[k], (unsigned long long)all[(size_t)r * K + k], (unsigned long long)all[k]);
                free(all);
                return -1;
            }
    free(all);
    return 0;
}

// A new run's folder: created if needed, locked before anything in it changes, refused
// when it holds checkpoints; a run.ini without any (a run stopped before its first save)
// is started again, with a note.
static int claim_new_folder(trainer *t) {
    const char *out = t->o.out;
    if (rundir_create(out) || run_lock_acquire(out, &t->lock)) return mo_errorf("--out: %s", mo_error());
    rundir_state state;
    if (rundir_state_of(out, &state)) return -1;
    if (state == RUNDIR_CHECKPOINTED)
        return mo_errorf("--out %s already holds a run; continue it with --resume %s, or choose another --out", out,
                         out);
    if (state == RUNDIR_STARTED)
        snprintf(t->note, sizeof t->note,
                 "note: %s holds a run that stopped before its first checkpoint; starting over in it from step 0",
                 out);
    return rundir_clean_tmp(out);
}

trainer *trainer_open(const train_opts *cli) {
    trainer *t = calloc(1, sizeof *t);
    if (!t) {
        mo_errorf("out of memory");
        return NULL;
    }
    t->lock = RUN_LOCK_NONE;
    int resume = *cli->resume != 0;
    int64_t step0 = 0;  // --moments-from: Adam's steps behind the moments
    if (resume) {
        if (open_resume(t, cli)) goto err;
        if (t->restart) resume = 0;  // the folder is claimed already; from here on a new run
    } else {
        t->o = *cli;
    }
    train_opts *o = &t->o;
    t->rank = comm_rank(), t->ranks = comm_size();
    if (validate_numbers(o)) goto err;
    o->warmup = train_opts_warmup(o);  // run.ini records the number the run used
    lr_schedule_kind kind;
    if (lr_schedule_parse_kind(o->schedule, &kind)) goto err;
    t->sched = (lr_schedule){.kind = kind, .lr = o->lr, .floor_frac = o->lr_floor, .warmup = o->warmup, .total = o->steps};
    if (lr_schedule_validate(&t->sched)) goto err;
    t->opt = adamw_defaults();
    t->opt.beta1 = o->beta1, t->opt.beta2 = o->beta2, t->opt.eps = o->eps, t->opt.weight_decay = o->weight_decay;
    int n_threads = o->threads > 0 ? o->threads : threads_cores();
    if (n_threads > threads_cores()) {  // more would only wait for each other (and cost memory)
        size_t k = strlen(t->note);
        snprintf(t->note + k, sizeof t->note - k, "%s--threads %d is more than the %d cores this process may use; using %d",
                 k ? "; " : "note: ", n_threads, threads_cores(), threads_cores());
        n_threads = threads_cores();
    }
    if (threads_check_memory_limit(n_threads, 0, NULL)) goto err;
    threads_init(n_threads);
    if (o->expert_parallel > 1 && t->ranks % o->expert_parallel) {
        if (resume)
            mo_errorf("--resume %s: the run trains with --expert-parallel %d (its run.ini) and %d rank%s cannot form "
                      "groups of %d; resume on a multiple of %d ranks",
                      o->out, o->expert_parallel, t->ranks, t->ranks == 1 ? "" : "s", o->expert_parallel,
                      o->expert_parallel);
        else
            mo_errorf("--expert-parallel %d: %d rank%s cannot form groups of %d; run a multiple of %d ranks (mpirun -np)",
                      o->expert_parallel, t->ranks, t->ranks == 1 ? "" : "s", o->expert_parallel, o->expert_parallel);
        goto err;
    }
    if (o->expert_parallel > 1 && comm_expert_groups(o->expert_parallel)) goto err;

    if (resume) {
        if (open_tokenizer(t)) goto err;
    } else {
        // A new run: the tokenizer first (a preset's vocab follows it), --init's checkpoint
        // may carry one too, so load the model first when --init.
        if (*o->init) {
            if (build_model(t) || open_tokenizer(t)) goto err;
            if (t->ck.table.cfg.vocab_size < tok_vocab_size(t->tok)) {
                mo_errorf("--init %s: vocab_size %d is smaller than the tokenizer's %d tokens", o->init,
                          t->ck.table.cfg.vocab_size, tok_vocab_size(t->tok));
                goto err;
            }
        } else {
            if (open_tokenizer(t) || build_model(t)) goto err;
        }
        if (tokenizer_blob(t->tok, &t->ck.tokenizer)) goto err;  // the checkpoint alone can generate
        if (*o->moments_from && load_moments(t, &step0)) goto err;
    }
    const mo_config *c = &t->ck.table.cfg;
    if (o->seq > c->max_seq_len) {
        mo_errorf("--seq %d is longer than the model's max_seq_len %d", o->seq, c->max_seq_len);
        goto err;
    }
    t->n_moe = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (c->moe_layers[l]) t->moe_layer[t->n_moe++] = l;
    if (o->route_by_domain) {
        if (!t->n_moe) {
            mo_errorf("--route-by-domain needs MoE layers; this model has none");
            goto err;
        }
        if (o->n_data > c->n_experts) {
            mo_errorf("--route-by-domain sends domain d to expert d: %d domains but only %d experts", o->n_data,
                      c->n_experts);
            goto err;
        }
    }
    if (o->expert_parallel > 1 && !t->n_moe) {
        mo_errorf("--expert-parallel %d: this model has no MoE layers whose experts could be split",
                  o->expert_parallel);
        goto err;
    }
    if (o->expert_parallel > 1 && c->n_experts % o->expert_parallel) {
        mo_errorf("--expert-parallel %d: the model's %d experts per MoE layer do not split evenly over groups of %d "
                  "ranks; use a group size that divides %d",
                  o->expert_parallel, c->n_experts, o->expert_parallel, c->n_experts);
        goto err;
    }
    if (check_token_sets(t)) goto err;
    if (freeze_parse(&t->ck.table, o->train, &t->mask)) goto err;
    if (resume && strcmp(t->st.mask, o->train)) {
        mo_errorf("--resume: the checkpoint was trained with --train %s but run.ini says %s", t->st.mask, o->train);
        goto err;
    }
    // Under MPI rank 0 claims the folder after every rank's inputs proved the same (below).
    if (!resume && !t->restart && t->ranks == 1 && claim_new_folder(t)) goto err;

    // Work starts here: loading data and allocating.
    loader_opts lo = {.batch = o->batch, .seq_len = o->seq, .seed = o->seed, .expected_hash = tok_hash(t->tok),
                      .expected_from = "the run's tokenizer", .vocab_size = c->vocab_size};
    t->ld = loader_open(o->data, o->n_data, &lo);
    if (!t->ld) goto err;
    for (int i = 0; i < o->n_data; i++) t->names[i] = loader_domain(t->ld, i);
    if (check_same_inputs(t)) goto err;
    if (!resume && !t->restart && t->ranks > 1 && t->rank == 0 && claim_new_folder(t)) goto err;
    if (o->route_by_domain && route_map(&t->ck.experts, c->n_experts, o->n_data, t->names, t->expert_of)) goto err;
    t->resumed = resume;
    if (allocate(t)) goto err;
    if (resume) {
        if (trainer_loader_state_set(t->ld, t->st.loader, t->st.n_loader)) goto err;
    } else {
        t->st = (train_state){.step = 0, .clip = o->clip, .seed = o->seed, .adam_step0 = step0};
        mo_rng r;
        mo_rng_seed(&r, o->seed ^ 0x7472616e);  // "tran": the loop's own stream
        memcpy(t->st.rng, r.s, sizeof r.s);
        snprintf(t->st.mask, sizeof t->st.mask, "%s", o->train);
        if (o->route_by_domain)
            for (int i = 0; i < o->n_data; i++)
                if (ckpt_experts_set(&t->ck.experts, t->expert_of[i], NULL, t->names[i], NULL)) goto err;
    }
    t->st.sched = t->sched;
    t->st.opt = t->opt;
    memcpy(t->noise.s, t->st.rng, sizeof t->noise.s);  // resumed: the stream where the checkpoint left it
    model_set_noise(&t->model, &t->noise);

    char ini[TRAIN_PATH_MAX + 16];
    snprintf(ini, sizeof ini, "%s/run.ini", o->out);
    if (!resume && t->rank == 0) {
        // Absolute paths, so that --resume works from any folder.
        train_opts abs = *o;
        char buf[PATH_MAX];
        for (int i = 0; i < abs.n_data; i++)
            if (realpath(abs.data[i].path, buf)) snprintf(abs.data[i].path, sizeof abs.data[i].path, "%s", buf);
        if (*abs.init && realpath(abs.init, buf)) snprintf(abs.init, sizeof abs.init, "%s", buf);
        if (*abs.moments_from && realpath(abs.moments_from, buf))
            snprintf(abs.moments_from, sizeof abs.moments_from, "%s", buf);
        if (*abs.tokenizer && realpath(abs.tokenizer, buf)) snprintf(abs.tokenizer, sizeof abs.tokenizer, "%s", buf);
        abs.threads = threads_count();  // --resume continues with the same count (same sums)
        if (train_opts_write_ini(&abs, ini)) goto err;
    }
    if (t->rank == 0) {
        t->options_ini = read_text(ini);
        if (metrics_open(&t->metrics, o->out, resume ? t->st.step : -1)) goto err;
    }

    size_t tps = (size_t)t->ranks * o->grad_accum * o->batch * o->seq;
    char ep[96] = "";
    if (o->expert_parallel > 1)
        snprintf(ep, sizeof ep, ", experts split over groups of %d ranks (%d per rank per MoE layer)",
                 o->expert_parallel, c->n_experts / o->expert_parallel);
    char ranks[160] = "";
    if (t->ranks > 1)
        snprintf(ranks, sizeof ranks, "%d ranks x ", t->ranks);
    snprintf(t->summary, sizeof t->summary,
             "%s: %zu parameters (%zu active per token), training %zu (%s); %d domain%s; %zu tokens/step "
             "(%s%d x %d x %d); %s step %lld of %lld; %s%d threads%s; run folder %s",
             *o->preset ? o->preset : "init", params_count_total(&t->ck.table), params_count_active(&t->ck.table),
             t->mask.numel, o->train, o->n_data, o->n_data == 1 ? "" : "s", tps, ranks, o->grad_accum, o->batch,
             o->seq, resume ? "resuming after" : "from", (long long)t->st.step, (long long)o->steps, ranks,
             threads_count(), t->dist.shard ? ", optimizer sharded" : ep, o->out);
    const size_t held = t->ck.sparse && t->model.trains ? model_bf16_frozen_numel(&t->ck.table, train_mask_any, &t->mask) : 0;
    if (held) {
        size_t k = strlen(t->summary);
        snprintf(t->summary + k, sizeof t->summary - k,
                 "; frozen GEMM weights kept as bf16 only (%zu parameters, %zu MB of fp32 not held; checkpoints copy "
                 "their values from %s, then from the newest checkpoint)",
                 held, held * sizeof(float) >> 20, t->source);
    }
    return t;
err:
    trainer_close(t);
    return NULL;
}

const char *trainer_summary(const trainer *t) { return t->summary; }
const char *trainer_note(const trainer *t) { return t->note; }
const char *trainer_out(const trainer *t) { return t->o.out; }
int trainer_route_by_domain(const trainer *t) { return t->o.route_by_domain; }

void trainer_close(trainer *t) {
    if (!t) return;
    metrics_close(&t->metrics);
    if (t->model.arena) model_free(&t->model);
    loader_free(t->ld);
    tok_free(t->tok);
    train_mask_free(&t->mask);
    if (t->sparse_grads) params_arena_free_sparse(&t->ck.table, t->grads);  // before the table goes
    else free(t->grads);
    ckpt_free(&t->ck);
    ckpt_absent_free(&t->absent_mv[0]), ckpt_absent_free(&t->absent_mv[1]);
    dist_opt_free(&t->dist);
    free(t->m), free(t->v), free(t->mb_loss), free(t->tokens), free(t->targets), free(t->window);
    free(t->domain), free(t->forced), free(t->val_loss), free(t->val_tokens), free(t->val_counts), free(t->counts), free(t->options_ini);
    free(t->drops), free(t->val_drops), free(t->bias_new);
    run_lock_release(&t->lock);  // last: everything of the run is written and closed
    free(t);
}
