#!/usr/bin/env python3
"""perf_jit_callers.py: make perf unwind the samples taken in oneDNN's JIT kernels.

    scripts/perf_jit_callers.py perf.data        (rewrites it in place)

`perf record --call-graph dwarf` stores each sample's user registers and the top of its
stack; `perf script` unwinds them with the callers' DWARF CFI. oneDNN's JIT-generated
kernels (brgemm, its reorders and GEMMs) have none, so a sample taken in one ends at the
kernel and cannot be charged to the product that ran it. They are leaf functions called
through a pointer from libdnnl's C++ code, and their prologue pushes rbx, rbp, r12-r15
right below the return address: the return address is a word above those six that
points just after an indirect call instruction of a mapped file. A kernel's frame may
hold stale such words too, but only in some of its samples, while the true one stands at
the same offset from the stack pointer in all of them: of each sample's first four
candidates, the offset most samples of its kernel (its own anonymous mapping) share is
taken, else its first. Such a sample's registers are rewritten as the caller's right
after the call returned (ip = that address, sp = the word after it, the six registers
from where the prologue pushed them) and the stack words below it dropped, so that perf
unwinds from the caller: the kernel's own frame is left out, everything above it is
perf's own unwinding. Samples in a mapped file's code that has no CFI (assembly kernels
such as OpenBLAS's Prescott ones) get the same treatment, with the first candidate that
points into the same file and no registers restored. Prints how many samples were
rewritten and for how many no return address was found.

Reads perf.data's layout as tools/perf/Documentation/perf.data-file-format.txt and
include/uapi/linux/perf_event.h (Linux 6.1) give it; x86-64 only.
"""
import bisect
import collections
import mmap
import struct
import sys

SAMPLE, MMAP, MMAP2 = 9, 1, 10
# perf_event_attr.sample_type bits, in the order their fields appear in a sample
IDENTIFIER, IP, TID, TIME, ADDR, READ, CALLCHAIN, ID, CPU, PERIOD, STREAM_ID, RAW = (
    1 << 16, 1 << 0, 1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8, 1 << 9, 1 << 10)
BRANCH_STACK, REGS_USER, STACK_USER = 1 << 11, 1 << 12, 1 << 13
# perf_event_x86_regs
BX, BP, SP, IP_REG, R12, R13, R14, R15 = 1, 6, 7, 8, 20, 21, 22, 23
PUSHED = (BX, BP, R12, R13, R14, R15)  # oneDNN's jit_generator::preamble() push order
PROT_EXEC = 4


def call_before(code, end):
    """True when the bytes of `code` up to `end` end with an indirect call (FF /2)."""
    for n in range(2, 9):
        if end - n < 0:
            break
        i = end - n
        if code[i] in range(0x40, 0x50):  # a REX prefix
            i += 1
        if code[i] != 0xFF or i + 1 >= end:
            continue
        modrm = code[i + 1]
        if (modrm >> 3) & 7 != 2:
            continue
        mod, rm = modrm >> 6, modrm & 7
        size = i + 2 - (end - n)
        if mod != 3 and rm == 4:
            size += 1  # SIB
        if mod == 1:
            size += 1
        elif mod == 2 or (mod == 0 and rm == 5):
            size += 4
        if size == n:
            return True
    return False


