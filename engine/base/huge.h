// huge.h: big arenas on transparent huge pages.
//
// The training step streams its arenas (parameters, gradients, AdamW's m and v: 28 bytes
// a parameter every step; the activations) and decode its weights. On this kind of VM
// (THP set to `madvise`, nested paging) a 4 KiB page costs a TLB miss every 4 KiB of a
// stream, which took about 15% off a plain read (docs/benchmarks.md); the kernel backs
// memory with 2 MiB pages only where it is asked to. Only a hint: the contents stay the
// same, and a kernel without THP (or a refusal) changes nothing but the speed.
// MONOLITH_NO_HUGE (any value) turns the advice off, to measure what it brings.
#ifndef MONOLITH_HUGE_H
#define MONOLITH_HUGE_H

#include <stddef.h>

#define MO_HUGE_PAGE ((size_t)2 << 20)

// Advises the whole 2 MiB pages inside [p, p + bytes) to be huge. `collapse`: also merge
// pages already written (MADV_COLLAPSE, Linux 6.1+, copies them: about 1 s a GB); else
// only pages first touched after the call are huge.
void mo_advise_huge(const void *p, size_t bytes, int collapse);

// `bytes` aligned to 2 MiB and advised huge before its first write (NULL when out of
// memory); free with free(). Below 4 MiB a plain 64-byte aligned block.
void *mo_alloc_huge(size_t bytes);

#endif
