"""WindowsBackend: the Backend protocol over the Win32 debugging API (kernel32 via _ffi).

The backend is a facade: the event pump (pump.py) waits for, holds and
continues debug events; thread contexts and debug registers are cpu.py's;
guard pages are guard.py's book. Here: starting, attaching, detaching and
killing debuggees, their memory, and the breakpoints the engine asks for.

Only the thread that created or attached the debuggees may call
WaitForDebugEvent (other threads get ERROR_INVALID_HANDLE), so the whole
backend is used from one thread.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Mapping, MutableMapping

from ...arch.x86_64 import DEBUG_SLOTS, Abi, check_hardware_breakpoint
from ...errors import DebuggerError, TargetError
from ...events import DebugEvent
from ..base import Capabilities, Module, SpawnOptions
from ..watches import WATCH_ACCESSES, WatchedRange
from . import _ffi
from .cpu import Contexts
from .pump import EventPump
from .state import Process, Thread, Unguarded
from .win32 import Win32

_KILL_TIMEOUT = 10.0     # how long kill() waits for EXIT_PROCESS


class WindowsBackend:
    """Debugs Windows processes through kernel32 (or any object declaring the same functions)."""

    def __init__(self, kernel32: _ffi.Kernel32 | None = None) -> None:
        self._k = kernel32 if kernel32 is not None else _ffi.load_kernel32()
        self._structs = _ffi.NATIVE
        self._w = Win32(self._k, self._structs)
        wide = self._structs.pointer_size == 8
        self.capabilities = Capabilities(
            os="windows", arch="x86_64" if wide else "x86", abi=Abi.MS_X64 if wide else Abi.CDECL,
            hardware_breakpoints=DEBUG_SLOTS, memory_breakpoints=True, follow_forks=True, attach=True)
        self._procs: dict[int, Process] = {}
        # The engine's int3 bytes per pid (Backend protocol); the Linux backend needs them
        # to clean an untraced fork child; Windows has no fork, so nothing reads them here.
        self.patched_bytes: Callable[[int], Mapping[int, bytes]] | None = None
        self._cpu = Contexts(self._k, self._structs)
        self._pump = EventPump(self._k, self._structs, self._w, self._cpu, self._procs)
        self._spawned: set[int] = set()
        self._owner: int | None = None

    # -- sessions ------------------------------------------------------------
    def spawn(self, options: SpawnOptions) -> int:
        self._bind_thread()
        flags = _ffi.DEBUG_PROCESS if options.follow_forks else _ffi.DEBUG_ONLY_THIS_PROCESS
        try:
            pi = self._w.create_process(options.argv, options.env, options.cwd, options.stdin_path, flags)
        except (_ffi.Win32Error, OSError) as e:
            raise TargetError(f"cannot start {options.argv[0]}: {e}") from e
        # CREATE_PROCESS_DEBUG_EVENT brings its own handles; keep the process
        # handle until then, so that close() can kill a process never waited for.
        self._w.close(pi.hThread)
        self._procs[pi.dwProcessId] = Process(pi.dwProcessId, pi.hProcess, spawn_handle=pi.hProcess)
        self._spawned.add(pi.dwProcessId)
        return int(pi.dwProcessId)

    def attach(self, pid: int) -> int:
        self._bind_thread()
        try:
            self._k.DebugActiveProcess(pid)
        except _ffi.Win32Error as e:
            raise TargetError(f"cannot attach to process {pid}: {e}") from e
        self._procs.setdefault(pid, Process(pid, 0)).attached = True
        return pid

    def detach(self, pid: int) -> None:
        proc = self._procs.get(pid)
        if proc is None:
            return
        self._restore(proc)
        if self._pump.holds(pid):
            self._pump.continue_(_ffi.DBG_CONTINUE)
        self._k.DebugSetProcessKillOnExit(False)
        self._k.DebugActiveProcessStop(pid)
        self._forget(pid)

    def kill(self, pid: int) -> None:
        proc = self._procs.get(pid)
        if proc is None:
            return
        self._restore(proc)
        try:
            self._k.TerminateProcess(proc.handle, 1)
        except _ffi.Win32Error:
            pass  # already on its way out: EXIT_PROCESS will still come
        # The debugger must keep waiting and continuing until EXIT_PROCESS, or
        # the process stays a zombie frozen in its last debug event.
        pump = self._pump
        deadline = time.monotonic() + _KILL_TIMEOUT
        while pid in self._procs and time.monotonic() < deadline:
            if pump.held is None:
                pump.next_event(deadline)
            elif pump.holds(pid):
                pump.continue_(_ffi.DBG_CONTINUE)
            else:
                pump.defer_held()
        self._forget(pid)

    def close(self) -> None:
        for pid in list(self._procs):
            try:
                if self._procs[pid].attached:
                    self.detach(pid)
                else:
                    self.kill(pid)
            except DebuggerError:
                self._forget(pid)

    # -- the event loop ----------------------------------------------------------
    def wait_event(self, timeout: float | None = None) -> DebugEvent | None:
        self._bind_thread()
        return self._pump.wait(timeout)

    def resume(self, tid: int, *, pass_exception: bool = False) -> None:
        self._pump.resume(tid, pass_exception=pass_exception)

    def single_step(self, tid: int) -> DebugEvent:
        return self._pump.single_step(tid)

    # -- state of a stopped thread -----------------------------------------------------
    def registers(self, tid: int) -> MutableMapping[str, int]:
        for proc in self._procs.values():
            if tid in proc.threads:
                return self._cpu.registers(proc, proc.threads[tid])
        raise DebuggerError(f"no traced thread {tid}")

    def read_memory(self, pid: int, address: int, size: int) -> bytes:
        proc = self._proc(pid)
        with Unguarded(self._w.protector(proc.handle), proc, address, size):
            data = self._w.read(proc.handle, address, size)
        if data is None:
            raise DebuggerError(f"cannot read {size} bytes at {address:#x} in process {pid}")
        return data

    def write_memory(self, pid: int, address: int, data: bytes) -> None:
        proc = self._proc(pid)
        with Unguarded(self._w.protector(proc.handle), proc, address, len(data)):
            self._w.write(proc.handle, address, data)

    def hold_others(self, tid: int) -> None:
        pass        # every thread already stands still while an event is handled

    def call_function(self, pid: int, address: int, *args: int) -> int:
        raise DebuggerError("this backend does not run calls in the target")

    def threads(self, pid: int) -> list[int]:
        return list(self._proc(pid).threads)

    def modules(self, pid: int) -> list[Module]:
        return list(self._proc(pid).modules.values())

    def command_line(self, pid: int) -> list[str] | None:
        return None         # not known to this backend

    def thread_name(self, pid: int, tid: int) -> str | None:
        return None

    # -- hardware and memory breakpoints ----------------------------------------
    def sample_code(self, pid: int, address: int) -> str | None:
        return "Windows has no uprobes: every soft breakpoint hit stops its thread"

    def unsample_code(self, pid: int, address: int) -> None:
        pass

    def take_samples(self) -> list[DebugEvent]:
        return []          # every hit stops its thread: capabilities.sampled_registers is empty

    def sampling_problems(self) -> list[str]:
        return []

    def trace_syscalls(self, pid: int, numbers: frozenset[int], exits: frozenset[int]) -> None:
        raise DebuggerError("Windows has no system call stops in its debugging API (capabilities.syscalls is False)")

    def skip_syscall(self, tid: int, retval: int) -> None:
        raise DebuggerError("Windows has no system call stops in its debugging API (capabilities.syscalls is False)")

    def set_hardware_breakpoint(self, pid: int, slot: int, address: int, access: str, size: int, *,
                                sample: bool = False) -> None:
        proc = self._proc(pid)
        check_hardware_breakpoint(slot, access, size, address)   # before anything changes
        proc.hw[slot] = (address, access, size)
        for thread in proc.threads.values():
            self._cpu.apply_hw(proc, thread)
            self._write_back_if_running(proc, thread)

    def clear_hardware_breakpoint(self, pid: int, slot: int) -> None:
        proc = self._proc(pid)
        proc.hw.pop(slot, None)
        for thread in proc.threads.values():
            self._cpu.clear_hw(proc, thread, slot)
            self._write_back_if_running(proc, thread)

    def set_memory_breakpoint(self, pid: int, address: int, size: int, access: str) -> None:
        if access not in WATCH_ACCESSES:
            raise DebuggerError(f"memory breakpoint access must be write or any, not {access}")
        proc = self._proc(pid)
        proc.guards.add(WatchedRange(address, size, access), self._w.protector(proc.handle),
                        lambda address: self._w.protection(proc.handle, address))

    def clear_memory_breakpoint(self, pid: int, address: int) -> None:
        proc = self._proc(pid)
        proc.guards.remove(address, self._w.protector(proc.handle))

    # -- internals -------------------------------------------------------------------
    def _write_back_if_running(self, proc: Process, thread: Thread) -> None:
        # With an event held every thread of the process stands still, and the
        # context goes back when the event is continued.
        if not self._pump.holds(proc.pid):
            self._cpu.write_back_running(proc, thread)

    def _restore(self, proc: Process) -> None:
        """Take back what this backend itself armed: guard pages and debug registers."""
        proc.guards.clear(self._w.protector(proc.handle))
        for slot in list(proc.hw):
            self.clear_hardware_breakpoint(proc.pid, slot)

    def _proc(self, pid: int) -> Process:
        proc = self._procs.get(pid)
        if proc is None or not proc.handle:
            raise DebuggerError(f"process {pid} is not being debugged")
        return proc

    def _forget(self, pid: int) -> None:
        self._procs.pop(pid, None)
        self._spawned.discard(pid)
        self._pump.forget(pid)

    def _bind_thread(self) -> None:
        if self._owner is None:
            self._owner = threading.get_ident()
        self._check_thread()

    def _check_thread(self) -> None:
        # Windows delivers debug events only to the thread that started or
        # attached the debuggee; elsewhere WaitForDebugEvent fails with error 6.
        if self._owner is not None and self._owner != threading.get_ident():
            raise DebuggerError("the Windows backend must be used from the thread that created its debuggees")
