// roofline.h: this machine's own limits, measured in the same run as a benchmark so that
// results are reported as shares of them (shared, noisy machines make absolute numbers
// drift; ratios measured side by side do not).
#ifndef MONOLITH_ROOFLINE_H
#define MONOLITH_ROOFLINE_H

// Seconds on a monotonic clock.
double now_seconds(void);

// GFLOP/s of cblas_sgemm on square n x n matrices with the current thread count, best
// of several repetitions lasting at least `min_seconds` in all.
double roofline_sgemm_gflops(int n, double min_seconds);

// Memory bandwidth in GB/s (10^9 bytes): a parallel read-plus-write stream over buffers
// far larger than the caches (STREAM's "scale" kernel; bytes counted = 2 per float moved
// in each direction, as STREAM does), best of several repetitions.
double roofline_membw_gbs(double min_seconds);

#endif
