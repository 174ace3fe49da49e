// file.c: regular files only (file.h).
#include "engine/base/file.h"

#include "engine/base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int refuse(const char *path, mode_t m) {
    return mo_errorf("%s: not a regular file (%s)", path,
                     S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "a device");
}

static int refuse_errno(const char *path, int e) {
    return mo_errorf("%s: %s", path, e == ENOENT ? "no such file" : strerror(e));
}

int file_check_regular(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return refuse_errno(path, errno);
    return S_ISREG(st.st_mode) ? 0 : refuse(path, st.st_mode);
}

int file_open_regular_fd(const char *path, size_t *size) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return mo_errorf("%s: cannot open (%s)", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fstat(fd, &st) != 0 ? refuse_errno(path, errno) : refuse(path, st.st_mode);
        close(fd);
        return -1;
    }
    if (size) *size = (size_t)st.st_size;
    return fd;
}

FILE *file_open_regular(const char *path) {
    int fd = file_open_regular_fd(path, NULL);
    if (fd < 0) return NULL;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        refuse_errno(path, errno);
        close(fd);
    }
    return f;
}

int file_check_output(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0 || S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) return 0;
    refuse(path, st.st_mode);
    return mo_errorf("%s; an output is written as NAME.tmp and renamed over NAME, which would replace it: give a "
                     "file name", mo_error());
}
