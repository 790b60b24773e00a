"""Code of ours run in a stopped thread: a call of one of the target's functions, or one system call.

An injected call is for answers only the target can give: which
implementation a GNU indirect function (glibc's strcpy, memcpy, strlen) picks
on this CPU is what its resolver returns. The call gets a fresh 16-byte aligned frame below the red
zone and returns to address 0; the fault there is how we know it is done.
The general-purpose registers and the thread's stop siginfo are restored
afterwards (not the SSE/AVX state: fine for the resolvers it runs, which start
from a function's entry), and a signal that arrives meanwhile is held back and
sent again.

An injected system call (guard.py's mprotect) points rip at a `syscall`
instruction found in the target and single-steps it, registers and siginfo
saved and restored the same way.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from typing import Callable, Iterator

from ...arch.x86_64 import MASK64 as _MASK, to_signed64
from ...errors import DebuggerError, TargetLost
from . import _ffi, procfs
from .signals import signal_name
from .state import HELD, Process, Thread
from .stops import Tracees

_ESRCH = 3
_ARGUMENT_REGISTERS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
_RED_ZONE = 128
_MAX_STOPS = 16            # stray interrupt stops and signals held back, before we give up
_FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP}
SYSCALL_INSN = b"\x0f\x05"
MAX_TRIES = 32          # steps of one instruction (or one injected syscall) before giving up


def call_function(tid: int, current: _ffi.UserRegs, write: Callable[[int, bytes], None],
                  wait: Callable[[int], int], address: int, args: tuple[int, ...] = ()) -> int:
    """Call `address(*args)` in stopped thread `tid` whose registers are `current`
    (the backend's view, with any change not yet written back); return rax.
    `write` writes target memory, `wait(tid)` returns the thread's next waitpid status.
    Other threads must be stopped. Raises DebuggerError when the call faults."""
    if len(args) > len(_ARGUMENT_REGISTERS):
        raise DebuggerError(f"an injected call takes at most {len(_ARGUMENT_REGISTERS)} arguments")
    saved = _ffi.UserRegs.from_buffer_copy(current)
    call = _ffi.UserRegs.from_buffer_copy(saved)
    sp = ((saved.rsp - _RED_ZONE - 64) & ~0xF) - 8     # as after a `call`: rsp % 16 == 8
    write(sp, bytes(8))                                 # the return address: 0
    # orig_rax -1: a thread stopped inside a system call would otherwise have it
    # restarted by the kernel on resume, rewinding our rip by two bytes.
    call.rsp, call.rip, call.orig_rax, call.rax = sp, address, _MASK, 0
    for name, value in zip(_ARGUMENT_REGISTERS, args):
        setattr(call, name, value & _MASK)
    with stop_preserved(tid, saved) as late:
        _ffi.ptrace(_ffi.PTRACE_SETREGS, tid, None, call)
        return _run_to_return(tid, wait, address, sp + 8, late)


@contextmanager
def stop_preserved(tid: int, regs: _ffi.UserRegs) -> Iterator[list[int]]:
    """Around code injected into stopped thread `tid`: afterwards its registers are
    `regs` again and its stop siginfo what it was; the signals put in the yielded
    list (held back while the injected code ran) are sent again."""
    info = _ffi.SigInfo()
    try:
        _ffi.get_siginfo(tid, info)
        have_info = True
    except _ffi.SyscallError:
        have_info = False       # a group-stop has no siginfo
    late: list[int] = []
    try:
        yield late
    finally:
        try:
            _ffi.ptrace(_ffi.PTRACE_SETREGS, tid, None, regs)
            if have_info:
                _ffi.ptrace(_ffi.PTRACE_SETSIGINFO, tid, None, info)
        except _ffi.SyscallError as e:
            if e.errno != _ESRCH:
                raise           # else: killed meanwhile; its exit status tells
        for sig in late:
            os.kill(tid, sig)    # process-directed, as Python has no tgkill


def _run_to_return(tid: int, wait: Callable[[int], int], address: int, popped_sp: int, late: list[int]) -> int:
    regs = _ffi.UserRegs()
    for _ in range(_MAX_STOPS):
        try:
            _ffi.cont(tid, 0)
        except _ffi.SyscallError as e:
            raise TargetLost(f"thread {tid} vanished in a call at {address:#x}: {e}") from None
        status = wait(tid)
        if not os.WIFSTOPPED(status):
            raise TargetLost(f"thread {tid} ended in a call at {address:#x}")
        sig = os.WSTOPSIG(status)
        if status >> 16:
            continue                     # a stray PTRACE_INTERRUPT stop: run on
        _ffi.get_regs(tid, regs)
        if sig == signal.SIGSEGV and regs.rip == 0 and regs.rsp == popped_sp:
            return int(regs.rax)     # our return address taken (a jump through a NULL slot is not)
        if sig in _FAULTS:
            raise DebuggerError(f"the call at {address:#x} stopped with {signal_name(sig)} at {regs.rip:#x}")
        late.append(sig)                 # asynchronous: not now, but not lost either
    raise DebuggerError(f"the call at {address:#x} did not return")


# -- one system call -------------------------------------------------------------------
def find_syscall(pid: int, read: Callable[[int, int], bytes]) -> int:
    """The address of a `syscall` instruction in an executable mapping, the vdso first
    ([vsyscall] is emulated execute-only memory: never there)."""
    maps = [m for m in procfs.maps(pid) if m.perms[2] == "x" and m.path != "[vsyscall]"]
    maps.sort(key=lambda m: m.path != "[vdso]")
    for m in maps:
        for at in range(m.start, m.end, 1 << 20):
            try:
                data = read(at, min(1 << 20, m.end - at))
            except DebuggerError:
                break
            i = data.find(SYSCALL_INSN)
            if i >= 0:
                return at + i
    raise DebuggerError(f"no syscall instruction found in process {pid} to change page protections")


def inject_syscall(tid: int, wait: Callable[[int], int], address: int, number: int, *args: int) -> int:
    """Make stopped thread `tid` run one system call; return its result (-errno on failure).
    `wait(tid)` returns the thread's next waitpid status.

    Every register and the thread's stop siginfo are restored afterwards. orig_rax
    is set to -1 for the call: a thread interrupted inside a blocking system call
    has orig_rax = its number and rax = -ERESTARTSYS, and the kernel's restart logic
    (on the way back to user mode) would otherwise rewind our rip by 2. Restoring
    them afterwards lets that system call restart as it would have."""
    saved = _ffi.UserRegs()
    _ffi.ptrace(_ffi.PTRACE_GETREGS, tid, None, saved)
    regs = _ffi.UserRegs.from_buffer_copy(saved)
    regs.rax, regs.orig_rax, regs.rip = number, _MASK, address
    for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
        setattr(regs, name, value & _MASK)
    # A signal that arrives meanwhile is taken at our step (delivered to the tracer
    # before the instruction runs): stop_preserved sends it again afterwards.
    with stop_preserved(tid, saved) as late:
        return _step_syscall(tid, wait, address, regs, late, saved)


def _step_syscall(tid: int, wait: Callable[[int], int], address: int, call: _ffi.UserRegs,
                  late: list[int], saved: _ffi.UserRegs) -> int:
    regs = _ffi.UserRegs()
    for _ in range(MAX_TRIES):
        # Set again before every try: a thread stopped inside a system call (a clone,
        # fork or exec event stop) first finishes that call on resume, which writes its
        # result over our rax and traps before our instruction has run.
        _ffi.ptrace(_ffi.PTRACE_SETREGS, tid, None, call)
        try:
            _ffi.ptrace(_ffi.PTRACE_SINGLESTEP, tid, None, 0)
        except _ffi.SyscallError as e:
            raise TargetLost(f"thread {tid} vanished while changing page protections: {e}") from None
        status = wait(tid)
        sig, event = os.WSTOPSIG(status), status >> 16
        if event:
            continue           # a stray PTRACE_INTERRUPT stop: the syscall has not run
        _ffi.ptrace(_ffi.PTRACE_GETREGS, tid, None, regs)
        if sig == signal.SIGTRAP and regs.rip == address + len(SYSCALL_INSN):
            rax = int(regs.rax)
            return to_signed64(rax)
        if regs.rip != address:
            raise DebuggerError(f"thread {tid} did not run the injected system call (pc {regs.rip:#x})")
        if sig == signal.SIGTRAP and _ffi.get_siginfo(tid, _ffi.SigInfo()).si_code > 0:
            # That was the thread's own system call finishing: its result is the thread's
            # rax from now on. Restoring the rax from before (-ENOSYS) would lose it: a
            # clone3 that created a thread would look failed, and glibc would create
            # another thread on the same stack.
            saved.rax = regs.rax
        else:
            late.append(sig)
    raise DebuggerError(f"thread {tid} never got to run the injected system call")


# -- the backend side ----------------------------------------------------------------------
class Injector:
    """Injected code for LinuxBackend: a call in a held thread while every other thread
    stands still, one system call in a stopped thread."""

    def __init__(self, tracees: Tracees) -> None:
        self._t = tracees

    def call(self, pid: int, address: int, args: tuple[int, ...]) -> int:
        """`address(*args)` in a held thread of pid (the Backend's call_function)."""
        t = self._t
        proc = t.proc(pid)
        th = next((x for x in proc.threads.values() if x.state is HELD and x.guard is None), None)
        if th is None:
            raise DebuggerError(f"no thread of process {pid} is stopped to run a call in")
        with t.all_stopped(proc, keep=th.tid):
            try:
                return call_function(th.tid, t.regs(th), proc.write, t.waitpid_tid, address, args)
            finally:
                th.regs_valid = False       # restored by the call; read again when asked

    def syscall(self, proc: Process, th: Thread, address: int, number: int, *args: int) -> int:
        """System call `number` run by stopped thread th through the `syscall` at `address`:
        its result, -errno on failure. Raises TargetLost when th is killed meanwhile."""
        self._t.flush(th)      # the engine's pending register edits go in before we save them
        try:
            return inject_syscall(th.tid, self.wait, address, number, *args)
        except _ffi.SyscallError as e:
            raise self._t.lost(proc, e) from None

    def wait(self, tid: int) -> int:
        """The stop that ends an injected step; an exit instead (SIGKILL from outside) is
        kept for the event loop to report, and the injection is abandoned."""
        status = self._t.waitpid_tid(tid)
        if not os.WIFSTOPPED(status):
            self._t.deferred.append((tid, status))
            raise TargetLost(f"thread {tid} ended while changing page protections")
        return status
