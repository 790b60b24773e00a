"""Thread contexts as register mappings, and the Dr7/Dr6 bit layouts of x86 debug registers."""

from __future__ import annotations

from typing import Any, Iterator, MutableMapping

from ...errors import DebuggerError

TRAP_FLAG = 0x100        # EFLAGS.TF: trap after the next instruction
RESUME_FLAG = 0x10000    # EFLAGS.RF: do not re-fire an execute breakpoint on resume
DR6_SINGLE_STEP = 0x4000  # Dr6.BS: the trap came from TF, not from Dr0-Dr3

# Register names the engine uses -> CONTEXT fields.
X64_NAMES: dict[str, str] = {
    "rax": "Rax", "rbx": "Rbx", "rcx": "Rcx", "rdx": "Rdx", "rsi": "Rsi", "rdi": "Rdi",
    "rbp": "Rbp", "rsp": "Rsp", "rip": "Rip", "eflags": "EFlags",
    **{f"r{i}": f"R{i}" for i in range(8, 16)},
    "cs": "SegCs", "ds": "SegDs", "es": "SegEs", "fs": "SegFs", "gs": "SegGs", "ss": "SegSs",
    **{f"dr{i}": f"Dr{i}" for i in (0, 1, 2, 3, 6, 7)},
}
# A WOW64 thread: the same 64-bit names, backed by the 32-bit fields (no r8-r15).
X86_NAMES: dict[str, str] = {
    "rax": "Eax", "rbx": "Ebx", "rcx": "Ecx", "rdx": "Edx", "rsi": "Esi", "rdi": "Edi",
    "rbp": "Ebp", "rsp": "Esp", "rip": "Eip", "eflags": "EFlags",
    "cs": "SegCs", "ds": "SegDs", "es": "SegEs", "fs": "SegFs", "gs": "SegGs", "ss": "SegSs",
    **{f"dr{i}": f"Dr{i}" for i in (0, 1, 2, 3, 6, 7)},
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


_RW_BITS = {"execute": 0b00, "write": 0b01, "readwrite": 0b11}
_LEN_BITS = {1: 0b00, 2: 0b01, 8: 0b10, 4: 0b11}


def dr7_with_slot(dr7: int, slot: int, access: str, size: int) -> int:
    """Dr7 with slot 0-3 locally enabled for `access` of `size` bytes."""
    if not 0 <= slot <= 3:
        raise DebuggerError(f"debug register slot {slot} does not exist (0-3)")
    if access not in _RW_BITS or size not in _LEN_BITS:
        raise DebuggerError(f"unsupported hardware breakpoint: access={access} size={size}")
    if access == "execute" and size != 1:
        # The CPU requires LEN=00 for instruction breakpoints.
        raise DebuggerError("an execute hardware breakpoint has size 1")
    control = _RW_BITS[access] | (_LEN_BITS[size] << 2)
    dr7 = dr7_without_slot(dr7, slot)
    return dr7 | (1 << (slot * 2)) | (control << (16 + slot * 4))


def dr7_without_slot(dr7: int, slot: int) -> int:
    """Dr7 with slot's enable bits (L and G) and its RW/LEN bits cleared."""
    return dr7 & ~(0b11 << (slot * 2)) & ~(0b1111 << (16 + slot * 4))


def dr6_slots(dr6: int) -> tuple[int, ...]:
    """The slots (0-3) whose condition fired, from Dr6.B0-B3."""
    return tuple(slot for slot in range(4) if dr6 & (1 << slot))


def check_alignment(address: int, size: int) -> None:
    """Data breakpoints match size-aligned addresses only; refuse what the CPU would widen."""
    if address % size:
        raise DebuggerError(f"a {size}-byte hardware breakpoint needs a {size}-byte aligned address")
