"""Per-process and per-thread bookkeeping of the Linux backend, and the signal -> exception table."""

from __future__ import annotations

import functools

import ctypes
import os
import signal
from typing import TYPE_CHECKING, Callable, Iterator, MutableMapping

from ...arch.x86_64 import MASK64
from ...errors import DebuggerError, TargetLost
from ...events import ExceptionCode, ExceptionInfo
from . import _ffi, debugregs, perfbp, procfs
from .rendezvous import Rendezvous

if TYPE_CHECKING:
    from .guard import GuardBook, GuardFault
    from .launch import StderrPump

# One table: the exception code a CPU-raised signal becomes (SPEC section 2).
_EXCEPTION_BY_SIGNAL: dict[int, int] = {
    signal.SIGSEGV: ExceptionCode.ACCESS_VIOLATION,
    signal.SIGBUS: ExceptionCode.ACCESS_VIOLATION,
    signal.SIGILL: ExceptionCode.ILLEGAL_INSTRUCTION,
    signal.SIGFPE: ExceptionCode.INT_DIVIDE_BY_ZERO,
}
# SIGFPE's si_code says which arithmetic fault it was. Underflow and inexact
# results have no ExceptionCode member yet, so they report FLT_INVALID_OPERATION.
_FPE_CODES: dict[int, int] = {
    _ffi.FPE_INTDIV: ExceptionCode.INT_DIVIDE_BY_ZERO,
    _ffi.FPE_INTOVF: ExceptionCode.INT_OVERFLOW,
    _ffi.FPE_FLTDIV: ExceptionCode.FLT_DIVIDE_BY_ZERO,
    _ffi.FPE_FLTOVF: ExceptionCode.FLT_OVERFLOW,
    _ffi.FPE_FLTUND: ExceptionCode.FLT_INVALID_OPERATION,
    _ffi.FPE_FLTRES: ExceptionCode.FLT_INVALID_OPERATION,
    _ffi.FPE_FLTINV: ExceptionCode.FLT_INVALID_OPERATION,
}


@functools.lru_cache(maxsize=None)
def signal_name(signo: int) -> str:
    """"SIGSEGV" for 11; cached: every trap asks (enum lookups are slow on the hot path)."""
    try:
        return signal.Signals(signo).name
    except ValueError:
        rtmin = int(signal.SIGRTMIN)
        return f"SIGRTMIN+{signo - rtmin}" if signo > rtmin else f"SIG{signo}"


@functools.lru_cache(maxsize=1024)
def exception_for_signal(signo: int, si_code: int, si_addr: int, rip: int, first_chance: bool,
                         hw_slots: tuple[int, ...] = (), watched: int | None = None) -> ExceptionInfo:
    """The EXCEPTION_DEBUG_EVENT payload of one signal-delivery-stop; `watched` is the
    data address of a hardware watchpoint that fired. A pure function of immutable
    values, so memoised: a breakpoint hit asks the same question every time, and
    building the frozen value costs more than the rest of decoding the stop."""
    name = signal_name(signo)
    if si_code <= 0:
        # kill()/tkill()/sigqueue(): a message from another program, not a fault.
        return ExceptionInfo(ExceptionCode.SIGNAL, rip, first_chance, signal=name, si_code=si_code,
                             from_user=True)
    if signo == signal.SIGTRAP:
        if si_code in (_ffi.SI_KERNEL, _ffi.TRAP_BRKPT):
            # int3 traps after the instruction: the breakpoint is one byte back.
            return ExceptionInfo(ExceptionCode.BREAKPOINT, rip - 1, True, signal=name, si_code=si_code)
        return ExceptionInfo(ExceptionCode.SINGLE_STEP, rip, True, watched, signal=name, si_code=si_code,
                             hw_slots=hw_slots)
    code = _EXCEPTION_BY_SIGNAL.get(signo, ExceptionCode.SIGNAL)
    if signo == signal.SIGFPE:
        code = _FPE_CODES.get(si_code, code)
    fault = si_addr if signo in (signal.SIGSEGV, signal.SIGBUS) else None
    return ExceptionInfo(code, rip, first_chance, fault, None, name, si_code)


