// huge.c: big arenas on transparent huge pages (huge.h).
#include "engine/base/huge.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25  // Linux 6.1 (asm-generic/mman-common.h); older kernels refuse it, harmlessly
#endif

void mo_advise_huge(const void *p, size_t bytes, int collapse) {
    uintptr_t a = ((uintptr_t)p + MO_HUGE_PAGE - 1) & ~(uintptr_t)(MO_HUGE_PAGE - 1);
    uintptr_t b = ((uintptr_t)p + bytes) & ~(uintptr_t)(MO_HUGE_PAGE - 1);
    if (b <= a || getenv("MONOLITH_NO_HUGE")) return;
    madvise((void *)a, b - a, MADV_HUGEPAGE);
    if (collapse) madvise((void *)a, b - a, MADV_COLLAPSE);
}

void *mo_alloc_huge(size_t bytes) {
    // Below two huge pages the TLB gains little and the rounding would waste most of it.
    if (bytes < 2 * MO_HUGE_PAGE) return aligned_alloc(64, bytes ? (bytes + 63) / 64 * 64 : 64);
    size_t n = (bytes + MO_HUGE_PAGE - 1) / MO_HUGE_PAGE * MO_HUGE_PAGE;
    void *p = aligned_alloc(MO_HUGE_PAGE, n);
    if (p) mo_advise_huge(p, n, 0);
    return p;
}
