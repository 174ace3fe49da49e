// bench.h: `monolith bench <what>`. One line per benchmark in MONOLITH_BENCHES; each
// lives in its own tools/bench_*.c as `int bench_<what>(int argc, char **argv)` and
// reports its rates beside this machine's sgemm and memory rates measured in the same
// run (kernels/roofline.h).
#ifndef MONOLITH_BENCH_H
#define MONOLITH_BENCH_H

#include "engine/params.h"

#include <stddef.h>

#define MONOLITH_BENCHES(X)                                        \
    X(machine, "this machine's sgemm GFLOP/s and memory GB/s")     \
    X(kernels, "grouped GEMM vs one sgemm, attention, elementwise GB/s") \
    X(train, "tokens/s and GFLOP/s of a training step (fwd+bwd+AdamW) of a preset, batch 8 x seq 256") \
    X(infer, "prefill 256 and decode 128 tokens/s of a preset (batch 1) vs sgemm and memory rates") \
    X(tokenizer, "BPE encoding MB/s (GPT-2 vocabulary, the fetched corpora; compare scripts/bench_gpt_tokenizer.mjs)")

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

// The same for benchmarks of a model: also takes --preset NAME (*preset, default
// "bench-S"; the name is checked by config_preset).
int bench_parse_model_opts(int argc, char **argv, bench_opts *o, const char **preset, const char *usage);

// CPU seconds used by this process (all threads). On a machine shared with other jobs
// wall time stretches whenever another job holds a core; CPU time much less, so the
// model benchmarks report both.
double bench_cpu_seconds(void);

// Parameters whose FLOPs count (2 per multiply-add per token), as the PyTorch peer
// counts them: the active parameters without the embedding table (a lookup) and the
// final norm. Defined in bench_train.c.
size_t bench_flop_params(const mo_param_table *pt);

#endif
