// file.h: opening an input path that must be a regular file.
//
// A FIFO blocks open() until something writes to it, and a device such as /dev/zero
// never ends: a command given one as a file would hang or read until memory runs out.
// Every file monolith reads by name goes through here (HDF5 files through h5_open).
#ifndef MONOLITH_FILE_H
#define MONOLITH_FILE_H

#include <stddef.h>
#include <stdio.h>

// 0 if `path` is a regular file (or a symbolic link to one), else -1 with one line
// (mo_error): "PATH: no such file" or "PATH: not a regular file (a FIFO)".
// (file_open_regular says "PATH: cannot open (REASON)" when open itself fails.)
int file_check_regular(const char *path);

// fopen(path, "rb") of a regular file, without ever blocking on a FIFO (opened
// non-blocking, checked with fstat, then made blocking). NULL with one line as above.
FILE *file_open_regular(const char *path);

// The same check for a reader that wants the descriptor (to mmap it): a read-only fd,
// still non-blocking, with the file's size in *size (may be NULL); -1 with one line.
int file_open_regular_fd(const char *path, size_t *size);

// 0 if an output file may be written as PATH.tmp and renamed onto `path`: it does not
// exist yet, or is a regular file or a symbolic link (the link is replaced, not what it
// points to). Else -1 with one line: renaming onto /dev/null, a FIFO or a folder would
// replace the device node (as root) or fail only after all the work.
int file_check_output(const char *path);

#endif
