"""Breakpoint state, as explicit state machines (HOUSE.md rule 5).

A `BreakpointState` is one recipe breakpoint across the whole session: its
hit count and whether it is enabled. A `SoftSite` is one int3 byte in one
process; several users (recipe breakpoints, pending `on_return`s) may share
it, and it is in the target exactly while it has users. Nothing here talks
to a backend on construction or deletion: `insert`/`remove` are explicit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import DebuggerError

INT3 = b"\xcc"


class State(enum.Enum):
    PENDING = "pending"      # waiting for its module / symbol to be loaded
    ARMED = "armed"          # in the target
    DISABLED = "disabled"    # by `enabled: false` or a `disable` action
    SPENT = "spent"          # reached its limit; never armed again


@dataclass
class BreakpointState:
    plan: Any                                # compiler.plan.BreakpointPlan
    hits: int = 0
    enabled: bool = True
    spent: bool = False
    ever_armed: bool = False     # reported in the summary when never: a module that never loaded
    sampled: bool = False        # hits need not stop the thread (engine/sampling.py)

    @property
    def id(self) -> str:
        return str(self.plan.id)

    @property
    def active(self) -> bool:
        return self.enabled and not self.spent

    def count_hit(self) -> None:
        """Count an accepted hit; a breakpoint that reaches its limit is spent."""
        self.hits += 1
        if self.plan.limit is not None and self.hits >= self.plan.limit:
            self.spent = True


@dataclass
class SoftSite:
    """One int3 in one process, shared by every user of that address."""

    address: int
    original: bytes = b""
    inserted: bool = False
    users: set[str] = field(default_factory=set)     # breakpoint ids, "return"
    code: bytes = b""      # the original instruction bytes from `address` on (for emulation)

    def insert(self, read: Callable[[int, int], bytes], write: Callable[[int, bytes], None]) -> None:
        if self.inserted:
            return
        if not self.original:
            self.code = _read_code(read, self.address)
            self.original = self.code[:1]
        write(self.address, INT3)
        self.inserted = True

    def remove(self, write: Callable[[int, bytes], None]) -> None:
        if self.inserted:
            write(self.address, self.original)
            self.inserted = False


MAX_INSTRUCTION = 15


def _read_code(read: Callable[[int, int], bytes], address: int) -> bytes:
    """Up to one whole instruction's bytes, stopping at the page end (the next page may be unmapped)."""
    size = min(MAX_INSTRUCTION, 4096 - (address & 4095))
    try:
        return read(address, size)
    except DebuggerError:
        return read(address, 1)     # no emulation for this one; single-stepping needs only the byte


@dataclass(frozen=True)
class PendingReturn:
    """An `on_return` waiting for the call that hit `breakpoint_id` to return.

    Matched by thread and stack pointer: the return lands with rsp one slot
    above the rsp at entry, so recursive calls pair with their own frame."""

    breakpoint_id: str
    tid: int
    expected_rsp: int
    entry_args: tuple[int, ...]
    entry_hits: int
