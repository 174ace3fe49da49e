// trainer.c: the step loop, evaluation, saving; setup is in train/trainer_open.c.
#include "train/trainer_ctx.h"

#include "engine/base/clock.h"
#include "engine/base/error.h"
#include "engine/base/hash.h"
#include "engine/base/rng.h"
#include "engine/comm.h"
#include "train/evaluate.h"
#include "train/rundir.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The loader's state as the u64 list /train stores (train/trainer_ctx.h).
void trainer_loader_state_get(const loader *l, uint64_t *v, int *n) {
    loader_state s;
    loader_get_state(l, &s);
    memcpy(v, s.rng, sizeof s.rng);
    v[4] = s.batches;
    *n = 5;
}

int trainer_loader_state_set(loader *l, const uint64_t *v, int n) {
    if (n != 5) return mo_errorf("the checkpoint's /train loader_state has %d values, expected 5", n);
    loader_state s;
    memcpy(s.rng, v, sizeof s.rng);
    s.batches = v[4];
    loader_set_state(l, &s);
    return 0;
}

// ---------------------------------------------------------------------------- steps

// Inputs and targets of a [B, T+1] window batch; the forced expert of each row.
static void split_window(trainer *t) {
    const int B = t->o.batch, T = t->o.seq;
    for (int b = 0; b < B; b++) {
        const int *w = t->window + (size_t)b * (T + 1);
        for (int i = 0; i < T; i++) {
            t->tokens[(size_t)b * T + i] = w[i];
            t->targets[(size_t)b * T + i] = w[i + 1];
            if (t->forced) t->forced[(size_t)b * T + i] = t->expert_of[t->domain[b]];
        }
    }
}

static int all_finite(const float *x, size_t n);
static int params_finite(const trainer *t);

// Every rank ends each step with the same parameters (train/dist.h); before a save the
// ranks compare a hash of them, so a divergence stops the run instead of being saved.
static int check_same_params(trainer *t) {
    if (t->ranks == 1) return 0;
    uint64_t h = MO_HASH_INIT, *all;
    const mo_param_table *pt = &t->ck.table;
    for (int i = 0; i < pt->n; i++)  // expert parallel: each rank's experts are its own
        if (t->o.expert_parallel <= 1 || !pt->t[i].n_experts)
            h = mo_hash(h, t->ck.params + pt->t[i].offset, pt->t[i].numel * sizeof *t->ck.params);
    if (!(all = malloc(sizeof *all * (size_t)t->ranks))) return mo_errorf("out of memory");
    if (comm_allgather_u64(&h, all, 1)) return free(all), -1;
    for (int r = 1; r < t->ranks; r++)
        if (all[r] != all[0]) {
            free(all);
            return mo_errorf("step %lld: rank %d's parameters differ from rank 0's; not saved (a bug: please report "
                             "it with the run's options)",
                             (long long)t->st.step, r);
        }
    free(all);
    return 0;
}

