"""A stopped thread's CPU state on Windows: its context read once per stop, written back once, debug registers set."""

from __future__ import annotations

from typing import Any

from ...arch.x86_64 import RESUME_FLAG, dr7_with_slot, dr7_without_slot
from ...events import EventCode, ExceptionCode, ExceptionInfo
from . import _ffi
from .context import X64_NAMES, X86_NAMES, Registers
from .state import Held, Process, Thread


class Contexts:
    """Reads, caches and writes back thread contexts, and programs debug registers."""

    def __init__(self, kernel32: _ffi.Kernel32, structs: Any) -> None:
        self._k = kernel32
        self._structs = structs

    def registers(self, proc: Process, thread: Thread) -> Registers:
        """The thread's registers this stop (one GetThreadContext, then cached)."""
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

    def write_back(self, proc: Process, thread: Thread) -> None:
        """SetThreadContext if this stop changed the context; the next stop reads it afresh."""
        if thread.regs is not None and thread.regs.dirty:
            setter = self._k.Wow64SetThreadContext if proc.wow64 else self._k.SetThreadContext
            setter(thread.handle, thread.ctx)
        thread.regs = None

    def flush(self, proc: Process, held: Held) -> None:
        """Write back dirty contexts, once, just before the process runs again."""
        info = held.event.info
        if held.event.code == EventCode.EXCEPTION_DEBUG_EVENT and isinstance(info, ExceptionInfo) \
                and info.code == ExceptionCode.SINGLE_STEP:
            thread = proc.threads.get(held.tid)
            if thread is not None:
                regs = self.registers(proc, thread)
                # Dr6 is sticky: clear it so the next report shows only new hits.
                # Windows does not set RF for us (wine does): without it an
                # execute breakpoint fires again on the same instruction.
                if regs["dr6"]:
                    regs["dr6"] = 0
                if any(proc.hw.get(s, (0, ""))[1] == "execute" for s in info.hw_slots):
                    regs["eflags"] = regs["eflags"] | RESUME_FLAG
        for thread in proc.threads.values():
            self.write_back(proc, thread)

    def write_back_running(self, proc: Process, thread: Thread) -> None:
        """Write back a running thread's context: a context may only be set while suspended."""
        self._k.SuspendThread(thread.handle)
        try:
            self.write_back(proc, thread)
        finally:
            thread.regs = None
            self._k.ResumeThread(thread.handle)

    def apply_hw(self, proc: Process, thread: Thread) -> None:
        """Give `thread` the process's hardware breakpoints (other DR7 bits left alone)."""
        regs = self.registers(proc, thread)
        dr7 = regs["dr7"]
        for slot, (address, access, size) in proc.hw.items():
            regs[f"dr{slot}"] = address
            dr7 = dr7_with_slot(dr7, slot, access, size)
        if proc.hw:
            regs["dr7"] = dr7

    def clear_hw(self, proc: Process, thread: Thread, slot: int) -> None:
        """Disable debug register `slot` in `thread`."""
        regs = self.registers(proc, thread)
        regs["dr7"] = dr7_without_slot(regs["dr7"], slot)
        regs[f"dr{slot}"] = 0
