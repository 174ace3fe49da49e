// preinit.c: what must happen before any shared library starts (ELF .preinit_array,
// run by the dynamic linker before every library initializer; executables only).
//
// Three defaults that libraries read from the environment in their own initializers,
// before main. A setenv here does not reach them: libc's initializer, which runs after
// this, resets environ to the process's original array. So when one of them is missing
// the process runs itself again (execve of its own file, found through /proc/self/exe,
// same arguments) with the environment it needs, once; without /proc it goes on with the
// libraries' defaults.
//
// - OMP_WAIT_POLICY=PASSIVE unless the user set a policy. Unset, libgomp spins about
//   300,000 turns at every barrier before it sleeps, and on a machine whose cores other
//   jobs share that spinning takes the time the other threads need (docs/threading.md,
//   "Fast by default"); PASSIVE is what docs/threading.md recommends and what the
//   benchmarks of docs/benchmarks.md ran with. `monolith help` says so.
// - OPENBLAS_CORETYPE unless the user set it: the kernels OpenBLAS picks for a CPU of the
//   same instructions when it knows the model (openblas_core below). OpenBLAS chooses by a
//   table of CPU models and, on a model newer than its table, falls back silently to its
//   SSE3 "Prescott" kernels: Debian's 0.3.21 does so on an Emerald Rapids Xeon (family 6,
//   model 207), where a bench-S training step then takes twice the CPU time
//   (docs/benchmarks.md, "Fast by default: OpenBLAS's kernels").
// - OpenBLAS's initializer allocates a 128 MB buffer for every core, and when an
//   address-space limit (ulimit -v) refuses one it retries forever: a spin before main.
//   So, under such a limit only: OpenBLAS starts with one thread (OPENBLAS_NUM_THREADS=1
//   unless the user set it; threads_init raises the count after
//   threads_check_memory_limit found room), and a limit too small even for that is
//   refused here with one line.
#include "preinit.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define START_BYTES (256.0 * 1024 * 1024)  // libraries' own start-up and OpenBLAS's first buffer, measured

// VmSize from /proc/self/statm with plain system calls (nothing here may need a library
// that is not started yet).
static double mapped_bytes(void) {
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[64] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    return (double)strtoull(buf, NULL, 10) * (double)sysconf(_SC_PAGESIZE);
}

// Whether envp holds NAME=... (the original environment; getenv is not ready yet).
static int has_var(char **envp, const char *name) {
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++)
        if (!strncmp(*e, name, n) && (*e)[n] == '=') return 1;
    return 0;
}

// The rungs of OpenBLAS's own choice for a model it knows (0.3.21's get_coretype): AVX512_BF16
// with AVX512VL Cooperlake, AVX512VL SkylakeX, AVX2 Haswell (Zen on AMD); each rung only when
// the OS saves the registers (libgcc's tests read XCR0, as OpenBLAS's do). So on every CPU
// OpenBLAS recognises, this names the core it would pick anyway, and on one it does not, the
// core it would pick if it did. Other vendors and older CPUs: NULL, OpenBLAS's own choice.
// (A newer OpenBLAS picks SapphireRapids on AMX CPUs: the same sgemm kernels as Cooperlake,
// it adds AMX only to sbgemm, which monolith does not call. An OpenBLAS older than its
// Cooperlake core, added in 2020, would refuse that name and fall back to Prescott.)
const char *openblas_core(void) {
    __builtin_cpu_init();  // libgcc's CPU table (linked in statically); its constructor has not run yet
    int intel = __builtin_cpu_is("intel"), amd = __builtin_cpu_is("amd");
    if (!intel && !amd) return NULL;
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    if (avx512 && __builtin_cpu_supports("avx512bf16")) return "Cooperlake";
    if (avx512) return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return intel ? "Haswell" : "Zen";
    return NULL;
}

static void before_libraries(int argc, char **argv, char **envp) {
    (void)argc;
    const char *add[3];
    int n_add = 0;
    char core[64];
    if (!has_var(envp, "OMP_WAIT_POLICY")) add[n_add++] = "OMP_WAIT_POLICY=PASSIVE";
    const char *pick = has_var(envp, "OPENBLAS_CORETYPE") ? NULL : openblas_core();
    if (pick) {
        snprintf(core, sizeof core, "OPENBLAS_CORETYPE=%s", pick);
        add[n_add++] = core;
    }
    struct rlimit rl;
    if (!getrlimit(RLIMIT_AS, &rl) && rl.rlim_cur != RLIM_INFINITY) {
        if (!has_var(envp, "OPENBLAS_NUM_THREADS")) add[n_add++] = "OPENBLAS_NUM_THREADS=1";
        double used = mapped_bytes(), limit = (double)rl.rlim_cur;
        if (used + START_BYTES > limit) {
            char msg[256];
            int k = snprintf(msg, sizeof msg,
                             "monolith: the address-space limit (ulimit -v %.0f) is too small to start: about %.0f MB "
                             "are needed (libraries and OpenBLAS's first 128 MB buffer); raise it\n",
                             limit / 1024, (used + START_BYTES) / (1 << 20) + 1);
            if (k > 0) (void)!write(2, msg, (size_t)k < sizeof msg ? (size_t)k : sizeof msg - 1);
            _exit(1);
        }
    }
    if (!n_add) return;
    size_t n = 0;
    while (envp && envp[n]) n++;
    char **env = malloc((n + (size_t)n_add + 1) * sizeof *env);
    if (!env) return;
    for (size_t i = 0; i < n; i++) env[i] = envp[i];
    for (int i = 0; i < n_add; i++) env[n + (size_t)i] = (char *)add[i];
    env[n + (size_t)n_add] = NULL;
    // The binary's own path first, so that the process keeps its name (ps, top, perf show
    // the last part of the path run: /proc/self/exe would make it "exe").
    char self[4096];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k > 0) {
        self[k] = 0;
        execve(self, argv, env);
    }
    execve("/proc/self/exe", argv, env);  // returns only when it failed: go on as we are
    free(env);
}

__attribute__((section(".preinit_array"), used)) static void (*const preinit)(int, char **, char **) = before_libraries;
