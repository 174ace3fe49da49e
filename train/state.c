// state.c: /optim and /train of a training checkpoint.
#include "train/state.h"

#include "engine/base/error.h"
#include "engine/base/h5io.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

// Test hook: MONOLITH_FAULT_KILL_IN_SAVE=N kills the process (SIGKILL, as kill -9 does)
// half way through writing the checkpoint of step N, after /model and /optim/m.
static void fault_kill_in_save(int64_t step) {
    const char *s = getenv("MONOLITH_FAULT_KILL_IN_SAVE");
    if (s && strtoll(s, NULL, 10) == step) raise(SIGKILL);
}

int train_state_save(const char *path, const mo_checkpoint *ck, const float *m, const float *v,
                     const train_state *st, const char *options_ini) {
    return train_state_save_from(path, ck, m, v, NULL, st, options_ini);
}

int train_state_save_from(const char *path, const mo_checkpoint *ck, const float *m, const float *v,
                          const mo_absent *mv_absent, const train_state *st, const char *options_ini) {
    hid_t f = ckpt_create(path, ck);
    if (f < 0) return -1;
    const mo_param_table *pt = &ck->table;
    if (ckpt_write_tensors_from(f, "optim/m", pt, m, mv_absent ? &mv_absent[0] : NULL)) goto err;
    H5Fflush(f, H5F_SCOPE_GLOBAL);  // so the half-written .tmp really is on disk
    fault_kill_in_save(st->step);
    if (ckpt_write_tensors_from(f, "optim/v", pt, v, mv_absent ? &mv_absent[1] : NULL)) goto err;
    const char *g = "train";
    if (h5_attr_set_i64(f, g, "step", st->step) || h5_attr_set_i64(f, g, "tokens_seen", st->tokens_seen) ||
        h5_attr_set_u64s(f, g, "rng_state", st->rng, 4) || h5_attr_set_i64(f, g, "loader_state_len", st->n_loader) ||
        (st->n_loader && h5_attr_set_u64s(f, g, "loader_state", st->loader, st->n_loader)) ||
        h5_attr_set_str(f, g, "schedule", lr_schedule_kind_name(st->sched.kind)) ||
        h5_attr_set_f64(f, g, "lr", st->sched.lr) || h5_attr_set_f64(f, g, "lr_floor", st->sched.floor_frac) ||
        h5_attr_set_i64(f, g, "warmup", st->sched.warmup) || h5_attr_set_i64(f, g, "total_steps", st->sched.total) ||
        h5_attr_set_f64(f, g, "beta1", st->opt.beta1) || h5_attr_set_f64(f, g, "beta2", st->opt.beta2) ||
        h5_attr_set_f64(f, g, "eps", st->opt.eps) || h5_attr_set_f64(f, g, "weight_decay", st->opt.weight_decay) ||
        h5_attr_set_f64(f, g, "clip", st->clip) || h5_attr_set_u64s(f, g, "seed", &st->seed, 1) ||
        h5_attr_set_str(f, g, "train_mask", st->mask) || h5_attr_set_i64(f, g, "ranks", st->ranks) ||
        h5_attr_set_i64(f, g, "micro_batches", st->micro_batches) ||
        (st->adam_step0 && h5_attr_set_i64(f, g, "adam_step0", st->adam_step0)) ||
        (options_ini && h5_attr_set_str(f, g, "options", options_ini)))
        goto err;
    return h5_finish(f, path);
err:
    h5_abort(f, path);
    return -1;
}

static int state_load(const char *path, mo_checkpoint *ck, float **m, float **v, train_state *st);

int train_state_load(const char *path, mo_checkpoint *ck, float **m, float **v, train_state *st) {
    return state_load(path, ck, m, v, st);
}

int train_state_load_meta(const char *path, mo_checkpoint *ck, train_state *st) {
    return state_load(path, ck, NULL, NULL, st);
}

