// tokenizer_h5.c: tokenizers stored in checkpoints (read side; the engine writes them).
#include "data/tokenizer_h5.h"

#include "engine/base/error.h"
#include "engine/base/file.h"
#include "engine/base/h5io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static tokenizer *from_h5(const char *path) {
    // Any checkpoint, whatever its format attribute says, but in the checksummed 1.8 file
    // format monolith writes (engine/base/h5io.h).
    hid_t f = h5_require_checksummed(path) ? -1 : h5_open(path, NULL, 0);
    if (f < 0) return NULL;
    tokenizer *t = NULL;
    uint8_t *raw = NULL;
    char **names = NULL;
    int64_t *ids = NULL;
    int rank, ns = 0;
    hsize_t dims[H5IO_MAX_RANK], sdims[H5IO_MAX_RANK];
    if (!h5_exists(f, "tokenizer")) {
        mo_errorf("%s: no /tokenizer group (pass a .tiktoken file, or a checkpoint that stores its tokenizer)", path);
        goto done;
    }
    if (h5_shape(f, "tokenizer/tiktoken", &rank, dims)) goto done;
    if (rank != 1 || dims[0] > ((hsize_t)1 << 32)) {
        mo_errorf("%s: /tokenizer/tiktoken must be 1-D bytes", path);
        goto done;
    }
    if (h5_shape(f, "tokenizer/special_ids", &rank, sdims)) goto done;
    if (rank != 1 || sdims[0] > 1024) {
        mo_errorf("%s: /tokenizer/special_ids must be a 1-D list of at most 1024 ids", path);
        goto done;
    }
    ns = (int)sdims[0];
    raw = malloc(dims[0] ? (size_t)dims[0] : 1);
    names = calloc((size_t)ns + 1, sizeof *names);
    ids = calloc((size_t)ns + 1, sizeof *ids);
    if (!raw || !names || !ids) {
        mo_errorf("%s: out of memory reading /tokenizer", path);
        goto done;
    }
    if (h5_read(f, "tokenizer/tiktoken", H5T_NATIVE_UINT8, raw, 1, dims) ||
        h5_read(f, "tokenizer/special_ids", H5T_NATIVE_INT64, ids, 1, sdims) ||
        h5_read_strings(f, "tokenizer/special_names", names, ns))
        goto done;
    char origin[4200];
    snprintf(origin, sizeof origin, "%s:/tokenizer/tiktoken", path);
    t = tok_from_bytes(raw, (size_t)dims[0], origin, (const char *const *)names, ids, ns);
done:
    for (int i = 0; names && i < ns; i++) free(names[i]);
    free(names), free(ids), free(raw);
    h5_close(f);
    return t;
}

tokenizer *tok_open(const char *path) {
    // A device or FIFO (/dev/zero, a pipe) would be read forever or block.
    if (file_check_regular(path)) {
        mo_errorf("%s (a tokenizer is a .tiktoken or monolith .h5 file)", mo_error());
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return tok_load(path);  // tok_load reports the missing file
    char magic[8] = {0};
    size_t got = fread(magic, 1, 8, f);
    fclose(f);
    if (got == 8 && !memcmp(magic, "\x89HDF\r\n\x1a\n", 8)) return from_h5(path);
    return tok_load(path);
}
