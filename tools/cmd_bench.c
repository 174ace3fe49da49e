// cmd_bench.c: `monolith bench machine|...`: throughput reported beside this machine's
// own sgemm rate and memory bandwidth, measured in the same run.
#include "tools/commands.h"

#include "kernels/roofline.h"
#include "kernels/threads.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int threads;
    int json;
} bench_opts;

static int parse_opts(int argc, char **argv, bench_opts *o) {
    static const struct option longopts[] = {
        {"threads", required_argument, 0, 't'}, {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0}};
    o->threads = 0;
    o->json = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 't': o->threads = atoi(optarg); break;
        case 'j': o->json = 1; break;
        case 'h': return 1;
        default: return -1;
        }
    }
    return 0;
}

static int bench_machine(int argc, char **argv) {
    bench_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc) {
        fprintf(rc > 0 ? stdout : stderr, "usage: monolith bench machine [--threads N] [--json]\n");
        return rc > 0 ? 0 : 2;
    }
    threads_init(o.threads);
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
    {"machine", bench_machine, "this machine's sgemm GFLOP/s and memory GB/s"},
};

int cmd_bench(int argc, char **argv) {
    int n = (int)(sizeof benches / sizeof benches[0]);
    if (argc >= 2)
        for (int i = 0; i < n; i++)
            if (!strcmp(argv[1], benches[i].name)) return benches[i].fn(argc - 1, argv + 1);
    FILE *out = argc >= 2 && strcmp(argv[1], "--help") ? stderr : stdout;
    if (argc >= 2 && strcmp(argv[1], "--help")) fprintf(stderr, "monolith: unknown benchmark '%s'\n", argv[1]);
    fprintf(out, "usage: monolith bench <what> [--threads N] [--json]\n");
    for (int i = 0; i < n; i++) fprintf(out, "  %-10s %s\n", benches[i].name, benches[i].help);
    return out == stdout ? 0 : 2;
}
