// fuzz.h: shared helpers of the libFuzzer targets in tests/fuzz/.
//
// Each target defines LLVMFuzzerTestOneInput (and may define LLVMFuzzerInitialize). The
// same source builds two ways: with clang -fsanitize=fuzzer (-DMONOLITH_FUZZ=ON, the
// fuzzing engine drives it) and with the normal compiler linked to tests/fuzz/replay.c,
// which feeds it every committed seed and regression input (ctest fuzz_replay_<target>),
// so a crash found once stays fixed in every build, sanitized or not.
//
// A target returns 0 for every input; it aborts (via FUZZ_CHECK) only when an invariant
// of the code under test is broken, e.g. decode(encode(text)) != text.
#ifndef MONOLITH_FUZZ_H
#define MONOLITH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

// A per-process scratch file for readers that take a path: on /dev/shm when it exists
// (no disk writes per input), else in $TMPDIR or /tmp. Removed at exit.
static char fuzz_path_buf[256];
static void fuzz_path_cleanup(void) {
    if (fuzz_path_buf[0]) unlink(fuzz_path_buf);
}
static inline const char *fuzz_scratch_path(const char *suffix) {
    if (!fuzz_path_buf[0]) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(fuzz_path_buf, sizeof fuzz_path_buf, "%s/monolith-fuzz-%ld%s", dir, (long)getpid(), suffix);
        atexit(fuzz_path_cleanup);
    }
    return fuzz_path_buf;
}

// Writes data to the scratch file and returns its path (NULL if it cannot be written).
static inline const char *fuzz_write_file(const uint8_t *data, size_t size, const char *suffix) {
    const char *path = fuzz_scratch_path(suffix);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    if (fclose(f) != 0 || w != size) return NULL;
    return path;
}

// A NUL-terminated copy of data (free with free()).
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    if (size) memcpy(s, data, size);
    s[size] = 0;
    return s;
}

#endif
