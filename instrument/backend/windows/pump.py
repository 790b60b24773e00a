"""The Windows debug-event pump: wait for one event, hold it, continue it, step a thread through it.

Windows stops every thread of a process while the debugger holds a debug
event, and runs them all again on ContinueDebugEvent. The pump holds at
most one event at a time (`held`); events continued while we waited for
another (during a single step) wait in `queue` for the engine.

The loader breakpoint (the first EXCEPTION_BREAKPOINT of every process, raised
by ntdll once the static imports are loaded; for WOW64 also the 32-bit
ntdll's STATUS_WX86_BREAKPOINT; for attach, the one DbgUiRemoteBreakin
raises) is swallowed: it is the system's, not the recipe's. Hardware
breakpoints are re-applied there, since Windows' loader may reset the debug
registers of the first thread before it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import replace
from typing import Any

from ...arch.x86_64 import TRAP_FLAG, page_of
from ...errors import DebuggerError
from ...events import (
    CreateProcessInfo, DebugEvent, EventCode, ExceptionCode, ExceptionInfo, LoadDllInfo, UnloadDllInfo,
)
from ..base import Module
from . import _ffi
from .cpu import Contexts
from .decode import decode_event
from .state import Held, Process, Thread
from .win32 import Win32

_WAIT_SLICE_MS = 200     # never block in kernel32 longer: Ctrl-C must get through
_STEP_TIMEOUT = 30.0     # a single step that takes this long means the thread is stuck
_LOADER_BREAKPOINTS = (ExceptionCode.BREAKPOINT, _ffi.STATUS_WX86_BREAKPOINT)


class EventPump:
    """WaitForDebugEvent and ContinueDebugEvent for the processes in `procs` (shared with the backend).

    It is also the `TargetView` decode_event reads names, strings and Dr6 through."""

    def __init__(self, kernel32: _ffi.Kernel32, structs: Any, win32: Win32, cpu: Contexts,
                 procs: dict[int, Process]) -> None:
        self._k = kernel32
        self._structs = structs
        self._w = win32
        self._cpu = cpu
        self._procs = procs
        self._event = structs.DEBUG_EVENT()   # WaitForDebugEvent's reused buffer
        self.held: Held | None = None
        self.queue: deque[DebugEvent] = deque()    # already continued, not yet reported
        self._stepping: int | None = None          # the thread _step is stepping

    # -- what the engine asks ------------------------------------------------------
    def wait(self, timeout: float | None) -> DebugEvent | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # Queued events were continued while we waited for something else;
            # they happened before the held one, so they go first.
            if self.queue:
                return self.queue.popleft()
            if self.held is not None:
                if not self.held.delivered:
                    self.held.delivered = True
                    return self.held.event
                self.resume(self.held.tid)  # the engine did not resume: continue as it would
                continue
            self.next_event(deadline)
            if self.held is None and deadline is not None and time.monotonic() >= deadline:
                return None

    def resume(self, tid: int, *, pass_exception: bool = False) -> None:
        held = self.held
        if held is None or held.tid != tid:
            return  # an event that was continued before it was reported
        thread = self._thread(held.pid, tid)
        if thread is not None and thread.rearm_page is not None:
            # Let the access that consumed the guard complete, then re-arm it.
            ev = self.step(held.pid, tid)
            if self.held is not None and not _is_trace(ev):
                self.held.delivered = False   # something else happened: report it next
                return
        self.continue_(_ffi.DBG_EXCEPTION_NOT_HANDLED if pass_exception else _ffi.DBG_CONTINUE)

    def single_step(self, tid: int) -> DebugEvent:
        if self.held is None or self.held.tid != tid:
            raise DebuggerError(f"thread {tid} is not stopped at a debug event")
        return self.step(self.held.pid, tid)

    def holds(self, pid: int) -> bool:
        """Whether an event of process `pid` is held (so its threads stand still)."""
        return self.held is not None and self.held.pid == pid

    def forget(self, pid: int) -> None:
        self.queue = deque(e for e in self.queue if e.pid != pid)
        if self.holds(pid):
            self.held = None

    # -- TargetView, for decode_event ----------------------------------------------
    def read(self, pid: int, address: int, size: int) -> bytes | None:
        proc = self._procs.get(pid)
        return None if proc is None else self._w.read(proc.handle, address, size)

    def handle_path(self, handle: int) -> str | None:
        return self._w.final_path(handle)

    def dr6(self, pid: int, tid: int) -> int:
        proc = self._procs.get(pid)
        thread = proc.threads.get(tid) if proc is not None else None
        return 0 if proc is None or thread is None else self._cpu.registers(proc, thread)["dr6"]

    # -- events ----------------------------------------------------------------------
    def next_event(self, deadline: float | None) -> DebugEvent | None:
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
        pid, tid = de.dwProcessId, de.dwThreadId
        self._before_decode(de)
        proc = self._procs.get(pid)
        psize = 4 if proc is not None and proc.wow64 else None
        ev = decode_event(bytes(de), self, self._structs, psize)
        self.held = Held(pid, tid, ev)
        if proc is None:
            return ev
        info = ev.info
        if isinstance(info, LoadDllInfo):
            proc.modules[info.base] = Module(info.path, info.base)
            self._w.close(de.u.LoadDll.hFile)
        elif isinstance(info, CreateProcessInfo):
            created = de.u.CreateProcessInfo
            proc.modules[created.lpBaseOfImage] = Module(info.image_path, created.lpBaseOfImage)
            self._w.close(created.hFile)
        elif isinstance(info, UnloadDllInfo):
            gone = proc.modules.pop(info.base, None)
            ev = replace(ev, info=UnloadDllInfo(info.base, gone.path if gone else None))
            self.held.event = ev
        elif isinstance(info, ExceptionInfo):
            return self._filter_exception(proc, de, ev, info)
        return ev

    def _before_decode(self, de: Any) -> None:
        """Learn the handles a CREATE event brings before decoding needs them."""
        pid, tid, code = de.dwProcessId, de.dwThreadId, de.dwDebugEventCode
        if code == EventCode.CREATE_PROCESS_DEBUG_EVENT:
            info = de.u.CreateProcessInfo
            proc = self._procs.setdefault(pid, Process(pid, info.hProcess))
            proc.handle = info.hProcess
            if proc.spawn_handle:
                self._w.close(proc.spawn_handle)
                proc.spawn_handle = 0
            proc.wow64 = self._w.is_wow64(info.hProcess)
            proc.threads[tid] = Thread(info.hThread, info.lpThreadLocalBase)
        elif code == EventCode.CREATE_THREAD_DEBUG_EVENT and pid in self._procs:
            proc = self._procs[pid]
            thread = proc.threads[tid] = Thread(de.u.CreateThread.hThread, de.u.CreateThread.lpThreadLocalBase)
            if proc.hw:
                self._cpu.apply_hw(proc, thread)   # "threads created later" too

    def _filter_exception(self, proc: Process, de: Any, ev: DebugEvent, info: ExceptionInfo) -> DebugEvent | None:
        raw_code = de.u.Exception.ExceptionRecord.ExceptionCode
        if raw_code in _LOADER_BREAKPOINTS and proc.loader_breaks < (2 if proc.wow64 else 1):
            proc.loader_breaks += 1
            for thread in proc.threads.values():
                self._cpu.apply_hw(proc, thread)
            self.continue_(_ffi.DBG_CONTINUE)
            return None
        fault = info.fault_address
        if info.code == ExceptionCode.GUARD_PAGE and fault is not None and proc.guards.owns(fault):
            proc.threads[ev.tid].rearm_page = page_of(fault)
            if not proc.guards.hit(fault, info.access):
                if self._stepping == ev.tid:
                    # Inside a step already: TF is still set, so continuing
                    # completes the access and traps; that step re-arms.
                    self.continue_(_ffi.DBG_CONTINUE)
                else:
                    self.resume(ev.tid)  # same page, outside the range: step, re-arm, run on
                return None
        return ev

    def continue_(self, status: int) -> None:
        """ContinueDebugEvent for the held event, dirty contexts written back first."""
        held = self.held
        assert held is not None
        proc = self._procs.get(held.pid)
        if proc is not None:
            self._cpu.flush(proc, held)
        self.held = None
        self._k.ContinueDebugEvent(held.pid, held.tid, status)
        if proc is None:
            return
        if held.event.code == EventCode.EXIT_THREAD_DEBUG_EVENT:
            proc.threads.pop(held.tid, None)   # the system closes the thread handle
        elif held.event.code == EventCode.EXIT_PROCESS_DEBUG_EVENT:
            self._procs.pop(held.pid, None)    # ... and the process's handles

    def defer_held(self) -> None:
        """Continue an event from another thread that came while we waited for ours.

        Non-exception events are queued for wait_event. An exception cannot be
        held beside ours, so the thread is sent back to the instruction that
        raised it (an int3's own address) and will raise it again when it runs."""
        held = self.held
        assert held is not None
        info = held.event.info
        if not isinstance(info, ExceptionInfo):
            self.continue_(_ffi.DBG_CONTINUE)
            self.queue.append(held.event)
            return
        proc, thread = self._procs.get(held.pid), self._thread(held.pid, held.tid)
        if info.code == ExceptionCode.BREAKPOINT and proc and thread:
            self._cpu.registers(proc, thread)["rip"] = info.address
        self.continue_(_ffi.DBG_CONTINUE)

    def step(self, pid: int, tid: int) -> DebugEvent:
        """Single-step `tid` with every other thread of its process suspended."""
        proc = self._proc(pid)
        thread = proc.threads[tid]
        regs = self._cpu.registers(proc, thread)
        regs["eflags"] = regs["eflags"] | TRAP_FLAG
        others = [t.handle for t_id, t in proc.threads.items() if t_id != tid]
        for handle in others:
            self._k.SuspendThread(handle)
        self._stepping = tid
        try:
            self.continue_(_ffi.DBG_CONTINUE)
            deadline = time.monotonic() + _STEP_TIMEOUT
            while time.monotonic() < deadline:
                ev = self.next_event(deadline)
                if ev is None:
                    continue
                if ev.pid == pid and ev.tid == tid:
                    break
                self.defer_held()
            else:
                raise DebuggerError(f"single step of thread {tid} did not finish")
        finally:
            self._stepping = None
            for handle in others:
                self._k.ResumeThread(handle)
        if thread.rearm_page is not None:
            proc.guards.arm(thread.rearm_page, self._w.protector(proc.handle))
            thread.rearm_page = None
        if tid in proc.threads:
            after = self._cpu.registers(proc, thread)
            if after["eflags"] & TRAP_FLAG:
                after["eflags"] = after["eflags"] & ~TRAP_FLAG
        assert self.held is not None
        self.held.delivered = True
        return ev

    # -- bookkeeping -------------------------------------------------------------------
    def _proc(self, pid: int) -> Process:
        proc = self._procs.get(pid)
        if proc is None or not proc.handle:
            raise DebuggerError(f"process {pid} is not being debugged")
        return proc

    def _thread(self, pid: int, tid: int) -> Thread | None:
        proc = self._procs.get(pid)
        return proc.threads.get(tid) if proc else None


def _is_trace(ev: DebugEvent) -> bool:
    """A SINGLE_STEP from the trap flag (not from a debug register)."""
    info = ev.info
    return isinstance(info, ExceptionInfo) and info.code == ExceptionCode.SINGLE_STEP and not info.hw_slots