static int save(trainer *t, const train_hooks *h) {
    char path[TRAIN_PATH_MAX + 32];
    if (!params_finite(t))  // never write a checkpoint no reader would take
        return mo_errorf("step %lld: a parameter is NaN or Inf; not saved; resume from the newest checkpoint in %s "
                         "with a lower --lr",
                         (long long)t->st.step, t->o.out);
    rundir_ckpt_path(t->o.out, t->st.step, path, sizeof path);
    trainer_loader_state_get(t->ld, t->st.loader, &t->st.n_loader);
    memcpy(t->st.rng, t->noise.s, sizeof t->st.rng);
    t->st.ranks = t->ranks;
    t->st.micro_batches = (int64_t)t->ranks * t->o.grad_accum;
    if (check_same_params(t)) return -1;
    // One file, written by rank 0: sharded moments, and under expert parallelism the
    // other ranks' trained expert slices (weights, m, v), are gathered to it first.
    if (dist_gather_experts(&t->dist, (float *const[]){t->ck.params, t->dist.m, t->dist.v}, 3)) return -1;
    float *m = t->dist.m, *v = t->dist.v;
    if (t->dist.shard) {
        m = v = NULL;
        if (t->rank == 0 && (!(m = params_arena_alloc(&t->ck.table)) || !(v = params_arena_alloc(&t->ck.table)))) {
            free(m), free(v);
            return mo_errorf("out of memory gathering the optimizer state for the checkpoint");
        }
        if (dist_gather_moments(&t->dist, m, v)) return free(m), free(v), -1;
    }
    if (t->rank != 0) return 0;
    int rc = train_state_save_from(path, &t->ck, m, v, t->absent_mv, &t->st, t->options_ini);
    if (t->dist.shard) free(m), free(v);
    if (rc) {
        // Disk full, quota, I/O error: the save left nothing behind (h5_finish), so say
        // which checkpoint the run can go on from.
        char why[1024];
        snprintf(why, sizeof why, "%s", mo_error());
        int64_t *steps = NULL;
        int n = 0;
        if (rundir_steps(t->o.out, &steps, &n) == 0 && n > 0) {
            char last[TRAIN_PATH_MAX + 32];
            rundir_ckpt_path(t->o.out, steps[n - 1], last, sizeof last);
            mo_errorf("saving step %lld failed: %s; the last complete checkpoint %s (step %lld) is intact: free "
                      "space, then monolith train --resume %s",
                      (long long)t->st.step, why, last, (long long)steps[n - 1], t->o.out);
        } else {
            mo_errorf("saving step %lld failed: %s; no checkpoint of this run was saved before", (long long)t->st.step,
                      why);
        }
        free(steps);
        return -1;
    }
    // What this run does not hold is copied from the newest checkpoint from now on (the
    // file read at the start may be pruned, or be replaced by the user).
    if (t->ck.absent.n && ckpt_absent_source(&t->ck.absent, path)) return -1;
    for (int g = 0; g < 2; g++)  // (a list of zeros stays one)
        if (t->absent_mv[g].from && ckpt_absent_source(&t->absent_mv[g], path)) return -1;
    if (rundir_link_latest(t->o.out, t->st.step) || rundir_prune(t->o.out, t->o.keep)) return -1;
    if (h && h->on_save) h->on_save(h->ctx, path, t->st.step);
    return 0;
}

// Validation loss and routing of every domain (train/evaluate.h).
static int evaluate(trainer *t, const train_hooks *h) {
    const int nd = t->o.n_data, E = t->ck.table.cfg.n_experts;
    eval_bufs b = {.model = &t->model, .params = t->ck.params, .ld = t->ld, .window = t->window,
                   .tokens = t->tokens, .targets = t->targets, .forced = t->forced, .expert_of = t->expert_of};
    memset(t->val_counts, 0, (size_t)nd * t->n_moe * E * sizeof *t->val_counts);
    memset(t->val_drops, 0, (size_t)nd * t->n_moe * 2 * sizeof *t->val_drops);
    model_set_noise(&t->model, NULL);  // evaluation never adds router noise
    int rc = 0;
    for (int d = 0; d < nd && !rc; d++)
        rc = eval_domain(&b, d, t->o.eval_batches, &t->val_loss[d], &t->val_tokens[d],
                         t->val_counts + (size_t)d * t->n_moe * E, t->val_drops + (size_t)d * t->n_moe * 2);
    model_set_noise(&t->model, &t->noise);
    if (rc) return -1;
    metrics_eval me = {.step = t->st.step, .n = nd, .names = t->names, .loss = t->val_loss, .tokens = t->val_tokens,
                       .n_moe = t->n_moe, .n_experts = E, .moe_layer = t->moe_layer, .counts = t->val_counts,
                       .drops = t->val_drops};
    if (t->rank == 0 && metrics_write_eval(&t->metrics, &me)) return -1;
    if (h && h->on_eval) h->on_eval(h->ctx, t->st.step, nd, t->names, t->val_loss);
    return 0;
}

