// trainer_ctx.h: the trainer's insides, shared by train/trainer_open.c (setup: every
// check before any work, allocation, resume) and train/trainer.c (the step loop,
// evaluation, saving). Not part of the API: callers use train/trainer.h.
#ifndef MONOLITH_TRAINER_CTX_H
#define MONOLITH_TRAINER_CTX_H

#include "data/loader.h"
#include "data/tokenizer_h5.h"
#include "engine/checkpoint.h"
#include "engine/model.h"
#include "train/dist.h"
#include "train/freeze.h"
#include "train/metrics.h"
#include "train/run_lock.h"
#include "train/state.h"
#include "train/trainer.h"

#include <stdint.h>

struct trainer {
    train_opts o;
    mo_checkpoint ck;        // config, table, parameters, experts, tokenizer
    float *grads;            // arena of ck.table
    int sparse_grads;        // grads from params_arena_alloc_sparse (one process, a mask that trains a part)
    float *m, *v;            // resumed: the checkpoint's whole moments until allocate() hands them to dist
    // A bf16 fine-tune of one process (held_load): the checkpoint's tensors are read one
    // at a time after the model exists, its frozen GEMM weights kept as bf16 only and,
    // resumed, the moments of what it does not train dropped (ck.absent, absent_mv).
    char source[TRAIN_PATH_MAX + 32];  // the checkpoint read (--init or the resumed one); "" otherwise
    mo_absent absent_mv[2];  // resumed under held_load: the untrained ranges of m and v
    dist_opt dist;           // AdamW state and the data-parallel step (train/dist.h; one rank: plain)
    int rank, ranks;         // engine/comm.h; only rank 0 writes files and calls the hooks
    double *mb_loss;         // [ranks * grad_accum * 5] loss terms of every micro-batch of a step
    train_mask mask;
    lr_schedule sched;
    adamw_step opt;
    train_state st;
    tokenizer *tok;
    loader *ld;
    mo_model model;
    int *tokens, *targets;   // [B*T] one micro-batch
    int *window;             // [B*(T+1)] from the loader
    int *domain;             // [B]
    int *forced;             // [B*T] route-by-domain, else NULL
    int expert_of[TRAIN_MAX_DOMAINS];  // route-by-domain: domain -> expert (train/route_map.h)
    int n_moe, moe_layer[MO_MAX_LAYERS];
    int64_t *counts;         // [n_moe, E] slots each expert ran this step (every micro-batch, every rank)
    int64_t *drops;          // [n_moe, 2] slots the routers chose this step, and of those dropped by capacity
    mo_rng noise;            // the router noise's stream (st.rng in checkpoints)
    float *bias_new;         // [E] scratch of balance_step
    const char *names[TRAIN_MAX_DOMAINS];
    double *val_loss;        // [n_data]
    int64_t *val_tokens;     // [n_data]
    int64_t *val_counts;     // [n_data, n_moe, E] routed slots in the last evaluation
    int64_t *val_drops;      // [n_data, n_moe, 2] chosen and dropped slots in the last evaluation
    metrics_log metrics;
    char *options_ini;       // run.ini text, stored in each checkpoint's /train
    run_lock lock;           // the run folder's, held from before its first change to the end
    int restart;             // --resume of a run that stopped before its first checkpoint
    int resumed;             // --resume from a checkpoint (not a restart)
    char summary[TRAIN_PATH_MAX + 1024];
    char note[TRAIN_PATH_MAX + 512];
};

// The loader's state as the u64 list /train stores: rng[4], batches.
void trainer_loader_state_get(const loader *l, uint64_t *v, int *n);
int trainer_loader_state_set(loader *l, const uint64_t *v, int n);

#endif
