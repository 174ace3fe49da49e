// bench.h: `monolith bench <what>`. One line per benchmark in MONOLITH_BENCHES; each
// lives in its own tools/bench_*.c as `int bench_<what>(int argc, char **argv)` and
// reports its rates beside this machine's sgemm and memory rates measured in the same
// run (kernels/roofline.h).
#ifndef MONOLITH_BENCH_H
#define MONOLITH_BENCH_H

#define MONOLITH_BENCHES(X)                                        \
    X(machine, "this machine's sgemm GFLOP/s and memory GB/s")     \
    X(kernels, "grouped GEMM vs one sgemm, attention, elementwise GB/s")

#define X(name, help) int bench_##name(int argc, char **argv);
MONOLITH_BENCHES(X)
#undef X

// Flags every benchmark takes: --threads N, --json.
typedef struct {
    int threads;  // 0: one per core
    int json;     // machine-readable output, one JSON object
} bench_opts;

// Parses the common flags. Returns 0 to go on, 1 after printing `usage` for --help (the
// caller returns 0), or -1 after printing the error and usage (the caller returns 2).
int bench_parse_opts(int argc, char **argv, bench_opts *o, const char *usage);

#endif
