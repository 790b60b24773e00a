"""Hardware execute breakpoints that never stop the thread: perf breakpoint events sampling registers into rings.

Each is a perf_event_open(2) breakpoint event that samples the user registers
of each hit into a ring buffer.

Why. A ptrace stop costs the target two context switches and the tracer a
wait, a GETREGS and a CONT per hit: about 22 µs here, before any work. The
kernel's own breakpoint events (the same hw_breakpoint layer ptrace's debug
registers are built on) can instead write the thread's registers into a
buffer shared with us and let the thread run on: well under a microsecond.
The engine uses this only for breakpoints whose actions read nothing but
registers (engine/sampling.py); everything else stops the thread.

What we keep exact. Each thread has its own events and ring (the kernel
forbids mmap of inherited per-task events), opened before the thread runs.
A ring that overflows would lose hits: the kernel says so with a
PERF_RECORD_LOST, which is counted and reported, and the backend keeps the
rings drained and throttles a target that outruns us (sampling.py).

Where perf_event_open is refused (kernel.perf_event_paranoid, no breakpoint
PMU, the locked-memory limit for a ring), `open_ring` raises SamplingError
and the backend falls back to a debug register for that thread.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import operator
import resource
import os
import struct

from . import _ffi
from typing import Iterator, Mapping, NamedTuple

_PERF_TYPE_BREAKPOINT = 5
_HW_BREAKPOINT_X = 4
_SAMPLE_IP, _SAMPLE_TIME, _SAMPLE_REGS_USER = 1 << 0, 1 << 2, 1 << 12
_EXCLUDE_KERNEL, _EXCLUDE_HV, _USE_CLOCKID = 1 << 5, 1 << 6, 1 << 25
_CLOCK_MONOTONIC = 1               # the clock of time.monotonic(): sample times line up with ours
_PERF_EVENT_IOC_DISABLE = 0x2401
_PERF_EVENT_IOC_SET_OUTPUT = 0x2405
_RECORD_LOST, _RECORD_SAMPLE = 2, 9

# perf's x86 register numbers (arch/x86/include/uapi/asm/perf_regs.h). DS, ES, FS
# and GS are refused for 64-bit tasks; fs_base, gs_base and orig_rax are not there.
_PERF_REGS = {"rax": 0, "rbx": 1, "rcx": 2, "rdx": 3, "rsi": 4, "rdi": 5, "rbp": 6, "rsp": 7,
              "rip": 8, "eflags": 9, "cs": 10, "ss": 11,
              **{f"r{n}": 8 + n for n in range(8, 16)}}
# A sample's registers come in the order of their bits.
_SAMPLE_ORDER = tuple(sorted(_PERF_REGS, key=_PERF_REGS.__getitem__))
SAMPLED_REGISTERS = frozenset(_PERF_REGS)
_REGS_MASK = sum(1 << bit for bit in _PERF_REGS.values())
_HEADER = struct.Struct("<IHH")                      # type, misc, size
# A whole sample: header, ip, time, regs abi (0 for none: then no registers follow), registers.
_SAMPLE = struct.Struct(f"<IHHQQQ{len(_PERF_REGS)}Q")
# The same in 64-bit words: 0 the header, 1 ip, 2 time, 3 regs abi, 4... the registers.
_WORDS, _IP, _TIME, _REG0 = _SAMPLE.size // 8, 1, 2, 4
_U64 = struct.Struct("<Q")
_DATA_HEAD, _DATA_TAIL = 1024, 1032                  # in struct perf_event_mmap_page

RING_PAGES = 2048          # 8 MiB of data per thread: ~40,000 hits, 10 ms of a tight loop
MIN_RING_PAGES = 256      # 1 MiB, ~5,000 hits: below this a thread stops at its hits instead
# Ring memory is locked in the kernel: a process with many threads gets smaller rings
# once this much is taken, and debug registers once even the smallest does not fit.
PROCESS_RING_BUDGET = 64 << 20
_RF = 1 << 16                # eflags.RF: set in a thread stopped at an execute breakpoint
_PERF_FLAG_FD_CLOEXEC = 8
_PAGE = mmap.PAGESIZE


def ring_words(data: bytes, sample_size: int) -> tuple[memoryview, int]:
    """The records drained from a ring as 64-bit words, and how many samples they are
    when they are nothing but whole PERF_RECORD_SAMPLEs of `sample_size` bytes (nearly
    always: the caller then takes them apart as strided columns), else 0 (the caller
    walks the records one by one: a lost record among them, or samples of another size)."""
    words = memoryview(data)[:len(data) & ~7].cast("Q")
    per = sample_size // 8
    n = len(words) // per
    if n and len(data) == n * sample_size:
        headers = words[0::per].tolist()
        first = headers[0]
        if first & 0xFFFFFFFF == _RECORD_SAMPLE and first >> 48 == sample_size and headers.count(first) == n:
            return words, n
    return words, 0


def drain_ring(buf: mmap.mmap, tail: int, size: int) -> tuple[bytes, int]:
    """(the bytes a perf ring of `size` data bytes holds past `tail`, the new tail), and
    their room given back to the kernel. Shared by the per-thread rings here and the
    per-CPU ones of cpurings.py."""
    head: int = _U64.unpack_from(buf, _DATA_HEAD)[0]     # x86: loads are not reordered
    if head == tail:
        return b"", tail
    start, end = _PAGE + tail % size, _PAGE + head % size
    data = buf[start:end] if start < end else buf[start:_PAGE + size] + buf[_PAGE:end]
    _U64.pack_into(buf, _DATA_TAIL, head)                # after the copy: the kernel may reuse it
    return data, head


class SamplingError(Exception):
    """perf_event_open or its ring buffer was refused; the reason is the message.
    `lasting`: perf itself said no (paranoia, no breakpoint PMU), not this thread
    (it is exiting) nor this ring (locked memory)."""

    def __init__(self, message: str, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


def _open_event(tid: int, address: int) -> int:
    # No wake-ups asked for (no fasync, no poll): with fasync the kernel signals every
    # single sample. The backend looks at the rings on a short tick instead.
    attr = _ffi.PerfEventAttr(type=_PERF_TYPE_BREAKPOINT, sample_period=1,
                              sample_type=_SAMPLE_IP | _SAMPLE_TIME | _SAMPLE_REGS_USER,
                              flags=_EXCLUDE_KERNEL | _EXCLUDE_HV | _USE_CLOCKID,
                              bp_type=_HW_BREAKPOINT_X, bp_addr=address,
                              bp_len=8,             # execute breakpoints must say sizeof(long)
                              sample_regs_user=_REGS_MASK, clockid=_CLOCK_MONOTONIC)
    fd = _ffi.perf_event_open(attr, tid, _PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        raise SamplingError(f"perf_event_open: {os.strerror(-fd)}",
                            lasting=-fd not in (errno.ESRCH, errno.EMFILE, errno.ENOSPC, errno.ENOMEM))
    return fd


class Sample(NamedTuple):
    tid: int
    address: int                   # the pc: the breakpoint's address
    slots: tuple[int, ...]         # the breakpoints (debug-register slots) on it
    time: float                    # CLOCK_MONOTONIC seconds, as time.monotonic()
    registers: SampledRegisters


class SampledRegisters(Mapping[str, int]):
    """The registers of one sample, read out of the ring's data (its 64-bit words) when
    asked: a hit's actions read two or three of the twenty."""

    __slots__ = ("_words", "_base")
    _INDEX = {name: i for i, name in enumerate(_SAMPLE_ORDER)}

    def __init__(self, words: memoryview, base: int) -> None:
        self._words = words
        self._base = base

    def __getitem__(self, name: str) -> int:
        value: int = self._words[self._base + self._INDEX[name]]
        if name == "eflags":
            # As a stopped thread shows it: the kernel sets RF after the breakpoint
            # so the instruction runs on; the sample is taken before that.
            return value | _RF
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_SAMPLE_ORDER)

    def __len__(self) -> int:
        return len(_SAMPLE_ORDER)


