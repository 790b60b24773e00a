"""System calls on guarded pages: the guard lifted around a call that touches one, and the access reported as a hit.

The kernel never raises SIGSEGV for a system call's own access to user memory:
`read(fd, buf, n)` into a PROT_NONE page fails with EFAULT. So while a process
has guarded pages (memory breakpoints, guard.py), its threads are continued with
PTRACE_SYSCALL, and at each syscall-entry-stop the buffers the call will touch
are worked out from the system call table (arch/x86_64/syscalls.py: buffer and
length pairs, iovec arrays, C strings, and 256 bytes behind any other pointer)
plus a few sizes kept here (struct stat, a futex word, a msghdr's iovecs). A call none of whose
buffers reaches a guarded page runs on untouched. One that does is swapped for
`mprotect(page, length, the page's own protection)` (orig_rax and the argument
registers changed at its entry stop, so no code is injected there, where none
can be); at that mprotect's exit the thread's registers are put back with rip
on its `syscall` instruction again (rip -= 2, rax = its number), so it re-enters
its own call with the pages open. At that call's exit the pages are guarded
again (an mprotect injected, calls.py) and the access is reported as GUARD_PAGE
hits, one per watched range, where the range's `access` takes it: a read()
INTO a watched buffer is a WRITE to it, a write() FROM it a READ. The address
is the first watched byte the call touched (only the bytes the result says
were transferred count), the pc the thread's `syscall` instruction.

A process traced with a seccomp filter (a `syscalls:` section, syscalls.py) gets
its entries reported by their seccomp stop only, which comes after the
syscall-entry-stop (and a filter may stop the calls with pointers for us, see
the limits below): the swapped mprotect's own seccomp stop, should the recipe
name mprotect, is ours and swallowed, and the re-entered call's is reported
once.

Known limits:
- While a call has a page open, other threads of the process run through that
  page unseen (a blocking read() can keep it open long: the other threads
  cannot be stopped for that long).
- A pointer whose size the table does not give (most `ptr` arguments, the
  vectors of sendmmsg/recvmmsg) gets its first 256 bytes opened, so the call
  works where it touches no more, but no hit is reported for it; a `hex`
  argument (ioctl's) and the calls the table does not know (known=False) are
  not followed at all: they still fail with EFAULT.
- The memory-management calls (mmap, mprotect, munmap, brk, mremap, msync,
  madvise, mincore, mlock, pkey_mprotect) and clone/fork/exit are left alone:
  they do not access the memory they name (guard.py tracks what they do).
- Every system call of every thread stops twice while any page is guarded
  (PTRACE_SYSCALL; bench/syscalls.py measures it), except in a started target
  that may have a seccomp filter (follow_forks, no `detach`: the filter stays
  for good, and a process let go with it would have those calls fail with
  ENOSYS; session.guard_filter): its filter stops only the calls of PLANS, once
  at entry (a seccomp stop, where the swap is made alike), and a thread runs
  under PTRACE_SYSCALL only until the exit of a call that has pages open. That
  filter is there from exec on, so those calls stop even before any page is
  guarded; an attached process cannot get one.
- A thread that never re-enters its call after the pages were opened (a signal
  handler that longjmps out) leaves them open until its next such call ends.
"""

from __future__ import annotations

import os
import signal
from typing import Callable, Protocol

from ...arch.x86_64 import MASK64, PAGE_SIZE as PAGE, to_signed64
from ...events import Access, DebugEvent, EventCode, ExceptionCode, ExceptionInfo
from . import _ffi
from .callbufs import PLANS, Arg, spans_of, touched
from .pages import GuardBook, GuardCall
from .state import Process, Thread
from .stops import Events, Tracees

SYS_MPROTECT = 10
_SYSCALL_TRAP = signal.SIGTRAP | 0x80
_NEG_ENOSYS = -38 & MASK64
_EFAULT = -14
_SYSCALL_INSN_LEN = 2

