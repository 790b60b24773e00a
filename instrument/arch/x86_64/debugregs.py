"""x86 debug registers: the four slots, DR7 and DR6 bit layouts, watch validation, the EFLAGS bits stepping uses.

Intel SDM vol. 3, 17.2. Both backends encode DR7 here; only how the value
reaches a thread (PTRACE_POKEUSER, SetThreadContext) is theirs.
"""

from __future__ import annotations

from ...errors import DebuggerError

DEBUG_SLOTS = 4            # DR0-DR3: the address registers a breakpoint can use
DR6 = 6                    # register numbers, as ptrace's u_debugreg indexes them
DR7 = 7
DR6_SINGLE_STEP = 0x4000   # DR6.BS: the trap came from TF, not from DR0-DR3
TRAP_FLAG = 0x100          # EFLAGS.TF: trap after the next instruction
RESUME_FLAG = 0x10000      # EFLAGS.RF: do not re-fire an execute breakpoint on resume

ACCESSES = ("execute", "write", "readwrite")
# R/W bits of DR7 per access.
_RW_BITS = {"execute": 0b00, "write": 0b01, "readwrite": 0b11}
# LEN bits: note 8 bytes is 0b10, not 0b11.
_LEN_BITS = {1: 0b00, 2: 0b01, 4: 0b11, 8: 0b10}


def watch_aligned(address: int, size: int) -> bool:
    """Whether a data watch of `size` bytes at `address` is size-aligned: the CPU
    ignores an address's low bits under the LEN mask, so an unaligned watch would
    silently cover a different range."""
    return address % size == 0


def check_hardware_breakpoint(slot: int, access: str, size: int, address: int | None = None) -> None:
    """Raise DebuggerError for a breakpoint the debug registers cannot express:
    a slot outside 0-3, an unknown access, a size other than 1, 2, 4 or 8, an
    execute breakpoint wider than 1 byte, or (with `address`) an unaligned watch."""
    if not 0 <= slot < DEBUG_SLOTS:
        raise DebuggerError(f"hardware breakpoint slot must be 0-{DEBUG_SLOTS - 1}, not {slot}")
    if access not in _RW_BITS:
        raise DebuggerError(f"hardware breakpoint access must be execute, write or readwrite, not {access!r}")
    if size not in _LEN_BITS:
        raise DebuggerError(f"hardware breakpoint size must be 1, 2, 4 or 8, not {size}")
    if access == "execute" and size != 1:
        # The CPU requires LEN=00 for instruction breakpoints.
        raise DebuggerError(f"a hardware execute breakpoint watches 1 byte, not {size}")
    if address is not None and access != "execute" and not watch_aligned(address, size):
        raise DebuggerError(f"hardware watchpoint at {address:#x} is not aligned to its size {size}")


def dr7_with_slot(dr7: int, slot: int, access: str, size: int) -> int:
    """DR7 with `slot` locally enabled for `access` of `size` bytes (validated first)."""
    check_hardware_breakpoint(slot, access, size)
    control = _RW_BITS[access] | (_LEN_BITS[size] << 2)
    return dr7_without_slot(dr7, slot) | (1 << (slot * 2)) | (control << (16 + slot * 4))


def dr7_without_slot(dr7: int, slot: int) -> int:
    """DR7 with `slot`'s enable bits (L and G) and its R/W and LEN bits cleared."""
    return dr7 & ~((0b11 << (slot * 2)) | (0b1111 << (16 + slot * 4)))


def dr7_enabled(dr7: int, slot: int) -> bool:
    """Whether `slot` is enabled (locally or globally) in DR7."""
    return bool(dr7 >> (slot * 2) & 0b11)


def dr7_is_watch(dr7: int, slot: int) -> bool:
    """Whether `slot` watches data (write/readwrite) rather than an instruction."""
    return bool(dr7 >> (16 + slot * 4) & 0b11)


def dr6_slots(dr6: int) -> tuple[int, ...]:
    """The slots (0-3) whose condition fired, from DR6.B0-B3."""
    return tuple(slot for slot in range(DEBUG_SLOTS) if dr6 >> slot & 1)
