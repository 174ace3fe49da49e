// spin_barrier.c: counter + phase barrier, pause-spinning then yielding.
#include "kernels/spin_barrier.h"

#include <sched.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax(void) { _mm_pause(); }
#else
static inline void cpu_relax(void) {}
#endif

void spin_barrier_reset(spin_barrier *b) {
    atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
    atomic_store_explicit(&b->phase, 0, memory_order_release);
}

void spin_barrier_wait(spin_barrier *b, int n, int *phase) {
    const int mine = (*phase)++;
    if (n <= 1) return;
    // acq_rel: the last thread to arrive sees every other thread's writes, and its
    // release of the next phase publishes them (and its own) to all the waiters.
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == n - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&b->phase, mine + 1, memory_order_release);
        return;
    }
    for (int spins = 0; atomic_load_explicit(&b->phase, memory_order_acquire) == mine; spins++) {
        if (spins < SPIN_BARRIER_SPINS) cpu_relax();
        else sched_yield();
    }
}