class Protector(Protocol):
    """What this needs of guard.py: pages given protections by mprotects that stopped
    thread th (not at a call's entry) runs, one per run of pages."""

    def protect_pages(self, proc: Process, th: Thread, changes: list[tuple[int, int]]) -> None: ...


def _end(proc: Process, th: Thread) -> None:
    th.guard_call = None
    th.guard_calls = GuardCalls.stops_all(proc)


def _args(regs: _ffi.UserRegs) -> tuple[int, ...]:
    return (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)


def _runs(book: GuardBook, pages: list[int]) -> list[tuple[int, int, int]]:
    """[start, length, original protection] of contiguous pages of one protection."""
    runs: list[list[int]] = []
    for page in sorted(pages):
        prot = book.original[page]
        if runs and runs[-1][0] + runs[-1][1] == page and runs[-1][2] == prot:
            runs[-1][1] += PAGE
        else:
            runs.append([page, PAGE, prot])
    return [(s, n, p) for s, n, p in runs]


class GuardCalls:
    """The syscall-stop side of memory breakpoints (decode.py calls it, guard.py owns it)."""

    def __init__(self, tracees: Tracees, protector: Protector) -> None:
        self._t = tracees
        self._protect = protector
        self._info = _ffi.SyscallInfoHead()

    # -- which threads stop at every call ------------------------------------------------
    @staticmethod
    def stops_all(proc: Process) -> bool:
        """Whether every call of proc's threads must stop (PTRACE_SYSCALL): it has guarded
        pages and no seccomp filter that stops the calls with pointers."""
        return proc.guards is not None and bool(proc.guards.applied) and not proc.guard_filter

    @staticmethod
    def sync(proc: Process) -> None:
        """PTRACE_SYSCALL for every thread of proc while it has a guarded page (taking
        effect at each thread's next continue)."""
        on = GuardCalls.stops_all(proc)
        for th in proc.threads.values():
            th.guard_calls = on or th.guard_call is not None

    def release(self, proc: Process) -> None:
        """Detach, every page about to get its protection back: a thread stopped before
        its swapped mprotect ran (at that entry, or its seccomp stop) gets its own call
        back, skipped now and made again when it runs (orig_rax -1 skips a call at its
        entry, and rax is left as set)."""
        for th in proc.threads.values():
            call, th.guard_call = th.guard_call, None
            th.guard_calls = False
            if call is not None and call.opening and th.stopped:
                regs = self._t.regs(th)
                _copy_regs(regs, call.saved)
                regs.rip = (call.saved.rip - _SYSCALL_INSN_LEN) & MASK64
                regs.rax, regs.orig_rax = call.saved.orig_rax, MASK64
                th.regs_dirty = True
        if proc.guards is not None:
            proc.guards.lent.clear()

    def back_out(self, proc: Process, th: Thread) -> bool:
        """Take internally stopped thread th out of the syscall-entry-stop it stands in, so
        code can be injected through it: its call is skipped now (orig_rax -1) and made
        again when it runs on (rip back on its `syscall`, rax its number), as a restarted
        call is. True: th is in a stop where injecting is safe now."""
        try:
            if _ffi.syscall_op(th.tid, self._info) not in (_ffi.PTRACE_SYSCALL_INFO_ENTRY,
                                                           _ffi.PTRACE_SYSCALL_INFO_SECCOMP):
                th.at_entry = False      # an exit that returned -ENOSYS, or no syscall-stop at all
                return True
            regs = self._t.regs(th)
            number = int(regs.orig_rax)
            regs.rip = (regs.rip - _SYSCALL_INSN_LEN) & MASK64
            regs.rax, regs.orig_rax = number, MASK64
            self._t.flush(th)
            th.step()                    # (its signal and trap stand, as for a step)
            _ffi.syscall_cont(th.tid, 0)
        except _ffi.SyscallError:
            return False
        status = self._t.waitpid_tid(th.tid)
        if not (os.WIFSTOPPED(status) and os.WSTOPSIG(status) == _SYSCALL_TRAP):
            self._t.queue.extend(self._t.decode(th.tid, status))
            return False
        signal_kept = th.signal
        th.stop()
        th.signal = signal_kept
        return True

    # -- stops ---------------------------------------------------------------------------
    def on_seccomp(self, proc: Process, th: Thread) -> Events | None:
        """A seccomp stop (an entry) of a thread with a call of ours under way, or of a
        process whose filter stops the calls with pointers. []: ours (internal: our
        swapped mprotect, should the recipe name mprotect; or a call swapped for one
        now); None: syscalls.py's as usual (a call run as it is)."""
        th.at_entry = True                   # no mprotect can be injected in it here
        call = th.guard_call
        if call is not None and call.opening:
            return []
        regs = self._t.regs(th)
        number = int(regs.orig_rax)
        plan = PLANS.get(number)
        if plan is None:
            return None
        # Under the filter, a call that gets pages lent stops at its exit: th.guard_calls
        # (set by _entry) continues it with PTRACE_SYSCALL until the call is done.
        return self._entry(proc, th, call, number, plan, regs)

    def on_syscall_stop(self, proc: Process, th: Thread,
                        then: Callable[[Process, Thread], Events]) -> Events | None:
        """A syscall-stop of a thread of a process with guarded pages (or with a call of
        ours under way). None: nothing of ours, the stop is syscalls.py's as usual; []:
        a stop of ours (internal); at the exit of a call we opened pages for, its hits
        (the thread then held) and what `then` (syscalls.py) makes of that exit."""
        regs = self._t.regs(th)
        call = th.guard_call
        number = int(regs.orig_rax)
        plan = PLANS.get(number)
        if call is None and plan is None:
            if regs.rax == _NEG_ENOSYS:
                # Likely an entry (every entry has -ENOSYS in rax): no mprotect may be
                # injected through this thread now (guard.py chooses one that is not).
                th.at_entry = True
            return None                      # the hot path: a call without pointers
        op = _ffi.syscall_op(th.tid, self._info)
        if op == _ffi.PTRACE_SYSCALL_INFO_ENTRY:
            th.at_entry = True               # no mprotect can be injected in it here
            if plan is None:
                return None
            return self._entry(proc, th, call, number, plan, regs)
        if op != _ffi.PTRACE_SYSCALL_INFO_EXIT or call is None:
            return None
        if call.opening:
            return self._opened(proc, th, call, regs)
        if call.entered is None:
            return None                      # another call made meanwhile (a signal handler's)
        # syscalls.py's part first: guarding the pages again injects an mprotect, after
        # which the thread is no longer in this syscall-exit-stop for it to look at.
        theirs = then(proc, th)
        return self._exit(proc, th, call, regs) + theirs

    def _entry(self, proc: Process, th: Thread, call: GuardCall | None, number: int,
               plan: tuple[Arg, ...], regs: _ffi.UserRegs) -> Events | None:
        book = proc.guards
        if book is None or not book.applied and not book.lent:
            return None
        args = _args(regs)
        spans = spans_of(proc.read, plan, args)
        need = self._guarded_pages(book, spans)
        have = set(call.pages) if call is not None else set()
        new = [p for p in need if p not in have]
        if not new:
            if call is None:
                return None
            call.entered, call.spans = (number, args), spans
            return None                      # pages open: the call runs, reported as usual
        closed = [p for p in new if not book.lent.get(p)]     # not open for another thread's call
        for p in new:
            book.lent.setdefault(p, set()).add(th.tid)
        saved = _ffi.UserRegs.from_buffer_copy(regs)
        if call is None:
            call = th.guard_call = GuardCall(saved, [], [])
            th.guard_calls = True         # to this call's end, whatever happens to the guards
        call.pages += new
        call.saved, call.entered = saved, None
        runs = _runs(book, closed)
        if not runs:                     # open for another thread's call already: it runs now
            call.opening, call.runs = False, []
            call.entered, call.spans = (number, args), spans
            return None
        # Swap the call for the first mprotect; the others are injected at its exit.
        call.opening, call.runs = True, runs[1:]
        start, length, prot = runs[0]
        regs.orig_rax, regs.rdi, regs.rsi, regs.rdx = SYS_MPROTECT, start, length, prot
        th.regs_dirty = True
        th.at_entry = True
        return []

    def _opened(self, proc: Process, th: Thread, call: GuardCall, regs: _ffi.UserRegs) -> Events:
        """The exit of the swapped mprotect: the other runs opened, the thread sent back to
        its own `syscall` instruction with its registers as they were."""
        result = to_signed64(int(regs.rax))
        runs, call.runs, call.opening = call.runs, [], False
        th.at_entry = False
        if result < 0:
            # Not opened (its mapping went meanwhile?): the call runs as it would untraced
            # (EFAULT, most likely). It keeps its pages, unlent, so that its re-entry does
            # not try again (and again).
            self._unlend(proc, th, call)
        else:
            self._protect.protect_pages(proc, th, [(page, prot) for start, length, prot in runs
                                                   for page in range(start, start + length, PAGE)])
        back = self._t.regs(th)
        _copy_regs(back, call.saved)
        back.rip = (call.saved.rip - _SYSCALL_INSN_LEN) & MASK64
        back.rax = call.saved.orig_rax
        th.regs_dirty = True
        return []

    def _exit(self, proc: Process, th: Thread, call: GuardCall, regs: _ffi.UserRegs) -> Events:
        """The exit of the thread's own call: its pages guarded again, its accesses reported."""
        _end(proc, th)
        assert call.entered is not None
        result = to_signed64(int(regs.rax))
        pc = (int(regs.rip) - _SYSCALL_INSN_LEN) & MASK64
        self._give_back(proc, th, call)
        book = proc.guards
        if book is None or result == _EFAULT:
            return []
        events: Events = []
        seen: set[int] = set()
        for lo, hi, access in touched(proc.read, call.spans, call.entered, result):
            for r in book.ranges.values():
                first = max(lo, r.address)
                if r.address in seen or not r.watches(access) or first >= min(hi, r.end):
                    continue
                seen.add(r.address)
                events.append(DebugEvent(EventCode.EXCEPTION_DEBUG_EVENT, proc.pid, th.tid,
                                         ExceptionInfo(ExceptionCode.GUARD_PAGE, pc, True, first, access)))
        if events:
            th.hold()
        return events

    def _give_back(self, proc: Process, th: Thread, call: GuardCall) -> None:
        """The pages the call borrowed guarded again, those no other thread's call still has."""
        book = proc.guards
        if book is None:
            return
        closing = [p for p in self._unlend(proc, th, call) if p in book.applied]
        call.pages = []
        if closing:
            self._protect.protect_pages(proc, th, [(p, book.applied[p]) for p in closing])

    @staticmethod
    def _unlend(proc: Process, th: Thread, call: GuardCall) -> list[int]:
        """th taken off the lenders of its call's pages: the pages no call has open now."""
        book = proc.guards
        if book is None:
            return []
        free: list[int] = []
        for p in call.pages:
            lenders = book.lent.get(p)
            if lenders is None:
                continue
            lenders.discard(th.tid)
            lenders.intersection_update(proc.threads)       # threads gone meanwhile
            if not lenders:
                del book.lent[p]
                free.append(p)
        return free

    @staticmethod
    def _guarded_pages(book: GuardBook, spans: list[tuple[int, int, Access, str]]) -> list[int]:
        """The guarded (or lent) pages the spans reach. Checked page by guarded page, not
        page by span: a read() of a gigabyte is one comparison per guarded page."""
        pages: list[int] = []
        for page in list(book.applied) + [p for p in book.lent if p not in book.applied]:
            if any(lo < page + PAGE and page < hi for lo, hi, _, _ in spans):
                pages.append(page)
        return pages

def _copy_regs(into: _ffi.UserRegs, source: _ffi.UserRegs) -> None:
    """One register buffer over another, in place (the thread's cached buffer is kept)."""
    for name in _REG_FIELDS:
        setattr(into, name, getattr(source, name))


_REG_FIELDS = tuple(f[0] for f in _ffi.UserRegs._fields_)
