// h5io.c: atomic HDF5 files, shape-checked datasets and typed attributes.
#include "engine/base/h5io.h"

#include "engine/base/atomic_file.h"
#include "engine/base/error.h"
#include "engine/base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// libhdf5 1.10 closes every open file when the process exits; a file whose H5Fclose
// failed (disk full during a save: h5_finish) stays in its table half-closed, and that
// exit-time close then crashes inside libhdf5 (tests/reliability_train.sh). monolith
// closes every file it opens itself, so the library's exit hook is turned off; this
// runs before main, ahead of any HDF5 call.
__attribute__((constructor)) static void h5_no_atexit(void) { H5dont_atexit(); }

// HDF5 prints its own error stack by default; we report one line instead.
static void h5_quiet(void) {
    static int done = 0;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = 1;
    }
}

static void tmp_name(char *buf, size_t cap, const char *path) { snprintf(buf, cap, "%s.tmp", path); }

hid_t h5_create(const char *path) {
    h5_quiet();
    if (file_check_output(path)) return -1;
    char tmp[4096];
    tmp_name(tmp, sizeof tmp, path);
    // The 1.8 file format: superblock v2 and object headers v2 carry checksums, so a
    // bit flip in a header or attribute is refused on open instead of sending libhdf5
    // after garbage. HDF5 1.8 (2008) and every h5py read it. (Strings are fixed-length,
    // so nothing is stored in the unchecksummed global heap: see fixed_str_type.)
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        int e = errno;
        // H5Fcreate may have made (or truncated) the file before its first write failed: a
        // zero-byte NAME.tmp would be left behind.
        unlink(tmp);
        if (e == ENOSPC || e == EFBIG || e == EDQUOT)
            mo_errorf("%s: cannot write (%s: %s: the disk, quota or file-size limit is full); %s was not written",
                      path, tmp, strerror(e), path);
        else
            mo_errorf("%s: cannot create (%s); check that the folder exists and is writable", tmp,
                      e ? strerror(e) : "HDF5 error");
        return -1;
    }
    return f;
}

int h5_finish(hid_t f, const char *path) {
    char tmp[4096];
    tmp_name(tmp, sizeof tmp, path);
    herr_t fl = H5Fflush(f, H5F_SCOPE_GLOBAL);
    herr_t cl = H5Fclose(f);
    if (fl < 0 || cl < 0) {
        unlink(tmp);
        return mo_errorf("%s: write failed (disk full?) and was removed; %s was not written", tmp, path);
    }
    return atomic_replace(tmp, path);
}

void h5_abort(hid_t f, const char *path) {
    char tmp[4096];
    tmp_name(tmp, sizeof tmp, path);
    if (f >= 0) H5Fclose(f);
    unlink(tmp);
}

int h5_require_checksummed(const char *path) {
    // The superblock sits at 0, 512, 1024, 2048, ... (after a user block): the 8-byte
    // signature, then its version. Read directly, before libhdf5 parses any header.
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    int fd = open(path, O_RDONLY);
    if (fd < 0) return mo_errorf("%s: cannot open (%s)", path, strerror(errno));
    struct stat st;
    int version = -1;
    if (fstat(fd, &st) == 0)
        for (off_t at = 0; at + 9 <= st.st_size; at = at ? at * 2 : 512) {
            unsigned char b[9];
            if (pread(fd, b, 9, at) != 9) break;
            if (!memcmp(b, sig, 8)) {
                version = b[8];
                break;
            }
        }
    close(fd);
    if (version < 0) return mo_errorf("%s: not a readable HDF5 file (truncated or corrupt?)", path);
    if (version < 2)
        return mo_errorf("%s: written in the HDF5 format before 1.8 (superblock version %d, no header checksums), "
                         "which monolith does not read for its own formats; re-create it with this version (from "
                         "h5py: h5py.File(..., libver=(\"v108\", \"v108\")))", path, version);
    return 0;
}

// The first link that is not a hard link (soft, external, user-defined), for h5_open.
static herr_t first_link_elsewhere(hid_t g, const char *name, const H5L_info_t *info, void *out) {
    (void)g;
    if (info->type == H5L_TYPE_HARD) return 0;
    snprintf(out, 512, "/%s is %s link", name,
             info->type == H5L_TYPE_SOFT ? "a soft" : info->type == H5L_TYPE_EXTERNAL ? "an external" : "a user-defined");
    return 1;
}

