// clock.h: the program's clock, for progress lines, timings and benchmarks.
#ifndef MONOLITH_CLOCK_H
#define MONOLITH_CLOCK_H

// Seconds on a monotonic clock (CLOCK_MONOTONIC: never jumps with the wall clock).
double now_seconds(void);

#endif
