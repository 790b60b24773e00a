"""Soft breakpoints that never stop the thread: uprobe perf events sampling registers into per-CPU rings.

Why. An int3 stop costs the target two context switches and the tracer a
wait, a GETREGS, a step over and a CONT per hit. A uprobe is the kernel's own
int3 (kernel/events/uprobes.c): the trap is handled in the kernel, which
writes the thread's user registers into a ring buffer we map and runs the
instruction out of line; the thread never stops and ptrace never sees it.
The engine asks for this only for breakpoints whose actions read nothing but
registers (compiler/sampling.py); everything else stops the thread.

How. A uprobe is named by a file and an offset in it, not by an address: the
file and offset come from the mapping that holds the address now
(/proc/PID/maps; the loader mapped the module's PT_LOAD segments there).
Each event is opened per thread (pid = tid) and per CPU, so that one ring per
CPU takes the hits of every thread and every process (the kernel refuses to
share a ring between the per-task events of different threads, and forbids
mmap of inherited per-task events); a thread gets its events before it runs
(clone and fork stops) and loses them at exec and exit. A sample carries
pid and tid. The ring of each CPU belongs to a disabled dummy event of ours,
so that closing any probe's event leaves the ring, and the hits in it, alone.

Closing is slow. The last close of a uprobe event unregisters its probe and
then waits for an RCU-tasks grace period, under a kernel mutex: about 90 ms
here, one close at a time, however many threads close. The int3 leaves the
target's memory before that wait. So events are switched off at once (no hit
counts after that) and closed by a thread of ours (the tracer carries on
meanwhile); `close` waits until every one is closed, so that no uprobe is
left when the tool ends.

What we keep exact. The kernel filters a per-task uprobe by the task's mm,
so no other process gets the breakpoint (a fork child we do not follow runs
its copy untouched: the kernel takes the int3 out of its mm at its first
hit). Closing the last event of a uprobe unregisters it: the original
instruction is back in every process, attached ones included. A ring that
overflows says so (PERF_RECORD_LOST) and the counts of each event say how
many hits it saw: both are reported.

Where perf refuses (no uprobe PMU, kernel.perf_event_paranoid, EACCES, the
locked-memory budget for the rings) `add` says why, and the engine puts an
int3 there instead.
"""

from __future__ import annotations

import bisect
import ctypes
import fcntl
import os
import resource
import struct
from collections import Counter
from operator import itemgetter

from . import _ffi, procfs
from .cpurings import (_CLOCK_MONOTONIC, _EXCLUDE_HV, _EXCLUDE_KERNEL, _IOC_DISABLE, _IOC_SET_OUTPUT,
                       _PAGE, _PERF_FLAG_FD_CLOEXEC, _REGS_MASK, _SAMPLE_IP, _SAMPLE_REGS_USER, _SAMPLE_TID,
                       _SAMPLE_TIME, _U64, _USE_CLOCKID, MIN_RING_PAGES, RING_PAGES, Closer, CpuRing, ProbeError,
                       ProbeRegisters, Sample, _perf_error)
from .perfbp import _ring_budget

# The uprobe PMU's perf type: dynamic, read from sysfs. A module attribute so that
# a test can make the look-up fail (the fallback path) without a kernel that lacks it.
UPROBE_TYPE_PATH = "/sys/bus/event_source/devices/uprobe/type"
_CPUS_ONLINE = "/sys/devices/system/cpu/online"

# Events opened at once beyond which a new soft breakpoint is an int3 instead: each
# costs ~90 ms to close (see above), one at a time, and the tool's end waits for all.
# Threads started later get theirs all the same (exactness), past the budget if need be.
EVENT_BUDGET = 64


_by_time = itemgetter(0)
_ids, _ip = itemgetter(2), itemgetter(1)


def describe(sample: Sample) -> tuple[int, int, int, float, ProbeRegisters]:
    """(pid, tid, the probed address, time.monotonic() seconds, registers) of a sample
    (Sampling.collect_probes reads them inline)."""
    at, ip, ids, words, base = sample
    return ids & 0xFFFFFFFF, ids >> 32, ip, at / 1e9, ProbeRegisters(words, base)


def uprobe_type() -> int:
    """The uprobe PMU's perf type; ProbeError (lasting) where the kernel has none."""
    try:
        with open(UPROBE_TYPE_PATH) as f:
            return int(f.read())
    except (OSError, ValueError):
        raise ProbeError(f"no uprobe PMU ({UPROBE_TYPE_PATH} unreadable)", lasting=True) from None