hid_t h5_open(const char *path, const char *format, int64_t max_version) {
    h5_quiet();
    if (file_check_regular(path)) return -1;  // a FIFO would block, a device never end
    if (format && h5_require_checksummed(path)) return -1;  // before libhdf5 reads anything
    if (H5Fis_hdf5(path) <= 0) {
        mo_errorf("%s: not a readable HDF5 file (truncated or corrupt?)", path);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        mo_errorf("%s: cannot open as HDF5 (truncated or corrupt?)", path);
        return -1;
    }
    // Every object must be in this file, reached by hard links: an external link would
    // read another (unchecked) file, or block forever on a FIFO; a soft link would read
    // an object under a second name. monolith writes neither.
    char link[512] = "";
    if (H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, first_link_elsewhere, link) != 0) {
        if (*link) mo_errorf("%s: %s; monolith reads only objects stored in the file itself", path, link);
        else mo_errorf("%s: cannot list its objects (corrupt file?)", path);
        H5Fclose(f);
        return -1;
    }
    if (!format) return f;
    char got[128];
    if (!h5_attr_exists(f, ".", "format")) {
        mo_errorf("%s: not a %s file (no readable 'format' attribute: another kind of file, or a corrupt header)",
                  path, format);
        H5Fclose(f);
        return -1;
    }
    if (h5_attr_get_str(f, ".", "format", got, sizeof got) != 0) {  // names the file and why
        H5Fclose(f);
        return -1;
    }
    if (strcmp(got, format) != 0) {
        mo_errorf("%s: is a '%s' file, expected '%s'", path, got, format);
        H5Fclose(f);
        return -1;
    }
    int64_t version = 0;
    if (h5_attr_get_i64(f, ".", "format_version", &version) != 0) {
        H5Fclose(f);
        return -1;
    }
    if (version < 1 || version > max_version) {
        mo_errorf("%s: %s format_version %lld is not supported (this monolith reads 1..%lld); upgrade monolith",
                  path, format, (long long)version, (long long)max_version);
        H5Fclose(f);
        return -1;
    }
    return f;
}

int h5_set_format(hid_t f, const char *format, int64_t version) {
    if (h5_attr_set_str(f, ".", "format", format) || h5_attr_set_i64(f, ".", "format_version", version) ||
        h5_attr_set_str(f, ".", "created_by", "monolith " MONOLITH_VERSION))
        return -1;
    return 0;
}

void h5_close(hid_t f) {
    if (f >= 0) H5Fclose(f);
}

const char *h5_name(hid_t loc) {
    static _Thread_local char buf[4096];
    if (H5Fget_name(loc, buf, sizeof buf) < 0) snprintf(buf, sizeof buf, "(hdf5 file)");
    return buf;
}

int h5_exists(hid_t loc, const char *path) {
    // Check each prefix: H5Lexists fails (rather than returning 0) on a missing parent.
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf; *p; p++) {
        if (*p == '/' && p != buf) {
            *p = '\0';
            int e = H5Lexists(loc, buf, H5P_DEFAULT) > 0;
            *p = '/';
            if (!e) return 0;
        }
    }
    return H5Lexists(loc, buf, H5P_DEFAULT) > 0;
}

static hid_t lcpl_with_parents(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    return lcpl;
}

// The little-endian file type for a native memory type.
static hid_t file_type(hid_t memtype) {
    if (H5Tequal(memtype, H5T_NATIVE_FLOAT) > 0) return H5T_IEEE_F32LE;
    if (H5Tequal(memtype, H5T_NATIVE_DOUBLE) > 0) return H5T_IEEE_F64LE;
    if (H5Tequal(memtype, H5T_NATIVE_INT64) > 0) return H5T_STD_I64LE;
    if (H5Tequal(memtype, H5T_NATIVE_INT32) > 0) return H5T_STD_I32LE;
    if (H5Tequal(memtype, H5T_NATIVE_UINT16) > 0) return H5T_STD_U16LE;
    if (H5Tequal(memtype, H5T_NATIVE_UINT32) > 0) return H5T_STD_U32LE;
    if (H5Tequal(memtype, H5T_NATIVE_UINT64) > 0) return H5T_STD_U64LE;
    if (H5Tequal(memtype, H5T_NATIVE_UINT8) > 0) return H5T_STD_U8LE;
    return memtype;
}

