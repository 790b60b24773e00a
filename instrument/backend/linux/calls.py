"""Code of ours run in a stopped thread: a call of one of the target's functions, or one system call.

An injected call is for answers only the target can give: which
implementation a GNU indirect function (glibc's strcpy, memcpy, strlen) picks
on this CPU is what its resolver returns. The call gets a fresh 16-byte aligned frame below the red
zone and returns to address 0; the fault there is how we know it is done.
The whole thread state is restored afterwards: the general-purpose registers, the
x87/SSE/AVX state (the XSAVE area: a resolver, like any function, may use vector
registers the interrupted code still needs) and the thread's stop siginfo. A signal
that arrives meanwhile goes back into the kernel's queue as it was (see Held).

An injected system call (guard.py's mprotect) points rip at a `syscall`
instruction found in the target and single-steps it, registers and siginfo
saved and restored the same way.
"""

from __future__ import annotations

import errno
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
_TRAP_STOP = signal.SIGTRAP << 8 | 0x7F        # the waitpid status of a SIGTRAP delivery-stop
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
    with stop_preserved(tid, saved, wait=wait) as late:
        _ffi.ptrace(_ffi.PTRACE_SETREGS, tid, None, call)
        return _run_to_return(tid, wait, address, sp + 8, late)


# System calls that run with a temporary signal mask and put the thread's own back on
# the way out (TIF_RESTORE_SIGMASK): rt_sigsuspend, pselect6, ppoll, epoll_pwait,
# io_pgetevents, epoll_pwait2. PTRACE_SETSIGMASK forgets that pending restore.
_MASK_SWAPPING = frozenset({130, 270, 271, 281, 333, 441})
_UNBLOCKABLE = frozenset({signal.SIGKILL, signal.SIGSTOP})


# The signals the kernel raises for the code we inject (each step's SIGTRAP, the SIGSEGV
# that ends a call, a fault of the called function's): never blocked while we inject,
# because the kernel resets the handler of a blocked signal it forces
# (force_sig_info_to_task) and the program would then die of it. Blocking would not keep
# a fault of the program's own that is still pending in the thread (one interrupted just
# as it faulted reports our PTRACE_INTERRUPT first, its SIGSEGV queued) in the queue
# either: once an unblocked synchronous signal is pending (our step's SIGTRAP), the
# kernel dequeues the first synchronous signal of the thread's queue, blocked or not
# (dequeue_synchronous_signal). Unblocked, it is taken at our first step, before our
# code runs, and Held.settle sorts it.
_FORCED_BITS = sum(1 << (s - 1) for s in _FAULTS)
_ALL_SIGNALS = (1 << 64) - 1


