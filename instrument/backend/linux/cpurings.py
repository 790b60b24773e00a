"""The per-CPU rings uprobe samples are read from, the registers of a sample, and the closer of slow perf fds (uprobes.py's machinery)."""

from __future__ import annotations

import errno
import mmap
import os
import queue
import struct
import threading
from itertools import repeat
from typing import Iterator, Mapping, Tuple

from . import _ffi
from .perfbp import _PERF_REGS, _SAMPLE_ORDER, drain_ring, ring_words

_PERF_TYPE_SOFTWARE, _PERF_COUNT_SW_DUMMY = 1, 9
_SAMPLE_IP, _SAMPLE_TID, _SAMPLE_TIME, _SAMPLE_REGS_USER = 1 << 0, 1 << 1, 1 << 2, 1 << 12
_DISABLED, _EXCLUDE_KERNEL, _EXCLUDE_HV, _USE_CLOCKID = 1 << 0, 1 << 5, 1 << 6, 1 << 25
_CLOCK_MONOTONIC = 1                # the clock of time.monotonic(): sample times line up with ours
_PERF_FLAG_FD_CLOEXEC = 8
_IOC_DISABLE, _IOC_SET_OUTPUT = 0x2401, 0x2405
_RECORD_SAMPLE = 9
_REGS_MASK = sum(1 << bit for bit in _PERF_REGS.values())
# A whole sample: header, ip, pid, tid, time, regs abi, the registers in the order of their bits.
_SAMPLE = struct.Struct(f"<IHHQIIQQ{len(_PERF_REGS)}Q")
# The same in 64-bit words (perf keeps records 8-byte aligned): 0 the header, 1 ip,
# 2 pid | tid << 32, 3 time, 4 regs abi, 5... the registers.
_WORDS, _IP, _IDS, _TIME, _REG0 = _SAMPLE.size // 8, 1, 2, 3, 5
_HEADER = struct.Struct("<IHH")
_U64 = struct.Struct("<Q")
_DATA_HEAD, _DATA_TAIL = 1024, 1032       # in struct perf_event_mmap_page
_PAGE = mmap.PAGESIZE

RING_PAGES = 2048        # 8 MiB a CPU: ~40,000 hits
MIN_RING_PAGES = 64      # 256 KiB: below this perf is refused for want of locked memory


class ProbeError(Exception):
    """perf refused a uprobe or its ring; the message says why. `lasting`: perf itself
    said no (no PMU, paranoia, permissions), so every later probe would be refused too."""

    def __init__(self, message: str, lasting: bool = False) -> None:
        super().__init__(message)
        self.lasting = lasting


# One sample as the rings hand it out: (time ns, ip, pid | tid << 32, the words of the
# ring's data it is in, the word of its first register there). A tuple zip() makes in C:
# no Python code runs per sample until the engine's.
Sample = Tuple[int, int, int, memoryview, int]


class ProbeRegisters(Mapping[str, int]):
    """The registers of one uprobe sample, read out of the ring's data when asked
    (a hit's actions read two or three of the twenty; none is unpacked before).
    The kernel has set pc back to the probed instruction, as our int3 stops do."""

    __slots__ = ("_words", "_base")
    _INDEX = {name: i for i, name in enumerate(_SAMPLE_ORDER)}

    def __init__(self, words: memoryview, base: int) -> None:
        self._words = words
        self._base = base

    def __getitem__(self, name: str) -> int:
        value: int = self._words[self._base + self._INDEX[name]]
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_SAMPLE_ORDER)

    def __len__(self) -> int:
        return len(_SAMPLE_ORDER)


def _perf_error(what: str, err: int) -> ProbeError:
    # Permissions (perf_event_paranoid, no CAP_PERFMON) and a kernel without uprobes hold
    # for every probe; the rest is about this one (ENOTSUPP: an instruction uprobes cannot
    # take; ENOENT: the file is gone) or this moment (a thread gone, out of descriptors).
    name = "not supported for this instruction" if err == 524 else os.strerror(err)
    return ProbeError(f"{what}: {name}", lasting=err in (errno.EACCES, errno.EPERM, errno.ENODEV, errno.ENOSYS))