hid_t h5_checksummed_dcpl(int rank, const hsize_t *dims, size_t elem_size) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t chunk[H5IO_MAX_RANK], n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    if (rank < 1 || n == 0) return dcpl;  // nothing to checksum (HDF5 cannot chunk these)
    // As few chunks as possible (reads stay one contiguous chunk per tensor), each under
    // HDF5's 4 GB chunk limit.
    for (int i = 0; i < rank; i++) chunk[i] = dims[i];
    while (chunk[0] > 1 && (double)n / dims[0] * chunk[0] * elem_size > (double)(1u << 30)) chunk[0] = (chunk[0] + 1) / 2;
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_fletcher32(dcpl);
    return dcpl;
}

// A new checksummed dataset at path (parents made as needed) of type ftype in the file,
// written from data of type memtype. Returns 0, or -1 (no message: the caller names what).
static int create_and_write(hid_t loc, const char *path, hid_t ftype, hid_t memtype, const void *data, int rank,
                            const hsize_t *dims) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t lcpl = lcpl_with_parents();
    hid_t dcpl = h5_checksummed_dcpl(rank, dims, H5Tget_size(memtype));
    hid_t ds = H5Dcreate2(loc, path, ftype, space, lcpl, dcpl, H5P_DEFAULT);
    herr_t rc = -1;
    if (ds >= 0) rc = H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
    return ds < 0 || rc < 0 ? -1 : 0;
}

int h5_write(hid_t loc, const char *path, hid_t memtype, const void *data, int rank, const hsize_t *dims) {
    if (create_and_write(loc, path, file_type(memtype), memtype, data, rank, dims))
        return mo_errorf("%s: cannot write dataset %s (disk full?)", h5_name(loc), path);
    return 0;
}

int h5_write_f32(hid_t loc, const char *path, const float *data, int rank, const hsize_t *dims) {
    return h5_write(loc, path, H5T_NATIVE_FLOAT, data, rank, dims);
}

int h5_write_i64(hid_t loc, const char *path, const int64_t *data, int rank, const hsize_t *dims) {
    return h5_write(loc, path, H5T_NATIVE_INT64, data, rank, dims);
}

// The size of the file `obj` (any object id) is in, in bytes: an upper bound for the data
// any object of it may claim. 0 if unknown.
static double file_bytes_of(hid_t obj) {
    hid_t f = H5Iget_file_id(obj);
    hsize_t n = 0;
    if (f < 0 || H5Fget_filesize(f, &n) < 0) n = 0;
    if (f >= 0) H5Fclose(f);
    return (double)n;
}

// Strings are FIXED-LENGTH UTF-8, NUL-padded, `width` bytes per element (docs/design.md section 11.1).
// Never variable-length: those live in the file's global heap, whose bytes no HDF5 format
// checksums, and libhdf5 1.10 trusts them (a damaged heap makes H5Aread/H5Dread loop
// forever, memcpy a negative size or malloc what it claims: docs/reliability.md).
// NULLPAD is what h5py and numpy write for fixed-length strings (numpy 'S'), so files
// written from Python have the same type; writers give every element one NUL or more
// (width = longest + 1), so an element read as raw bytes is always a C string.
static hid_t fixed_str_type(size_t width) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, width ? width : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

// Refuses (-1 with the message) a file type that holds variable-length data anywhere: such
// data lives in the global heap, which monolith never reads (see fixed_str_type). Only
// type metadata is looked at, no value is read. `what` is "attribute" or "dataset".
static int refuse_vlen(hid_t loc, const char *what, const char *name, hid_t t) {
    if (H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0)
        return mo_errorf("%s: %s %s is a variable-length string: written by an older monolith (or another "
                         "program); re-create the file with this version", h5_name(loc), what, name);
    if (H5Tdetect_class(t, H5T_VLEN) > 0 || H5Tis_variable_str(t) > 0)
        return mo_errorf("%s: %s %s holds variable-length data, which no monolith file has; the file is corrupt "
                         "or was not written by monolith", h5_name(loc), what, name);
    return 0;
}