// m NULL: the tensors' values are not read (train_state_load_meta).
static int state_load(const char *path, mo_checkpoint *ck, float **m, float **v, train_state *st) {
    float *no_m = NULL, *no_v = NULL;
    const int with_data = m != NULL;
    if (!with_data) m = &no_m, v = &no_v;
    memset(st, 0, sizeof *st);
    *m = *v = NULL;
    memset(ck, 0, sizeof *ck);
    hid_t f = ckpt_open(path);
    if (f < 0) return -1;
    if (!h5_exists(f, "train") || !h5_exists(f, "optim")) {
        mo_errorf("%s: not a training checkpoint (no /train or /optim); start a new run from it with --init", path);
        goto err;
    }
    if (with_data ? ckpt_load_optim_from(f, ck, m, v)
                  : ckpt_load_meta_from(f, ck) || ckpt_check_tensors(f, "optim/m", &ck->table) ||
                        ckpt_check_tensors(f, "optim/v", &ck->table))
        goto err;
    const char *g = "train";
    int64_t nl = 0;
    char kind[32];
    if (h5_attr_get_i64(f, g, "step", &st->step) || h5_attr_get_i64(f, g, "tokens_seen", &st->tokens_seen) ||
        h5_attr_get_u64s(f, g, "rng_state", st->rng, 4) || h5_attr_get_i64(f, g, "loader_state_len", &nl))
        goto err;
    if (nl < 0 || nl > TRAIN_LOADER_STATE_MAX) {
        mo_errorf("%s: /train loader_state_len %lld is out of range", path, (long long)nl);
        goto err;
    }
    st->n_loader = (int)nl;
    if ((nl && h5_attr_get_u64s(f, g, "loader_state", st->loader, (int)nl)) ||
        h5_attr_get_str(f, g, "schedule", kind, sizeof kind) || lr_schedule_parse_kind(kind, &st->sched.kind) ||
        h5_attr_get_f64(f, g, "lr", &st->sched.lr) || h5_attr_get_f64(f, g, "lr_floor", &st->sched.floor_frac) ||
        h5_attr_get_i64(f, g, "warmup", &st->sched.warmup) ||
        h5_attr_get_i64(f, g, "total_steps", &st->sched.total) || h5_attr_get_f64(f, g, "beta1", &st->opt.beta1) ||
        h5_attr_get_f64(f, g, "beta2", &st->opt.beta2) || h5_attr_get_f64(f, g, "eps", &st->opt.eps) ||
        h5_attr_get_f64(f, g, "weight_decay", &st->opt.weight_decay) || h5_attr_get_f64(f, g, "clip", &st->clip) ||
        h5_attr_get_u64s(f, g, "seed", &st->seed, 1) || h5_attr_get_str(f, g, "train_mask", st->mask, sizeof st->mask))
        goto err;
    // Checkpoints from before distributed training: one process; micro-batches from run.ini.
    st->ranks = 1;
    if ((h5_attr_exists(f, g, "ranks") > 0 && h5_attr_get_i64(f, g, "ranks", &st->ranks)) ||
        (h5_attr_exists(f, g, "micro_batches") > 0 && h5_attr_get_i64(f, g, "micro_batches", &st->micro_batches)) ||
        (h5_attr_exists(f, g, "adam_step0") > 0 && h5_attr_get_i64(f, g, "adam_step0", &st->adam_step0)))
        goto err;
    if (st->adam_step0 < 0) {
        mo_errorf("%s: /train adam_step0 %lld is negative; the file is damaged", path, (long long)st->adam_step0);
        goto err;
    }
    // xoshiro256** never leaves the all-zero state: a run resumed from it would draw zeros
    // forever (the same window, the same dropout of nothing) without a word.
    static const uint64_t zero[4];
    if (!memcmp(st->rng, zero, sizeof zero) || (st->n_loader >= 4 && !memcmp(st->loader, zero, sizeof zero))) {
        mo_errorf("%s: /train %s is all zeros, a state the generator never reaches; the file is damaged", path,
                  !memcmp(st->rng, zero, sizeof zero) ? "rng_state" : "loader_state");
        goto err;
    }
    if (st->step < 0 || st->step > st->sched.total) {
        mo_errorf("%s: /train step %lld is outside the run's %lld steps", path, (long long)st->step,
                  (long long)st->sched.total);
        goto err;
    }
    h5_close(f);
    return 0;
err:
    h5_close(f);
    free(*m), free(*v);
    *m = *v = NULL;
    ckpt_free(ck);
    return -1;
}

char *train_state_options(hid_t f) {
    if (!h5_exists(f, "train") || !h5_attr_exists(f, "train", "options")) return NULL;
    size_t cap = 1 << 20;
    char *s = malloc(cap);
    if (s && h5_attr_get_str(f, "train", "options", s, cap)) free(s), s = NULL;
    return s;
}
