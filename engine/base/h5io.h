// h5io.h: the small layer over HDF5 that every monolith file goes through.
//
// Writes are atomic: h5_create() opens NAME.tmp, h5_finish() flushes, fsyncs and renames
// it to NAME, h5_abort() removes it. Readers check the `format` and `format_version`
// root attributes and refuse a dataset whose shape differs from the one expected, so a
// corrupt or hostile file never makes us allocate what its header claims. Every error
// message names the file (and the dataset or attribute) at fault.
//
// Paths are relative to `loc` (a file or group id) and may contain '/': intermediate
// groups are created on write. Strings are stored as fixed-length UTF-8 (NUL-padded,
// longest + 1 bytes), never variable-length: h5py reads them as bytes (.decode()). A
// variable-length string or any variable-length type in a file is refused by name, before
// any value of it is read (docs/design.md section 11.1, docs/reliability.md).
#ifndef MONOLITH_H5IO_H
#define MONOLITH_H5IO_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#define H5IO_MAX_RANK 8

// Creates PATH.tmp for writing. Returns a file id, or -1 with mo_error() set.
hid_t h5_create(const char *path);
// Flushes and closes `f`, fsyncs PATH.tmp and renames it to PATH. On any failure the
// temporary file is removed and PATH is left as it was. Returns 0 or -1.
int h5_finish(hid_t f, const char *path);
// Closes `f` and removes PATH.tmp: for error paths after h5_create().
void h5_abort(hid_t f, const char *path);

// Opens PATH read-only. If `format` is not NULL, the file must be in the 1.8 format
// (h5_require_checksummed), the root attribute `format` must equal it and
// `format_version` must be between 1 and `max_version`. Returns -1 with a
// one-line message for a missing file, a file that is not HDF5 (or is truncated), or a
// wrong format or version.
hid_t h5_open(const char *path, const char *format, int64_t max_version);
// 0 if PATH is in the HDF5 1.8 file format or later (superblock version 2+), as every
// file monolith writes (h5_create): its superblock and object headers carry checksums.
// Else -1 with a one-line message. h5_open calls it whenever `format` is given. Why:
// libhdf5 1.10 trusts the header bytes of the older, unchecksummed format (a damaged
// one gave a use-after-free inside H5Aexists: docs/reliability.md), so monolith reads
// its own formats only in the format it writes; files like dump's --tokens batch, made
// by any h5py, are still read in any format.
int h5_require_checksummed(const char *path);
// Writes the root attributes `format`, `format_version` and `created_by`.
int h5_set_format(hid_t f, const char *format, int64_t version);
void h5_close(hid_t f);

// The file name behind an id, for messages (a static per-thread buffer).
const char *h5_name(hid_t loc);

int h5_exists(hid_t loc, const char *path);

// Datasets. h5_write takes a memory type such as H5T_NATIVE_FLOAT and stores it as the
// matching little-endian file type.
// Every dataset h5_write creates is chunked with a Fletcher32 checksum (one chunk per
// tensor up to 1 GB), so a flipped bit in stored data is refused by h5_read rather than
// read as a different weight; h5py and every HDF5 reader verify it too.
int h5_write(hid_t loc, const char *path, hid_t memtype, const void *data, int rank,
             const hsize_t *dims);
// The dataset creation list h5_write uses (chunked + Fletcher32; plain for empty or scalar
// data), for writers that create datasets themselves. Close with H5Pclose.
hid_t h5_checksummed_dcpl(int rank, const hsize_t *dims, size_t elem_size);
int h5_write_f32(hid_t loc, const char *path, const float *data, int rank, const hsize_t *dims);
int h5_write_i64(hid_t loc, const char *path, const int64_t *data, int rank, const hsize_t *dims);
// The stored shape of a dataset. `dims` must hold H5IO_MAX_RANK entries.
int h5_shape(hid_t loc, const char *path, int *rank, hsize_t *dims);
// Reads a dataset whose shape must be exactly (rank, dims), converting to `memtype`.
int h5_read(hid_t loc, const char *path, hid_t memtype, void *data, int rank, const hsize_t *dims);
int h5_read_f32(hid_t loc, const char *path, float *data, int rank, const hsize_t *dims);
// 0 if dataset `path` stores 4-byte floats, else -1 naming its type (HDF5 would convert
// doubles, halves or integers on read without a word). h5_read_f32 checks it.
int h5_require_f32(hid_t loc, const char *path);

// A 1-D dataset of n fixed-length UTF-8 strings (width: the longest + 1), chunked with a
// Fletcher32 checksum like h5_write. Returns 0 or -1.
int h5_write_strings(hid_t loc, const char *path, const char *const *strs, int n);
// Reads exactly n strings of any fixed-length string type; each out[i] is malloc'd (free
// with free()). Fails with one line on another count, a non-string or variable-length
// type, or a width x n the file does not store.
int h5_read_strings(hid_t loc, const char *path, char **out, int n);

// Attributes of the object at `obj` ("." for loc itself). Integers are int64 scalars,
// reals float64 scalars, as docs/design.md section 11.1 says; strings fixed-length UTF-8 scalars.
// Every getter refuses a variable-length attribute and one that claims more bytes than
// the file holds, without reading it. h5_attr_get_str also refuses a string of more than
// cap - 1 bytes (never truncates).
int h5_attr_set_i64(hid_t loc, const char *obj, const char *name, int64_t v);
int h5_attr_set_f64(hid_t loc, const char *obj, const char *name, double v);
int h5_attr_set_str(hid_t loc, const char *obj, const char *name, const char *v);
int h5_attr_set_i64s(hid_t loc, const char *obj, const char *name, const int64_t *v, int n);
int h5_attr_set_u64s(hid_t loc, const char *obj, const char *name, const uint64_t *v, int n);
int h5_attr_exists(hid_t loc, const char *obj, const char *name);
int h5_attr_get_i64(hid_t loc, const char *obj, const char *name, int64_t *v);
int h5_attr_get_f64(hid_t loc, const char *obj, const char *name, double *v);
int h5_attr_get_str(hid_t loc, const char *obj, const char *name, char *buf, size_t cap);
// Array attributes must have exactly n elements.
int h5_attr_get_i64s(hid_t loc, const char *obj, const char *name, int64_t *v, int n);
int h5_attr_get_u64s(hid_t loc, const char *obj, const char *name, uint64_t *v, int n);

#endif
