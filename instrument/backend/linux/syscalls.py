"""System call stops: which stops are the named calls' entries and exits, and the events they make.

Two ways to be stopped at a call (chosen per process, state.SyscallTrace):

- filtered (seccomp.py): only named calls stop, at their entry, with a
  PTRACE_EVENT_SECCOMP stop. Where the exit is wanted, that one thread is
  continued with PTRACE_SYSCALL, and the kernel (4.8 and later) then reports that
  call's syscall-exit-stop; after it the thread goes back to PTRACE_CONT.
- unfiltered (an attached process; one started without the filter): every thread is
  always continued with PTRACE_SYSCALL, so every call stops twice, and the calls
  nobody named are continued here without the engine hearing of them.

PTRACE_GET_SYSCALL_INFO says whether a syscall-stop is an entry or an exit (the
registers alone cannot: rax is -ENOSYS at every entry, and a call may fail with
ENOSYS). The number and arguments are read from the registers (orig_rax, and rdi
rsi rdx r10 r8 r9 in the system call ABI), and kept per thread from its entry so
the exit of a call is paired with it, even when a `return:` has skipped it
(orig_rax is -1 then).
"""

from __future__ import annotations

from ...arch.x86_64 import MASK64, to_signed64
from ...events import DebugEvent, EventCode, SyscallInfo
from . import _ffi
from .state import Process, SyscallTrace, Thread
from .stops import Events, Tracees

_SYSCALL = EventCode.SYSCALL_EVENT
_EXIT = _ffi.PTRACE_SYSCALL_INFO_EXIT
_ENTRY = _ffi.PTRACE_SYSCALL_INFO_ENTRY


def _args(regs: _ffi.UserRegs) -> tuple[int, ...]:
    return (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9)


class SyscallStops:
    """The syscall-stop decoder of the Linux backend (decode.py calls it)."""

    def __init__(self, tracees: Tracees) -> None:
        self._t = tracees
        self._info = _ffi.SyscallInfoHead()

    def trace(self, proc: Process, numbers: frozenset[int], exits: frozenset[int], *, filtered: bool) -> None:
        proc.sys = SyscallTrace(numbers, exits, filtered)
        for th in proc.threads.values():
            th.syscall_stops = not filtered

    def on_seccomp(self, proc: Process, th: Thread) -> Events:
        """A PTRACE_EVENT_SECCOMP stop: a named call's entry (filtered processes)."""
        trace = proc.sys
        regs = self._t.regs(th)
        number = int(regs.orig_rax)
        if trace is None or number not in trace.numbers:
            return []        # a filter from before (one we did not install): let it run
        th.syscall_stops = number in trace.exits       # its exit stops it, and then no more
        return self._entry(proc, th, number, regs)

    def on_syscall_stop(self, proc: Process, th: Thread) -> Events:
        """A syscall-stop (SIGTRAP|0x80): an entry (unfiltered) or an exit."""
        trace = proc.sys
        if trace is None or (trace.filtered and th.sys_call is None):
            # Filtered: a named call's entry is its seccomp stop; a syscall-stop with no
            # such entry before it is not ours (PTRACE_SYSCALL for guarded pages).
            return []
        regs = self._t.regs(th)
        if th.sys_call is None and regs.orig_rax not in trace.numbers:
            return []      # entry or exit, a call nobody named: no need to ask which (hot path)
        op = _ffi.syscall_op(th.tid, self._info)
        if op == _ENTRY:
            number = int(regs.orig_rax)
            if number not in trace.numbers:
                th.sys_call = None
                return []
            return self._entry(proc, th, number, regs)
        if op != _EXIT:
            return []
        call, th.sys_call = th.sys_call, None
        if trace.filtered:
            th.syscall_stops = False       # back to PTRACE_CONT: the filter stops the next one
        # The arguments as the kernel had them (a `set:` at entry included): a system call
        # keeps every register but rax, rcx and r11.
        number = call[0] if call is not None else int(regs.orig_rax)
        if number not in trace.exits:
            return []
        th.hold()
        info = SyscallInfo(number, False, _args(regs), to_signed64(int(regs.rax)))
        return [DebugEvent(_SYSCALL, proc.pid, th.tid, info)]

    def _entry(self, proc: Process, th: Thread, number: int, regs: _ffi.UserRegs) -> Events:
        args = _args(regs)
        th.sys_call = (number, args)
        th.at_entry = True
        th.hold()
        return [DebugEvent(_SYSCALL, proc.pid, th.tid, SyscallInfo(number, True, args))]

    def skip(self, th: Thread, retval: int) -> None:
        """The held call is not made and returns `retval`: orig_rax -1 skips it at entry
        (seccomp or syscall-entry stop alike), and the kernel leaves rax as we set it."""
        regs = self._t.regs(th)
        regs.orig_rax = MASK64
        regs.rax = retval & MASK64
        th.regs_dirty = True
