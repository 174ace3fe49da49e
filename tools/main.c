// main.c: `monolith <command> [flags]`, dispatched from the table in commands.h.
#include "tools/commands.h"

#include "engine/base/error.h"
#include "engine/comm.h"
#include "kernels/threads.h"

#include <stdio.h>
#include <string.h>

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

static void usage(FILE *out) {
    fprintf(out, "usage: monolith <command> [flags]   (monolith <command> --help for its flags)\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(out, "  %-12s %s\n", "help", "this list");
    fprintf(out, "  %-12s %s\n", "--version", "print the version");
}

static int run(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("monolith %s\n", MONOLITH_VERSION);
        return 0;
    }
    for (int i = 0; i < n_commands; i++)
        if (!strcmp(name, commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "monolith: unknown command '%s'; run 'monolith help' for the list\n", name);
    return 2;
}

// MPI starts only under a launcher (engine/comm.h). A rank that fails ends the whole job
// (comm_abort), so the others never wait in a collective for it.
int main(int argc, char **argv) {
    if (comm_init(&argc, &argv)) return cmd_fail();
    int rc = run(argc, argv);
    // 130: every rank stopped at the same step on a signal (train), nothing to abort.
    if (rc && rc != 130 && comm_size() > 1) comm_abort(rc);
    comm_finalize();
    return rc;
}