class Ring:
    """One thread's breakpoint events and the ring buffer they all write to."""

    def __init__(self, tid: int, pages: int = RING_PAGES) -> None:
        self.tid = tid
        self.events: dict[int, int] = {}    # slot -> perf fd
        self.addresses: dict[int, int] = {}  # slot -> the address its event samples
        self._slots_at: dict[int, tuple[int, ...]] = {}   # address -> its slots, for each sample
        self.lost = 0                       # hits the kernel said it dropped for want of room
        self.taken = 0                      # samples read out of the ring, stale ones too
        self._size = pages * _PAGE              # a power of two, as perf requires
        self._tail = 0
        self._buf: mmap.mmap | None = None

    def open(self, slot: int, address: int) -> None:
        """Start sampling hits on `address` in this thread, as `slot`."""
        first = next(iter(self.events.values()), -1)
        fd = _open_event(self.tid, address)
        try:
            if first < 0:
                self._map(fd)
            else:
                fcntl.ioctl(fd, _PERF_EVENT_IOC_SET_OUTPUT, first)   # one ring per thread
        except (OSError, SamplingError) as e:
            os.close(fd)
            raise e if isinstance(e, SamplingError) else SamplingError(f"perf ring: {e.strerror}") from None
        self.events[slot] = fd
        self.addresses[slot] = address
        self._derive()

    def _derive(self) -> None:
        self._slots_at = {}
        for slot, address in sorted(self.addresses.items()):
            self._slots_at[address] = self._slots_at.get(address, ()) + (slot,)

    def _map(self, fd: int) -> None:
        while True:
            try:
                self._buf = mmap.mmap(fd, _PAGE + self._size, mmap.MAP_SHARED,
                                      mmap.PROT_READ | mmap.PROT_WRITE)
                return
            except OSError as e:
                # EPERM: beyond kernel.perf_event_mlock_kb (516 KiB by default) and
                # RLIMIT_MEMLOCK for an unprivileged user: a smaller ring may fit.
                if e.errno != errno.EPERM or self._size // 2 < MIN_RING_PAGES * _PAGE:
                    raise SamplingError(f"perf ring of {self._size >> 10} KiB: {e.strerror}") from None
                self._size //= 2

    def close_slot(self, slot: int) -> None:
        fd = self.events.pop(slot, None)
        self.addresses.pop(slot, None)
        self._derive()
        if fd is None:
            return
        # Off first: the event whose fd holds the ring lives on until it is unmapped.
        fcntl.ioctl(fd, _PERF_EVENT_IOC_DISABLE, 0)
        if self._buf is not None and not self.events:
            self._buf.close()      # the last event: its ring goes with it
            self._buf = None
            self._tail = 0
        os.close(fd)

    @property
    def size(self) -> int:
        return self._size

    def pending(self) -> bool:
        return self._buf is not None and _U64.unpack_from(self._buf, _DATA_HEAD)[0] != self._tail

    def take(self) -> list[Sample]:
        """Every sample written since the last take, oldest first; frees their room."""
        buf = self._buf
        if buf is None:
            return []
        data, self._tail = drain_ring(buf, self._tail, self._size)
        if not data:
            return []
        tid, slots_at = self.tid, self._slots_at
        # Taken apart as whole columns of 64-bit words, C loops all (as cpurings.samples_of).
        words, n = ring_words(data, _SAMPLE.size)
        if n:
            self.taken += n
            return [Sample(tid, ip, slots_at[ip], at / 1e9, SampledRegisters(words, base))
                    for ip, at, base in zip(words[_IP::_WORDS].tolist(), words[_TIME::_WORDS].tolist(),
                                            range(_REG0, n * _WORDS, _WORDS))
                    if ip in slots_at]   # not: a breakpoint taken out since
        out: list[Sample] = []
        off, end = 0, len(data)
        while off + 8 <= end:
            kind, _, size = _HEADER.unpack_from(data, off)
            if size == 0:
                break
            if kind == _RECORD_SAMPLE:
                self.taken += 1
            if kind == _RECORD_SAMPLE and size == _SAMPLE.size:    # shorter: no user registers
                at = off // 8
                ip = words[at + _IP]
                if ip in slots_at:
                    out.append(Sample(tid, ip, slots_at[ip], words[at + _TIME] / 1e9,
                                      SampledRegisters(words, at + _REG0)))
            elif kind == _RECORD_LOST:
                self.lost += _U64.unpack_from(data, off + 16)[0]
            off += size
        return out

    def close(self) -> tuple[list[Sample], int]:
        """Stop sampling: the samples not taken yet, and how many hits were lost all in
        all. The kernel writes PERF_RECORD_LOST only once it has room again, so the
        count of hits each event saw is what tells."""
        for fd in self.events.values():
            fcntl.ioctl(fd, _PERF_EVENT_IOC_DISABLE, 0)
        last = self.take()
        seen = 0
        for fd in self.events.values():
            try:
                seen += _U64.unpack(os.read(fd, 8))[0]
            except (OSError, struct.error):
                seen = self.taken + self.lost       # cannot tell: trust the ring's word
                break
        for slot in list(self.events):
            self.close_slot(slot)
        return last, max(seen - self.taken, self.lost)


