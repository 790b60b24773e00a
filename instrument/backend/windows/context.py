"""Thread contexts as register mappings: the engine's register names onto a CONTEXT's fields.

Reading and writing contexts through kernel32 is cpu.py's; the DR7/DR6
layouts are instrument.arch.x86_64's.
"""

from __future__ import annotations

from typing import Any, Iterator, MutableMapping

from ...arch.x86_64 import DEBUG_SLOTS
from ...errors import DebuggerError

# Register names the engine uses -> CONTEXT fields.
_DEBUG_REGISTERS = (*range(DEBUG_SLOTS), 6, 7)
X64_NAMES: dict[str, str] = {
    "rax": "Rax", "rbx": "Rbx", "rcx": "Rcx", "rdx": "Rdx", "rsi": "Rsi", "rdi": "Rdi",
    "rbp": "Rbp", "rsp": "Rsp", "rip": "Rip", "eflags": "EFlags",
    **{f"r{i}": f"R{i}" for i in range(8, 16)},
    "cs": "SegCs", "ds": "SegDs", "es": "SegEs", "fs": "SegFs", "gs": "SegGs", "ss": "SegSs",
    **{f"dr{i}": f"Dr{i}" for i in _DEBUG_REGISTERS},
}
# A WOW64 thread: the same 64-bit names, backed by the 32-bit fields (no r8-r15).
X86_NAMES: dict[str, str] = {
    "rax": "Eax", "rbx": "Ebx", "rcx": "Ecx", "rdx": "Edx", "rsi": "Esi", "rdi": "Edi",
    "rbp": "Ebp", "rsp": "Esp", "rip": "Eip", "eflags": "EFlags",
    "cs": "SegCs", "ds": "SegDs", "es": "SegEs", "fs": "SegFs", "gs": "SegGs", "ss": "SegSs",
    **{f"dr{i}": f"Dr{i}" for i in _DEBUG_REGISTERS},
}


class Registers(MutableMapping[str, int]):
    """A stopped thread's CONTEXT seen as name -> int; assignments mark it dirty.

    The backend writes a dirty context back (SetThreadContext) once, just
    before the thread runs again, so any number of reads and writes during
    one stop cost one GetThreadContext and at most one SetThreadContext."""

    def __init__(self, ctx: Any, names: dict[str, str], extra: dict[str, int]) -> None:
        self.ctx = ctx
        self.dirty = False
        self._names = names
        self._extra = extra  # read-only values that are not in CONTEXT (fs_base, gs_base)

    def __getitem__(self, name: str) -> int:
        field = self._names.get(name)
        if field is not None:
            return int(getattr(self.ctx, field))
        return self._extra[name]

    def __setitem__(self, name: str, value: int) -> None:
        field = self._names.get(name)
        if field is None:
            raise DebuggerError(f"register {name} cannot be written on this thread")
        width = getattr(type(self.ctx), field).size * 8
        setattr(self.ctx, field, value & ((1 << width) - 1))
        self.dirty = True

    def __delitem__(self, name: str) -> None:
        raise DebuggerError("registers cannot be deleted")

    def __iter__(self) -> Iterator[str]:
        yield from self._names
        yield from self._extra

    def __len__(self) -> int:
        return len(self._names) + len(self._extra)
