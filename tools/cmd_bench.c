// cmd_bench.c: `monolith bench <what>`, dispatched from MONOLITH_BENCHES in bench.h.
#include "tools/bench.h"
#include "tools/commands.h"

#include "kernels/roofline.h"
#include "kernels/threads.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int bench_parse_opts(int argc, char **argv, bench_opts *o, const char *usage) {
    static const struct option longopts[] = {
        {"threads", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0}};
    o->threads = 0;
    o->json = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case 't': {
            long n;
            if (cli_whole("bench", "--threads", optarg, 0, 1024, "a whole number (0 = one per core)", &n)) return -1;
            o->threads = (int)n;
            break;
        }
        case 'j': o->json = 1; break;
        case 'h': printf("%s", usage); return 1;
        default: cli_getopt_error("bench", c, argv); return -1;
        }
    }
    if (optind < argc) {
        cli_usage_error("bench", "unexpected argument '%s'", argv[optind]);
        return -1;
    }
    return 0;
}

double bench_cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int bench_parse_model_opts(int argc, char **argv, bench_opts *o, const char **preset, const char *usage) {
    char **rest = malloc((size_t)(argc + 1) * sizeof *rest);
    if (!rest) return -1;
    int n = 0;
    *preset = "bench-S";
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--preset")) {
            if (i + 1 == argc) {
                cli_usage_error("bench", "--preset needs a name (tiny, small, bench-S, fine-S)");
                free(rest);
                return -1;
            }
            *preset = argv[++i];
        } else if (i > 0 && !strncmp(argv[i], "--preset=", 9)) {
            *preset = argv[i] + 9;
        } else {
            rest[n++] = argv[i];
        }
    }
    rest[n] = NULL;
    int rc = bench_parse_opts(n, rest, o, usage);
    free(rest);
    return rc;
}

int bench_machine(int argc, char **argv) {
    bench_opts o;
    int rc = bench_parse_opts(argc, argv, &o, "usage: monolith bench machine [--threads N] [--json]\n");
    if (rc) return rc > 0 ? 0 : 2;
    if (cli_threads(o.threads)) return 1;
    double gf = roofline_sgemm_gflops(1024, 1.0);
    double bw = roofline_membw_gbs(1.0);
    if (o.json)
        printf("{\"threads\": %d, \"sgemm_gflops\": %.1f, \"membw_gbs\": %.1f}\n", threads_count(), gf, bw);
    else
        printf("threads %d   sgemm %.1f GFLOP/s (n=1024)   memory %.1f GB/s\n", threads_count(), gf, bw);
    return 0;
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} benches[] = {
#define X(n, h) {#n, bench_##n, h},
    MONOLITH_BENCHES(X)
#undef X
};

int cmd_bench(int argc, char **argv) {
    int n = (int)(sizeof benches / sizeof benches[0]);
    if (argc >= 2)
        for (int i = 0; i < n; i++)
            if (!strcmp(argv[1], benches[i].name)) return benches[i].fn(argc - 1, argv + 1);
    int help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"));
    if (!help) {
        if (argc < 2) return cli_usage_error("bench", "bench needs what to measure: machine, kernels, train, infer or tokenizer");
        return cli_usage_error("bench", "unknown benchmark '%s' (the first word after bench)", argv[1]);
    }
    printf("usage: monolith bench <what> [--threads N] [--json]\n");
    for (int i = 0; i < n; i++) printf("  %-10s %s\n", benches[i].name, benches[i].help);
    return 0;
}
