// gguf.h: the GGUF v3 container of llama.cpp (ggml/include/gguf.h there): read from a
// buffer with every length, count and offset checked against it, and written atomically.
//
// Layout (all little-endian):
//   "GGUF", u32 version (3), u64 n_tensors, u64 n_kv
//   n_kv x   { string key, u32 value type, value }      string = u64 length + bytes
//   n_tensors x { string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset }
//   padding to `general.alignment` (default 32), then the tensor data; each tensor's
//   offset is relative to that start and a multiple of the alignment.
// ne[0] is the fastest-varying dimension: a monolith matrix [out, in] is ne = {in, out},
// an expert stack [E, out, in] is ne = {in, out, E}.
//
// Tensor types read and written: F32, F16, BF16 and Q8_0 (blocks of 32 weights: an f16
// scale d then 32 int8 q, weight = d * q; engine/interop/gguf_types.h). Others are parsed (their
// names are known for messages) but have no size here, so using one is refused by name.
//
// Hostile input: a count, length or offset that cannot fit in the rest of the buffer is
// refused before anything is allocated for it (so a header claiming 2^40 tensors costs
// nothing), as are a truncated file, an unknown value type, more than 4 dimensions, a
// tensor past the end of the file or overlapping another, an alignment that is not a power
// of two, and nested arrays. Messages are one line naming the origin (file) and the item.
#ifndef MONOLITH_GGUF_H
#define MONOLITH_GGUF_H

#include <stddef.h>
#include <stdint.h>

enum {
    GGUF_VT_UINT8 = 0, GGUF_VT_INT8, GGUF_VT_UINT16, GGUF_VT_INT16, GGUF_VT_UINT32, GGUF_VT_INT32,
    GGUF_VT_FLOAT32, GGUF_VT_BOOL, GGUF_VT_STRING, GGUF_VT_ARRAY, GGUF_VT_UINT64, GGUF_VT_INT64,
    GGUF_VT_FLOAT64, GGUF_VT_COUNT
};

// The ggml tensor types monolith reads and writes (ggml.h numbering).
enum { GGML_T_F32 = 0, GGML_T_F16 = 1, GGML_T_Q8_0 = 8, GGML_T_BF16 = 30 };

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGN 32

typedef struct {
    const char *key;  // NUL-terminated copy
    uint32_t type;
    // Scalars: the value widened (integers and bool in i or u, floats in f). Strings: s
    // (a NUL-terminated copy; the text may itself hold NULs), len.
    int64_t i;
    uint64_t u;
    double f;
    const char *s;
    uint64_t len;
    // Arrays: element type, count, the raw elements inside the buffer; for string arrays
    // str_off[k] is the offset (from raw) of element k's u64 length.
    uint32_t arr_type;
    uint64_t n;
    const uint8_t *raw;
    uint64_t *str_off;
} gguf_kv;

typedef struct {
    const char *name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];  // unused dimensions are 1
    uint32_t type;
    uint64_t offset;            // relative to the data section
    const uint8_t *data;        // inside the buffer (NULL for a type without a known size)
    size_t nbytes;              // 0 when the type's size is unknown
} gguf_tensor;

typedef struct {
    char origin[256];
    const uint8_t *buf;
    size_t size;
    void *map;  // mmap'd by gguf_open
    uint32_t version;
    size_t alignment;
    uint64_t n_kv, n_tensors;
    gguf_kv *kv;
    gguf_tensor *t;
} gguf_file;

// Parses buf[0..n) (kept, not copied: it must outlive g). `origin` names it in messages.
// Returns 0, or -1 with mo_error(); g is then empty and gguf_close is still safe.
int gguf_parse(gguf_file *g, const uint8_t *buf, size_t n, const char *origin);
// Maps PATH read-only and parses it.
int gguf_open(gguf_file *g, const char *path);
void gguf_close(gguf_file *g);

const gguf_kv *gguf_find(const gguf_file *g, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);
// An integer key (any integer type or bool) into *v. If absent: 0 when !required (v left
// as is), else -1 naming the key. A present key of another type or out of range: -1.
int gguf_get_int(const gguf_file *g, const char *key, int64_t *v, int required);
// A float key (float32/float64), same rules.
int gguf_get_float(const gguf_file *g, const char *key, double *v, int required);
// A string key, or NULL (with mo_error() naming the key) if absent or not a string.
const char *gguf_get_str(const gguf_file *g, const char *key, uint64_t *len);
// Element k of a string array (bounds were checked at parse).
const char *gguf_arr_str(const gguf_kv *kv, uint64_t k, uint64_t *len);
// Element k of an integer array, widened.
int64_t gguf_arr_int(const gguf_kv *kv, uint64_t k);

// "F32", "Q4_K", ... or "unknown".
const char *ggml_type_name(uint32_t type);
// Bytes of n elements of `type` (n a multiple of the block size), or 0 for a type monolith
// does not read or a bad n.
size_t ggml_type_nbytes(uint32_t type, uint64_t n);

// ---------------------------------------------------------------- writing

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
// Key-value pairs, in the order added. Each returns 0 or -1 (out of memory).
int gguf_w_str(gguf_writer *w, const char *key, const char *s);
int gguf_w_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_w_f32(gguf_writer *w, const char *key, float v);
int gguf_w_f64(gguf_writer *w, const char *key, double v);
int gguf_w_bool(gguf_writer *w, const char *key, int v);
int gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *s, uint64_t n);
int gguf_w_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
// A tensor: `data` (nbytes) is taken over by the writer and freed with it.
int gguf_w_tensor(gguf_writer *w, const char *name, int n_dims, const int64_t *ne, uint32_t type, void *data,
                  size_t nbytes);
// Writes PATH.tmp, fsyncs and renames it to PATH. Returns 0 or -1 (PATH untouched).
int gguf_write(gguf_writer *w, const char *path);

#endif
