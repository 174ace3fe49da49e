// base_h5io.c: how engine/base/h5io.c stores and reads strings (docs/formats.md).
//
// - Every string monolith writes is a FIXED-LENGTH UTF-8 string, NUL-padded: attributes
//   of length + 1 bytes, string datasets of the longest + 1 (with a Fletcher32 checksum),
//   so nothing lives in the file's global heap, which no HDF5 format checksums and whose
//   bytes libhdf5 1.10 trusts. UTF-8, empty strings, empty lists and a 200 KB attribute
//   (dense attribute storage) round-trip.
// - A variable-length string (what older monolith versions and h5py's default write) or
//   any variable-length type is refused with one line naming the file and the object,
//   WITHOUT reading its value: the test files have their global heap damaged, which
//   makes libhdf5 crash or hang if anything reads it.
// - A string longer than the reader's buffer is refused, never truncated.
// - monolith's own formats are read only in the checksummed 1.8 file format it writes.
// - A dataset whose chunk index announces a short chunk, a skipped checksum, or a chunk
//   outside the dataset is refused before libhdf5 reads it (a heap overflow, or an
//   allocation of what the record claims, inside libhdf5 otherwise).
#include "engine/base/error.h"
#include "engine/base/h5io.h"
#include "tests/testutil.h"

#include <unistd.h>


static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", tu_scratch(), name); }

// The error is one line that mentions every one of `words`.
static void assert_error_names(const char *w1, const char *w2, const char *w3) {
    const char *e = mo_error();
    ck_assert_msg(!strchr(e, '\n'), "not one line: %s", e);
    const char *w[] = {w1, w2, w3};
    for (int i = 0; i < 3; i++) ck_assert_msg(!w[i] || strstr(e, w[i]), "'%s' not in: %s", w[i], e);
}

