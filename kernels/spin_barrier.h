// spin_barrier.h: a barrier for the threads of ONE parallel region, cheap when they
// arrive close together.
//
// Decode at batch 1 (infer/decode.c) runs a whole token in one OpenMP region and meets
// four or five times per layer, every few tens of microseconds. libgomp's own barrier
// sleeps in the kernel (a futex) as soon as a thread waits when OMP_WAIT_POLICY=PASSIVE,
// and a futex wake-up costs about as much as the work between two meetings. This one
// spins on a shared counter with the `pause` instruction for a bounded time (about
// SPIN_BARRIER_SPINS pauses, some 50 microseconds on this machine), and only then sleeps
// on a futex, woken by the last thread to arrive: on a machine shared with other jobs a
// thread whose partner was descheduled gives its core away after that time instead of
// spinning for a whole time slice.
//
// Usage: spin_barrier_reset() from serial code before the region, then in the region
// every one of its n threads calls spin_barrier_wait(b, n, &phase) at the same points,
// each with its own `phase` starting at 0. Memory written before the wait by any thread
// is visible to all threads after it.
#ifndef MONOLITH_SPIN_BARRIER_H
#define MONOLITH_SPIN_BARRIER_H

#include <stdatomic.h>
#include <stddef.h>

#define SPIN_BARRIER_SPINS 2048

typedef struct {
    _Alignas(64) atomic_int arrived;  // threads at the barrier in the current phase
    _Alignas(64) atomic_int phase;    // completed phases (each on its own cache line)
    atomic_int sleepers;              // threads asleep on `phase` (or about to be)
} spin_barrier;

// Sets b to its initial state (no thread waiting, phase 0). Not thread-safe: call it
// before the threads start.
void spin_barrier_reset(spin_barrier *b);

// Waits until all n threads have called it for phase *phase, then increments *phase.
// n == 1 returns at once.
void spin_barrier_wait(spin_barrier *b, int n, int *phase);

// spin_barrier_wait that, while it spins, prefetches the lines of [p, p + bytes) (a few
// a spin, at most SPIN_BARRIER_PREFETCH bytes): the start of the rows the thread reads
// after the meeting (infer/decode_one.c), whose stream would otherwise begin with loads
// waiting on memory's latency. No more than that: while it waits, its partner is still
// reading, and the two share the memory's rate. p NULL or bytes 0: spin_barrier_wait.
#define SPIN_BARRIER_PREFETCH (32 << 10)
void spin_barrier_wait_prefetch(spin_barrier *b, int n, int *phase, const void *p, size_t bytes);

#endif