// 1 if the file really stores the data the dataset's header announces. HDF5 reads
// never-written space as fill values, so a corrupt or hostile header can claim 2^40
// elements in a file of a few KB; every reader sizes its buffers from h5_shape, so the
// claim is checked here, before anyone allocates. Uncompressed data must be stored in
// full; filtered data may be at most 1100 times smaller (deflate cannot beat 1032:1).
// (Variable-length types are refused before this: see refuse_vlen.)
static int stored_in_full(hid_t ds, hid_t space, double *claimed, double *stored) {
    hssize_t n = H5Sget_simple_extent_npoints(space);
    hid_t t = H5Dget_type(ds);
    hid_t dcpl = H5Dget_create_plist(ds);
    if (n < 0 || t < 0 || dcpl < 0) {
        if (t >= 0) H5Tclose(t);
        if (dcpl >= 0) H5Pclose(dcpl);
        return 0;
    }
    double elem = (double)H5Tget_size(t);
    // Only a compression filter makes stored data smaller (Fletcher32 adds 4 bytes).
    int filtered = 0;
    for (int i = 0, nf = H5Pget_nfilters(dcpl); i < nf; i++) {
        unsigned flags;
        size_t nv = 0;
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nv, NULL, 0, NULL, NULL);
        filtered |= id != H5Z_FILTER_FLETCHER32 && id != H5Z_FILTER_SHUFFLE;
    }
    H5Tclose(t);
    H5Pclose(dcpl);
    *claimed = (double)n * elem;
    *stored = (double)H5Dget_storage_size(ds);
    // The storage size is summed from the chunk index: more than the whole file means a
    // damaged index, not data (the file size is an upper bound for both).
    if (*stored > file_bytes_of(ds)) return 0;
    return *claimed <= *stored * (filtered ? 1100.0 : 1.0);
}

// 0 if every stored chunk of an uncompressed chunked dataset is whole, else -1 with the
// message. libhdf5 1.10 trusts its chunk index (the v1 B-tree, whose nodes carry no
// checksum): a damaged record announcing a smaller chunk, or one that marks the
// Fletcher32 filter as skipped, makes H5Dread copy a whole chunk out of the smaller
// buffer (a heap overflow inside libhdf5, found by fuzz_tokens). So each chunk must
// store exactly its bytes (+ 4 for Fletcher32) with no filter skipped. One index lookup
// per chunk (h5_shape has already checked the chunks fit in the file). Compressed data,
// which monolith never writes, cannot be checked without decompressing it: skipped.
static int chunks_whole(hid_t loc, const char *path, hid_t ds, int rank, const hsize_t *dims) {
    hid_t dcpl = H5Dget_create_plist(ds), t = H5Dget_type(ds);
    int chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED;
    hsize_t chunk[H5IO_MAX_RANK], whole = t >= 0 ? H5Tget_size(t) : 0;
    int ok = chunked && rank >= 1 && H5Pget_chunk(dcpl, rank, chunk) == rank;
    int compressed = 0, fletcher = 0;
    for (int i = 0, nf = chunked ? H5Pget_nfilters(dcpl) : 0; i < nf; i++) {
        unsigned flags;
        size_t nv = 0;
        H5Z_filter_t id = H5Pget_filter2(dcpl, (unsigned)i, &flags, &nv, NULL, 0, NULL, NULL);
        fletcher |= id == H5Z_FILTER_FLETCHER32;
        compressed |= id != H5Z_FILTER_FLETCHER32 && id != H5Z_FILTER_SHUFFLE;
    }
    if (t >= 0) H5Tclose(t);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (!chunked || compressed) return 0;
    if (!ok) return mo_errorf("%s: dataset %s has an unreadable chunk layout (corrupt file)", h5_name(loc), path);
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 0) return 0;  // nothing stored, nothing read
        if (chunk[i] == 0) return mo_errorf("%s: dataset %s has a zero chunk size (corrupt file)", h5_name(loc), path);
        whole *= chunk[i];
    }
    whole += fletcher ? 4 : 0;
    hsize_t at[H5IO_MAX_RANK] = {0}, found = 0, records = 0;
    for (;;) {
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        hsize_t size = 0;
        if (H5Dget_chunk_info_by_coord(ds, at, &mask, &addr, &size) < 0)
            return mo_errorf("%s: dataset %s has an unreadable chunk index (corrupt file)", h5_name(loc), path);
        // A chunk never written reads as fill values, not past a buffer; h5_shape's
        // stored-size check refuses a dataset missing data.
        if (addr != HADDR_UNDEF && (mask != 0 || size != whole))
            return mo_errorf("%s: dataset %s has a damaged chunk at element %llu (%llu bytes stored, a whole chunk is "
                             "%llu%s); the file is corrupt", h5_name(loc), path, (unsigned long long)at[0],
                             (unsigned long long)size, (unsigned long long)whole,
                             mask ? ", and its checksum is marked skipped" : "");
        found += addr != HADDR_UNDEF;
        int d = rank - 1;  // next chunk, last dimension fastest
        while (d >= 0 && (at[d] += chunk[d]) >= dims[d]) at[d--] = 0;
        if (d < 0) break;
    }
    // Records the lookups above cannot reach (damaged coordinates) are still read by
    // libhdf5, which then allocates whatever size they claim: every record must be one of
    // the chunks just checked.
    hid_t space = H5Dget_space(ds);  // (1.10.8 counts 0 chunks for H5S_ALL)
    herr_t rc = space >= 0 ? H5Dget_num_chunks(ds, space, &records) : -1;
    if (space >= 0) H5Sclose(space);
    if (rc < 0 || records != found)
        return mo_errorf("%s: dataset %s has a damaged chunk index (%llu records, %llu at valid positions); the file "
                         "is corrupt", h5_name(loc), path, (unsigned long long)records, (unsigned long long)found);
    return 0;
}

