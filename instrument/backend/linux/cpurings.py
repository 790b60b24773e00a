"""The per-CPU rings uprobe samples are read from, the registers of a sample, and the closer of slow perf fds (uprobes.py's machinery)."""

from __future__ import annotations

import errno
import mmap
import os
import queue
import struct
import threading
from typing import Iterator, Mapping

from . import _ffi
from .perfbp import _PERF_REGS, _SAMPLE_ORDER, drain_ring

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


class ProbeRegisters(Mapping[str, int]):
    """The registers of one uprobe sample, read out of the unpacked record when asked.
    The kernel has set pc back to the probed instruction, as our int3 stops do."""

    __slots__ = ("_values",)
    _INDEX = {name: 8 + i for i, name in enumerate(_SAMPLE_ORDER)}

    def __init__(self, values: tuple[int, ...]) -> None:
        self._values = values

    def __getitem__(self, name: str) -> int:
        return self._values[self._INDEX[name]]

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

    def take(self) -> list[tuple[int, ...]]:
        """The samples written since the last take (unpacked), oldest first; frees their room."""
        buf = self._buf
        if buf is None:
            return []
        data, self._tail = drain_ring(buf, self._tail, self._size)
        if not data:
            return []
        if len(data) % _SAMPLE.size == 0:
            # Nearly always: nothing but whole samples, unpacked in one C loop.
            values = list(_SAMPLE.iter_unpack(data))
            if all(v[0] == _RECORD_SAMPLE and v[2] == _SAMPLE.size for v in values):
                return values
        out: list[tuple[int, ...]] = []
        off, n = 0, len(data)
        while off + 8 <= n:
            kind, _, size = _HEADER.unpack_from(data, off)
            if size == 0:
                break
            if kind == _RECORD_SAMPLE and size == _SAMPLE.size:
                out.append(_SAMPLE.unpack_from(data, off))
            off += size      # PERF_RECORD_LOST among them: the events' counts tell what was lost
        return out

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
