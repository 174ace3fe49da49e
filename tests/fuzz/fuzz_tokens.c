// fuzz_tokens.c: the token data set reader (data/tokens.h: tokset_info_read and
// tokset_load_split, what the loader of train and eval uses) on mutated real files.
//
// Either the file is refused with a one-line message, or every loaded id is below the
// file's vocab_size and the split has the length the header announced. The in-memory
// cap passed to tokset_load_split is small (16 MiB), as a loader's would be relative to
// the machine: a header claiming more must be refused before any allocation.
#include "tests/fuzz/fuzz.h"

#include "data/tokens.h"
#include "engine/base/error.h"

static void check_message(void) {
    const char *msg = mo_error();
    FUZZ_CHECK(msg[0] != 0 && strchr(msg, '\n') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file(data, size, ".h5");
    if (!path) return 0;
    tokset_info info;
    if (tokset_info_read(path, &info)) {
        check_message();
        return 0;
    }
    FUZZ_CHECK(info.width == 2 || info.width == 4);
    FUZZ_CHECK(info.eot_id >= 0 && info.eot_id < info.vocab_size);
    for (int s = 0; s < 2; s++) {
        tokset_split split;
        if (tokset_load_split(path, &info, s, (uint64_t)16 << 20, &split)) {
            check_message();
            continue;
        }
        FUZZ_CHECK(split.n == info.n_tokens[s] && split.width == info.width);
        for (uint64_t i = 0; i < split.n; i++) FUZZ_CHECK(tokset_at(&split, i) < (uint64_t)info.vocab_size);
        tokset_split_free(&split);
    }
    return 0;
}
