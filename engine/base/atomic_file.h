// atomic_file.h: files written whole or not at all. The bytes go to PATH.tmp; only once
// they are all written, flushed and synced does PATH.tmp replace PATH (rename, then the
// folder synced), so a crash or a full disk leaves PATH as it was and no PATH.tmp behind.
// HDF5 files take the same road through h5io.h (h5_create, h5_finish).
#ifndef MONOLITH_ATOMIC_FILE_H
#define MONOLITH_ATOMIC_FILE_H

#include <stdio.h>

typedef struct {
    FILE *f;         // write here
    char tmp[4352];  // PATH.tmp
    const char *path;
} atomic_file;

// Opens PATH.tmp for writing (fopen `mode`: "w" or "wb"). Returns a->f, or NULL with
// "PATH.tmp: cannot create: REASON".
FILE *atomic_open(atomic_file *a, const char *path, const char *mode);
// Finishes the file: when `failed` (the caller's writes went wrong) or flushing, syncing
// or closing fails, PATH.tmp is removed and -1 returned with "PATH.tmp: write failed
// (disk full?) and was removed; PATH was not written"; else atomic_replace.
int atomic_commit(atomic_file *a, int failed);
// Syncs `tmp` (written and closed) and renames it over `path`, then syncs the folder
// (best effort). Returns 0, or -1 naming both (tmp removed).
int atomic_replace(const char *tmp, const char *path);

#endif