_by_time = operator.attrgetter("time")


class Sampler:
    """One process's sampled breakpoints: a ring per thread, opened before it runs."""

    def __init__(self) -> None:
        self.rings: dict[int, Ring] = {}
        self.refused: str | None = None     # why perf said no: every thread uses debug registers since
        self.unread: list[Sample] = []      # taken from rings being closed, not reported yet
        self.lost = 0                       # hits lost in rings closed since
        self.budget = _ring_budget()

    def apply(self, tid: int, addresses: dict[int, int]) -> frozenset[int]:
        """Make thread `tid` sample exactly `addresses` (slot -> address); the slots
        it samples now. The others are the caller's to set as debug registers."""
        ring = self.rings.get(tid)
        if ring is None:
            pages = self._pages_left()
            if not addresses or self.refused is not None or pages < MIN_RING_PAGES:
                return frozenset()
            ring = self.rings[tid] = Ring(tid, min(RING_PAGES, pages))
        stale = [s for s, a in ring.addresses.items() if addresses.get(s) != a]
        if len(stale) == len(ring.events) and stale:
            last, lost = ring.close()           # the last event: the ring is unmapped
            self.unread += last
            self.lost += lost
        elif stale:
            self.unread += ring.take()
            for slot in stale:
                ring.close_slot(slot)
        for slot, address in addresses.items():
            if slot in ring.events or self.refused is not None:
                continue
            try:
                ring.open(slot, address)
            except SamplingError as e:
                if e.lasting:
                    self.refused = str(e)
                break       # this thread stops at its hits
        if not ring.events:
            del self.rings[tid]
        return frozenset(ring.events)

    def _pages_left(self) -> int:
        """The largest power of two of pages a new ring may have: half what is left."""
        left = (self.budget - sum(r.size for r in self.rings.values())) // _PAGE // 2
        return 1 << (left.bit_length() - 1) if left > 0 else 0

    def take(self) -> list[Sample]:
        """Every sample not reported yet, in the order the hits happened (each ring is
        one thread's; records and hit counts follow the program's own order)."""
        out, self.unread = self.unread, []
        sources = 1 if out else 0
        for ring in self.rings.values():
            if ring.pending():
                out += ring.take()
                sources += 1
        if sources > 1:
            out.sort(key=_by_time)
        return out

    def drop(self, tid: int) -> None:
        """The thread has exited: keep what it sampled, close its ring."""
        ring = self.rings.pop(tid, None)
        if ring is not None:
            last, lost = ring.close()
            self.unread += last
            self.lost += lost

    def close(self) -> None:
        """Stop sampling every thread (exec, detach, kill): what the rings still hold
        joins `unread`."""
        for tid in list(self.rings):
            self.drop(tid)


def _ring_budget() -> int:
    """Locked memory this process's rings may take: PROCESS_RING_BUDGET for root; for
    anyone else what the kernel allows, kernel.perf_event_mlock_kb and RLIMIT_MEMLOCK."""
    if os.geteuid() == 0:
        return PROCESS_RING_BUDGET
    try:
        with open("/proc/sys/kernel/perf_event_mlock_kb") as f:
            allowed = int(f.read()) * 1024
    except (OSError, ValueError):
        allowed = 0
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    if soft == resource.RLIM_INFINITY:
        return PROCESS_RING_BUDGET
    return min(PROCESS_RING_BUDGET, allowed + soft)

