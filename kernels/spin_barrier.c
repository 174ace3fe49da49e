// spin_barrier.c: counter + phase barrier, pause-spinning then sleeping on a futex.
#include "kernels/spin_barrier.h"

#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax(void) { _mm_pause(); }
static inline void prefetch_l2(const char *p) { _mm_prefetch(p, _MM_HINT_T1); }
#else
static inline void cpu_relax(void) {}
static inline void prefetch_l2(const char *p) { __builtin_prefetch(p, 0, 2); }
#endif

// atomic_int has the size and representation of int (C11 7.17.6), as futex needs.
static void futex_wait(atomic_int *addr, int expected) {
    syscall(SYS_futex, (int *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(atomic_int *addr) { syscall(SYS_futex, (int *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0); }

void spin_barrier_reset(spin_barrier *b) {
    atomic_store(&b->arrived, 0);
    atomic_store(&b->phase, 0);
    atomic_store(&b->sleepers, 0);
}

void spin_barrier_wait(spin_barrier *b, int n, int *phase) { spin_barrier_wait_prefetch(b, n, phase, NULL, 0); }

void spin_barrier_wait_prefetch(spin_barrier *b, int n, int *phase, const void *p, size_t bytes) {
    const int mine = (*phase)++;
    if (n <= 1) return;
    // The last thread to arrive sees every other thread's writes (acq_rel), and its
    // store of the next phase publishes them and its own to all the waiters.
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == n - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_store(&b->phase, mine + 1);  // seq_cst: ordered before the load of sleepers
        if (atomic_load(&b->sleepers) > 0) futex_wake_all(&b->phase);
        return;
    }
    // Prefetching spins do not count towards the spins before sleeping: they are work.
    const char *next = p;
    size_t done = 0;
    if (!next || bytes > SPIN_BARRIER_PREFETCH) bytes = next ? SPIN_BARRIER_PREFETCH : 0;
    for (int spins = 0; spins < SPIN_BARRIER_SPINS;) {
        if (atomic_load_explicit(&b->phase, memory_order_acquire) != mine) return;
        if (done < bytes) {
            for (int i = 0; i < 4 && done < bytes; i++, done += 64) prefetch_l2(next + done);
        } else {
            cpu_relax();
            spins++;
        }
    }
    // Sleep. A waker that read sleepers == 0 stored the new phase before that read, and
    // our increment comes after it, so futex_wait sees the new phase and returns at once:
    // no wake-up is lost.
    while (atomic_load(&b->phase) == mine) {
        atomic_fetch_add(&b->sleepers, 1);
        futex_wait(&b->phase, mine);
        atomic_fetch_sub(&b->sleepers, 1);
    }
}