class RegisterView(MutableMapping[str, int]):
    """A stopped thread's registers by name, over the thread's one reused GETREGS buffer."""

    def __init__(self, thread: Thread, load: Callable[[Thread], _ffi.UserRegs]) -> None:
        self._thread = thread
        self._load = load

    # Hot path: actions and conditions read registers several times per hit.
    def __getitem__(self, name: str) -> int:
        if name not in _NAMES:
            raise KeyError(name)
        th = self._thread
        return getattr(th.regs if th.regs_valid else self._load(th), name)  # type: ignore[no-any-return]

    def __setitem__(self, name: str, value: int) -> None:
        if name not in _NAMES:
            raise KeyError(name)
        th = self._thread
        setattr(th.regs if th.regs_valid else self._load(th), name, value & MASK64)
        th.regs_dirty = True

    def __delitem__(self, name: str) -> None:
        raise DebuggerError(f"cannot delete register {name}")

    def __iter__(self) -> Iterator[str]:
        return iter(_ffi.REGISTER_NAMES)

    def __len__(self) -> int:
        return len(_ffi.REGISTER_NAMES)


_NAMES = frozenset(_ffi.REGISTER_NAMES)


class Thread:
    """One traced thread: stop state, the signal to pass on, its register buffer."""

    def __init__(self, tid: int, pid: int, load: Callable[[Thread], _ffi.UserRegs]) -> None:
        self.tid = tid
        self.pid = pid
        self.stopped = False       # in a ptrace-stop
        self.held = False          # stopped for an event the engine owns
        self.signal = 0            # delivered by resume(pass_exception=True)
        self.trap: ExceptionInfo | None = None   # the CPU trap (SIGTRAP) it is held for, if any
        self.group_stop = False    # job-control stopped (SIGSTOP...): resumed with PTRACE_LISTEN
        self.in_vfork = False      # continued from a vfork: blocked until its child lets go
        self.regs = _ffi.UserRegs()
        self.regs_valid = False
        self.regs_dirty = False
        self.siginfo = _ffi.SigInfo()
        self.view = RegisterView(self, load)
        self.guard: GuardFault | None = None   # stopped on a guarded page (guard.py)


class Process:
    """One traced process: its threads, modules, debug registers and memory file."""

    def __init__(self, pid: int, spawned: bool, follow_forks: bool) -> None:
        self.pid = pid
        self.spawned = spawned
        self.follow_forks = follow_forks
        self.threads: dict[int, Thread] = {}
        self.rdv = Rendezvous(pid)
        self.hw = debugregs.HardwareSlots()
        self.image_path = ""
        self.image_base: int | None = None
        self.parent_pid: int | None = None
        self.pump: StderrPump | None = None
        self.frozen: list[Thread] = []     # threads stopped while an exception is handled
        self.sampler = perfbp.Sampler()    # sampled hardware breakpoints, a ring per thread
        # Paused for a backlog of sampled hits: the threads kept stopped, with the signal
        # each is to get when let go (stops.py, _cont and _release). None: not paused.
        self.paused: list[tuple[Thread, int]] | None = None
        self.guards: GuardBook | None = None    # memory breakpoints (guard.py), made on first use
        self._mem: int | None = None

    def _mem_fd(self) -> int:
        if self._mem is None:
            try:
                self._mem = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
            except OSError as e:
                raise DebuggerError(f"cannot open the memory of process {self.pid}: {e.strerror}") from None
        return self._mem

    def reopen_memory(self) -> None:
        """After exec the old /proc/PID/mem file still refers to the old address space."""
        self.close()

    def read(self, address: int, size: int) -> bytes:
        if size <= 0:
            return b""
        buf = ctypes.create_string_buffer(size)
        try:
            if _ffi.vm_read(self.pid, address, buf) == size:
                return buf.raw
        except _ffi.SyscallError:
            pass
        # process_vm_readv refuses pages the target cannot read itself (PROT_NONE,
        # guard pages); /proc/PID/mem reads them like a debugger must.
        try:
            data = os.pread(self._mem_fd(), size, address)
        except (OSError, OverflowError):
            data = b""
        if len(data) != size:
            raise self._failed(f"cannot read {size} bytes at {address:#x}")
        return data

    def write(self, address: int, data: bytes) -> None:
        # /proc/PID/mem writes with FOLL_FORCE, so read-only text pages take int3s.
        try:
            written = os.pwrite(self._mem_fd(), data, address)
        except (OSError, OverflowError):
            written = -1
        if written != len(data):
            raise self._failed(f"cannot write {len(data)} bytes at {address:#x}")

    def _failed(self, what: str) -> DebuggerError:
        # A process killed from outside (a zombie now) fails every access: say it is lost.
        gone = not procfs.is_alive(self.pid)
        return (TargetLost if gone else DebuggerError)(f"{what} in process {self.pid}"
                                                       + (": it has exited" if gone else ""))

    def close(self) -> None:
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None