// The parameters are finite. A run read tensor by tensor (held_load) checks only what
// changes, the trained ranges and the buffers (router_bias): the rest was checked when
// read, and reading the pages it gave back would take their memory again.
static int params_finite(const trainer *t) {
    const mo_param_table *pt = &t->ck.table;
    if (!t->ck.sparse) return all_finite(t->ck.params, pt->numel);
    for (size_t i = 0; i < t->mask.n; i++)
        if (!all_finite(t->ck.params + t->mask.r[i].offset, t->mask.r[i].length)) return 0;
    for (int i = 0; i < pt->n; i++)
        if (pt->t[i].no_grad && !all_finite(t->ck.params + pt->t[i].offset, pt->t[i].numel)) return 0;
    return 1;
}

static int all_finite(const float *x, size_t n) {
    int ok = 1;
#pragma omp parallel for reduction(&& : ok)
    for (size_t i = 0; i < n; i++) ok = ok && isfinite(x[i]);
    return ok;
}

// Test hook (SQLite-style fault injection): MONOLITH_FAULT_NAN_STEP=N poisons the
// gradients of step N, to exercise the NaN/Inf guard.
static int64_t fault_nan_step(void) {
    const char *s = getenv("MONOLITH_FAULT_NAN_STEP");
    return s ? strtoll(s, NULL, 10) : -1;
}

// The router noise of n micro-batches that other ranks train: every training forward
// draws n_moe * N * E normals of two uniforms each, so skipping them keeps each rank's
// stream where one process with --grad-accum ranks x A would have it.
static void noise_skip(trainer *t, int n) {
    const mo_config *c = &t->ck.table.cfg;
    if (c->router_noise <= 0) return;
    const uint64_t draws = (uint64_t)n * t->n_moe * t->o.batch * t->o.seq * c->n_experts * 2;
    for (uint64_t i = 0; i < draws; i++) mo_rng_u64(&t->noise);
}

// Bias balancing (balance = bias), once after each optimizer step: every MoE layer's
// router_bias moves by router_bias_update from t->counts, the slots each expert ran in the
// whole global batch (every micro-batch; trainer_run has all-reduced it over the ranks,
// so every rank makes the same update). This is the one place the bias reads the batch.
// An expert whose router row is frozen (--train) keeps its bias.
static void balance_step(trainer *t) {
    const mo_param_table *pt = &t->ck.table;
    const mo_config *c = &pt->cfg;
    if (c->balance != MO_BALANCE_BIAS) return;
    const int E = c->n_experts;
    for (int i = 0; i < t->n_moe; i++) {
        const mo_layer_ids *L = &pt->layer[t->moe_layer[i]];
        float *b = params_at(pt, t->ck.params, L->router_bias), *upd = t->bias_new;
        memcpy(upd, b, (size_t)E * sizeof *upd);
        router_bias_update(upd, t->counts + (size_t)i * E, E, c->bias_rate);
        const size_t row0 = pt->t[L->router].offset;
        for (int e = 0; e < E; e++)
            if (train_mask_has(&t->mask, row0 + (size_t)e * c->d_model)) b[e] = upd[e];
    }
}