class Cfi:
    """Whether an address of an ELF file has DWARF CFI (an FDE in .eh_frame_hdr's table)."""

    def __init__(self, data):
        self.data, self.loads, self.table = data, [], None
        if data[:4] != b"\x7fELF" or data[4] != 2:
            return
        phoff, = struct.unpack_from("<Q", data, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
        hdr = None
        for i in range(phnum):
            ptype, _, off, vaddr, _, filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
            if ptype == 1:
                self.loads.append((off, vaddr, filesz))
            elif ptype == 0x6474E550:  # PT_GNU_EH_FRAME: .eh_frame_hdr
                hdr = (off, vaddr)
        if hdr is None or data[hdr[0] + 2] != 0x03 or data[hdr[0] + 3] != 0x3B:
            return  # not the udata4 count / datarel sdata4 table GCC and Clang write
        count, = struct.unpack_from("<I", data, hdr[0] + 8)
        self.hdr_vaddr = hdr[1]
        self.table = [struct.unpack_from("<ii", data, hdr[0] + 12 + 8 * i) for i in range(count)]
        self.starts = [hdr[1] + t[0] for t in self.table]

    def vaddr(self, off):
        for o, v, n in self.loads:
            if o <= off < o + n:
                return off - o + v
        return None

    def offset(self, vaddr):
        for o, v, n in self.loads:
            if v <= vaddr < v + n:
                return vaddr - v + o
        return None

    def covers(self, off):
        """True when the code at file offset off has CFI (or this cannot tell)."""
        va = self.vaddr(off)
        if self.table is None or va is None:
            return True
        i = bisect.bisect_right(self.starts, va) - 1
        if i < 0:
            return False
        fde = self.offset(self.hdr_vaddr + self.table[i][1])
        if fde is None:
            return True
        pc_begin, pc_range = struct.unpack_from("<iI", self.data, fde + 8)  # pcrel sdata4, udata4
        start = self.vaddr(fde + 8) + pc_begin
        return start <= va < start + pc_range


class Maps:
    """Each process's executable file mappings, from the MMAP/MMAP2 records so far (a new
    mapping replaces what it overlaps). Anonymous ones (//anon: the JIT code) are left out."""

    def __init__(self):
        self.by_pid, self.files, self.anon = {}, {}, {}

    def add(self, pid, start, length, pgoff, name):
        if name.startswith("//"):
            self.anon.setdefault(pid, []).append((start, start + length))
            return
        starts, maps = self.by_pid.setdefault(pid, ([], []))
        end = start + length
        keep = [m for m in maps if m[1] <= start or m[0] >= end]
        if len(keep) != len(maps):
            maps[:] = keep
            starts[:] = [m[0] for m in keep]
        i = bisect.bisect_right(starts, start)
        starts.insert(i, start)
        maps.insert(i, (start, end, pgoff, name))

    def region(self, pid, addr):
        """The anonymous executable mapping holding addr (one JIT kernel's code), or None."""
        for r in reversed(self.anon.get(pid, ())):
            if r[0] <= addr < r[1]:
                return r
        return None

    def find(self, pid, addr):
        starts, maps = self.by_pid.get(pid, ((), ()))
        i = bisect.bisect_right(starts, addr) - 1
        return maps[i] if i >= 0 and addr < maps[i][1] else None

    def file(self, m):
        f = self.files.get(m[3])
        if f is None:
            data = b""
            try:  # [vdso], //anon and the like: no file to read (and perf has their CFI)
                with open(m[3], "rb") as fh:
                    data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                pass
            f = self.files[m[3]] = (data, Cfi(data))
        return f

    def code_before(self, m, addr, n=9):
        """The n bytes of the mapped file m before addr (fewer at the file's start)."""
        off = addr - m[0] + m[2]
        return self.file(m)[0][max(0, off - n):off]

    def has_cfi(self, m, addr):
        return self.file(m)[1].covers(addr - m[0] + m[2])


def main(path):
    with open(path, "r+b") as fh:
        buf = mmap.mmap(fh.fileno(), 0)
    if buf[:8] != b"PERFILE2":
        sys.exit(f"perf_jit_callers.py: {path}: not a perf.data file (PERFILE2)")
    _, attr_size, attrs_off, attrs_size, data_off, data_size = struct.unpack_from("<QQQQQQ", buf, 8)
    kinds = set()
    for a in range(attrs_off, attrs_off + attrs_size, attr_size):
        sample_type, = struct.unpack_from("<Q", buf, a + 24)
        regs_mask, = struct.unpack_from("<Q", buf, a + 80)
        kinds.add((sample_type, regs_mask))
    if len(kinds) != 1:
        sys.exit(f"perf_jit_callers.py: {path}: {len(kinds)} kinds of sample; record one event")
    sample_type, regs_mask = kinds.pop()
    if not (sample_type & REGS_USER and sample_type & STACK_USER) or sample_type & (
            READ | RAW | BRANCH_STACK):
        sys.exit(f"perf_jit_callers.py: {path}: record with --call-graph dwarf and one plain event")
    reg_index = {r: bin(regs_mask & ((1 << r) - 1)).count("1") for r in range(64) if regs_mask >> r & 1}
    if any(r not in reg_index for r in (SP, IP_REG) + PUSHED):
        sys.exit(f"perf_jit_callers.py: {path}: the user registers lack sp, ip or a callee-saved one")
    fixed = 8 * sum(1 for b in (IDENTIFIER, IP, TID, TIME, ADDR, ID, STREAM_ID, CPU, PERIOD) if sample_type & b)
    maps, rewritten, lost = Maps(), [0, 0], 0  # [no CFI, JIT]
    todo, votes = [], {}  # the samples to rewrite; per JIT kernel, how often each offset is a candidate
    pos, end = data_off, data_off + data_size
    while pos + 8 <= end:
        rtype, _, size = struct.unpack_from("<IHH", buf, pos)
        if size < 8:
            sys.exit(f"perf_jit_callers.py: {path}: a record of {size} bytes at {pos}")
        if rtype == MMAP2:
            pid, _, start, length, pgoff = struct.unpack_from("<IIQQQ", buf, pos + 8)
            prot, = struct.unpack_from("<I", buf, pos + 64)
            if prot & PROT_EXEC:
                maps.add(pid, start, length, pgoff, buf[pos + 72:pos + size].split(b"\0")[0].decode(errors="replace"))
        elif rtype == MMAP:
            pid, _, start, length, pgoff = struct.unpack_from("<IIQQQ", buf, pos + 8)
            maps.add(pid, start, length, pgoff, buf[pos + 40:pos + size].split(b"\0")[0].decode(errors="replace"))
        elif rtype == SAMPLE:
            p = pos + 8
            pid = None
            for b in (IDENTIFIER, IP, TID):
                if sample_type & b:
                    if b == TID:
                        pid, = struct.unpack_from("<I", buf, p)
                    p += 8
            p = pos + 8 + fixed
            if sample_type & CALLCHAIN:
                nr, = struct.unpack_from("<Q", buf, p)
                p += 8 + 8 * nr
            abi, = struct.unpack_from("<Q", buf, p)
            regs = p + 8
            p = regs + (8 * len(reg_index) if abi else 0)
            stack_size, = struct.unpack_from("<Q", buf, p)
            stack = p + 8
            if abi and stack_size:
                dyn_at = stack + stack_size
                dyn, = struct.unpack_from("<Q", buf, dyn_at)
                reg = lambda r: struct.unpack_from("<Q", buf, regs + 8 * reg_index[r])[0]
                ip, sp = reg(IP_REG), reg(SP)
                m = maps.find(pid, ip) if ip < 1 << 47 else False
                if m is None or (m and not maps.has_cfi(m, ip)):
                    jit, offs = m is None, []
                    for off in range(8 * len(PUSHED) if jit else 0, dyn - 7, 8):
                        v, = struct.unpack_from("<Q", buf, stack + off)
                        caller = maps.find(pid, v)
                        if caller is None or not (jit or caller[3] == m[3]):
                            continue  # code without CFI is called from its own file
                        code = maps.code_before(caller, v)
                        if code and call_before(code, len(code)):
                            offs.append(off)
                            if len(offs) == 4:
                                break
                    key = (pid, maps.region(pid, ip)) if jit else None
                    todo.append((regs, stack, dyn_at, dyn, sp, jit, offs, key))
                    if key and key[1]:
                        votes.setdefault(key, collections.Counter()).update(offs)
        pos += size
    # A JIT kernel's stack pointer sits at the same depth below its return address in
    # every sample (they run no pushes or calls in their bodies), while a stale word in
    # its frame shows in some samples only: per kernel (its own mapping), the offset most
    # samples have among their first candidates wins; else the first candidate.
    best = {k: min(c, key=lambda o: (-c[o], o)) for k, c in votes.items()}
    for regs, stack, dyn_at, dyn, sp, jit, offs, key in todo:
        if not offs:
            lost += 1
            continue
        found = best[key] if key in best and best[key] in offs else offs[0]
        v, = struct.unpack_from("<Q", buf, stack + found)
        for k, r in enumerate(PUSHED if jit else ()):
            struct.pack_into("<Q", buf, regs + 8 * reg_index[r],
                             struct.unpack_from("<Q", buf, stack + found - 8 * (k + 1))[0])
        shift = found + 8
        struct.pack_into("<Q", buf, regs + 8 * reg_index[IP_REG], v)
        struct.pack_into("<Q", buf, regs + 8 * reg_index[SP], sp + shift)
        buf[stack:stack + dyn - shift] = buf[stack + shift:stack + dyn]
        struct.pack_into("<Q", buf, dyn_at, dyn - shift)
        rewritten[jit] += 1
    buf.flush()
    print(f"perf_jit_callers.py: given their caller: {rewritten[1]} samples in JIT code, {rewritten[0]} in code "
          f"without CFI; {lost} found none")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: perf_jit_callers.py perf.data")
    main(sys.argv[1])