class CpuRing:
    """The ring of one CPU, held by a disabled dummy event of ours."""

    def __init__(self, cpu: int, pages: int) -> None:
        self.cpu = cpu
        attr = _ffi.PerfEventAttr(type=_PERF_TYPE_SOFTWARE, config=_PERF_COUNT_SW_DUMMY,
                                  flags=_DISABLED | _USE_CLOCKID, clockid=_CLOCK_MONOTONIC)
        fd = _ffi.perf_event_open(attr, 0, _PERF_FLAG_FD_CLOEXEC, cpu=cpu)
        if fd < 0:
            raise _perf_error("perf_event_open (ring)", -fd)
        self.fd = fd
        self._tail = 0
        self._size = pages * _PAGE
        while True:
            try:
                self._buf: mmap.mmap | None = mmap.mmap(fd, _PAGE + self._size, mmap.MAP_SHARED,
                                                        mmap.PROT_READ | mmap.PROT_WRITE)
                break
            except OSError as e:
                # EPERM: beyond kernel.perf_event_mlock_kb and RLIMIT_MEMLOCK: a smaller one may fit.
                if e.errno != errno.EPERM or self._size // 2 < MIN_RING_PAGES * _PAGE:
                    os.close(fd)
                    raise ProbeError(f"perf ring of {self._size >> 10} KiB: {e.strerror} "
                                     "(the locked-memory budget)", lasting=True) from None
                self._size //= 2

    def take(self) -> list[Sample]:
        """The samples written since the last take, oldest first; frees their room."""
        buf = self._buf
        if buf is None:
            return []
        data, self._tail = drain_ring(buf, self._tail, self._size)
        if not data:
            return []
        return samples_of(data)

    @property
    def size(self) -> int:
        return self._size

    def waiting(self) -> int:
        if self._buf is None:
            return 0
        head: int = _U64.unpack_from(self._buf, _DATA_HEAD)[0]
        return (head - self._tail) // _SAMPLE.size

    def close(self) -> None:
        if self._buf is not None:
            self._buf.close()
            self._buf = None
        os.close(self.fd)


def samples_of(data: bytes) -> list[Sample]:
    """The samples in `data`, records of a ring, taken apart as whole columns of 64-bit
    words (strided memoryview slices, C loops all): ~0.2 µs a sample, where unpacking
    each sample's 28 fields took 1.2 µs and its Python objects as much again."""
    words, n = ring_words(data, _SAMPLE.size)
    if n:
        return list(zip(words[_TIME::_WORDS].tolist(), words[_IP::_WORDS].tolist(),
                        words[_IDS::_WORDS].tolist(), repeat(words, n), range(_REG0, n * _WORDS, _WORDS)))
    out: list[Sample] = []
    off, end = 0, len(data)
    while off + 8 <= end:
        kind, _, size = _HEADER.unpack_from(data, off)
        if size == 0:
            break
        if kind == _RECORD_SAMPLE and size == _SAMPLE.size:
            at = off // 8
            out.append((words[at + _TIME], words[at + _IP], words[at + _IDS], words, at + _REG0))
        off += size      # PERF_RECORD_LOST among them: the events' counts tell what was lost
    return out


class Closer:
    """Closes perf fds on a thread of its own (see the module docstring: ~90 ms each)."""

    def __init__(self) -> None:
        self._fds: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # fds handed over and closed so far: an fd handed over as the n-th is closed once
        # `closed` >= n (plain ints: each written by one thread only).
        self.queued = 0
        self.closed = 0
        self._done = threading.Condition()

    def close(self, fd: int) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="instrument-uprobe-closer", daemon=True)
            self._thread.start()
        self.queued += 1
        self._fds.put(fd)

    def _run(self) -> None:
        while True:
            fd = self._fds.get()
            if fd is None:
                return
            try:
                os.close(fd)
            except OSError:
                pass
            with self._done:
                self.closed += 1
                self._done.notify_all()

    def wait_for(self, ticket: int) -> None:
        """The fds handed over up to the `ticket`-th are closed (the others may still wait)."""
        with self._done:
            self._done.wait_for(lambda: self.closed >= ticket)

    def wait(self) -> None:
        """Every fd handed over is closed (and its uprobe gone)."""
        if self._thread is not None:
            self._fds.put(None)
            self._thread.join()
            self._thread = None
