// rundir.c: naming, listing and pruning a run folder's checkpoints.
#include "train/rundir.h"

#include "engine/base/error.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void rundir_ckpt_path(const char *dir, int64_t step, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/ckpt-%08lld.h5", dir, (long long)step);
}

// The step of a name "ckpt-<digits>.h5" (with ".tmp" after it if tmp), else -1.
static int64_t step_of(const char *name, int tmp) {
    if (strncmp(name, "ckpt-", 5)) return -1;
    const char *p = name + 5, *q = p;
    while (*q >= '0' && *q <= '9') q++;
    if (q == p || q - p > 18) return -1;
    if (strcmp(q, tmp ? ".h5.tmp" : ".h5")) return -1;
    return strtoll(p, NULL, 10);
}

static int mkdir_p(const char *dir) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return mo_errorf("--out: path too long");
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) && errno != EEXIST) return mo_errorf("--out %s: cannot create %s: %s", dir, buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST) return mo_errorf("--out %s: cannot create it: %s", dir, strerror(errno));
    struct stat st;
    if (stat(buf, &st) || !S_ISDIR(st.st_mode)) return mo_errorf("--out %s: exists and is not a folder", dir);
    return 0;
}

int rundir_create(const char *dir) { return mkdir_p(dir); }

int rundir_state_of(const char *dir, rundir_state *st) {
    *st = RUNDIR_EMPTY;
    DIR *d = opendir(dir);
    if (!d) return mo_errorf("%s: cannot open the run folder: %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (step_of(e->d_name, 0) >= 0) *st = RUNDIR_CHECKPOINTED;
        else if (!strcmp(e->d_name, "run.ini") && *st == RUNDIR_EMPTY) *st = RUNDIR_STARTED;
    }
    closedir(d);
    return 0;
}

// The names of files a writer of the folder leaves when it dies mid-write.
static int is_tmp(const char *name) {
    return step_of(name, 1) >= 0 || !strcmp(name, "run.ini.tmp") || !strcmp(name, "metrics.jsonl.tmp") ||
           !strcmp(name, ".latest.h5.tmp");
}

int rundir_clean_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return mo_errorf("%s: cannot open the run folder: %s", dir, strerror(errno));
    struct dirent *e;
    char path[4352];
    int rc = 0;
    while ((e = readdir(d))) {
        if (!is_tmp(e->d_name)) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) && errno != ENOENT && !rc)
            rc = mo_errorf("%s: cannot delete what an interrupted write left: %s", path, strerror(errno));
    }
    closedir(d);
    return rc;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int rundir_steps(const char *dir, int64_t **steps, int *n) {
    *steps = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) return mo_errorf("%s: cannot open the run folder: %s", dir, strerror(errno));
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        int64_t s = step_of(e->d_name, 0);
        if (s < 0) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *v = realloc(*steps, (size_t)cap * sizeof *v);
            if (!v) {
                closedir(d);
                free(*steps), *steps = NULL, *n = 0;
                return mo_errorf("out of memory listing %s", dir);
            }
            *steps = v;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    if (*n) qsort(*steps, (size_t)*n, sizeof **steps, cmp_i64);
    return 0;
}

int rundir_prune(const char *dir, int keep) {
    int64_t *steps;
    int n;
    if (rundir_steps(dir, &steps, &n)) return -1;
    char path[4352];
    for (int i = 0; i + keep < n; i++) {
        rundir_ckpt_path(dir, steps[i], path, sizeof path);
        if (unlink(path) && errno != ENOENT) {
            free(steps);
            return mo_errorf("%s: cannot delete an old checkpoint: %s", path, strerror(errno));
        }
    }
    free(steps);
    return 0;
}

int rundir_link_latest(const char *dir, int64_t step) {
    char target[64], link[4352], tmp[4400];
    snprintf(target, sizeof target, "ckpt-%08lld.h5", (long long)step);
    snprintf(link, sizeof link, "%s/latest.h5", dir);
    snprintf(tmp, sizeof tmp, "%s/.latest.h5.tmp", dir);
    unlink(tmp);
    if (symlink(target, tmp) || rename(tmp, link)) {
        unlink(tmp);
        return mo_errorf("%s: cannot point it at %s: %s", link, target, strerror(errno));
    }
    return 0;
}
