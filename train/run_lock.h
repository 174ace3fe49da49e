// run_lock.h: one owner per run folder.
//
// A run folder (`monolith train --out DIR`) is written by exactly one process at a time.
// The owner holds an advisory lock, flock(2) on DIR/run.lock, for the whole run; a second
// `train --out DIR` or a `train --resume DIR` while it runs is refused before it changes
// anything. The kernel drops the lock when the owner exits in any way (kill -9 included),
// so a dead run never leaves a stale lock; the file itself stays (it holds the last
// owner's pid, for the refusal message) and means nothing without the lock.
//
// Under MPI only rank 0 writes the folder, so only rank 0 calls run_lock_acquire.
#ifndef MONOLITH_RUN_LOCK_H
#define MONOLITH_RUN_LOCK_H

#define RUN_LOCK_FILE "run.lock"

typedef struct {
    int fd;  // the open, locked DIR/run.lock; -1 when not held
} run_lock;

#define RUN_LOCK_NONE ((run_lock){.fd = -1})

// Takes DIR's lock without waiting (DIR must exist). Returns 0 with *lock held, or -1
// with a one-line message: "DIR is in use by another monolith process (pid N) ...", or
// why DIR/run.lock cannot be opened or locked. The descriptor is close-on-exec.
int run_lock_acquire(const char *dir, run_lock *lock);

// Releases the lock (closes the file); a no-op when not held.
void run_lock_release(run_lock *lock);

#endif
