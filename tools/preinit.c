// preinit.c: what must happen before any shared library starts (ELF .preinit_array,
// run by the dynamic linker before every library initializer; executables only).
//
// OpenBLAS's initializer allocates a 128 MB buffer for every core, and when an
// address-space limit (ulimit -v) refuses one it retries forever: a spin before main.
// So, under such a limit only: OpenBLAS starts with one thread (OPENBLAS_NUM_THREADS=1
// unless the user set it; threads_init raises the count after
// threads_check_memory_limit found room), and a limit too small even for that is
// refused here with one line.
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

static void before_libraries(int argc, char **argv, char **envp) {
    (void)argc, (void)argv, (void)envp;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) || rl.rlim_cur == RLIM_INFINITY) return;
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
    double used = mapped_bytes(), limit = (double)rl.rlim_cur;
    if (used + START_BYTES <= limit) return;
    char msg[256];
    int k = snprintf(msg, sizeof msg,
                     "monolith: the address-space limit (ulimit -v %.0f) is too small to start: about %.0f MB are needed "
                     "(libraries and OpenBLAS's first 128 MB buffer); raise it\n",
                     limit / 1024, (used + START_BYTES) / (1 << 20) + 1);
    if (k > 0) (void)!write(2, msg, (size_t)k < sizeof msg ? (size_t)k : sizeof msg - 1);
    _exit(1);
}

__attribute__((section(".preinit_array"), used)) static void (*const preinit)(int, char **, char **) = before_libraries;
