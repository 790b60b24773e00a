"""x86 debug registers (DR0-DR3, DR6, DR7) through PTRACE_PEEKUSER/POKEUSER: hardware breakpoints.

The kernel keeps debug registers per thread and does not copy them into a
new thread (copy_thread starts with no ptrace breakpoints), so the backend
keeps one `HardwareSlots` per process and applies it to every thread,
including each thread created later, before that thread runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import AbstractSet

from ...arch.x86_64 import (
    DEBUG_SLOTS as SLOTS, DR6, DR7, check_hardware_breakpoint, dr6_slots, dr7_enabled, dr7_is_watch,
    dr7_with_slot, dr7_without_slot,
)
from . import _ffi

__all__ = ["DR6", "DR7", "SLOTS", "HardwareSlots", "cleared", "encode", "read", "restore", "snapshot",
           "take_dr6", "write"]

# This backend's names for the one DR7 encoder (instrument.arch.x86_64.debugregs).
encode = dr7_with_slot
cleared = dr7_without_slot


def _offset(register: int) -> int:
    return _ffi.USER_DEBUGREG_OFFSET + register * 8


def read(tid: int, register: int) -> int:
    return _ffi.peek_user(tid, _offset(register))


def write(tid: int, register: int, value: int) -> None:
    _ffi.ptrace(_ffi.PTRACE_POKEUSER, tid, _offset(register), value)


_KEPT = (0, 1, 2, 3, DR6)      # DR7 is ours to clear; the rest is put back as it was


def snapshot(tid: int) -> dict[int, int]:
    """DR0-3 and DR6 of a stopped thread, to be put back by `restore`."""
    return {register: read(tid, register) for register in _KEPT}


def restore(tid: int, before: dict[int, int]) -> None:
    """Write back what `snapshot` read, where it changed (DR7 cleared first): an address
    written where there was none would make the kernel reserve a breakpoint for it."""
    for register, value in before.items():
        if read(tid, register) != value:
            write(tid, register, value)


def _kernel_resets_dr6() -> bool:
    """Since Linux 5.10 each user-mode #DB starts ptrace's virtual DR6 afresh
    (arch/x86/kernel/traps.c, exc_debug_user), so we need not clear it per hit."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 10)


_DR6_RESET_BY_KERNEL = _kernel_resets_dr6()


def take_dr6(tid: int, slots: HardwareSlots | None = None, pc: int = 0) -> tuple[int, ...]:
    """The slots DR6 says fired; on older kernels DR6 is cleared afterwards
    (the CPU never clears it, and stale bits would name the wrong slot next time).

    With `slots` and the trap's `pc`: when only execute breakpoints are set, the
    ones at `pc` are the ones that fired (an instruction breakpoint traps before
    its instruction, and nothing else can raise #DB with it), so DR6 need not be
    read: one system call less per hit (HOUSE rule 11)."""
    if slots is not None and _DR6_RESET_BY_KERNEL:
        at_pc = slots.execute_slots_at(pc)
        if at_pc:
            return at_pc
    dr6 = read(tid, DR6)
    if not _DR6_RESET_BY_KERNEL:
        write(tid, DR6, 0)
    return dr6_slots(dr6)


@dataclass
class HardwareSlots:
    """The debug-register state one process should have in every thread.

    `watches` and the execute-slot table are derived from DR7 and the addresses
    whenever they change: every hardware hit consults them (HOUSE rule 11)."""

    addresses: list[int] = field(default_factory=lambda: [0] * SLOTS)
    dr7: int = 0
    sampled: frozenset[int] = frozenset()   # execute slots a perf event samples where it can (perfbp.py)
    watches: bool = field(default=False, init=False, compare=False)   # any enabled data watch
    _by_pc: dict[int, tuple[int, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._derive()

    def set(self, slot: int, address: int, access: str, size: int, *, sampled: bool = False) -> None:
        check_hardware_breakpoint(slot, access, size, address)   # before anything changes
        self.dr7 = dr7_with_slot(self.dr7, slot, access, size)
        self.addresses[slot] = address
        self.sampled = self.sampled | {slot} if sampled and access == "execute" else self.sampled - {slot}
        self._derive()

    def clear(self, slot: int) -> None:
        self.dr7 = dr7_without_slot(self.dr7, slot)
        self.addresses[slot] = 0
        self.sampled = self.sampled - {slot}
        self._derive()

    def _derive(self) -> None:
        enabled = [s for s in range(SLOTS) if self.enabled(s)]
        self.watches = any(self.is_watch(s) for s in enabled)
        self._by_pc = {}
        if not self.watches:
            for s in enabled:
                self._by_pc[self.addresses[s]] = self._by_pc.get(self.addresses[s], ()) + (s,)

    def is_watch(self, slot: int) -> bool:
        """Whether `slot` watches data (write/readwrite) rather than an instruction."""
        return dr7_is_watch(self.dr7, slot)

    def enabled(self, slot: int) -> bool:
        return dr7_enabled(self.dr7, slot)

    def execute_slots_at(self, pc: int) -> tuple[int, ...]:
        """The execute slots on `pc` when they alone can have fired, that is when no
        data watch is set; else () and only DR6 can tell."""
        return self._by_pc.get(pc, ())

    @property
    def active(self) -> bool:
        return self.dr7 != 0

    def apply(self, tid: int, without: AbstractSet[int] = frozenset()) -> None:
        """Program a stopped thread, but the slots `without` (sampled in it by perf
        events instead): addresses first, so that enabling in DR7 (which is when the
        kernel registers the perf breakpoint) sees the right address."""
        dr7 = self.dr7
        for slot in without:
            dr7 = dr7_without_slot(dr7, slot)
        for slot in range(SLOTS):
            if dr7_enabled(dr7, slot):
                write(tid, slot, self.addresses[slot])
        write(tid, DR7, dr7)
