// roofline.h: this machine's own limits, measured in the same run as a benchmark so that
// results are reported as shares of them (shared, noisy machines make absolute numbers
// drift; ratios measured side by side do not).
#ifndef MONOLITH_ROOFLINE_H
#define MONOLITH_ROOFLINE_H

#include "engine/base/clock.h"

#include <stddef.h>
#include <stdint.h>


// GFLOP/s of cblas_sgemm on square n x n matrices with the current thread count, best
// of several repetitions lasting at least `min_seconds` in all.
double roofline_sgemm_gflops(int n, double min_seconds);

// The same for the bf16 x bf16 -> fp32 product --precision bf16 runs (kernels/bf16.h,
// matmul_bf16_nn), or 0 where the CPU has no AVX512_BF16. Beside the sgemm rate it is the
// ceiling of bf16 training's speed-up on its products: a CPU whose vdpbf16ps does fewer
// multiply-adds a cycle than its FMAs (docs/benchmarks.md, "bf16 on a CPU whose
// vdpbf16ps is half its FMA rate") can give bf16 no speed-up at all.
double roofline_bf16_gflops(int n, double min_seconds);

// Memory bandwidth in GB/s (10^9 bytes): a parallel read-plus-write stream over buffers
// far larger than the caches (STREAM's "scale" kernel; bytes counted = 2 per float moved
// in each direction, as STREAM does), best of several repetitions.
double roofline_membw_gbs(double min_seconds);

// A buffer for roofline_read_gbs: 256 MB of 64-bit integers (*n of them) on huge pages
// where the kernel allows, as decode's weights are (on this VM 4 KiB pages cost a large
// share of the read rate, and a roofline is the best rate). NULL when out of memory;
// free() it.
uint64_t *roofline_read_buffer(size_t *n);

// Read bandwidth in GB/s: every thread sums its part of buf[n] (64-bit integer sums, so
// the compiler may vectorize them exactly), best of `reps` passes. Decode only reads its
// weights, so this, not STREAM's read-plus-write rate, is its roofline.
double roofline_read_gbs(const uint64_t *buf, size_t n, int reps);
// The same read, its mean rate over passes lasting at least `seconds` in all.
double roofline_read_mean_gbs(const uint64_t *buf, size_t n, double seconds);

// The sum of [p, p + bytes) as 64-bit words (a byte at a time for a tail under 8): a
// plain read of those bytes by the calling thread, as roofline_read_gbs's threads read
// (for infer/decode_probe.c, which reads decode's weights so). Any alignment.
uint64_t roofline_sum_bytes(const void *p, size_t bytes);

// The share of [p, p + bytes) that the kernel backs with transparent huge pages now
// (/proc/self/smaps: each mapping's AnonHugePages, spread evenly over its part in the
// range), or -1 where that is not known. A read roofline is only the memory's rate for
// weights on the same kind of pages: 4 KiB pages read 15-30% slower on this VM, and
// whether the kernel finds free 2 MiB pages for a buffer changes from run to run.
double roofline_huge_share(const void *p, size_t bytes);

#endif