// 0 when the dataset's data is in this file and its chunks are no larger than the data:
// a virtual dataset or external storage reads other files (or a FIFO, forever), and a
// declared chunk larger than the dataset (and than 8 MB) makes libhdf5 allocate that
// chunk to read it (a 5 MB file made inspect take 1 GB).
#define H5IO_CHUNK_SLACK (8.0 * 1024 * 1024)

static int layout_refused(hid_t loc, const char *path, hid_t ds, int rank, const hsize_t *dims) {
    hid_t dcpl = H5Dget_create_plist(ds), t = H5Dget_type(ds);
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    int external = dcpl >= 0 ? H5Pget_external_count(dcpl) : 0;
    hsize_t chunk[H5IO_MAX_RANK];
    int big = 0;
    double chunk_bytes = t >= 0 ? (double)H5Tget_size(t) : 0, data_bytes = chunk_bytes;
    if (layout == H5D_CHUNKED && rank >= 1 && H5Pget_chunk(dcpl, rank, chunk) == rank) {
        for (int i = 0; i < rank; i++) chunk_bytes *= (double)chunk[i], data_bytes *= (double)dims[i];
        // Growing datasets (token sets) have chunks past their data: up to 8 MB is fine.
        big = chunk_bytes > (data_bytes > H5IO_CHUNK_SLACK ? data_bytes : H5IO_CHUNK_SLACK);
    }
    if (t >= 0) H5Tclose(t);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (layout == H5D_VIRTUAL)
        return mo_errorf("%s: dataset %s is virtual (its data is in other files); monolith reads only data stored in "
                         "the file itself", h5_name(loc), path);
    if (external)
        return mo_errorf("%s: dataset %s keeps its data in %d external file%s; monolith reads only data stored in the "
                         "file itself", h5_name(loc), path, external, external == 1 ? "" : "s");
    if (big)
        return mo_errorf("%s: dataset %s declares chunks of %.3g bytes, larger than its %.3g bytes of data (corrupt "
                         "or hostile file)", h5_name(loc), path, chunk_bytes, data_bytes);
    return 0;
}

