// safetensors.h: the safetensors container of Hugging Face (one file of named tensors),
// read with every offset checked against the file and written atomically.
//
// Layout: u64 little-endian N, then N bytes of JSON (padded with spaces), then the data:
//   {"__metadata__": {"format": "pt"},
//    "NAME": {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [BEGIN, END]}, ...}
// BEGIN and END are byte offsets into the data that follows the header; tensors are
// row-major and little-endian, END - BEGIN = numel * the dtype's size.
//
// Hostile input is refused with one line naming the file (and the tensor) before anything
// is allocated for it: a file shorter than its header length, a header over 100 MB (the
// reference implementation's limit) or not a JSON object, an entry without a dtype, shape
// or data_offsets, an unknown dtype, more than 8 dimensions, a shape whose size overflows
// or disagrees with its offsets, offsets past the end of the file, two tensors overlapping,
// a name given twice. Only the header is read at open; tensor data is read on demand.
#ifndef MONOLITH_SAFETENSORS_H
#define MONOLITH_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER ((uint64_t)100 << 20)

// The dtypes of the format. Reading into float32 supports F32, F16 and BF16; the others
// are known (so a file holding them opens) and refused by name when read.
typedef enum {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U64, ST_U32, ST_U16, ST_U8,
    ST_BOOL, ST_F8_E4M3, ST_F8_E5M2, ST_DTYPE_COUNT
} st_dtype;

typedef struct {
    char *name;
    st_dtype dtype;
    int rank;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;  // byte offsets into the data section
} st_tensor;

typedef struct {
    char path[4096];
    FILE *f;
    uint64_t data_start;  // 8 + header length
    uint64_t data_len;    // file size - data_start
    int n;
    st_tensor *t;         // in file order (by begin)
} st_file;

// "F32", "BF16", ...
const char *st_dtype_name(st_dtype d);
// Bytes per element (1 for BOOL and the F8 types).
size_t st_dtype_size(st_dtype d);

// Opens and checks `path` (zeroes sf first; st_close frees it, also after a failure).
// Returns 0, or -1 with mo_error() naming the file and the tensor.
int st_open(st_file *sf, const char *path);
// Parses a header (the N JSON bytes) for a file whose data section is data_len bytes.
// `origin` names the source in messages. What st_open does after reading the file's
// first 8 + N bytes; exposed for tests. Returns 0 or -1.
int st_parse_header(st_file *sf, const char *json, size_t n, uint64_t data_len, const char *origin);
void st_close(st_file *sf);

// The index of tensor `name`, or -1.
int st_find(const st_file *sf, const char *name);

// 0 if tensor i's dtype is one st_read_f32 reads, else -1 naming it.
int st_check_readable(const st_file *sf, int i);
// Reads tensor i into dst (numel floats), widening F16 and BF16 exactly. Returns 0, or -1
// naming the file and tensor for another dtype, a read error or a NaN/Inf value.
int st_read_f32(const st_file *sf, int i, float *dst);

// One tensor to write: float32 data converted to the file's dtype on the way out.
typedef struct {
    const char *name;
    const float *data;
    int rank;
    int64_t shape[ST_MAX_DIMS];
} st_entry;

// Bytes the data of `e` takes in dtype `d` (F32, F16 or BF16).
uint64_t st_entry_bytes(const st_entry *e, st_dtype d);

// Writes entries e[0..n) in that order as `path` (PATH.tmp, fsync, rename), each tensor
// converted to `dtype` (F32, F16 or BF16; rounding to nearest even). `metadata` (may be
// NULL) is a flat list of key/value string pairs for __metadata__, NULL-terminated.
// Returns 0, or -1 (nothing left under `path`).
int st_write(const char *path, const st_entry *e, int n, st_dtype dtype, const char *const *metadata);

#endif
