// trainer.h: `monolith train`: the training loop over the model (engine/model.h), the
// domain-mixture loader (data/loader.h), AdamW with a freeze mask, the LR schedule,
// clipping, gradient accumulation, evaluation, metrics and checkpoints with exact resume.
//
// trainer_open() validates every option, reads the tokenizer, the token sets and the
// model, and allocates everything, so that every mistake is reported before the first
// step. trainer_run() never allocates. The library prints nothing: progress, evaluations
// and saves go to the caller's hooks.
#ifndef MONOLITH_TRAINER_H
#define MONOLITH_TRAINER_H

#include "train/options.h"

#include <signal.h>
#include <stdint.h>

typedef struct {
    int64_t step, total;  // completed steps of the run
    int64_t tokens_seen;
    double loss, ce, aux, z, lr, grad_norm;
    double router_ce;     // route-by-domain: the router's cross-entropy against the forced experts (else 0)
    double tokens_per_s;  // this step
    double elapsed_s;     // wall time of this invocation's steps
    double eta_s;         // remaining steps at the average rate of this invocation
} train_progress;

typedef struct {
    void (*on_step)(void *ctx, const train_progress *p);
    void (*on_eval)(void *ctx, int64_t step, int n, const char *const *names, const double *loss);
    void (*on_save)(void *ctx, const char *path, int64_t step);
    void *ctx;
    // Set (by a SIGINT/SIGTERM handler) to ask for a stop: the loop saves a checkpoint at
    // the next step boundary and returns 1. May be NULL.
    const volatile sig_atomic_t *stop;
} train_hooks;

typedef struct trainer trainer;

// Sets up a run from options (a new run, or --resume DIR: the folder's run.ini and its
// newest checkpoint; only o->threads is taken from `o` then, and only when >= 0, else
// the count run.ini records). The run folder is locked (train/run_lock.h) before anything
// in it changes and until trainer_close: a folder another process is running is refused.
// Returns NULL with a one-line message for any bad option, missing or mismatched file,
// busy folder, or impossible size.
trainer *trainer_open(const train_opts *o);

// One line saying what was set up (model, parameters, trainable share, data, tokens per
// step, where the run goes), for the CLI to print.
const char *trainer_summary(const trainer *t);
// A line to show before the run starts ("note: ..."), or "": e.g. the folder held a run
// that stopped before its first checkpoint and starts again from step 0.
const char *trainer_note(const trainer *t);

// Trains to the run's --steps. Returns 0 when done (final checkpoint saved), 1 when
// stopped by *hooks->stop (checkpoint saved), -1 on error: for a NaN/Inf loss or
// gradient the message says which step, and that the last good state was saved.
int trainer_run(trainer *t, const train_hooks *hooks);

// The run folder.
const char *trainer_out(const trainer *t);

// 1 if the run routes by domain (its options or, resumed, its run.ini), else 0.
int trainer_route_by_domain(const trainer *t);

void trainer_close(trainer *t);

#endif