def online_cpus() -> list[int]:
    """The CPUs a thread may run on: each needs its own event of every probe."""
    try:
        with open(_CPUS_ONLINE) as f:
            spec = f.read().strip()
        cpus: list[int] = []
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            cpus.extend(range(int(lo), int(hi or lo) + 1))
        return cpus
    except (OSError, ValueError):
        return list(range(os.cpu_count() or 1))


class CodeProbes:
    """Every sampled soft breakpoint of the backend: which process has a probe where,
    each thread's events of them, and the per-CPU rings they all write to."""

    def __init__(self) -> None:
        self.at: dict[int, dict[int, tuple[str, int]]] = {}   # pid -> address -> (file, offset)
        # pid -> address -> the byte the kernel's int3 covers there, for reads of that memory
        self._original: dict[int, dict[int, bytes]] = {}
        # The same for probes taken out whose events are not closed yet (the closer's
        # ticket: closed once _Closer.closed reaches it): their int3 is still there.
        self._closing: dict[int, dict[int, tuple[bytes, int]]] = {}
        self._fds: dict[tuple[int, int], list[int]] = {}      # (tid, address) -> an event per CPU
        self._owner: dict[int, int] = {}                      # tid -> its pid, for each with events
        self._rings: list[CpuRing] = []
        self._cpus: list[int] | None = None
        self._type: int | None = None
        self._paths: dict[str, ctypes.Array[ctypes.c_char]] = {}   # kept alive for perf_event_open
        # Samples read, by (pid | tid << 32, address) as the samples have them.
        self._taken: Counter[tuple[int, int]] = Counter()
        self.unread: list[Sample] = []                        # taken from rings, not reported yet
        self.refused: dict[str, int] = {}     # why perf said no -> how many breakpoints it cost
        self.lost = 0                         # hits the kernel counted and no ring held
        self.missed: set[str] = set()         # threads that could not get a probe: their hits are lost
        self._closer = Closer()
        self._refused_for_good: str | None = None   # perf's policy said no: asked no more

    @property
    def active(self) -> bool:
        return bool(self._fds)

    def has(self, pid: int) -> bool:
        return bool(self.at.get(pid))

    # -- placing ----------------------------------------------------------------------
    def add(self, pid: int, tids: list[int], address: int) -> str | None:
        """Sample hits of the instruction at `address` of process `pid` in its threads
        `tids` (and those it starts later: add_thread, fork). None when done; else why
        perf refused, and nothing of it is left."""
        probes = self.at.setdefault(pid, {})
        if address in probes:
            return None
        if self._refused_for_good is not None:
            self.refused[self._refused_for_good] += 1
            return self._refused_for_good
        try:
            where = self._file_offset(pid, address)
            self._setup()
            assert self._cpus is not None
            if sum(map(len, self._fds.values())) + len(tids) * len(self._cpus) > EVENT_BUDGET:
                raise ProbeError(f"more than {EVENT_BUDGET} uprobe events (one per thread and CPU; "
                                 "the kernel takes ~90 ms to close each)")
            opened: list[int] = []
            try:
                for tid in tids:
                    self._open(pid, tid, address, where)
                    opened.append(tid)
            except ProbeError:
                self._close([(tid, address) for tid in opened])
                raise
        except ProbeError as e:
            reason = str(e)
            self.refused[reason] = self.refused.get(reason, 0) + 1
            if e.lasting:
                self._refused_for_good = reason
            return reason
        probes[address] = where
        self._original.setdefault(pid, {})[address] = _file_byte(*where)
        return None

    def mask(self, pid: int, address: int, data: bytes) -> bytes:
        """`data` read at `address` of `pid` as the program has it: the uprobes' int3
        bytes (in the process's memory while they are registered) replaced by the file's."""
        original, closing = self._original.get(pid), self._closing.get(pid)
        if not original and not closing:
            return data
        covered = dict(original or {})
        if closing:
            done = self._closer.closed
            for at, (byte, ticket) in list(closing.items()):
                if ticket <= done:
                    del closing[at]          # its uprobe is gone: memory has the program's byte
                else:
                    covered.setdefault(at, byte)
        end = address + len(data)
        for at, byte in covered.items():
            if address <= at < end and byte:
                off = at - address
                data = data[:off] + byte + data[off + 1:]
        return data

    def remove(self, pid: int, address: int) -> None:
        """No more sampling at `address` in `pid`: its events off and closed (the uprobe
        is gone with its last one); hits already in the rings are kept for `take`."""
        if self.at.get(pid, {}).pop(address, None) is None:
            return
        byte = self._original.get(pid, {}).pop(address, b"")
        owner = self._owner
        self._close([k for k in self._fds if k[1] == address and owner.get(k[0]) == pid])
        self._closing.setdefault(pid, {})[address] = (byte, self._closer.queued)

    def add_thread(self, pid: int, tid: int) -> None:
        """A new thread of `pid`, stopped before its first instruction: its events of
        every probe of the process (clone copies no perf event)."""
        for address, where in self.at.get(pid, {}).items():
            try:
                self._open(pid, tid, address, where)
            except ProbeError as e:
                self.missed.add(f"thread {tid}: {e}")

    def fork(self, parent: int, child: int) -> None:
        """A followed fork child, stopped before its first instruction: the parent's
        probes, in its one thread (its memory has no int3 of them: the kernel's are per mm)."""
        if self.at.get(parent):
            self.at[child] = dict(self.at[parent])
            self._original[child] = dict(self._original.get(parent, {}))
            self.add_thread(child, child)

    def settle(self) -> None:
        """Every event taken out so far is closed, so its uprobe is gone: its int3 out of
        every process, none of its hits single-stepped any more (each of which sets DR6's
        single-step bit: a detach waits for this before it puts DR6 back)."""
        self._closer.wait_for(self._closer.queued)

    def drop_thread(self, tid: int) -> None:
        """The thread has exited: its events go, its hits in the rings stay."""
        self._close([key for key in self._fds if key[0] == tid])
        self._owner.pop(tid, None)

    def drop(self, pid: int) -> None:
        """Every probe of `pid` goes (exec, detach, kill, exit), in every thread it had
        (those an exec took too); its hits stay for `take`. Nothing is masked after: the
        memory is a new image's (exec) or no longer ours to read."""
        self._original.pop(pid, None)
        self._closing.pop(pid, None)
        if self.at.pop(pid, None) is None:
            return
        owner = self._owner
        self._close([k for k in self._fds if owner.get(k[0]) == pid])
        for tid in [t for t, p in owner.items() if p == pid]:
            del owner[tid]

    # -- reading ----------------------------------------------------------------------
    def take(self, before: float | None = None) -> list[Sample]:
        """Every hit not reported yet, in the order the hits happened (cpurings.Sample;
        `describe` takes one apart); `before` (a time.monotonic() taken before the call):
        only those until then, the rest wait. The rings are read one after the other, so
        a later hit of a thread that moved from one CPU to another may be read before an
        earlier one: not past `before`."""
        self._drain()
        values = self.unread
        if before is not None and values and values[-1][0] > before * 1e9:
            cut = bisect.bisect_right(values, before * 1e9, key=_by_time)
            values, self.unread = values[:cut], values[cut:]
        else:
            self.unread = []
        return values

    def waiting(self) -> int:
        """About how many hits the rings and `unread` hold, without taking them."""
        return len(self.unread) + sum(r.waiting() for r in self._rings)

    def stop(self) -> None:
        """Count and sample no more hits (the session ends): every event off, none closed."""
        for fds in self._fds.values():
            for fd in fds:
                fcntl.ioctl(fd, _IOC_DISABLE, 0)

    def _drain(self) -> None:
        batches = [b for b in (r.take() for r in self._rings) if b]
        if not batches:
            return
        taken = self._taken
        for batch in batches:
            taken.update(zip(map(_ids, batch), map(_ip, batch)))     # Counter's C loop
            self.unread += batch
        if len(batches) > 1 or len(self.unread) != len(batches[0]):
            self.unread.sort(key=_by_time)       # each ring is in time order; merge them

    def close(self) -> None:
        """Every event off and closed, every uprobe gone, the rings unmapped; the hits
        they still held are in `unread`."""
        self._close(list(self._fds))
        self._owner.clear()
        self._original.clear()
        self._closing.clear()
        self._closer.wait()
        for ring in self._rings:
            ring.close()
        self._rings = []
        self.at.clear()

    def problems(self) -> list[str]:
        problems = [f"{n} soft breakpoint{'s' if n > 1 else ''} stopped the target at every hit: {reason}"
                    for reason, n in sorted(self.refused.items())]
        if self.lost:
            problems.append(f"{self.lost} hits of sampled soft breakpoints were lost: the target outran "
                            "instrument (--no-sampling stops the target at every hit instead)")
        problems += [f"sampled soft breakpoints missed the hits of {m}" for m in sorted(self.missed)]
        return problems

    # -- perf -------------------------------------------------------------------------
    def _setup(self) -> None:
        if self._type is None:
            self._type = uprobe_type()
        if self._cpus is None:
            self._cpus = online_cpus()
            # An event per thread, CPU and breakpoint: a thousand breakpoints pass the
            # usual soft limit of 1024 descriptors. The hard limit is ours to take.
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
                try:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                except (OSError, ValueError):
                    pass
        if not self._rings:
            share = _ring_budget() // max(1, len(self._cpus)) // _PAGE
            pages = 1 << (share.bit_length() - 1) if share > 0 else 0
            if pages < MIN_RING_PAGES:
                raise ProbeError("no locked memory left for a perf ring", lasting=True)
            rings: list[CpuRing] = []
            try:
                for cpu in self._cpus:
                    rings.append(CpuRing(cpu, min(RING_PAGES, pages)))
            except ProbeError:
                for ring in rings:
                    ring.close()
                raise
            self._rings = rings

    def _file_offset(self, pid: int, address: int) -> tuple[str, int]:
        m = procfs.mapping_at(pid, address) if pid > 0 else None
        if m is None or not m.path.startswith("/") or "x" not in m.perms:
            raise ProbeError(f"{address:#x} is not in the code of a file")
        path = m.path
        if path.endswith(" (deleted)") or not os.path.isfile(path):
            # The file is gone from its path (replaced, or another mount namespace):
            # the kernel follows the process's own link to what it mapped.
            path = f"/proc/{pid}/map_files/{m.start:x}-{m.end:x}"
        return path, address - m.start + m.offset

    def _open(self, pid: int, tid: int, address: int, where: tuple[str, int]) -> None:
        assert self._type is not None and self._cpus is not None
        path, offset = where
        name = self._paths.get(path)
        if name is None:
            name = self._paths[path] = ctypes.create_string_buffer(os.fsencode(path))
        fds: list[int] = []
        try:
            for ring in self._rings:
                attr = _ffi.PerfEventAttr(type=self._type, sample_period=1,
                                          sample_type=_SAMPLE_IP | _SAMPLE_TID | _SAMPLE_TIME | _SAMPLE_REGS_USER,
                                          flags=_EXCLUDE_KERNEL | _EXCLUDE_HV | _USE_CLOCKID,
                                          # config1: the file's path; config2: the offset in it
                                          bp_addr=ctypes.addressof(name), bp_len=offset,
                                          sample_regs_user=_REGS_MASK, clockid=_CLOCK_MONOTONIC)
                fd = _ffi.perf_event_open(attr, tid, _PERF_FLAG_FD_CLOEXEC, cpu=ring.cpu)
                if fd < 0:
                    raise _perf_error("perf_event_open (uprobe)", -fd)
                fds.append(fd)
                try:
                    fcntl.ioctl(fd, _IOC_SET_OUTPUT, ring.fd)
                except OSError as e:
                    raise ProbeError(f"perf ring: {e.strerror}") from None
        except ProbeError:
            for fd in fds:
                self._closer.close(fd)
            raise
        self._fds[(tid, address)] = fds
        self._owner[tid] = pid

    def _close(self, keys: list[tuple[int, int]]) -> None:
        """Close the events of these (thread, address) pairs. Off first, then the rings
        drained: every hit they counted is then either taken or was lost."""
        closing = [(key, fds) for key, fds in ((k, self._fds.pop(k, None)) for k in keys) if fds is not None]
        if not closing:
            return
        for _, fds in closing:
            for fd in fds:
                fcntl.ioctl(fd, _IOC_DISABLE, 0)
        self._drain()
        owner = self._owner
        for key, fds in closing:
            seen = 0
            for fd in fds:
                try:
                    seen += _U64.unpack(os.read(fd, 8))[0]
                except (OSError, struct.error):
                    pass
                self._closer.close(fd)
            # The kernel counts every hit, also those a full ring had no room for.
            tid, address = key
            self.lost += max(0, seen - self._taken.pop((owner.get(tid, 0) | tid << 32, address), 0))


def _file_byte(path: str, offset: int) -> bytes:
    """The byte at `offset` of the file (b"" where it cannot be read: nothing is masked)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(1)
    except OSError:
        return b""

