"""Memory (guard-page) breakpoints on Linux: mprotect injected into the target, faults sorted into hits and silent steps.

Linux has no PAGE_GUARD, so a watched page is made PROT_NONE (ranges with
`access: any`) or read-only (only `write` ranges on it) from outside the
target: the tracer makes a stopped thread execute one `mprotect` system call
(registers saved, rip pointed at a `syscall` instruction found in the vdso or
libc, one PTRACE_SINGLESTEP, registers and siginfo restored).

An access to a guarded page raises SIGSEGV (SEGV_ACCERR, si_addr = the data
address). The page-fault error code, which says read or write, never reaches
ptrace (it only lands in the signal frame, built after our stop), so the
access kind comes from decoding the faulting instruction with capstone and
matching its memory operands against si_addr. A fault inside a watched range
of the right kind is reported as GUARD_PAGE; any other fault on a guarded
page is handled silently. Either way, when the thread is continued it first
executes the faulting instruction with the page's original protection back,
while every other thread of the process is stopped (all-stop, as for int3
step-over: a sibling could otherwise run through the open page unseen), and
then the protection is put back.

System calls that read or write a guarded page would fail with EFAULT instead of
faulting (the kernel never raises SIGSEGV for them): guardcalls.py opens the pages
around such a call and reports its access. Known limits: a signal sent
to a thread whose stack page is guarded cannot push its frame (the kernel
kills the process); if the target itself mprotects a guarded page, the guard
is lost and clearing restores the protection we saw when arming.
"""

from __future__ import annotations

import os
import signal
from typing import Iterable

from ...arch.x86_64 import MAX_INSN, PAGE_SIZE as PAGE, page_of, pages_of
from ...errors import DebuggerError, TargetLost
from ...events import Access, DebugEvent, EventCode, ExceptionCode, ExceptionInfo
from . import _ffi, procfs
from ..watches import WATCH_ACCESSES, WatchedRange
from .guardcalls import GuardCalls
from .calls import MAX_TRIES, Injector, find_syscall, inject_syscall, requeue_blocked
from .pages import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, GuardBook, GuardFault, prot_of
from .state import Process, Thread
from .stops import Events, Tracees

SYS_MPROTECT = 10
SEGV_ACCERR = 2


# -- the backend side ------------------------------------------------------------------
_TRAP_BIT = 1 << (signal.SIGTRAP - 1)


def _step_trap_info(pc: int) -> _ffi.SigInfo:
    """The siginfo of a completed single step (TRAP_TRACE), as decoding expects it."""
    info = _ffi.SigInfo()
    info.si_signo, info.si_code, info.si_addr = signal.SIGTRAP, _ffi.TRAP_TRACE, pc
    return info