class Held:
    """Signals that arrive while injected code runs in a thread, kept from it and put back
    as they were.

    At the start (`begin`) every signal but the forced ones above is blocked in the
    thread: one that comes meanwhile stays pending in the kernel's queue, siginfo and
    queue (the thread's or the process's) untouched, and is taken when the thread next
    runs, after the mask is put back (`release`). Never dequeued, it cannot merge with
    another of its kind sent meanwhile, as a standard signal taken and queued again could.

    A forced one sent by another process (a tgkill'd SIGTRAP, a kill -SEGV) may still be
    dequeued by our code's thread: `take` keeps its siginfo and drops it for now, and
    `settle` puts it back at the end: a SIGTRAP blocked, set as the stop's siginfo, and
    the thread continued with it at address 0, so that the kernel queues it again as it
    came and our fault there (a SIGSEGV) stops the thread again; the others with kill().
    A thread stopped inside a system call that swaps the signal mask (PTRACE_SETSIGMASK
    would lose the mask it puts back) keeps its mask: what it takes meanwhile is sent
    again with kill() afterwards; so is SIGSTOP, which nothing blocks.

    A fault the CPU raised for the program's own code and still pending when we began (a
    thread interrupted just as it faulted or trapped reports our PTRACE_INTERRUPT first,
    the signal queued) is taken at our first step, before our code runs. A fault
    (SIGSEGV, SIGBUS, ...) is dropped: its instruction runs again once the registers are
    back, and faults again if it still should. A trap (an int3, a debug register's hit,
    a step) has already run its instruction: it becomes the thread's stop (`trap`), the
    caller decodes it as a stop of the thread's own. Queued again, a CPU trap would not
    stay put: once an unblocked synchronous signal is pending, the kernel dequeues the
    first synchronous signal in the queue, blocked or not (dequeue_synchronous_signal)."""

    __slots__ = ("tid", "can_mask", "mask", "resend", "later", "trap")

    def __init__(self, tid: int, regs: _ffi.UserRegs) -> None:
        self.tid = tid
        self.can_mask = int(regs.orig_rax) not in _MASK_SWAPPING
        self.mask: int | None = None           # the thread's own, while we changed it
        self.resend: list[int] = []
        self.later: list[_ffi.SigInfo] = []    # sent signals of the forced kinds
        self.trap: _ffi.SigInfo | None = None  # a CPU trap of the program's, pending at the start

    def begin(self) -> None:
        if not self.can_mask:
            return
        mask = _ffi.get_sigmask(self.tid)
        held = (mask | _ALL_SIGNALS) & ~_FORCED_BITS
        if held != mask:
            _ffi.set_sigmask(self.tid, held)
            self.mask = mask

    def take(self, sig: int) -> int:
        """Thread stopped at the delivery of `sig`, which is not for now: the signal to
        resume it with (0: dropped now, put back by settle or release)."""
        if sig in _FAULTS:
            info = _ffi.get_siginfo(self.tid, _ffi.SigInfo())
            if info.si_code <= 0:
                self.later.append(info)
            elif sig == signal.SIGTRAP:
                self.trap = info       # (one SIGTRAP is pending at a time)
            return 0
        if not self.can_mask or sig in _UNBLOCKABLE:
            self.resend.append(sig)
            return 0
        self._block(sig)       # (one dequeued before `begin`): queued again by the kernel
        return sig

    def _block(self, sig: int) -> None:
        bit = 1 << (sig - 1)
        mask = _ffi.get_sigmask(self.tid)
        if not mask & bit:
            _ffi.set_sigmask(self.tid, mask | bit)
            if self.mask is None:
                self.mask = mask

    def settle(self, wait: Callable[[int], int]) -> None:
        """The injection is done, the thread in a signal-delivery-stop of ours: put back
        the signals `take` kept (see the class). The caller restores the registers."""
        later, self.later = self.later, []
        for info in later:
            sig = int(info.si_signo)
            if sig != signal.SIGTRAP or not self.can_mask:
                self.resend.append(sig)
                continue
            self._block(sig)
            requeue_blocked(self.tid, info, wait, self.take)

    def release(self) -> None:
        """After the injection, the thread stopped: its own mask back, and what could not
        wait in the queue sent again."""
        if self.mask is not None:
            _ffi.set_sigmask(self.tid, self.mask)
            self.mask = None
        for sig in self.resend:
            os.kill(self.tid, sig)    # process-directed, as Python has no tgkill


def requeue_blocked(tid: int, info: _ffi.SigInfo, wait: Callable[[int], int],
                    take: Callable[[int], int] | None = None) -> None:
    """Put signal `info` (blocked in stopped thread `tid` now, the thread in a
    signal-delivery-stop) back in the thread's queue as it came: set as the stop's
    siginfo and the thread continued with it at address 0, where the kernel queues a
    blocked signal again instead of delivering it, and our fault stops the thread again
    (a SIGSEGV). The thread's registers and siginfo are the caller's to restore. Signals
    that stop it on the way go to `take` (its verdict: the signal to continue with);
    without one they are blocked and queued again the same way, and the caller puts the
    thread's mask back."""
    regs = _ffi.UserRegs()
    _ffi.get_regs(tid, regs)
    regs.rip, regs.orig_rax = 0, _MASK
    _ffi.ptrace(_ffi.PTRACE_SETREGS, tid, None, regs)
    _ffi.ptrace(_ffi.PTRACE_SETSIGINFO, tid, None, info)
    resume_with = int(info.si_signo)
    for _ in range(_MAX_STOPS):
        _ffi.cont(tid, resume_with)
        status = wait(tid)
        if not os.WIFSTOPPED(status):
            raise TargetLost(f"thread {tid} ended while its signals were put back")
        stopped = os.WSTOPSIG(status)
        resume_with = 0
        if status >> 16:
            continue                  # a stray PTRACE_INTERRUPT stop
        _ffi.get_regs(tid, regs)
        if stopped == signal.SIGSEGV and regs.rip == 0:
            return
        if take is not None:
            resume_with = take(stopped)
        elif stopped not in _UNBLOCKABLE and stopped not in _FAULTS:
            _ffi.set_sigmask(tid, _ffi.get_sigmask(tid) | 1 << (stopped - 1))
            resume_with = stopped
        else:
            raise DebuggerError(f"thread {tid}: {signal_name(stopped)} came while a signal was put back")
    raise DebuggerError(f"thread {tid}: could not put a signal back in its queue")


