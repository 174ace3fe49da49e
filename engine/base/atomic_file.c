// atomic_file.c: write PATH.tmp, sync, rename over PATH (atomic_file.h).
#include "engine/base/atomic_file.h"

#include "engine/base/error.h"
#include "engine/base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <unistd.h>

FILE *atomic_open(atomic_file *a, const char *path, const char *mode) {
    a->path = path;
    a->f = NULL;
    if (file_check_output(path)) return NULL;  // renaming over a device, FIFO or folder would replace it
    if ((size_t)snprintf(a->tmp, sizeof a->tmp, "%s.tmp", path) >= sizeof a->tmp) {
        mo_errorf("%s: path too long", path);
        return NULL;
    }
    a->f = fopen(a->tmp, mode);
    if (!a->f) mo_errorf("%s: cannot create: %s", a->tmp, strerror(errno));
    return a->f;
}

int atomic_commit(atomic_file *a, int failed) {
    failed |= ferror(a->f) || fflush(a->f) || fsync(fileno(a->f));
    failed |= fclose(a->f) != 0;
    a->f = NULL;
    if (failed) {
        unlink(a->tmp);
        return mo_errorf("%s: write failed (disk full?) and was removed; %s was not written", a->tmp, a->path);
    }
    return atomic_replace(a->tmp, a->path);
}

static int fsync_path(const char *path, int dir) {
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int atomic_replace(const char *tmp, const char *path) {
    if (fsync_path(tmp, 0) != 0) {
        int e = errno;
        unlink(tmp);
        return mo_errorf("%s: fsync failed (%s) and was removed; %s was not written", tmp, strerror(e), path);
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return mo_errorf("%s: cannot rename to %s (%s)", tmp, path, strerror(e));
    }
    char dir[4352];
    snprintf(dir, sizeof dir, "%s", path);
    fsync_path(dirname(dir), 1);  // best effort: makes the rename durable
    return 0;
}
