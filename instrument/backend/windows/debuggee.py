"""WindowsBackend: the Backend protocol over the Win32 debugging API (kernel32 via _ffi).

Windows stops every thread of a process while the debugger holds a debug
event, and runs them all again on ContinueDebugEvent. This backend holds at
most one event at a time (`_held`), and only the thread that created or
attached the debuggees may call WaitForDebugEvent (other threads get
ERROR_INVALID_HANDLE), so the whole backend is used from one thread.

The loader breakpoint (the first EXCEPTION_BREAKPOINT of every process, raised
by ntdll once the static imports are loaded; for WOW64 also the 32-bit
ntdll's STATUS_WX86_BREAKPOINT; for attach, the one DbgUiRemoteBreakin
raises) is swallowed: it is the system's, not the recipe's. Hardware
breakpoints are re-applied there, since Windows' loader may reset the debug
registers of the first thread before it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import replace
from typing import Any, MutableMapping

from ...errors import DebuggerError, TargetError
from ...events import DebugEvent, EventCode, ExceptionCode, UnloadDllInfo
from ..base import Capabilities, Module, SpawnOptions
from . import _ffi
from .context import (
    RESUME_FLAG, TRAP_FLAG, X64_NAMES, X86_NAMES, Registers, check_alignment,
    dr7_with_slot, dr7_without_slot,
)
from .decode import decode_event
from .guard import PAGE, WatchedRange
from .state import Held as _Held, Process as _Process, Thread as _Thread, Unguarded as _Unguarded
from .win32 import Win32

_WAIT_SLICE_MS = 200     # never block in kernel32 longer: Ctrl-C must get through
_STEP_TIMEOUT = 30.0     # a single step that takes this long means the thread is stuck
_LOADER_BREAKPOINTS = (ExceptionCode.BREAKPOINT, _ffi.STATUS_WX86_BREAKPOINT)


class WindowsBackend:
    """Debugs Windows processes through kernel32 (or any object declaring the same functions)."""

    def __init__(self, kernel32: Any = None) -> None:
        self._k = kernel32 if kernel32 is not None else _ffi.load_kernel32()
        self._structs = _ffi.NATIVE
        self._w = Win32(self._k, self._structs)
        self.capabilities = Capabilities(
            os="windows", arch="x86_64" if self._structs.pointer_size == 8 else "x86",
            abi="ms_x64" if self._structs.pointer_size == 8 else "cdecl",
            hardware_breakpoints=4, memory_breakpoints=True, follow_forks=True, attach=True)
        self._event = self._structs.DEBUG_EVENT()   # WaitForDebugEvent's reused buffer
        self._procs: dict[int, _Process] = {}
        self._held: _Held | None = None
        self._queue: deque[DebugEvent] = deque()    # already continued, not yet reported
        self._spawned: set[int] = set()
        self._owner: int | None = None
        self._stepping: int | None = None          # the thread _step is stepping

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
        self._procs[pi.dwProcessId] = _Process(pi.dwProcessId, pi.hProcess, spawn_handle=pi.hProcess)
        self._spawned.add(pi.dwProcessId)
        return int(pi.dwProcessId)

    def attach(self, pid: int) -> int:
        self._bind_thread()
        try:
            self._k.DebugActiveProcess(pid)
        except _ffi.Win32Error as e:
            raise TargetError(f"cannot attach to process {pid}: {e}") from e
        self._procs.setdefault(pid, _Process(pid, 0)).attached = True
        return pid

    def detach(self, pid: int) -> None:
        proc = self._procs.get(pid)
        if proc is None:
            return
        self._restore(proc)
        if self._held is not None and self._held.pid == pid:
            self._continue(_ffi.DBG_CONTINUE)
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
        deadline = time.monotonic() + 10.0
        while pid in self._procs and time.monotonic() < deadline:
            if self._held is None:
                self._next_event(deadline)
            elif self._held.pid == pid:
                self._continue(_ffi.DBG_CONTINUE)
            else:
                self._defer_held()
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
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Queued events were continued while we waited for something else;
            # they happened before the held one, so they go first.
            if self._queue:
                return self._queue.popleft()
            if self._held is not None:
                if not self._held.delivered:
                    self._held.delivered = True
                    return self._held.event
                self.resume(self._held.tid)  # the engine did not resume: continue as it would
                continue
            self._next_event(deadline)
            if self._held is None and deadline is not None and time.monotonic() >= deadline:
                return None

    def resume(self, tid: int, *, pass_exception: bool = False) -> None:
        held = self._held
        if held is None or held.tid != tid:
            return  # an event that was continued before it was reported
        thread = self._thread(held.pid, tid)
        if thread is not None and thread.rearm_page is not None:
            # Let the access that consumed the guard complete, then re-arm it.
            ev = self._step(held.pid, tid)
            if self._held is not None and not _is_trace(ev):
                self._held.delivered = False   # something else happened: report it next
                return
        status = _ffi.DBG_EXCEPTION_NOT_HANDLED if pass_exception else _ffi.DBG_CONTINUE
        self._continue(status)

    def single_step(self, tid: int) -> DebugEvent:
        if self._held is None or self._held.tid != tid:
            raise DebuggerError(f"thread {tid} is not stopped at a debug event")
        return self._step(self._held.pid, tid)

    # -- state of a stopped thread -----------------------------------------------------
    def registers(self, tid: int) -> MutableMapping[str, int]:
        for proc in self._procs.values():
            if tid in proc.threads:
                return self._registers(proc, proc.threads[tid])
        raise DebuggerError(f"no traced thread {tid}")

    def read_memory(self, pid: int, address: int, size: int) -> bytes:
        proc = self._proc(pid)
        with _Unguarded(self._protector(proc), proc, address, size):
            data = self._w.read(proc.handle, address, size)
        if data is None:
            raise DebuggerError(f"cannot read {size} bytes at {address:#x} in process {pid}")
        return data

    def write_memory(self, pid: int, address: int, data: bytes) -> None:
        proc = self._proc(pid)
        with _Unguarded(self._protector(proc), proc, address, len(data)):
            self._w.write(proc.handle, address, data)

    def hold_others(self, tid: int) -> None:
        pass        # every thread already stands still while an event is handled

    def call_function(self, pid: int, address: int, *args: int) -> int:
        raise DebuggerError("this backend does not run calls in the target")

    def threads(self, pid: int) -> list[int]:
        return list(self._proc(pid).threads)

    def modules(self, pid: int) -> list[Module]:
        return list(self._proc(pid).modules.values())

    # -- hardware and memory breakpoints ----------------------------------------
    def take_samples(self) -> list[DebugEvent]:
        return []          # every hit stops its thread: capabilities.sampled_registers is empty

    def sampling_problems(self) -> list[str]:
        return []

    def set_hardware_breakpoint(self, pid: int, slot: int, address: int, access: str, size: int, *,
                                sample: bool = False) -> None:
        proc = self._proc(pid)
        if access != "execute":
            check_alignment(address, size)
        dr7_with_slot(0, slot, access, size)   # validates before anything changes
        proc.hw[slot] = (address, access, size)
        for tid, thread in proc.threads.items():
            self._apply_hw(proc, thread)
            self._flush_if_running(proc, tid, thread)

    def clear_hardware_breakpoint(self, pid: int, slot: int) -> None:
        proc = self._proc(pid)
        proc.hw.pop(slot, None)
        for tid, thread in proc.threads.items():
            regs = self._registers(proc, thread)
            regs["dr7"] = dr7_without_slot(regs["dr7"], slot)
            regs[f"dr{slot}"] = 0
            self._flush_if_running(proc, tid, thread)

    def set_memory_breakpoint(self, pid: int, address: int, size: int, access: str) -> None:
        if access not in ("write", "any"):
            raise DebuggerError(f"memory breakpoint access must be write or any, not {access}")
        proc = self._proc(pid)
        proc.guards.add(WatchedRange(address, size, access), self._protector(proc),
                        lambda address: self._w.protection(proc.handle, address))

    def clear_memory_breakpoint(self, pid: int, address: int) -> None:
        proc = self._proc(pid)
        proc.guards.remove(address, self._protector(proc))

    # -- TargetView, for decode_event ----------------------------------------------
    def read(self, pid: int, address: int, size: int) -> bytes | None:
        proc = self._procs.get(pid)
        return None if proc is None else self._w.read(proc.handle, address, size)

    def handle_path(self, handle: int) -> str | None:
        return self._w.final_path(handle)

    def dr6(self, pid: int, tid: int) -> int:
        proc = self._procs.get(pid)
        thread = proc.threads.get(tid) if proc else None
        return 0 if thread is None else self._registers(proc, thread)["dr6"]  # type: ignore[arg-type]

    # -- internals: events ---------------------------------------------------------
    def _next_event(self, deadline: float | None) -> DebugEvent | None:
        """Wait for one debug event and ingest it; None if it was handled here or time ran out."""
        ms = _WAIT_SLICE_MS
        if deadline is not None:
            ms = max(0, min(ms, int((deadline - time.monotonic()) * 1000)))
        try:
            self._k.WaitForDebugEvent(self._event, ms)
        except _ffi.Win32Error as e:
            if e.winerror == _ffi.ERROR_SEM_TIMEOUT:
                return None
            raise
        return self._ingest()

    def _ingest(self) -> DebugEvent | None:
        de = self._event
        pid, tid, code = de.dwProcessId, de.dwThreadId, de.dwDebugEventCode
        self._before_decode(de)
        proc = self._procs.get(pid)
        psize = 4 if proc is not None and proc.wow64 else None
        ev = decode_event(bytes(de), self, self._structs, psize)
        self._held = _Held(pid, tid, ev)
        if proc is None:
            return ev
        if code == EventCode.LOAD_DLL_DEBUG_EVENT:
            proc.modules[ev.info.base] = Module(ev.info.path, ev.info.base)  # type: ignore[union-attr]
            self._w.close(de.u.LoadDll.hFile)
        elif code == EventCode.CREATE_PROCESS_DEBUG_EVENT:
            info = de.u.CreateProcessInfo
            proc.modules[info.lpBaseOfImage] = Module(ev.info.image_path, info.lpBaseOfImage)  # type: ignore[union-attr]
            self._w.close(info.hFile)
        elif code == EventCode.UNLOAD_DLL_DEBUG_EVENT:
            gone = proc.modules.pop(ev.info.base, None)  # type: ignore[union-attr]
            ev = replace(ev, info=UnloadDllInfo(ev.info.base, gone.path if gone else None))  # type: ignore[union-attr]
            self._held.event = ev
        elif code == EventCode.EXCEPTION_DEBUG_EVENT:
            return self._filter_exception(proc, de, ev)
        return ev

    def _before_decode(self, de: Any) -> None:
        """Learn the handles a CREATE event brings before decoding needs them."""
        pid, tid, code = de.dwProcessId, de.dwThreadId, de.dwDebugEventCode
        if code == EventCode.CREATE_PROCESS_DEBUG_EVENT:
            info = de.u.CreateProcessInfo
            proc = self._procs.setdefault(pid, _Process(pid, info.hProcess))
            proc.handle = info.hProcess
            if proc.spawn_handle:
                self._w.close(proc.spawn_handle)
                proc.spawn_handle = 0
            proc.wow64 = self._w.is_wow64(info.hProcess)
            proc.threads[tid] = _Thread(info.hThread, info.lpThreadLocalBase)
        elif code == EventCode.CREATE_THREAD_DEBUG_EVENT and pid in self._procs:
            proc = self._procs[pid]
            thread = proc.threads[tid] = _Thread(de.u.CreateThread.hThread, de.u.CreateThread.lpThreadLocalBase)
            if proc.hw:
                self._apply_hw(proc, thread)   # "threads created later" too

    def _filter_exception(self, proc: _Process, de: Any, ev: DebugEvent) -> DebugEvent | None:
        info = ev.info
        raw_code = de.u.Exception.ExceptionRecord.ExceptionCode
        if raw_code in _LOADER_BREAKPOINTS and proc.loader_breaks < (2 if proc.wow64 else 1):
            proc.loader_breaks += 1
            for thread in proc.threads.values():
                self._apply_hw(proc, thread)
            self._continue(_ffi.DBG_CONTINUE)
            return None
        if info.code == ExceptionCode.GUARD_PAGE and info.fault_address is not None \
                and proc.guards.owns(info.fault_address):  # type: ignore[union-attr]
            thread = proc.threads[ev.tid]
            thread.rearm_page = info.fault_address - info.fault_address % PAGE  # type: ignore[union-attr]
            if not proc.guards.hit(info.fault_address, info.access):  # type: ignore[union-attr]
                if self._stepping == ev.tid:
                    # Inside a step already: TF is still set, so continuing
                    # completes the access and traps; that step re-arms.
                    self._continue(_ffi.DBG_CONTINUE)
                else:
                    self.resume(ev.tid)  # same page, outside the range: step, re-arm, run on
                return None
        return ev

    def _continue(self, status: int) -> None:
        held = self._held
        assert held is not None
        proc = self._procs.get(held.pid)
        if proc is not None:
            self._flush(proc, held)
        self._held = None
        self._k.ContinueDebugEvent(held.pid, held.tid, status)
        if proc is None:
            return
        if held.event.code == EventCode.EXIT_THREAD_DEBUG_EVENT:
            proc.threads.pop(held.tid, None)   # the system closes the thread handle
        elif held.event.code == EventCode.EXIT_PROCESS_DEBUG_EVENT:
            self._procs.pop(held.pid, None)    # ... and the process's handles

    def _defer_held(self) -> None:
        """Continue an event from another thread that came while we waited for ours.

        Non-exception events are queued for wait_event. An exception cannot be
        held beside ours, so the thread is sent back to the instruction that
        raised it (an int3's own address) and will raise it again when it runs."""
        held = self._held
        assert held is not None
        if held.event.code != EventCode.EXCEPTION_DEBUG_EVENT:
            self._continue(_ffi.DBG_CONTINUE)
            self._queue.append(held.event)
            return
        proc, thread = self._procs.get(held.pid), self._thread(held.pid, held.tid)
        if held.event.info.code == ExceptionCode.BREAKPOINT and proc and thread:  # type: ignore[union-attr]
            self._registers(proc, thread)["rip"] = held.event.info.address  # type: ignore[union-attr]
        self._continue(_ffi.DBG_CONTINUE)

    def _step(self, pid: int, tid: int) -> DebugEvent:
        """Single-step `tid` with every other thread of its process suspended."""
        proc = self._proc(pid)
        thread = proc.threads[tid]
        regs = self._registers(proc, thread)
        regs["eflags"] = regs["eflags"] | TRAP_FLAG
        others = [t.handle for t_id, t in proc.threads.items() if t_id != tid]
        for handle in others:
            self._k.SuspendThread(handle)
        self._stepping = tid
        try:
            self._continue(_ffi.DBG_CONTINUE)
            deadline = time.monotonic() + _STEP_TIMEOUT
            while time.monotonic() < deadline:
                ev = self._next_event(deadline)
                if ev is None:
                    continue
                if ev.pid == pid and ev.tid == tid:
                    break
                self._defer_held()
            else:
                raise DebuggerError(f"single step of thread {tid} did not finish")
        finally:
            self._stepping = None
            for handle in others:
                self._k.ResumeThread(handle)
        if thread.rearm_page is not None:
            proc.guards.arm(thread.rearm_page, self._protector(proc))
            thread.rearm_page = None
        if tid in proc.threads:
            after = self._registers(proc, thread)
            if after["eflags"] & TRAP_FLAG:
                after["eflags"] = after["eflags"] & ~TRAP_FLAG
        assert self._held is not None
        self._held.delivered = True
        return ev

    # -- internals: contexts -----------------------------------------------------------
    def _registers(self, proc: _Process, thread: _Thread) -> Registers:
        if thread.regs is not None:
            return thread.regs
        if proc.wow64:
            if thread.ctx is None:
                thread.ctx = _ffi.WOW64_CONTEXT()
            thread.ctx.ContextFlags = _ffi.WOW64_CONTEXT_STOP
            self._k.Wow64GetThreadContext(thread.handle, thread.ctx)
            extra = {"fs_base": thread.teb + 0x2000 if thread.teb else 0, "gs_base": 0}
            names = X86_NAMES
        else:
            if thread.ctx is None:
                thread.ctx = _ffi.aligned_context(self._structs.CONTEXT)
            thread.ctx.ContextFlags = _ffi.CONTEXT_STOP
            self._k.GetThreadContext(thread.handle, thread.ctx)
            extra = {"fs_base": 0, "gs_base": thread.teb}   # x64: gs points at the TEB
            names = X64_NAMES
        thread.regs = Registers(thread.ctx, names, extra)
        return thread.regs

    def _flush(self, proc: _Process, held: _Held) -> None:
        """Write back dirty contexts, once, just before the process runs again."""
        ev = held.event
        if ev.code == EventCode.EXCEPTION_DEBUG_EVENT and ev.info.code == ExceptionCode.SINGLE_STEP:  # type: ignore[union-attr]
            thread = proc.threads.get(held.tid)
            if thread is not None:
                regs = self._registers(proc, thread)
                # Dr6 is sticky: clear it so the next report shows only new hits.
                # Windows does not set RF for us (wine does): without it an
                # execute breakpoint fires again on the same instruction.
                if regs["dr6"]:
                    regs["dr6"] = 0
                if any(proc.hw.get(s, (0, ""))[1] == "execute" for s in ev.info.hw_slots):  # type: ignore[union-attr]
                    regs["eflags"] = regs["eflags"] | RESUME_FLAG
        for thread in proc.threads.values():
            if thread.regs is not None and thread.regs.dirty:
                setter = self._k.Wow64SetThreadContext if proc.wow64 else self._k.SetThreadContext
                setter(thread.handle, thread.ctx)
            thread.regs = None

    def _flush_if_running(self, proc: _Process, tid: int, thread: _Thread) -> None:
        # With no event held the thread runs: a context may only be set while suspended.
        if self._held is not None and self._held.pid == proc.pid:
            return
        self._k.SuspendThread(thread.handle)
        try:
            if thread.regs is not None and thread.regs.dirty:
                setter = self._k.Wow64SetThreadContext if proc.wow64 else self._k.SetThreadContext
                setter(thread.handle, thread.ctx)
        finally:
            thread.regs = None
            self._k.ResumeThread(thread.handle)

    def _apply_hw(self, proc: _Process, thread: _Thread) -> None:
        regs = self._registers(proc, thread)
        dr7 = regs["dr7"]
        for slot, (address, access, size) in proc.hw.items():
            regs[f"dr{slot}"] = address
            dr7 = dr7_with_slot(dr7, slot, access, size)
        if proc.hw:
            regs["dr7"] = dr7

    def _restore(self, proc: _Process) -> None:
        """Take back what this backend itself armed: guard pages and debug registers."""
        proc.guards.clear(self._protector(proc))
        for slot in list(proc.hw):
            self.clear_hardware_breakpoint(proc.pid, slot)

    def _protector(self, proc: _Process) -> Any:
        return lambda address, size, protection: self._w.protect(proc.handle, address, size, protection)

    # -- internals: bookkeeping -------------------------------------------------------
    def _proc(self, pid: int) -> _Process:
        proc = self._procs.get(pid)
        if proc is None or not proc.handle:
            raise DebuggerError(f"process {pid} is not being debugged")
        return proc

    def _thread(self, pid: int, tid: int) -> _Thread | None:
        proc = self._procs.get(pid)
        return proc.threads.get(tid) if proc else None

    def _forget(self, pid: int) -> None:
        self._procs.pop(pid, None)
        self._spawned.discard(pid)
        self._queue = deque(e for e in self._queue if e.pid != pid)
        if self._held is not None and self._held.pid == pid:
            self._held = None

    def _bind_thread(self) -> None:
        if self._owner is None:
            self._owner = threading.get_ident()
        self._check_thread()

    def _check_thread(self) -> None:
        # Windows delivers debug events only to the thread that started or
        # attached the debuggee; elsewhere WaitForDebugEvent fails with error 6.
        if self._owner is not None and self._owner != threading.get_ident():
            raise DebuggerError("the Windows backend must be used from the thread that created its debuggees")


def _is_trace(ev: DebugEvent) -> bool:
    """A SINGLE_STEP from the trap flag (not from a debug register)."""
    return ev.code == EventCode.EXCEPTION_DEBUG_EVENT and ev.info.code == ExceptionCode.SINGLE_STEP and not ev.info.hw_slots  # type: ignore[union-attr]