_xstate_note: int | None = _ffi.NT_X86_XSTATE     # None: neither register set can be read


def _get_xstate(tid: int) -> tuple[int, bytes] | None:
    """The thread's x87/SSE/AVX state: the XSAVE area, or the legacy FXSAVE area on a
    CPU (or kernel) without XSAVE."""
    global _xstate_note
    while _xstate_note is not None:
        try:
            return _xstate_note, _ffi.get_regset(tid, _xstate_note)
        except _ffi.SyscallError as e:
            if e.errno not in (errno.EINVAL, errno.ENODEV, errno.EIO):
                raise
            _xstate_note = _ffi.NT_PRFPREG if _xstate_note == _ffi.NT_X86_XSTATE else None
    return None


@contextmanager
def stop_preserved(tid: int, regs: _ffi.UserRegs, vectors: bool = True,
                   wait: Callable[[int], int] | None = None) -> Iterator[Held]:
    """Around code injected into stopped thread `tid`: afterwards its registers are
    `regs` again, its x87/SSE/AVX state (`vectors`) and stop siginfo what they were, and
    the signals given to the yielded Held while the injected code ran pending again
    (`wait(tid)`, the thread's next status, for Held.settle)."""
    info = _ffi.SigInfo()
    try:
        _ffi.get_siginfo(tid, info)
        have_info = True
    except _ffi.SyscallError:
        have_info = False       # a group-stop has no siginfo
    xstate = _get_xstate(tid) if vectors else None
    late = Held(tid, regs)
    done = False
    try:
        late.begin()
        yield late
        done = True
    finally:
        try:
            if late.later and done and wait is not None:
                late.settle(wait)
            _ffi.ptrace(_ffi.PTRACE_SETREGS, tid, None, regs)
            if xstate is not None:
                _ffi.set_regset(tid, *xstate)
            if done and late.trap is not None:
                # The thread stands in a SIGTRAP's delivery-stop of ours: made the program's trap.
                _ffi.ptrace(_ffi.PTRACE_SETSIGINFO, tid, None, late.trap)
            elif have_info:
                _ffi.ptrace(_ffi.PTRACE_SETSIGINFO, tid, None, info)
            late.release()
        except _ffi.SyscallError as e:
            if e.errno != _ESRCH:
                raise           # else: killed meanwhile; its exit status tells


def _run_to_return(tid: int, wait: Callable[[int], int], address: int, popped_sp: int, late: Held) -> int:
    regs = _ffi.UserRegs()
    resume_with = 0
    for _ in range(_MAX_STOPS):
        try:
            _ffi.cont(tid, resume_with)
        except _ffi.SyscallError as e:
            raise TargetLost(f"thread {tid} vanished in a call at {address:#x}: {e}") from None
        resume_with = 0
        status = wait(tid)
        if not os.WIFSTOPPED(status):
            raise TargetLost(f"thread {tid} ended in a call at {address:#x}")
        sig = os.WSTOPSIG(status)
        if status >> 16:
            continue                     # a stray PTRACE_INTERRUPT stop: run on
        _ffi.get_regs(tid, regs)
        if sig == signal.SIGSEGV and regs.rip == 0 and regs.rsp == popped_sp:
            return int(regs.rax)     # our return address taken (a jump through a NULL slot is not)
        if sig in _FAULTS and _ffi.get_siginfo(tid, _ffi.SigInfo()).si_code > 0:
            # Raised by the CPU in our code. The same signal sent by another process
            # (a tgkill'd SIGTRAP, a kill -SEGV) is asynchronous: held (Held.take).
            raise DebuggerError(f"the call at {address:#x} stopped with {signal_name(sig)} at {regs.rip:#x}")
        resume_with = late.take(sig)     # asynchronous: not now, but not lost either
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


