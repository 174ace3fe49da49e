// state.h: a training checkpoint: the model checkpoint of docs/design.md section 11.2 plus
//   /optim/m/<path>, /optim/v/<path>   Adam moments, same paths and shapes as /model
//   /train                             attrs: what --resume needs to continue exactly
#ifndef MONOLITH_TRAIN_STATE_H
#define MONOLITH_TRAIN_STATE_H

#include "engine/checkpoint.h"
#include "train/adamw.h"
#include "train/lr_schedule.h"

#include <stdint.h>

#define TRAIN_LOADER_STATE_MAX 64

typedef struct {
    int64_t step;           // completed optimizer steps
    int64_t tokens_seen;    // training tokens consumed (targets counted)
    uint64_t rng[4];        // the loop's RNG (engine/base/rng.h)
    uint64_t loader[TRAIN_LOADER_STATE_MAX];  // the data loader's saved state
    int n_loader;
    lr_schedule sched;
    adamw_step opt;         // betas, eps, weight decay (lr and t are per step)
    double clip;
    uint64_t seed;
    char mask[256];         // --train
    int64_t ranks;          // processes that trained the last step (1 without mpirun)
    int64_t micro_batches;  // micro-batches per step over all ranks (ranks x --grad-accum); 0: not stored
    int64_t adam_step0;     // Adam's steps before this run (--moments-from): its bias correction counts them
} train_state;

// Writes ck (model, config, experts, tokenizer), m and v (arenas of ck's table) and `st`
// atomically to `path` (PATH.tmp, fsync, rename). `options_ini` (may be NULL) is stored
// as the /train attribute `options`, the run.ini text, for provenance. Returns 0 or -1.
int train_state_save(const char *path, const mo_checkpoint *ck, const float *m, const float *v,
                     const train_state *st, const char *options_ini);

// train_state_save with the ranges of m and v that mv_absent[0] and [1] list (NULL:
// none) copied from the checkpoint they were read from (engine/checkpoint.h mo_absent).
int train_state_save_from(const char *path, const mo_checkpoint *ck, const float *m, const float *v,
                          const mo_absent *mv_absent, const train_state *st, const char *options_ini);

// Loads a training checkpoint: ck as ckpt_load does, *m and *v newly allocated arenas
// (free with free()) and `st`. Fails naming the file when /optim or /train is missing (a
// checkpoint written by `monolith init` or extracted cannot be resumed: use --init).
int train_state_load(const char *path, mo_checkpoint *ck, float **m, float **v, train_state *st);

// train_state_load without reading the values of /model, /optim/m and /optim/v (their
// shapes and storage are checked): ck->params is a sparse zero arena (ckpt_load_meta_from),
// for a caller that reads the tensors one at a time (ckpt_read_tensors_each).
int train_state_load_meta(const char *path, mo_checkpoint *ck, train_state *st);

// The run.ini text stored as the /train attribute `options` of an open checkpoint file
// (malloc'd, free()), or NULL when it has none (not written by monolith train) or it
// cannot be read.
char *train_state_options(hid_t f);

#endif