// One step's micro-batches on this rank: the global batch is ranks x A micro-batches of
// the loader's one stream, rank r training numbers r*A .. r*A + A - 1 and skipping the
// rest, so every rank's loader ends the step in the same state and the windows are those
// of one process with --grad-accum ranks x A. Loss terms of micro-batch a go to
// t->mb_loss[(r*A + a)*5 ..]; gradients are scaled by 1 / (ranks x A).
static int micro_batches(trainer *t) {
    const int A = t->o.grad_accum, AG = t->ranks * A, E = t->ck.table.cfg.n_experts;
    memset(t->mb_loss, 0, (size_t)AG * 5 * sizeof *t->mb_loss);
    loader_skip(t->ld, (uint64_t)t->rank * A);
    noise_skip(t, t->rank * A);
    for (int a = 0; a < A; a++) {
        loader_next(t->ld, t->window, t->domain);
        split_window(t);
        if (model_forward(&t->model, t->ck.params, t->tokens, t->targets)) return -1;
        const mo_model *m = &t->model;
        double *l = t->mb_loss + ((size_t)t->rank * A + a) * 5;
        l[0] = m->loss / AG, l[1] = m->ce / AG, l[2] = m->aux / AG, l[3] = m->z / AG, l[4] = m->router_ce / AG;
        // The step is refused below; nothing else to compute (expert parallel: backward's
        // exchanges are collective, so every rank goes on).
        if (!isfinite(m->loss) && t->o.expert_parallel <= 1) return 0;
        // The first micro-batch sets the gradients (model_backward_first), the others add;
        // a sparse arena was zeroed where it trains (dist_zero_grads) and only adds.
        const float scale = 1.0f / (float)AG;
        if (a == 0 && !t->sparse_grads ? model_backward_first(&t->model, t->ck.params, t->grads, scale)
                                       : model_backward(&t->model, t->ck.params, t->grads, scale))
            return -1;
        for (int l2 = 0; l2 < t->n_moe; l2++) {
            const mo_router_stats *rs = &t->model.layer[t->moe_layer[l2]].stats;
            for (int e = 0; e < E; e++) t->counts[(size_t)l2 * E + e] += rs->counts[e];
            t->drops[2 * l2] += rs->n_chosen, t->drops[2 * l2 + 1] += rs->n_dropped;
        }
    }
    loader_skip(t->ld, (uint64_t)(t->ranks - 1 - t->rank) * A);
    noise_skip(t, (t->ranks - 1 - t->rank) * A);
    return 0;
}