class Guards:
    """Memory breakpoints for LinuxBackend: arming, faults, stepping through guarded pages."""

    def __init__(self, tracees: Tracees, injector: Injector) -> None:
        self._t = tracees
        self._inject = injector
        self.calls = GuardCalls(tracees, self)     # system calls on guarded pages
        # tid -> (pc, rsp) of the watched access it was last reported for, until its step
        # completes; and of one whose step a signal came before (the access has not run):
        # the thread faults there again when it comes back, which is the same hit.
        self._reported: dict[int, tuple[int, int]] = {}
        self._again: dict[int, tuple[int, int]] = {}

    def set(self, pid: int, address: int, size: int, access: str) -> None:
        """The Backend's set_memory_breakpoint."""
        if access not in WATCH_ACCESSES:
            raise DebuggerError(f"memory breakpoint access must be write or any, not {access!r}")
        if size < 1:
            raise DebuggerError(f"memory breakpoint size must be at least 1, not {size}")
        proc = self._t.proc(pid)
        book = proc.guards = proc.guards or GuardBook()
        old = book.ranges.get(address)        # set again (a fork child's copy, a new size)
        book.ranges[address] = WatchedRange(address, size, access)
        pages = set(pages_of(address, size)) | (set(pages_of(address, old.size)) if old else set())
        try:
            self._sync_pages(proc, sorted(pages))
        except DebuggerError:
            if old is None:
                del book.ranges[address]
            else:
                book.ranges[address] = old
            raise

    def clear(self, pid: int, address: int) -> None:
        """The Backend's clear_memory_breakpoint."""
        proc = self._t.proc(pid)
        book = proc.guards
        if book is None or address not in book.ranges:
            return
        watched = book.ranges.pop(address)
        self._sync_pages(proc, pages_of(address, watched.size))

    def release(self, proc: Process) -> None:
        """Give every guarded page its protection back (detach); all threads are stopped."""
        book = proc.guards
        if book is None:
            return
        self.calls.release(proc)
        if not book.applied:
            return
        book.ranges.clear()
        self._sync_pages(proc, list(book.applied))
        for th in proc.threads.values():
            th.guard = None

    def _sync_pages(self, proc: Process, pages: Iterable[int]) -> None:
        """Bring `pages` to the protection the book wants, in as few mprotect calls as runs allow.

        Threads are stopped first and the book changed after: a thread that faulted on
        a page just before must have that fault sorted while the page still counts as
        guarded, or it would pass for a real access violation (and kill the target)."""
        book = proc.guards
        assert book is not None
        with self._t.all_stopped(proc):
            maps = None
            changes: list[tuple[int, int]] = []
            for page in pages:
                if page not in book.original:
                    maps = maps if maps is not None else procfs.maps(proc.pid)
                    mapping = next((m for m in maps if m.start <= page < m.end), None)
                    if mapping is None:
                        raise DebuggerError(f"no memory is mapped at {page:#x} in process {proc.pid}")
                    book.original[page] = prot_of(mapping.perms)
                want = book.wanted(page)
                now = book.applied.get(page, book.original[page])
                target = book.original[page] if want is None else want
                if page in book.lent:
                    # Open for a system call now (guardcalls.py): its end guards it as wanted then.
                    now = book.original[page]
                    target = now if want is not None else target
                if target != now:
                    changes.append((page, target))
                if want is None:
                    book.applied.pop(page, None)
                    book.released[page] = book.original.pop(page)
                else:
                    book.applied[page] = want
            if changes:
                self._mprotect_runs(proc, self._injection_thread(proc), changes)
            self.calls.sync(proc)

    def _injection_thread(self, proc: Process) -> Thread:
        # Not a thread stopped at a system call's entry: resuming it to run our mprotect
        # would make (or skip) its own call first (syscalls.py).
        ordered = sorted(proc.threads.values(), key=lambda t: t.tid != proc.pid)
        for th in ordered:
            if th.stopped and not th.at_entry:
                return th
        # Under PTRACE_SYSCALL (guardcalls.py) an interrupted thread often stops at an
        # entry of its own: one in an internal stop is backed out of it (its call made
        # again when it runs on).
        for th in ordered:
            if th.stopped and not th.held and self.calls.back_out(proc, th):
                return th
        if any(th.stopped for th in proc.threads.values()):
            raise DebuggerError(f"cannot change page protections in process {proc.pid} while its threads stand "
                                "at a system call's entry: arm memory breakpoints at the call's exit")
        raise DebuggerError(f"no stopped thread in process {proc.pid} to change page protections in")

    def protect_pages(self, proc: Process, th: Thread, changes: list[tuple[int, int]]) -> None:
        """Pages given protections (page, prot) through stopped thread th (guardcalls.py)."""
        self._mprotect_runs(proc, th, changes)

    def _mprotect_runs(self, proc: Process, th: Thread, changes: list[tuple[int, int]]) -> None:
        runs: list[list[int]] = []                   # [start, length, prot]
        for page, prot in sorted(changes):
            if runs and runs[-1][0] + runs[-1][1] == page and runs[-1][2] == prot:
                runs[-1][1] += PAGE
            else:
                runs.append([page, PAGE, prot])
        for start, length, prot in runs:
            self._mprotect(proc, th, start, length, prot)

    def _mprotect(self, proc: Process, th: Thread, start: int, length: int, prot: int) -> None:
        book = proc.guards
        assert book is not None
        if book.syscall is None:
            book.syscall = find_syscall(proc.pid, proc.read)
        result = self._inject.syscall(proc, th, book.syscall, SYS_MPROTECT, start, length, prot)
        if result < 0:
            raise DebuggerError(f"mprotect({start:#x}, {length:#x}, {prot}) in process {proc.pid}: "
                                f"{os.strerror(-result)}")

    # -- faults ------------------------------------------------------------------------
    def on_fault(self, proc: Process, th: Thread, si_code: int, address: int) -> Events | None:
        """A SIGSEGV stop: None when it is not ours (a real access violation); otherwise
        the GUARD_PAGE event of a hit (thread held), or nothing (an internal stop: when
        continued, the thread steps through the page first, see step_guarded)."""
        book = proc.guards
        if book is None or si_code != SEGV_ACCERR:
            return None
        owned = book.owns(address)
        if not owned and page_of(address) not in book.released:
            return None
        regs = self._t.regs(th)
        pc = regs.rip
        try:
            code = proc.read(pc, MAX_INSN)
        except DebuggerError:
            code = b""
        # capstone is imported on the first guarded fault, not at start-up: most
        # sessions have no memory breakpoint.
        from ...arch.x86_64.decode import classify_access

        values = {name: getattr(regs, name) for name in _ffi.REGISTER_NAMES}
        access, lo, hi = classify_access(code, pc, values, address)
        if not owned:
            return self._stale_fault(proc, th, book, address, access)
        if book.applied[page_of(address)] != PROT_NONE and access == Access.READ:
            access = Access.WRITE    # reads pass read-only pages: what faulted there wrote
        previous = th.guard.pages if th.guard is not None else frozenset()
        th.guard = GuardFault(previous | {page_of(address)})
        th.signal = 0                # never deliver our own SIGSEGV, not even on detach
        hit = book.match(lo, hi, access)
        if hit is not None and self._again and self._again.get(th.tid) == (pc, regs.rsp):
            # Reported before the signal that put its step off; still reported, should
            # another signal put off this step too.
            del self._again[th.tid]
            self._reported[th.tid] = (pc, regs.rsp)
            hit = None
        if hit is None:
            th.unhold()
            return []
        th.hold()
        self._reported[th.tid] = (pc, regs.rsp)
        return [DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, proc.pid, th.tid,
                           ExceptionInfo(ExceptionCode.GUARD_PAGE, pc, True, hit, access, "SIGSEGV", si_code))]

    @staticmethod
    def _stale_fault(proc: Process, th: Thread, book: GuardBook, address: int,
                     access: Access) -> Events | None:
        """A fault on a page we have given back since: the thread faulted while it was
        guarded and its stop was collected later. If the page allows the access now, the
        instruction simply runs again; otherwise it is a real access violation."""
        allowed = book.released[page_of(address)]
        needed = {Access.READ: PROT_READ, Access.WRITE: PROT_WRITE, Access.EXECUTE: PROT_EXEC}[access]
        mapping = procfs.mapping_at(proc.pid, address)
        if mapping is None or prot_of(mapping.perms) != allowed or not allowed & needed:
            return None
        th.signal = 0
        th.unhold()
        return []

    def step_guarded(self, proc: Process, th: Thread) -> bool:
        """Before th (stopped on a guarded page) is continued: complete its access, the
        other threads stopped. True: continue it now, without a signal; False: it must
        not be (it raised an event of its own that it waits for, or it was killed)."""
        try:
            with self._t.all_stopped(proc, keep=th.tid):
                self._t.queue.extend(self.step_past(proc, th))
        except TargetLost:
            th.guard = None
            return False             # killed under us: its exit status follows
        return th.tid in self._t.threads and not th.held

    def step_past(self, proc: Process, th: Thread) -> Events:
        """Execute th's faulting instruction with the guarded pages it touches open again;
        every other thread is stopped. Returns the events the step raised, none when the
        instruction simply completed (th then sits in an internal stop)."""
        hits: Events = []
        for _ in range(MAX_TRIES):
            fault = th.guard
            if fault is None:
                break
            status = self._step_open(proc, th, sorted(fault.pages))
            events = self._t.decode(th.tid, status)
            if th.tid not in self._t.threads:
                return hits + events
            if th.guard is not fault:
                hits += events       # it touched another guarded page: open that one too
                continue
            if self._plain_step(th, events):
                self._reported.pop(th.tid, None)
                th.guard = None
                if hits:
                    th.hold()
                else:
                    th.unhold()
                return hits
            if not events and not th.held:
                continue             # a stray interrupt stop: the instruction has not run yet
            th.guard = None          # a signal or another fault: its event says what happened
            reported = self._reported.pop(th.tid, None)
            if reported is not None and self._t.regs(th).rip == reported[0]:
                self._again[th.tid] = reported      # not run: it comes back to this access
            return hits + events
        th.guard = None
        raise DebuggerError(f"thread {th.tid} could not complete an access to a guarded page")

    def _step_open(self, proc: Process, th: Thread, pages: list[int]) -> int:
        book = proc.guards
        assert book is not None
        self._mprotect_runs(proc, th, [(p, book.original[p]) for p in pages if p in book.applied])
        status: int | None = None
        try:
            self._t.flush(th)
            # In a SIGTRAP handler (SIGTRAP blocked), the trap of our step would reset the
            # program's handler to the default (the kernel does so for a blocked signal it
            # forces): SIGTRAP is unblocked for the step (trap_unblocked).
            own = _ffi.get_sigmask(th.tid)
            th.step()
            if own & _TRAP_BIT:
                status = self._step_trap_unblocked(proc, th, own)
            else:
                try:
                    _ffi.ptrace(_ffi.PTRACE_SINGLESTEP, th.tid, None, 0)
                except _ffi.SyscallError as e:
                    raise self._t.lost(proc, e) from None
                status = self._t.waitpid_tid(th.tid)
        finally:
            self._reprotect(proc, th, pages, status is not None and os.WIFSTOPPED(status))
        return status

    def _step_trap_unblocked(self, proc: Process, th: Thread, mask: int) -> int:
        """One step of th, whose own `mask` blocks SIGTRAP, with SIGTRAP unblocked; the
        status it ends with, the mask back. A SIGTRAP sent to the program and pending
        (blocked) is taken by the step before our instruction runs: it is kept and the
        step tried again, and put back in the queue, blocked as it was, afterwards
        (calls.requeue_blocked), not reported: the program has not let it in yet."""
        tid, kept = th.tid, []
        regs = _ffi.UserRegs()
        try:
            _ffi.get_regs(tid, regs)
            pc = regs.rip
            _ffi.set_sigmask(tid, mask & ~_TRAP_BIT)
            for _ in range(MAX_TRIES):
                _ffi.ptrace(_ffi.PTRACE_SINGLESTEP, tid, None, 0)
                status = self._t.waitpid_tid(tid)
                if not (os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTRAP and not status >> 16):
                    break
                info = _ffi.get_siginfo(tid, _ffi.SigInfo())
                if info.si_code > 0:
                    break           # our step's trap
                kept.append(info)
                _ffi.get_regs(tid, regs)
                if regs.rip != pc:
                    # Sent while our step ran: the kernel keeps one SIGTRAP per thread,
                    # so this stop, the step done, carries the sender's siginfo.
                    _ffi.ptrace(_ffi.PTRACE_SETSIGINFO, tid, None, _step_trap_info(pc))
                    break
            else:
                raise DebuggerError(f"thread {tid} could not step past a guarded access")
            _ffi.set_sigmask(tid, mask)
            if kept and os.WIFSTOPPED(status) and not status >> 16:
                regs, stop_info = _ffi.UserRegs(), _ffi.SigInfo()
                _ffi.get_regs(tid, regs)
                _ffi.get_siginfo(tid, stop_info)
                for info in kept[:1]:        # one SIGTRAP pending at a time (a standard signal)
                    requeue_blocked(tid, info, self._inject.wait)
                _ffi.set_sigmask(tid, mask)
                _ffi.ptrace(_ffi.PTRACE_SETREGS, tid, None, regs)
                _ffi.ptrace(_ffi.PTRACE_SETSIGINFO, tid, None, stop_info)
            return status
        except _ffi.SyscallError as e:
            raise self._t.lost(proc, e) from None

    def _reprotect(self, proc: Process, th: Thread, pages: list[int], th_stopped: bool) -> None:
        """Close the pages again, through th if its step ended in a stop (of whatever
        kind: injection preserves it, and th's state is left to the decoding of that
        stop, which comes next), else through any stopped sibling (th was killed)."""
        book = proc.guards
        if book is None:
            return
        changes = [(p, book.applied[p]) for p in pages if p in book.applied and p not in book.lent]
        if not changes:
            return
        if th_stopped:
            self._mprotect_runs(proc, th, changes)
            return
        others = [t for t in proc.threads.values() if t.stopped and t is not th]
        if others:
            self._mprotect_runs(proc, others[0], changes)

    @staticmethod
    def _plain_step(th: Thread, events: Events) -> bool:
        """Whether `events` is just the trap of a completed single step."""
        if len(events) != 1:
            return False
        info = events[0].info
        return (events[0].tid == th.tid and isinstance(info, ExceptionInfo)
                and info.code == ExceptionCode.SINGLE_STEP and not info.hw_slots)

    def fork(self, parent: Process, child_pid: int, follow: bool, vfork: bool) -> GuardBook | None:
        """A fork child inherits the guarded pages: a followed child keeps a copy of the
        book; an unfollowed one gets its protections back before it runs untraced. A vfork
        child shares its parent's pages: nothing to do (nor possible) there."""
        book = parent.guards
        if book is None or not book.applied:
            return None
        if follow:
            return book.copy()
        if not vfork and book.syscall is not None:
            try:
                for page, prot in book.original.items():
                    if page in book.applied:
                        inject_syscall(child_pid, self._inject.wait, book.syscall, SYS_MPROTECT, page, PAGE, prot)
            except DebuggerError:
                pass       # the child died already; it is detached next either way
        return None
