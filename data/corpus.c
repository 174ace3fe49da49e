// corpus.c: expanding files and directories into a sorted list of documents.
#include "data/corpus.h"

#include "engine/base/error.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int push(corpus_files *l, const char *p) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **v = realloc(l->paths, cap * sizeof *v);
        if (!v) return mo_errorf("out of memory listing inputs");
        l->paths = v, l->cap = cap;
    }
    l->paths[l->n] = strdup(p);
    if (!l->paths[l->n]) return mo_errorf("out of memory listing inputs");
    l->n++;
    return 0;
}

void corpus_files_free(corpus_files *l) {
    for (size_t i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int add(corpus_files *l, const char *path, int depth) {
    struct stat st;
    if (stat(path, &st) != 0) return mo_errorf("%s: no such --input file or directory", path);
    if (S_ISREG(st.st_mode)) return st.st_size > 0 ? push(l, path) : 0;
    if (!S_ISDIR(st.st_mode)) return mo_errorf("%s: --input must be a regular file or a directory", path);
    if (depth > 64) return mo_errorf("%s: directories nested too deep (a symlink loop?)", path);
    DIR *d = opendir(path);
    if (!d) return mo_errorf("%s: cannot read directory (%s)", path, strerror(errno));
    corpus_files names = {0};
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d)))
        if (e->d_name[0] != '.') rc = push(&names, e->d_name);
    closedir(d);
    if (names.n) qsort(names.paths, names.n, sizeof *names.paths, cmp_str);
    size_t pl = strlen(path);
    for (size_t i = 0; i < names.n && !rc; i++) {
        size_t len = pl + strlen(names.paths[i]) + 2;
        char *full = malloc(len);
        if (!full) {
            rc = mo_errorf("out of memory");
            break;
        }
        snprintf(full, len, "%s%s%s", path, pl && path[pl - 1] == '/' ? "" : "/", names.paths[i]);
        rc = add(l, full, depth + 1);
        free(full);
    }
    corpus_files_free(&names);
    return rc;
}

int corpus_list(const char *const *args, int n_args, corpus_files *out) {
    for (int i = 0; i < n_args; i++)
        if (add(out, args[i], 0)) return -1;
    return 0;
}
