// corpus.h: the input files of a corpus, from command-line arguments.
//
// An argument is a file or a directory; a directory stands for every regular file under
// it, recursively, names starting with '.' skipped, in byte order of the paths (so the
// order, and everything derived from it, never depends on the file system). Empty files
// are dropped: one file is one document, and an empty document has nothing to say.
#ifndef MONOLITH_CORPUS_H
#define MONOLITH_CORPUS_H

#include <stddef.h>

typedef struct {
    char **paths;
    size_t n, cap;
} corpus_files;

// Appends the files of each argument to `out`. Returns 0, or -1 with a one-line error
// naming a missing path, something that is neither file nor directory, or an unreadable
// directory.
int corpus_list(const char *const *args, int n_args, corpus_files *out);
void corpus_files_free(corpus_files *f);

#endif
