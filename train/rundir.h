// rundir.h: the files of a run folder (`monolith train --out DIR`).
//
//   DIR/run.ini               the run's options (train/options.h), read back by --resume
//   DIR/ckpt-00001000.h5      checkpoints by step, 8+ digits (docs/design.md section 11.3)
//   DIR/latest.h5             symlink to the newest checkpoint
//   DIR/metrics.jsonl         one JSON object per step and per evaluation (train/metrics.h)
//   DIR/run.lock              held (flock) by the one process writing the folder (train/run_lock.h)
//
// A checkpoint is written as ckpt-N.h5.tmp and renamed when complete (engine/base/h5io.h),
// so a crash or kill -9 mid-write leaves a .tmp file that no reader here ever takes for
// a checkpoint: only names matching ckpt-<digits>.h5 exactly count.
#ifndef MONOLITH_RUNDIR_H
#define MONOLITH_RUNDIR_H

#include <stddef.h>
#include <stdint.h>

// DIR/ckpt-<step>.h5 into buf.
void rundir_ckpt_path(const char *dir, int64_t step, char *buf, size_t cap);

// Creates DIR (and parents) if needed. Returns 0 or -1.
int rundir_create(const char *dir);

// What a run folder holds: nothing of a run, a run.ini without a complete checkpoint (a
// run stopped before its first save), or at least one complete checkpoint.
typedef enum { RUNDIR_EMPTY, RUNDIR_STARTED, RUNDIR_CHECKPOINTED } rundir_state;
int rundir_state_of(const char *dir, rundir_state *st);

// Deletes what writers that died mid-write left: ckpt-*.h5.tmp, run.ini.tmp,
// metrics.jsonl.tmp, .latest.h5.tmp. Call it only while holding the folder's lock
// (train/run_lock.h): a live writer's .tmp is its save in progress. Returns 0 or -1.
int rundir_clean_tmp(const char *dir);

// The steps of the complete checkpoints in DIR, ascending, into a malloc'd array (*steps,
// free with free(); NULL when *n = 0). Returns 0, or -1 if DIR cannot be read.
int rundir_steps(const char *dir, int64_t **steps, int *n);

// Deletes all but the newest `keep` checkpoints (keep >= 1). Returns 0 or -1.
int rundir_prune(const char *dir, int keep);

// Points DIR/latest.h5 at ckpt-<step>.h5 (a relative symlink, replaced atomically).
int rundir_link_latest(const char *dir, int64_t step);

#endif