int h5_shape(hid_t loc, const char *path, int *rank, hsize_t *dims) {
    if (!h5_exists(loc, path)) return mo_errorf("%s: missing dataset %s", h5_name(loc), path);
    hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
    if (ds < 0) return mo_errorf("%s: %s is not a dataset", h5_name(loc), path);
    hid_t t = H5Dget_type(ds);
    int vlen = t < 0 || refuse_vlen(loc, "dataset", path, t);
    if (t >= 0) H5Tclose(t);
    if (vlen) {
        H5Dclose(ds);
        return t < 0 ? mo_errorf("%s: dataset %s has an unreadable type", h5_name(loc), path) : -1;
    }
    hid_t space = H5Dget_space(ds);
    int r = H5Sget_simple_extent_ndims(space);
    int ok = r >= 0 && r <= H5IO_MAX_RANK && H5Sget_simple_extent_dims(space, dims, NULL) >= 0;
    if (ok && layout_refused(loc, path, ds, r, dims)) {
        H5Sclose(space);
        H5Dclose(ds);
        return -1;
    }
    double claimed = 0, stored = 0;
    int full = ok && stored_in_full(ds, space, &claimed, &stored);
    H5Sclose(space);
    int whole = ok && full ? chunks_whole(loc, path, ds, r, dims) : 0;
    H5Dclose(ds);
    if (!ok) return mo_errorf("%s: dataset %s has an unreadable shape", h5_name(loc), path);
    if (whole) return -1;
    if (!full && stored > 0 && stored > file_bytes_of(loc))
        return mo_errorf("%s: dataset %s has a damaged chunk index (it claims %.3g stored bytes, more than the whole "
                         "file); the file is corrupt", h5_name(loc), path, stored);
    if (!full) {
        char sh[128];
        size_t k = 0;
        for (int i = 0; i < r && k < sizeof sh; i++)
            k += (size_t)snprintf(sh + k, sizeof sh - k, "%s%llu", i ? " x " : "", (unsigned long long)dims[i]);
        return mo_errorf("%s: dataset %s has no (or not all) data stored: it claims %s elements (%.3g bytes), "
                         "the file holds %.3g bytes of it; the file is truncated or corrupt",
                         h5_name(loc), path, r ? sh : "scalar", claimed, stored);
    }
    *rank = r;
    return 0;
}

static void shape_str(char *buf, size_t cap, int rank, const hsize_t *dims) {
    size_t n = 0;
    n += snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < rank && n < cap; i++)
        n += snprintf(buf + n, cap - n, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

int h5_read(hid_t loc, const char *path, hid_t memtype, void *data, int rank, const hsize_t *dims) {
    int r;
    hsize_t got[H5IO_MAX_RANK];
    if (h5_shape(loc, path, &r, got)) return -1;
    int same = r == rank;
    for (int i = 0; same && i < rank; i++) same = got[i] == dims[i];
    if (!same) {
        char a[128], b[128];
        shape_str(a, sizeof a, r, got);
        shape_str(b, sizeof b, rank, dims);
        return mo_errorf("%s: dataset %s has shape %s, expected %s", h5_name(loc), path, a, b);
    }
    hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
    herr_t rc = H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(ds);
    if (rc < 0)
        return mo_errorf("%s: cannot read dataset %s (corrupt file: checksum mismatch or damaged data, or wrong "
                         "type)", h5_name(loc), path);
    return 0;
}

int h5_require_f32(hid_t loc, const char *path) {
    hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
    if (ds < 0) return mo_errorf("%s: %s is not a dataset", h5_name(loc), path);
    hid_t t = H5Dget_type(ds);
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    size_t size = t >= 0 ? H5Tget_size(t) : 0;
    if (t >= 0) H5Tclose(t);
    H5Dclose(ds);
    if (cls == H5T_FLOAT && size == 4) return 0;
    return mo_errorf("%s: dataset %s is stored as %s of %zu bytes, not float32 (monolith's tensors are float32; "
                     "the file was not written by monolith, or is damaged)", h5_name(loc), path,
                     cls == H5T_FLOAT ? "floats" : cls == H5T_INTEGER ? "integers" : "another type", size);
}

int h5_read_f32(hid_t loc, const char *path, float *data, int rank, const hsize_t *dims) {
    if (h5_exists(loc, path) && h5_require_f32(loc, path)) return -1;
    return h5_read(loc, path, H5T_NATIVE_FLOAT, data, rank, dims);
}

int h5_write_strings(hid_t loc, const char *path, const char *const *strs, int n) {
    size_t width = 1;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(strs[i]) + 1;
        if (l > width) width = l;
    }
    char *buf = calloc((size_t)(n > 0 ? n : 1), width);
    if (!buf) return mo_errorf("%s: out of memory writing strings %s", h5_name(loc), path);
    for (int i = 0; i < n; i++) memcpy(buf + (size_t)i * width, strs[i], strlen(strs[i]));
    hid_t t = fixed_str_type(width);
    hsize_t dims[1] = {(hsize_t)n};
    int rc = create_and_write(loc, path, t, t, buf, 1, dims);
    H5Tclose(t);
    free(buf);
    if (rc) return mo_errorf("%s: cannot write strings %s (disk full?)", h5_name(loc), path);
    return 0;
}