int trainer_run(trainer *t, const train_hooks *h) {
    const train_opts *o = &t->o;
    const int A = o->grad_accum, AG = t->ranks * A, E = t->ck.table.cfg.n_experts;
    const int64_t tokens_per_step = (int64_t)AG * o->batch * o->seq;
    const int64_t fault = fault_nan_step();
    uint64_t loader_before[TRAIN_LOADER_STATE_MAX];
    int n_before = 0;
    double t0 = now_seconds();
    int64_t first = t->st.step;
    if (t->rank != 0) h = &(train_hooks){.stop = h ? h->stop : NULL};  // only rank 0 reports
    double *mine = NULL;
    if (t->ranks > 1 && !(mine = malloc((size_t)A * 5 * sizeof *mine))) return mo_errorf("out of memory");

    while (t->st.step < o->steps) {
        int stop = h && h->stop && *h->stop;
        if (t->ranks > 1 && comm_allreduce_max_int(&stop)) goto fail;  // all ranks stop at the same step
        if (stop) {
            free(mine);
            return save(t, h) ? -1 : 1;
        }
        double ts = now_seconds();
        trainer_loader_state_get(t->ld, loader_before, &n_before);
        const mo_rng noise_before = t->noise;
        double lr = lr_schedule_at(&t->sched, t->st.step);
        // Frozen (or other ranks') gradients are never read; a dense arena is set by the
        // first micro-batch's backward (model_backward_first), not zeroed here.
        if (t->sparse_grads) dist_zero_grads(&t->dist, t->grads);
        memset(t->counts, 0, (size_t)t->n_moe * E * sizeof *t->counts);
        memset(t->drops, 0, (size_t)t->n_moe * 2 * sizeof *t->drops);
        if (micro_batches(t)) goto fail;
        if (t->ranks > 1) {  // the whole global batch's loss terms, on every rank
            memcpy(mine, t->mb_loss + (size_t)t->rank * A * 5, (size_t)A * 5 * sizeof *mine);
            if (comm_allgather_f64(mine, t->mb_loss, (size_t)A * 5) ||
                comm_allreduce_i64(t->counts, (size_t)t->n_moe * E) ||
                comm_allreduce_i64(t->drops, (size_t)t->n_moe * 2))
                goto fail;
        }
        // Summed in the global micro-batch order: the numbers one process with --grad-accum AG adds.
        double loss = 0, ce = 0, aux = 0, z = 0, rce = 0, norm = 0;
        for (int g = 0; g < AG; g++) {
            const double *l = t->mb_loss + (size_t)g * 5;
            loss += l[0], ce += l[1], aux += l[2], z += l[3], rce += l[4];
        }
        if (isfinite(loss)) {
            if (dist_sync_grads(&t->dist, t->grads)) goto fail;
            if (t->st.step + 1 == fault && t->dist.lo == 0) t->grads[0] = NAN;
            int err;
            norm = dist_clip(&t->dist, t->grads, o->clip, &t->opt.grad_scale, &err);
            if (err) goto fail;
        }
        if (!isfinite(loss) || !isfinite(norm)) {
            // Nothing of this step has been applied: the state is step `step`'s.
            free(mine);
            const char *what = !isfinite(loss) ? "loss" : "gradient norm";
            double bad = !isfinite(loss) ? loss : norm;
            if (!params_finite(t))
                return mo_errorf("step %lld: the %s is %s and the parameters are no longer finite; nothing saved; "
                                 "resume from the newest checkpoint in %s with a lower --lr",
                                 (long long)t->st.step + 1, what, isnan(bad) ? "NaN" : "Inf", o->out);
            if (trainer_loader_state_set(t->ld, loader_before, n_before)) return -1;
            t->noise = noise_before;
            char path[TRAIN_PATH_MAX + 32];
            rundir_ckpt_path(o->out, t->st.step, path, sizeof path);
            if (save(t, h)) return -1;
            return mo_errorf("step %lld: the %s is %s; stopped and saved the last good state (step %lld) to %s; "
                             "lower --lr, raise --warmup or --clip less, and start again from it with --init",
                             (long long)t->st.step + 1, what, isnan(bad) ? "NaN" : "Inf", (long long)t->st.step, path);
        }
        t->opt.lr = lr;
        t->opt.t = t->st.adam_step0 + t->st.step + 1;
        // One process: AdamW's pass also writes the bf16 copy the next forward reads.
        mo_bf16 *wb = t->ranks == 1 ? model_bf16_weights(&t->model) : NULL;
        if (dist_apply(&t->dist, t->ck.params, t->grads, wb, &t->opt)) goto fail;
        if (wb) model_bf16_weights_current(&t->model);
        balance_step(t);  // t->counts: this global batch's slots per expert, all-reduced above
        t->st.step++;
        t->st.tokens_seen += tokens_per_step;

        double now = now_seconds(), dt = now - ts, el = now - t0;
        int last = t->st.step == o->steps;
        if (t->rank == 0) {
            train_progress p = {.step = t->st.step, .total = o->steps, .tokens_seen = t->st.tokens_seen, .loss = loss,
                                .ce = ce, .aux = aux, .z = z, .router_ce = rce, .lr = lr, .grad_norm = norm,
                                .tokens_per_s = dt > 0 ? tokens_per_step / dt : 0, .elapsed_s = el};
            p.eta_s = el / (double)(t->st.step - first) * (double)(o->steps - t->st.step);
            metrics_step ms = {.step = t->st.step, .tokens_seen = t->st.tokens_seen, .loss = loss, .ce = ce,
                               .aux = aux, .z = z, .router_ce = rce, .lr = lr, .grad_norm = norm,
                               .tokens_per_s = p.tokens_per_s, .elapsed_s = el, .n_moe = t->n_moe,
                               .moe_layer = t->moe_layer, .n_experts = E, .counts = t->counts,
                               .drops = t->drops, .tokens = tokens_per_step};
            if (metrics_write_step(&t->metrics, &ms)) goto fail;
            if (h && h->on_step) h->on_step(h->ctx, &p);
        }
        // Evaluation runs on rank 0 alone (the others wait in the next step's first
        // collective); under expert parallelism every rank runs the same batches, since
        // the experts are spread over them.
        if (((o->eval_every && t->st.step % o->eval_every == 0) || last) && (t->rank == 0 || o->expert_parallel > 1))
            if (evaluate(t, h)) goto fail;
        if ((o->save_every && t->st.step % o->save_every == 0) || last)
            if (save(t, h)) goto fail;
    }
    free(mine);
    return 0;
fail:
    free(mine);
    return -1;
}
