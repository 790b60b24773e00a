"""The Linux backend's per-process and per-thread records, and the one place a thread's stop state changes.

A traced thread is in one of four states (`ThreadState`); the methods of
`Thread` below are the only code that moves it between them (any other
pairing leaves the state as it is):

    stop()    RUNNING -> STOPPED, DYING -> HELD   a waitpid status says it stopped
    hold()    STOPPED -> HELD, RUNNING -> DYING   an event of it goes to the engine
    unhold()  HELD -> STOPPED, DYING -> RUNNING   no event of it is the engine's
    ran()     any -> RUNNING                      PTRACE_CONT or LISTEN (signal, trap spent)
    step()    any -> RUNNING                      PTRACE_SINGLESTEP (signal, trap kept)
    lose()    STOPPED -> RUNNING, HELD -> DYING   ESRCH: killed while stopped

STOPPED is an internal stop (a clone parent, a PTRACE_INTERRUPT trap, our
rendezvous int3): the backend continues it itself. HELD is a stop for an
event the engine owns: only the engine's `resume` continues it. DYING is a
held thread killed while stopped (SIGKILL from outside): no longer stopped,
its exit status follows, and `resume` still counts it as the engine's.
Entering a stop keeps a hold: an attached thread is held for the attach
events before the signal that stopped it is decoded.
"""

from __future__ import annotations

import ctypes
import enum
from dataclasses import dataclass
import os
from typing import Callable, Iterator, MutableMapping

from ...arch.x86_64 import MASK64
from ...errors import DebuggerError, TargetLost
from ...events import ExceptionInfo
from . import _ffi, debugregs, perfbp, procfs
from .launch import StderrPump
from .sigpump import SignalPump
from .pages import GuardBook, GuardCall, GuardFault
from .rendezvous import Rendezvous


class ThreadState(enum.Enum):
    RUNNING = "running"      # not in a ptrace-stop
    STOPPED = "stopped"      # in an internal ptrace-stop: ours to continue
    HELD = "held"            # stopped for an event the engine owns: continued by `resume`
    DYING = "dying"          # was held, killed while stopped: its exit status follows


# Module-level names: identity tests against them are the cheapest check on the hot path,
# and so is `in` on a tuple of them (identity first; a set would hash in Python).
RUNNING, STOPPED, HELD, DYING = (ThreadState.RUNNING, ThreadState.STOPPED, ThreadState.HELD,
                                 ThreadState.DYING)
IN_A_STOP = (STOPPED, HELD)         # Thread.stopped
THE_ENGINES = (HELD, DYING)         # Thread.held


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
    """One traced thread: its stop state, the signal to pass on, its register buffer."""

    __slots__ = ("tid", "pid", "state", "signal", "trap", "group_stop", "in_vfork", "regs",
                 "regs_valid", "regs_dirty", "siginfo", "view", "guard", "owed", "syscall_stops", "sys_call",
                 "at_entry", "guard_calls", "guard_call", "zombie", "stuck")

    def __init__(self, tid: int, pid: int, load: Callable[[Thread], _ffi.UserRegs]) -> None:
        self.tid = tid
        self.pid = pid
        self.state = RUNNING
        self.signal = 0            # delivered by resume(pass_exception=True)
        self.trap: ExceptionInfo | None = None   # the CPU trap (SIGTRAP) it is held for, if any
        self.group_stop = False    # job-control stopped (SIGSTOP...): resumed with PTRACE_LISTEN
        self.in_vfork = False      # continued from a vfork: blocked until its child lets go
        self.regs = _ffi.UserRegs()
        self.regs_valid = False    # `regs` holds this stop's registers (read once per stop)
        self.regs_dirty = False    # `regs` was changed: written back before the thread runs
        self.siginfo = _ffi.SigInfo()
        self.view = RegisterView(self, load)
        self.guard: GuardFault | None = None   # stopped on a guarded page (guard.py)
        # A sent signal whose stop the thread has since left (decode.py's merged trap): its
        # siginfo, put back when resume() passes the signal on.
        self.owed: _ffi.SigInfo | None = None
        # Continued with PTRACE_SYSCALL (not CONT): its next system call entry or exit stops
        # it (syscalls.py). The call it is in, as its entry reported it: (number, args).
        self.syscall_stops = False
        self.sys_call: tuple[int, tuple[int, ...]] | None = None
        self.at_entry = False      # this stop is a system call's entry (no code can be injected here)
        # Continued with PTRACE_SYSCALL because its process has guarded pages, and the call
        # it has guarded pages opened for (guardcalls.py).
        self.guard_calls = False
        self.guard_call: GuardCall | None = None
        # A leader whose main thread called pthread_exit: a zombie until the last thread goes,
        # it never stops again, and no status of it comes until then (stops.py).
        self.zombie = False
        self.stuck = False         # did not stop for the last interrupt: asleep in the kernel (D)

    @property
    def stopped(self) -> bool:
        """In a ptrace-stop (internal or held)."""
        return self.state in IN_A_STOP

    @property
    def held(self) -> bool:
        """The engine owns an event of it: only `resume` continues it."""
        return self.state in THE_ENGINES

    # -- the transitions (written for the hot path: the common case is tested first) -------
    def stop(self) -> None:
        """A waitpid status says it entered a ptrace-stop: its registers are to be read
        afresh and no signal is pending delivery. A hold survives (see the module doc)."""
        if self.state is RUNNING:
            self.state = STOPPED
        elif self.state is DYING:
            self.state = HELD
        self.regs_valid = False
        self.signal = 0
        self.at_entry = False

    def hold(self) -> None:
        """The engine owns an event of it now."""
        if self.state is STOPPED:
            self.state = HELD
        elif self.state is RUNNING:
            self.state = DYING

    def unhold(self) -> None:
        """No event of it is the engine's (after all, or any more): an internal stop."""
        if self.state is HELD:
            self.state = STOPPED
        elif self.state is DYING:
            self.state = RUNNING

    def ran(self) -> None:
        """Continued (PTRACE_CONT or LISTEN, or it was gone already): what its stop said is spent."""
        self.state = RUNNING
        self.regs_valid = False
        self.signal = 0
        self.trap = None

    def step(self) -> None:
        """Let run for one instruction (PTRACE_SINGLESTEP); its signal and trap stand."""
        self.state = RUNNING
        self.regs_valid = False

    def lose(self) -> None:
        """Killed while stopped (ESRCH): no longer stopped; its exit status follows."""
        if self.state is STOPPED:
            self.state = RUNNING
        elif self.state is HELD:
            self.state = DYING