int h5_read_strings(hid_t loc, const char *path, char **out, int n) {
    int r;
    hsize_t dims[H5IO_MAX_RANK];
    // h5_shape refuses variable-length types and a width x n the file does not store,
    // so the buffer below is never sized by an unchecked claim.
    if (h5_shape(loc, path, &r, dims)) return -1;
    if (r != 1 || dims[0] != (hsize_t)n)
        return mo_errorf("%s: %s should hold %d strings", h5_name(loc), path, n);
    hid_t ds = H5Dopen2(loc, path, H5P_DEFAULT);
    hid_t ft = H5Dget_type(ds);
    if (H5Tget_class(ft) != H5T_STRING) {
        H5Tclose(ft);
        H5Dclose(ds);
        return mo_errorf("%s: %s is not a string dataset", h5_name(loc), path);
    }
    // The file's own type as the memory type: the stored bytes as they are, no conversion.
    size_t width = H5Tget_size(ft);
    char *buf = width ? calloc((size_t)n * width + 1, 1) : NULL;
    herr_t rc = buf ? H5Dread(ds, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : -1;
    for (int i = 0; i < n; i++) {
        const char *s = rc >= 0 ? buf + (size_t)i * width : "";
        out[i] = strndup(s, rc >= 0 ? width : 0);
    }
    free(buf);
    H5Tclose(ft);
    H5Dclose(ds);
    if (rc < 0) return mo_errorf("%s: cannot read strings %s (corrupt file: checksum mismatch or damaged data)",
                                 h5_name(loc), path);
    return 0;
}

// Opens (creating groups if `create`) the object an attribute lives on.
static hid_t attr_owner(hid_t loc, const char *obj, int create) {
    if (!obj || strcmp(obj, ".") == 0) return H5Oopen(loc, ".", H5P_DEFAULT);
    if (!h5_exists(loc, obj)) {
        if (!create) return -1;
        hid_t lcpl = lcpl_with_parents();
        hid_t g = H5Gcreate2(loc, obj, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        H5Pclose(lcpl);
        return g;
    }
    return H5Oopen(loc, obj, H5P_DEFAULT);
}

static int attr_set(hid_t loc, const char *obj, const char *name, hid_t ftype, hid_t mtype, const void *v,
                    int n) {
    hid_t o = attr_owner(loc, obj, 1);
    if (o < 0) return mo_errorf("%s: cannot create group %s", h5_name(loc), obj);
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = n < 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate2(o, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Awrite(a, mtype, v) : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Oclose(o);
    if (rc < 0) return mo_errorf("%s: cannot write attribute %s of %s", h5_name(loc), name, obj);
    return 0;
}

int h5_attr_set_i64(hid_t loc, const char *obj, const char *name, int64_t v) {
    return attr_set(loc, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, -1);
}

int h5_attr_set_f64(hid_t loc, const char *obj, const char *name, double v) {
    return attr_set(loc, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v, -1);
}

int h5_attr_set_i64s(hid_t loc, const char *obj, const char *name, const int64_t *v, int n) {
    return attr_set(loc, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, v, n);
}

int h5_attr_set_u64s(hid_t loc, const char *obj, const char *name, const uint64_t *v, int n) {
    return attr_set(loc, obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, v, n);
}

int h5_attr_set_str(hid_t loc, const char *obj, const char *name, const char *v) {
    hid_t t = fixed_str_type(strlen(v) + 1);
    int rc = attr_set(loc, obj, name, t, t, v, -1);
    H5Tclose(t);
    return rc;
}

int h5_attr_exists(hid_t loc, const char *obj, const char *name) {
    hid_t o = attr_owner(loc, obj, 0);
    if (o < 0) return 0;
    int e = H5Aexists(o, name) > 0;
    H5Oclose(o);
    return e;
}

// Opens attribute `name` and checks it has `n` elements (-1: scalar or 1 element), is not
// variable-length (refuse_vlen) and claims no more bytes than the whole file holds (its
// value is stored in the file, so a bigger claim is a damaged header: the h5_shape rule
// for attributes). No value is read.
static hid_t attr_open(hid_t loc, const char *obj, const char *name, int n, hid_t *owner) {
    char label[512];
    snprintf(label, sizeof label, "%s/%s", obj && strcmp(obj, ".") ? obj : "", name);
    hid_t o = attr_owner(loc, obj, 0);
    if (o < 0 || H5Aexists(o, name) <= 0) {
        if (o >= 0) H5Oclose(o);
        mo_errorf("%s: missing attribute %s", h5_name(loc), label);
        return -1;
    }
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1;
    hid_t space = a >= 0 ? H5Aget_space(a) : -1;
    hssize_t count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    size_t elem = t >= 0 ? H5Tget_size(t) : 0;
    double file_bytes = 0;
    if (space >= 0) H5Sclose(space);
    int bad = 0;
    if (t < 0 || count < 0) {
        bad = mo_errorf("%s: attribute %s is unreadable (corrupt file)", h5_name(loc), label);
    } else if (refuse_vlen(loc, "attribute", label, t)) {
        bad = -1;
    } else if ((n < 0 && count != 1) || (n >= 0 && count != n)) {
        bad = mo_errorf("%s: attribute %s has %lld elements, expected %d", h5_name(loc), label, (long long)count,
                        n < 0 ? 1 : n);
    } else if ((double)count * (double)elem > (file_bytes = file_bytes_of(a))) {
        bad = mo_errorf("%s: attribute %s claims %.3g bytes, more than the file holds (%.0f); the file is corrupt",
                        h5_name(loc), label, (double)count * (double)elem, file_bytes);
    }
    if (t >= 0) H5Tclose(t);
    if (bad) {
        if (a >= 0) H5Aclose(a);
        H5Oclose(o);
        return -1;
    }
    *owner = o;
    return a;
}

static int attr_get(hid_t loc, const char *obj, const char *name, hid_t mtype, void *v, int n) {
    hid_t o;
    hid_t a = attr_open(loc, obj, name, n, &o);
    if (a < 0) return -1;
    herr_t rc = H5Aread(a, mtype, v);
    H5Aclose(a);
    H5Oclose(o);
    if (rc < 0) return mo_errorf("%s: attribute %s has the wrong type", h5_name(loc), name);
    return 0;
}

int h5_attr_get_i64(hid_t loc, const char *obj, const char *name, int64_t *v) {
    return attr_get(loc, obj, name, H5T_NATIVE_INT64, v, -1);
}

int h5_attr_get_f64(hid_t loc, const char *obj, const char *name, double *v) {
    return attr_get(loc, obj, name, H5T_NATIVE_DOUBLE, v, -1);
}

int h5_attr_get_i64s(hid_t loc, const char *obj, const char *name, int64_t *v, int n) {
    return attr_get(loc, obj, name, H5T_NATIVE_INT64, v, n);
}

int h5_attr_get_u64s(hid_t loc, const char *obj, const char *name, uint64_t *v, int n) {
    return attr_get(loc, obj, name, H5T_NATIVE_UINT64, v, n);
}

int h5_attr_get_str(hid_t loc, const char *obj, const char *name, char *buf, size_t cap) {
    hid_t o;
    hid_t a = attr_open(loc, obj, name, -1, &o);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    int is_str = H5Tget_class(ft) == H5T_STRING;
    // A fixed-length string (attr_open refused variable-length ones) of `width` bytes:
    // read with the file's own type, so the stored bytes come back as they are. A width
    // over `cap` is refused before anything is allocated (writers store length + 1).
    size_t width = is_str ? H5Tget_size(ft) : 0;
    char *s = is_str && width <= cap ? calloc(width + 1, 1) : NULL;
    int rc = s && H5Aread(a, ft, s) >= 0 && strlen(s) < cap ? 0 : -1;
    if (rc == 0) memcpy(buf, s, strlen(s) + 1);
    free(s);
    H5Tclose(ft);
    H5Aclose(a);
    H5Oclose(o);
    const char *sep = obj && strcmp(obj, ".") ? "/" : "";
    if (!is_str) return mo_errorf("%s: attribute %s%s%s is not a string", h5_name(loc), sep[0] ? obj : "", sep, name);
    if (rc) return mo_errorf("%s: attribute %s%s%s is a %zu-byte string, longer than the %zu bytes expected (or "
                             "unreadable); the file is corrupt", h5_name(loc), sep[0] ? obj : "", sep, name, width,
                             cap ? cap - 1 : 0);
    return 0;
}