START_TEST(test_strings_are_fixed_length_utf8) {
    char p[256];
    path_in(p, sizeof p, "fixed.h5");
    const char *names[] = {"a", "", "grüße ✓ longest", "bc"};
    hid_t f = h5_create(p);
    ck_assert(f >= 0);
    ck_assert_int_eq(h5_set_format(f, "monolith-test", 1), 0);
    ck_assert_int_eq(h5_attr_set_str(f, "g/h", "note", "naïve"), 0);
    ck_assert_int_eq(h5_attr_set_str(f, ".", "empty", ""), 0);
    ck_assert_int_eq(h5_write_strings(f, "list/names", names, 4), 0);
    ck_assert_int_eq(h5_write_strings(f, "list/none", NULL, 0), 0);
    ck_assert_int_eq(h5_finish(f, p), 0);

    // The stored types, seen with the plain HDF5 API.
    f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "format", H5P_DEFAULT), t = H5Aget_type(a);
    ck_assert_int_eq(H5Tget_class(t), H5T_STRING);
    ck_assert_int_eq(H5Tis_variable_str(t), 0);
    ck_assert_int_eq(H5Tget_cset(t), H5T_CSET_UTF8);
    ck_assert_int_eq(H5Tget_strpad(t), H5T_STR_NULLPAD);
    ck_assert_uint_eq(H5Tget_size(t), strlen("monolith-test") + 1);
    H5Tclose(t), H5Aclose(a);
    hid_t ds = H5Dopen2(f, "list/names", H5P_DEFAULT);
    t = H5Dget_type(ds);
    ck_assert_int_eq(H5Tis_variable_str(t), 0);
    ck_assert_int_eq(H5Tget_cset(t), H5T_CSET_UTF8);
    ck_assert_uint_eq(H5Tget_size(t), strlen(names[2]) + 1);
    hid_t dcpl = H5Dget_create_plist(ds);
    ck_assert_int_eq(H5Pget_nfilters(dcpl), 1);
    unsigned flags;
    size_t nv = 0;
    ck_assert_int_eq(H5Pget_filter2(dcpl, 0, &flags, &nv, NULL, 0, NULL, NULL), H5Z_FILTER_FLETCHER32);
    H5Pclose(dcpl), H5Tclose(t), H5Dclose(ds);
    H5Fclose(f);

    // And what the readers give back.
    f = h5_open(p, "monolith-test", 1);
    ck_assert_msg(f >= 0, "%s", mo_error());
    char buf[64];
    ck_assert_int_eq(h5_attr_get_str(f, "g/h", "note", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "naïve");
    ck_assert_int_eq(h5_attr_get_str(f, ".", "empty", buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "");
    char *got[4];
    ck_assert_int_eq(h5_read_strings(f, "list/names", got, 4), 0);
    for (int i = 0; i < 4; i++) {
        ck_assert_str_eq(got[i], names[i]);
        free(got[i]);
    }
    ck_assert_int_eq(h5_read_strings(f, "list/none", got, 0), 0);
    ck_assert_int_eq(h5_read_strings(f, "list/names", got, 3), -1);  // the count is checked
    assert_error_names(p, "list/names", "3 strings");
    h5_close(f);
    unlink(p);
}
END_TEST

// A training checkpoint's run options can be long: over 64 KB an attribute no longer fits
// an object header and goes to dense storage (1.8 format). A reader whose buffer is too
// small refuses rather than truncating.
START_TEST(test_long_string_attribute) {
    char p[256];
    path_in(p, sizeof p, "long.h5");
    size_t n = 200000;
    char *s = malloc(n + 1), *back = malloc(n + 1);
    for (size_t i = 0; i < n; i++) s[i] = (char)('a' + i % 26);
    s[n] = 0;
    hid_t f = h5_create(p);
    ck_assert_int_eq(h5_attr_set_str(f, "train", "options", s), 0);
    ck_assert_int_eq(h5_finish(f, p), 0);
    f = h5_open(p, NULL, 0);
    ck_assert_int_eq(h5_attr_get_str(f, "train", "options", back, n + 1), 0);
    ck_assert_str_eq(back, s);
    ck_assert_int_eq(h5_attr_get_str(f, "train", "options", back, 100), -1);
    assert_error_names(p, "train/options", "longer");
    h5_close(f);
    free(s), free(back);
    unlink(p);
}
END_TEST

// Damages the first object of every global heap collection ("GCOL") of `path`: its size
// field becomes 2^64 - 1. libhdf5 1.10 trusts it and crashes, hangs or allocates wildly
// when a variable-length value stored there is read. Returns the number of collections.
static int damage_global_heap(const char *path) {
    FILE *fp = fopen(path, "r+b");
    ck_assert(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    unsigned char *d = malloc((size_t)n);
    rewind(fp);
    ck_assert_int_eq(fread(d, 1, (size_t)n, fp), (size_t)n);
    int found = 0;
    for (long i = 0; i + 32 <= n; i++) {
        if (memcmp(d + i, "GCOL", 4)) continue;
        memset(d + i + 24, 0xff, 8);  // "GCOL", version, 3 reserved, collection size, then object 1: index, refs, reserved, size
        found++;
    }
    rewind(fp);
    ck_assert_int_eq(fwrite(d, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    free(d);
    return found;
}

// A file as older monolith versions (and h5py for a str) wrote it: variable-length UTF-8
// strings, plus a variable-length integer sequence, in the 1.8 format.
static void make_vlen_file(const char *p) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    H5Tset_cset(st, H5T_CSET_UTF8);
    hid_t scalar = H5Screate(H5S_SCALAR);
    const char *fmt = "monolith-checkpoint";
    hid_t a = H5Acreate2(f, "format", st, scalar, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(H5Awrite(a, st, &fmt) >= 0);
    H5Aclose(a);
    hid_t g = H5Gcreate2(f, "train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    a = H5Acreate2(g, "schedule", st, scalar, H5P_DEFAULT, H5P_DEFAULT);
    const char *sched = "cosine";
    ck_assert(H5Awrite(a, st, &sched) >= 0);
    H5Aclose(a);
    H5Gclose(g);
    hsize_t two = 2;
    hid_t sp = H5Screate_simple(1, &two, NULL);
    const char *names[] = {"expert0", "expert1"};
    hid_t ds = H5Dcreate2(f, "names", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, names) >= 0);
    H5Dclose(ds);
    hid_t vt = H5Tvlen_create(H5T_NATIVE_INT);
    int v0[] = {1, 2, 3}, v1[] = {4};
    hvl_t seqs[2] = {{3, v0}, {1, v1}};
    ds = H5Dcreate2(f, "seqs", vt, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert(H5Dwrite(ds, vt, H5S_ALL, H5S_ALL, H5P_DEFAULT, seqs) >= 0);
    H5Dclose(ds);
    H5Tclose(vt), H5Sclose(sp), H5Sclose(scalar), H5Tclose(st);
    H5Fclose(f);
}

START_TEST(test_variable_length_refused_unread) {
    char p[256];
    path_in(p, sizeof p, "vlen.h5");
    make_vlen_file(p);
    ck_assert_int_ge(damage_global_heap(p), 1);

    // Opening it as a monolith file reads the `format` attribute: refused by type.
    ck_assert(h5_open(p, "monolith-checkpoint", 1) < 0);
    assert_error_names(p, "format", "variable-length string");
    ck_assert_msg(strstr(mo_error(), "older monolith"), "%s", mo_error());
    // Every other reader refuses too, each naming the object.
    hid_t f = h5_open(p, NULL, 0);
    ck_assert(f >= 0);
    char buf[64];
    ck_assert_int_eq(h5_attr_get_str(f, "train", "schedule", buf, sizeof buf), -1);
    assert_error_names(p, "train/schedule", "variable-length string");
    int64_t v;
    ck_assert_int_eq(h5_attr_get_i64(f, ".", "format", &v), -1);  // any getter, not only strings
    assert_error_names(p, "format", "variable-length");
    char *out[2];
    ck_assert_int_eq(h5_read_strings(f, "names", out, 2), -1);
    assert_error_names(p, "names", "variable-length string");
    int rank;
    hsize_t dims[H5IO_MAX_RANK];
    ck_assert_int_eq(h5_shape(f, "seqs", &rank, dims), -1);
    assert_error_names(p, "seqs", "variable-length data");
    int32_t ints[2];
    ck_assert_int_eq(h5_read(f, "seqs", H5T_NATIVE_INT32, ints, 1, (hsize_t[]){2}), -1);
    assert_error_names(p, "seqs", "variable-length");
    h5_close(f);
    unlink(p);
}
END_TEST

// libhdf5 trusts the chunk index (v1 B-tree nodes have no checksum): a record that
// announces a smaller chunk, or marks the Fletcher32 filter skipped, made H5Dread copy a
// whole chunk out of a smaller buffer (fuzz_tokens). h5_shape checks every chunk record.
static void damage_chunk_record(const char *path, int size_delta, uint32_t mask) {
    FILE *fp = fopen(path, "r+b");
    ck_assert(fp);
    unsigned char d[1 << 16];
    size_t n = fread(d, 1, sizeof d, fp);
    int found = 0;
    for (size_t i = 0; i + 32 <= n; i++) {
        // "TREE", node type 1 (raw data chunks), level, entries used (2), siblings (2 x 8),
        // then the first key: chunk size (4 bytes), filter mask (4 bytes), offsets.
        if (memcmp(d + i, "TREE", 4) || d[i + 4] != 1) continue;
        uint32_t size, m;
        memcpy(&size, d + i + 24, 4);
        memcpy(&m, d + i + 28, 4);
        size = (uint32_t)((int)size + size_delta);
        m |= mask;
        memcpy(d + i + 24, &size, 4);
        memcpy(d + i + 28, &m, 4);
        found++;
    }
    ck_assert_int_eq(found, 1);
    rewind(fp);
    ck_assert_int_eq(fwrite(d, 1, n, fp), n);
    fclose(fp);
}

// Moves the second chunk record of the first chunk B-tree node of `path` to element
// 4992, outside the dataset: no lookup by coordinate reaches it any more, but libhdf5
// still reads it (and allocates what it claims).
static void misplace_chunk_record(const char *path) {
    FILE *fp = fopen(path, "r+b");
    ck_assert(fp);
    unsigned char d[1 << 16];
    size_t n = fread(d, 1, sizeof d, fp);
    size_t i = 0;
    while (i + 80 <= n && (memcmp(d + i, "TREE", 4) || d[i + 4] != 1)) i++;
    ck_assert(i + 80 <= n);
    // Rank-1 keys are 24 bytes (size, filter mask, 2 offsets), children 8: key 1 starts
    // at 24 + 24 + 8, its first offset 8 bytes into it.
    uint64_t at = 4992;
    memcpy(d + i + 64, &at, 8);
    rewind(fp);
    ck_assert_int_eq(fwrite(d, 1, n, fp), n);
    fclose(fp);
}

START_TEST(test_damaged_chunk_record_refused) {
    char p[256];
    path_in(p, sizeof p, "chunk.h5");
    float x[100], y[100];
    for (int i = 0; i < 100; i++) x[i] = (float)i;
    hsize_t dims[1] = {100};
    for (int kind = 0; kind < 3; kind++) {
        hid_t f = h5_create(p);
        ck_assert_int_eq(h5_write_f32(f, "x", x, 1, dims), 0);
        ck_assert_int_eq(h5_finish(f, p), 0);
        if (kind == 1) damage_chunk_record(p, -4, 0);  // short by the checksum: passes the size total
        if (kind == 2) damage_chunk_record(p, 0, 1);   // Fletcher32 marked skipped
        f = h5_open(p, NULL, 0);
        ck_assert(f >= 0);
        int rc = h5_read_f32(f, "x", y, 1, dims);
        if (kind == 0) {
            ck_assert_msg(rc == 0, "%s", mo_error());
            ck_assert_int_eq(memcmp(x, y, sizeof x), 0);
        } else {
            ck_assert_int_eq(rc, -1);
            assert_error_names(p, "damaged chunk", NULL);
        }
        h5_close(f);
    }
    // Two chunks of 50, the second record moved out of the dataset.
    hid_t f = h5_create(p);
    hsize_t half = 50;
    hid_t sp = H5Screate_simple(1, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &half);
    H5Pset_fletcher32(dcpl);
    hid_t ds = H5Dcreate2(f, "x", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ck_assert(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(ds), H5Pclose(dcpl), H5Sclose(sp);
    ck_assert_int_eq(h5_finish(f, p), 0);
    f = h5_open(p, NULL, 0);
    ck_assert_msg(h5_read_f32(f, "x", y, 1, dims) == 0, "%s", mo_error());
    h5_close(f);
    misplace_chunk_record(p);
    f = h5_open(p, NULL, 0);
    ck_assert_int_eq(h5_read_f32(f, "x", y, 1, dims), -1);
    assert_error_names(p, "damaged chunk index", NULL);
    h5_close(f);
    unlink(p);
}
END_TEST

// monolith's own formats are read only in the 1.8 file format it writes (checksummed
// superblock and headers); the older format (HDF5's default) is refused before libhdf5
// parses a header of it. Files without a monolith format (dump batches) open either way.
START_TEST(test_old_file_format_refused) {
    char p[256];
    path_in(p, sizeof p, "old.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);  // superblock version 0
    ck_assert_int_eq(h5_set_format(f, "monolith-test", 1), 0);
    H5Fclose(f);
    ck_assert(h5_open(p, "monolith-test", 1) < 0);
    assert_error_names(p, "before 1.8", "superblock version 0");
    ck_assert_int_eq(h5_require_checksummed(p), -1);
    f = h5_open(p, NULL, 0);
    ck_assert(f >= 0);
    h5_close(f);
    f = h5_create(p);
    ck_assert_int_eq(h5_set_format(f, "monolith-test", 1), 0);
    ck_assert_int_eq(h5_finish(f, p), 0);
    ck_assert_int_eq(h5_require_checksummed(p), 0);
    f = h5_open(p, "monolith-test", 1);
    ck_assert_msg(f >= 0, "%s", mo_error());
    h5_close(f);
    unlink(p);
}
END_TEST

int main(void) {
    if (!tu_scratch_make("h5io")) return 1;
    Suite *s = suite_create("base_h5io");
    TCase *tc = tcase_create("strings");
    // A reader that did read a damaged heap would hang: fail fast instead.
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_strings_are_fixed_length_utf8);
    tcase_add_test(tc, test_long_string_attribute);
    tcase_add_test(tc, test_variable_length_refused_unread);
    tcase_add_test(tc, test_damaged_chunk_record_refused);
    tcase_add_test(tc, test_old_file_format_refused);
    suite_add_tcase(s, tc);
    return tu_run_suite(s, CK_FORK_GETENV);
}
