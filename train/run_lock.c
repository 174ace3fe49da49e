// run_lock.c: flock(2) on DIR/run.lock (train/run_lock.h).
#include "train/run_lock.h"

#include "engine/base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

// The pid the holder wrote into the lock file, or 0 when unreadable.
static long holder_pid(int fd) {
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *end;
    long pid = strtol(buf, &end, 10);
    return pid > 0 && (*end == '\n' || !*end) ? pid : 0;
}

int run_lock_acquire(const char *dir, run_lock *lock) {
    *lock = RUN_LOCK_NONE;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/" RUN_LOCK_FILE, dir) >= (int)sizeof path)
        return mo_errorf("%s: path too long for the run folder's lock file", dir);
    // O_NOFOLLOW: a symlink planted as run.lock could make us truncate another file.
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return mo_errorf("%s: cannot open the run folder's lock file: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int e = errno;
        long pid = e == EWOULDBLOCK ? holder_pid(fd) : 0;
        close(fd);
        if (e != EWOULDBLOCK)
            return mo_errorf("%s: cannot lock the run folder: %s (a file system without flock?)", path, strerror(e));
        char who[48] = "";
        if (pid) snprintf(who, sizeof who, " (pid %ld)", pid);
        return mo_errorf("%s is in use by another monolith process%s; wait for it to end or stop it, or choose "
                         "another folder",
                         dir, who);
    }
    // The pid is only for the refusal message of the next comer: failing to write it
    // (full disk) does not matter.
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)n, 0) != n) (void)ftruncate(fd, 0);
    lock->fd = fd;
    return 0;
}

void run_lock_release(run_lock *lock) {
    if (lock->fd >= 0) close(lock->fd);
    lock->fd = -1;
}