@dataclass(frozen=True)
class SyscallTrace:
    """The system calls a process reports (syscalls.py): their numbers, those whose exit
    is reported too, and whether a seccomp filter stops only those (else every call stops
    under PTRACE_SYSCALL and the backend sorts them)."""

    numbers: frozenset[int]
    exits: frozenset[int]
    filtered: bool


# Reads up to this size go through pread(/proc/PID/mem), bigger ones through
# process_vm_readv. Measured from Python on another process: pread 1.2 us for 8 bytes
# and 2.5 us for 4 KiB against 3.8 and 5.1 us; process_vm_readv 15 us for 64 KiB
# against 20 us.
_PREAD_LIMIT = 16384


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
        self.pump: StderrPump | SignalPump | None = None
        self.frozen: list[Thread] = []     # threads stopped while an exception is handled
        self.sampler = perfbp.Sampler()    # sampled hardware breakpoints, a ring per thread
        # Paused for a backlog of sampled hits: the threads kept stopped, with the signal
        # each is to get when let go (stops.py: cont and release). None: not paused.
        self.paused: list[tuple[Thread, int]] | None = None
        self.guards: GuardBook | None = None    # memory breakpoints (guard.py), made on first use
        # The seccomp filter stops its calls that take pointers (guardcalls.py): no
        # PTRACE_SYSCALL for guarded pages.
        self.guard_filter = False
        # Started pinned to the tracer's CPU (launch.py): the CPUs its threads get back
        # when it starts a second thread, whose scheduling one CPU would change. None:
        # not pinned (any more).
        self.unpin_to: set[int] | None = None
        # DR0-3 and DR6 as its threads had them before we traced them (our breakpoints
        # set the addresses; our steps and hits set bits in DR6), put back in each at
        # detach. None: not read.
        self.debug_before: dict[int, int] | None = None
        self.sys: SyscallTrace | None = None    # system calls reported (syscalls.py)
        self._mem: int | None = None

    def _mem_fd(self) -> int:
        if self._mem is None:
            try:
                # (through a live thread when the leader is a zombie: see procfs.live_task)
                self._mem = os.open(f"/proc/{procfs.live_task(self.pid)}/mem", os.O_RDWR | os.O_CLOEXEC)
            except OSError as e:
                raise DebuggerError(f"cannot open the memory of process {self.pid}: {e.strerror}") from None
        return self._mem

    def reopen_memory(self) -> None:
        """After exec the old /proc/PID/mem file still refers to the old address space."""
        self.close()

    def read(self, address: int, size: int) -> bytes:
        if size <= 0:
            return b""
        if size > _PREAD_LIMIT:
            # Bulk: process_vm_readv copies straight from the target's pages.
            buf = ctypes.create_string_buffer(size)
            try:
                if _ffi.vm_read(self.pid, address, buf) == size:
                    return buf.raw
            except _ffi.SyscallError:
                pass
        # /proc/PID/mem also reads the pages the target cannot read itself (PROT_NONE,
        # guard pages; process_vm_readv refuses those), like a debugger must; and
        # under _PREAD_LIMIT it is the cheaper call from Python.
        try:
            data = os.pread(self._mem if self._mem is not None else self._mem_fd(), size, address)
        except (OSError, OverflowError):
            data = b""
        if len(data) != size:
            raise self._failed(f"cannot read {size} bytes at {address:#x}")
        return data

    def write(self, address: int, data: bytes) -> None:
        # /proc/PID/mem writes with FOLL_FORCE, so read-only text pages take int3s.
        try:
            written = os.pwrite(self._mem if self._mem is not None else self._mem_fd(), data, address)
        except (OSError, OverflowError):
            written = -1
        if written != len(data):
            raise self._failed(f"cannot write {len(data)} bytes at {address:#x}")

    def _failed(self, what: str) -> DebuggerError:
        # A process killed from outside (a zombie now, or with SIGKILL pending while the
        # kernel takes its threads down) fails every access: say it is lost.
        gone = procfs.is_dying(self.pid)
        return (TargetLost if gone else DebuggerError)(f"{what} in process {self.pid}"
                                                       + (": it has exited" if gone else ""))

    def close(self) -> None:
        if self._mem is not None:
            os.close(self._mem)
            self._mem = None