def inject_syscall(tid: int, wait: Callable[[int], int], address: int, number: int, *args: int,
                   trapped: Callable[[int], None] | None = None) -> int:
    """Make stopped thread `tid` run one system call; return its result (-errno on failure).
    `wait(tid)` returns the thread's next waitpid status. `trapped(tid)` is called when the
    thread took a trap of its own, pending when we began: it now stands in that trap's
    SIGTRAP stop (Held), for the caller to decode.

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
    # before the instruction runs): Held puts it back in the kernel's queue. The x87/SSE/AVX
    # state is not saved: a system call leaves it as it was (the kernel saves and restores
    # it around its own use), and reading and writing the XSAVE area through ptrace would
    # add half again to every memory breakpoint hit (measured: mem_page global 2000, 3.5 s
    # -> 5.5 s).
    with stop_preserved(tid, saved, vectors=False, wait=wait) as late:
        result = _step_syscall(tid, wait, address, regs, late, saved)
    if late.trap is not None and trapped is not None:
        trapped(tid)
    return result


def _step_syscall(tid: int, wait: Callable[[int], int], address: int, call: _ffi.UserRegs,
                  late: Held, saved: _ffi.UserRegs) -> int:
    regs = _ffi.UserRegs()
    resume_with = 0
    in_our_call = False
    for _ in range(MAX_TRIES):
        # Set again before every try: a thread stopped inside a system call (a clone,
        # fork or exec event stop) first finishes that call on resume, which writes its
        # result over our rax and traps before our instruction has run. Not when our own
        # call stopped at its seccomp stop (a recipe names it, e.g. mprotect): it is
        # under way, and only needs to go on.
        if not in_our_call:
            _ffi.ptrace(_ffi.PTRACE_SETREGS, tid, None, call)
        in_our_call = False
        try:
            _ffi.ptrace(_ffi.PTRACE_SINGLESTEP, tid, None, resume_with)
        except _ffi.SyscallError as e:
            raise TargetLost(f"thread {tid} vanished while changing page protections: {e}") from None
        resume_with = 0
        status = wait(tid)
        sig, event = os.WSTOPSIG(status), status >> 16
        if event == _ffi.PTRACE_EVENT_SECCOMP:
            in_our_call = True     # our call, at the filter (no event: the engine never sees it)
            continue
        if event:
            continue           # a stray PTRACE_INTERRUPT stop: the syscall has not run
        _ffi.ptrace(_ffi.PTRACE_GETREGS, tid, None, regs)
        if sig == signal.SIGTRAP and regs.rip == address + len(SYSCALL_INSN):
            result = to_signed64(int(regs.rax))
            if _ffi.get_siginfo(tid, _ffi.SigInfo()).si_code <= 0:
                # A SIGTRAP sent to the thread (tgkill) was pending when our step trapped:
                # the kernel keeps one SIGTRAP per thread, so this stop is the sender's,
                # with its siginfo. Held puts it back afterwards.
                late.take(sig)
            return result
        if regs.rip != address:
            raise DebuggerError(f"thread {tid} did not run the injected system call (pc {regs.rip:#x})")
        if sig == signal.SIGTRAP and _ffi.get_siginfo(tid, _ffi.SigInfo()).si_code == _ffi.TRAP_BRKPT:
            # That was the thread's own system call finishing (x86 reports a step out of
            # a system call as TRAP_BRKPT): its result is the thread's rax from now on.
            # Restoring the rax from before (-ENOSYS) would lose it: a clone3 that created
            # a thread would look failed, and glibc would create another thread on the
            # same stack. Another trap (an int3's SI_KERNEL, a debug register's
            # TRAP_HWBKPT, a step's TRAP_TRACE) was the program's own, pending when we
            # began (interrupted just after it trapped): Held makes it the thread's stop.
            saved.rax = regs.rax
        else:
            resume_with = late.take(sig)
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
        # Not one held at a system call's entry: the call would be made (or skipped) first.
        th = next((x for x in proc.threads.values() if x.state is HELD and x.guard is None and not x.at_entry),
                  None)
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
            return inject_syscall(th.tid, self.wait, address, number, *args, trapped=self._trapped)
        except _ffi.SyscallError as e:
            raise self._t.lost(proc, e) from None

    def _trapped(self, tid: int) -> None:
        """The thread's own trap, pending when we injected, is now its stop: decoded (a
        breakpoint event, held) as if our interrupt had not come first."""
        self._t.queue.extend(self._t.decode(tid, _TRAP_STOP))

    def wait(self, tid: int) -> int:
        """The stop that ends an injected step; an exit instead (SIGKILL from outside) is
        kept for the event loop to report, and the injection is abandoned."""
        status = self._t.waitpid_tid(tid)
        if not os.WIFSTOPPED(status):
            self._t.deferred.append((tid, status))
            raise TargetLost(f"thread {tid} ended while changing page protections")
        return status
