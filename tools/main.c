// main.c: `monolith <command> [flags]`, dispatched from the table in commands.h.
#include "tools/commands.h"
#include "tools/preinit.h"

#include "engine/base/error.h"
#include "engine/base/file.h"
#include "engine/comm.h"
#include "kernels/threads.h"

#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const command commands[] = {
#define X(n, h) {#n, cmd_##n, h},
    MONOLITH_COMMANDS(X)
#undef X
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

int cmd_fail(void) {
    // Under mpirun every rank's errors reach the terminal, each saying which rank it is.
    if (comm_size() > 1) fprintf(stderr, "monolith (rank %d of %d): %s\n", comm_rank(), comm_size(), mo_error());
    else fprintf(stderr, "monolith: %s\n", mo_error());
    return 1;
}

int cli_threads(int n) {
    int cores = threads_cores();
    if (n <= 0) n = cores;
    if (n > cores) {
        fprintf(stderr, "note: --threads %d is more than the %d cores this process may use; using %d\n", n, cores, cores);
        n = cores;
    }
    if (threads_check_memory_limit(n, 0, NULL)) return cmd_fail(), -1;
    threads_init(n);
    return 0;
}

static volatile sig_atomic_t stop_requested = 0;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

const volatile sig_atomic_t *cli_catch_stop(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return &stop_requested;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mo_errorf("%s; see 'monolith %s --help'", msg, cmd);  // (mo_errorf makes it one line)
    fprintf(stderr, "monolith: %s\n", mo_error());
    return 2;
}

int cli_whole(const char *cmd, const char *flag, const char *s, long lo, long hi, const char *what, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return cli_usage_error(cmd, "%s takes %s, not '%s'", flag, what, s);
    *out = v;
    return 0;
}

int cli_seed(const char *cmd, const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);  // would wrap "-1": refused by its sign
    if (!*s || *end || errno || s[0] == '-')
        return cli_usage_error(cmd, "%s takes a whole number >= 0, not '%s'", flag, s);
    *out = v;
    return 0;
}

int cli_getopt_error(const char *cmd, int c, char **argv) {
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    if (c == ':') return cli_usage_error(cmd, "flag %s needs a value", arg);
    if (optopt && !(arg[0] == '-' && arg[1] == '-')) return cli_usage_error(cmd, "unknown flag '-%c'", optopt);
    return cli_usage_error(cmd, "unknown flag '%s'", arg);
}

const char *cli_show(const char *s, char *buf, size_t cap) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 5 < cap; p++) {
        if (*p < 0x20 || *p == 0x7f) n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", *p);
        else if (*p == '\\') buf[n++] = '\\', buf[n++] = '\\';
        else buf[n++] = (char)*p;
    }
    if (cap) buf[n < cap ? n : cap - 1] = 0;
    return buf;
}

int cli_output_distinct(const char *out, const char *const *inputs, size_t n) {
    if (file_check_output(out)) return -1;  // a device, FIFO or folder: refused before the work, not after
    struct stat o, i;
    if (stat(out, &o)) return 0;  // not there yet: it cannot be an input
    for (size_t k = 0; k < n; k++)
        if (inputs[k] && !stat(inputs[k], &i) && i.st_dev == o.st_dev && i.st_ino == o.st_ino)
            return mo_errorf("-o %s is also an input (%s): writing it would replace what is read; choose another -o",
                             out, inputs[k]);
    return 0;
}

static void usage(FILE *out) {
    fprintf(out, "usage: monolith <command> [flags]   (monolith <command> --help for its flags)\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "  %-12s %s\n", "help", "this list");
    fprintf(out, "  %-12s %s\n", "--version", "print the version");
    const char *core = openblas_core();
    fprintf(out, "\nenvironment (set before the libraries start when you set none; docs/threading.md):\n"
                 "  OMP_WAIT_POLICY    PASSIVE: threads sleep at a meeting instead of spinning\n");
    if (core)
        fprintf(out, "  OPENBLAS_CORETYPE  %s on this CPU: the kernels of its instructions (OpenBLAS falls back\n"
                     "                     to SSE3 kernels on CPU models newer than it knows)\n", core);
    else
        fprintf(out, "  OPENBLAS_CORETYPE  left to OpenBLAS on this CPU\n");
}

// `--version`: the version, and which OpenBLAS kernels run (tests/reliability_threads.sh reads it).
static void version(void) {
    const char *ct = getenv("OPENBLAS_CORETYPE"), *core = openblas_core();
    printf("monolith %s\n", MONOLITH_VERSION);
    printf("OpenBLAS kernels %s (OPENBLAS_CORETYPE=%s; monolith's choice on this CPU: %s)\n", openblas_get_corename(),
           ct ? ct : "unset", core ? core : "none, OpenBLAS's own");
}

static int run(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "monolith: give a command; 'monolith help' lists them\n");
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        version();
        return 0;
    }
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    mo_errorf("unknown command '%s'; 'monolith help' lists them", name);
    fprintf(stderr, "monolith: %s\n", mo_error());
    return 2;
}

// Output that did not reach its destination (a full disk, /dev/full, a closed pipe) is
// an error: the command's result is incomplete, whatever the command itself returned.
static int check_stdout(int rc) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return rc;
    if (rc) return rc;  // the command failed and said so (its one line may be this same write error)
    fprintf(stderr, "monolith: cannot write the output (standard output): %s; it is incomplete\n",
            errno ? strerror(errno) : "a write failed (full disk or device?)");
    return rc ? rc : 1;
}

// MPI starts only under a launcher (engine/comm.h). A rank that fails ends the whole job
// (comm_abort), so the others never wait in a collective for it.
int main(int argc, char **argv) {
    if (comm_init(&argc, &argv)) return cmd_fail();
    int rc = check_stdout(run(argc, argv));
    // 130: every rank stopped at the same step on a signal (train), nothing to abort.
    if (rc && rc != 130 && comm_size() > 1) comm_abort(rc);
    comm_finalize();
    return rc;
}
